# Check 3: np = 1, 2 and 3 give the same B and PS (max abs difference <= 1e-8) and the same
# permutation p-values (every one equal), for a low-MOI and a high-MOI simulated screen.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
for design in "lowmoi --moi 1" "highmoi --moi 4 --poisson-moi"; do
  set -- $design
  name=$1; shift
  run 2 simulate --cells 4000 --genes 400 --perturbations 12 "$@" --seed 7 --out "$name.h5ad" --quiet
  for np in 1 2 3; do
    run "$np" run --input "$name.h5ad" --guides "$name.guides.tsv" --control NonTargeting \
      --targets "$name.targets.gmt" --output "$name.np$np.h5ad" --quiet
  done
  for np in 2 3; do
    echo "$name: np=1 vs np=$np"
    "$PYTHON" "$TESTS_DIR/scripts/compare_results.py" "$name.np1.h5ad" "$name.np$np.h5ad" 1e-8
  done
  # what anndata users do (subset by names/lists/masks, to_df, concat, write back)
  "$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" "$name.np2.h5ad" "$name.np3.h5ad"
done
