# pertscore cv --scheme perturbations end to end (docs/cv.md):
#   check 3: on a low-rank simulation the embedding model beats the mean baseline on
#            Pearson delta in every fold; on pure noise not by more than noise (both printed);
#   check 5: the same tables for np = 1, 2, 5;
#   check 6: predictions equal to the true deltas score perfectly, predictions equal to
#            the mean baseline score as it does; the observed deltas equal numpy's.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
cv() { run "$1" cv --scheme perturbations --input "$2.h5ad" --guides "$2.guides.tsv" --control NonTargeting "${@:3}" --quiet; }
run 2 simulate --cells 8000 --genes 500 --perturbations 40 --effects lowrank --effect 0.5 --seed 5 --out lowrank.h5ad --quiet
run 2 simulate --cells 8000 --genes 500 --perturbations 40 --effects none --seed 5 --out noise.h5ad --quiet
# the scheme selects no targets; a targets file is read (and not used)
printf 'GENE00001\tGENE00002\n' > skip.tsv
for np in 1 2 5; do
  cv "$np" lowrank --targets skip.tsv --output lowrank.np$np.h5ad
done
cv 2 noise --output noise.cv.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_cv.py" embedding lowrank.np2.h5ad noise.cv.h5ad
for np in 1 5; do
  "$PYTHON" "$TESTS_DIR/cv/compare_cv.py" lowrank.np2.h5ad lowrank.np$np.h5ad 1e-9
  cmp <(cut -f1-3 lowrank.np2.summary.tsv) <(cut -f1-3 lowrank.np$np.summary.tsv)
done
# without --targets no target selection runs (the de.* statistics stay absent), the
# matrix is read once, and the tables are those of the run with a targets file
PERTSCORE_STATS=$PWD/nosel "$MPIEXEC" --oversubscribe -x PERTSCORE_STATS -n 2 "$PERTSCORE" cv --scheme perturbations \
  --input lowrank.h5ad --guides lowrank.guides.tsv --control NonTargeting --output nosel.h5ad --quiet
"$PYTHON" - nosel.rank0.json nosel.rank1.json <<'PY'
import json, sys
for path in sys.argv[1:]:
    s = json.load(open(path))
    assert "de.seconds" not in s, f"{path}: target selection ran ({s['de.seconds']} s)"
    assert "read.seconds" in s, f"{path}: no read stage recorded"
PY
"$PYTHON" "$TESTS_DIR/cv/compare_cv.py" lowrank.np2.h5ad nosel.h5ad 0
# check 6
cv 2 lowrank --targets skip.tsv --save-predictions --output saved.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_cv.py" observed saved.h5ad lowrank.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_cv.py" truth lowrank.h5ad truth.pred.h5ad
cv 2 lowrank --targets skip.tsv --predictions truth.pred.h5ad --output truth.cv.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_cv.py" perfect truth.cv.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_cv.py" from-model saved.h5ad mean mean.pred.h5ad
cv 3 lowrank --targets skip.tsv --predictions mean.pred.h5ad --output mean.cv.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_cv.py" same mean.cv.h5ad mean 1e-12
echo "perturbations scheme: all checks passed"
