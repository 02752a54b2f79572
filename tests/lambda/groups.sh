# pertscore lambda with groups (docs/cv.md "Groups"), np 1, 2, 3:
#   --group-by: each group's curve and results file equal a lambda run on a file holding
#     that group's cells only; the joined curve has a group column;
#   --control-by: the same curve and results on any number of ranks, and the full run at
#     the chosen lambda has the scan's FPR (the scan's problem carries the group intercepts).
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
run 2 simulate --cells 3000 --genes 200 --perturbations 6 --cell-types 2 --control-fraction 0.3 --seed 5 \
  --out lam.h5ad --quiet
"$PYTHON" - <<'PY'
import anndata
a = anndata.read_h5ad("lam.h5ad")
for t in sorted(a.obs.cell_type.unique()):
    a[a.obs.cell_type == t].copy().write_h5ad(f"sub_{t}.h5ad")
PY
common=(--guide-column guide --control NonTargeting --pseudo-cells 100 --lambda-steps 20 --quiet)
for t in type1 type2; do
  run 1 lambda --input sub_$t.h5ad "${common[@]}" --output alone.$t.h5ad --curve alone.$t.tsv >/dev/null
done
for np in 1 2 3; do
  run "$np" lambda --input lam.h5ad "${common[@]}" --group-by cell_type --output g.np$np.h5ad --curve g.np$np.tsv \
    >/dev/null
  for t in type1 type2; do
    cmp g.np$np.$t.tsv alone.$t.tsv || { echo "FAIL: np $np group $t curve differs from the subset run's"; exit 1; }
    "$PYTHON" "$TESTS_DIR/scripts/compare_results.py" g.np$np.$t.h5ad alone.$t.h5ad 1e-9
  done
  { head -1 alone.type1.tsv | sed 's/^/group\t/'; for t in type1 type2; do tail -n +2 alone.$t.tsv | sed "s/^/$t\t/"; done; } \
    | cmp - g.np$np.tsv || { echo "FAIL: the joined curve is not the groups' curves"; exit 1; }
done
"$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" g.np2.type1.h5ad
for np in 1 2 3; do
  run "$np" lambda --input lam.h5ad "${common[@]}" --control-by cell_type --output cb.np$np.h5ad --curve cb.np$np.tsv \
    --json >cb.np$np.json
done
for np in 2 3; do
  cmp cb.np1.tsv cb.np$np.tsv || { echo "FAIL: --control-by curve differs on $np ranks"; exit 1; }
  "$PYTHON" "$TESTS_DIR/scripts/compare_results.py" cb.np1.h5ad cb.np$np.h5ad 1e-9
done
"$PYTHON" - <<'PY'
import json
j = json.load(open("cb.np3.json"))
assert j["fpr_full_run"] == j["chosen_fpr"], (j["fpr_full_run"], j["chosen_fpr"])
print(f"--control-by: full run at lambda {j['chosen_lambda']:.4g} has the scan's FPR {j['chosen_fpr']}")
PY
cmp -s cb.np1.tsv <(run 1 lambda --input lam.h5ad "${common[@]}" --curve /dev/stdout | sed -n '/^lambda\t/,$p') \
  && { echo "FAIL: --control-by gives the curve of one intercept"; exit 1; } || true
"$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" cb.np2.h5ad
echo "lambda groups: all checks passed"
