# The split-half ceiling corrected to full-data reliability (docs/cv.md "Ceiling"):
#   - on a low-rank simulation an oracle that predicts each perturbation's true mean expression
#     (from 20x as many independent cells of the same simulation) scores within noise of the
#     ceiling on MSE, MAE, Pearson, Pearson top, retrieval, and no model (nor the
#     oracle) beats the ceiling beyond noise on any metric;
#   - the split halves recorded in uns/cv/halves give numpy's split-half metrics and the
#     ceiling's retrieval (no RNG); the ceiling rows are numpy's corrections of the split_half rows;
#   - np 1 and 3 write the same tables (halves included);
#   - the same with --disjoint-controls and an oracle predicting the true delta;
#   - the PEREGGRN-convention table equals numpy's recomputation from the saved deltas.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
cv() { run "$1" cv --scheme perturbations --input screen.h5ad --guides screen.guides.tsv --control NonTargeting \
  --quiet "${@:2}"; }
sim=(--genes 300 --perturbations 30 --effects lowrank --effect 0.5 --seed 11 --quiet)
run 2 simulate --cells 6000 "${sim[@]}" --out screen.h5ad
run 2 simulate --cells 126000 "${sim[@]}" --out truth.h5ad
cmp screen.effects.tsv truth.effects.tsv
cv 3 --output base.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_ceiling.py" recompute base.h5ad screen.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_ceiling.py" formulas base.h5ad
cv 2 --save-predictions --output saved.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_pereggrn.py" saved.h5ad
cv 1 --output base.np1.h5ad
"$PYTHON" "$TESTS_DIR/cv/compare_cv.py" base.h5ad base.np1.h5ad 1e-9
"$PYTHON" - base.h5ad base.np1.h5ad <<'PY'
import sys, anndata
a, b = (anndata.read_h5ad(p).uns["cv"]["halves"] for p in sys.argv[1:])
assert a.equals(b), "the split halves differ between np 3 and np 1"
print(f"split halves: the same {len(a)} cells on np 1 and 3")
PY
"$PYTHON" "$TESTS_DIR/cv/check_ceiling.py" oracle truth.h5ad 6000 base.h5ad oracle.h5ad expression
# --disjoint-controls: the oracle predicts the true delta (against control half 0, as every model)
cv 2 --disjoint-controls --output disjoint.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_ceiling.py" recompute disjoint.h5ad screen.h5ad disjoint
"$PYTHON" "$TESTS_DIR/cv/check_ceiling.py" oracle truth.h5ad 6000 disjoint.h5ad oracle.delta.h5ad delta
rm -f truth.h5ad
cv 2 --predictions oracle.h5ad --output oracle.cv.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_ceiling.py" bound oracle.cv.h5ad 0.05
cv 2 --disjoint-controls --predictions oracle.delta.h5ad --output oracle.disjoint.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_ceiling.py" bound oracle.disjoint.h5ad 0.05
echo "ceiling: all checks passed"
