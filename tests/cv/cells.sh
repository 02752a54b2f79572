# pertscore cv --scheme cells end to end (docs/cv.md):
#   check 4: the held-out MSE / R^2 tables equal an independent numpy ridge on the
#            recorded folds, and the chosen ridge lambda minimizes the written curve;
#   check 5: the same tables (cells' folds included) for np = 1, 2, 5 (a fold per
#            rank group, docs/cv.md), and with more ranks than folds (np 3, 5, 2 folds).
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
run 2 simulate --cells 3000 --genes 300 --perturbations 10 --effect 0.3 --seed 9 --out sim.h5ad --quiet
for np in 1 2 5; do
  run "$np" cv --scheme cells --input sim.h5ad --guides sim.guides.tsv --control NonTargeting \
    --targets sim.targets.gmt --output cells.np$np.h5ad --quiet
done
"$PYTHON" "$TESTS_DIR/cv/check_cells.py" sim.h5ad sim.targets.gmt cells.np2.h5ad cells.np2.summary.tsv
for np in 1 5; do
  "$PYTHON" "$TESTS_DIR/cv/compare_cv.py" cells.np2.h5ad cells.np$np.h5ad 1e-9
done
# more ranks than folds: fold groups of 2 and 1 ranks (np 3) and of 3 and 2 (np 5)
for np in 1 3 5; do
  run "$np" cv --scheme cells --input sim.h5ad --guides sim.guides.tsv --control NonTargeting \
    --targets sim.targets.gmt --folds 2 --ridge-lambdas 0.01,1,100 --output f2.np$np.h5ad --quiet
done
"$PYTHON" "$TESTS_DIR/cv/check_cells.py" sim.h5ad sim.targets.gmt f2.np3.h5ad f2.np3.summary.tsv
for np in 3 5; do
  "$PYTHON" "$TESTS_DIR/cv/compare_cv.py" f2.np1.h5ad f2.np$np.h5ad 1e-9
done
echo "cells scheme: all checks passed"
