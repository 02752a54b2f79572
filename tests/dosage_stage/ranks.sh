# Check 3 of the dosage issue: the same dosage results on any number of ranks.
set -euo pipefail
rm -rf "$WORK_DIR" && mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
cmp_dosage() { "$PYTHON" "$TESTS_DIR/dosage_stage/compare_dosage.py" "$@"; }
# 12 perturbations of ~300 cells, MOI 2 (cells carrying two perturbations go to two owners)
run 2 simulate --cells 4000 --genes 600 --perturbations 12 --moi 2 --dosage-design --library-size 20000 \
  --knockdown 0.95 --seed 3 --out small.h5ad --quiet
common=(--input small.h5ad --guides small.guides.tsv --control NonTargeting --targets small.targets.gmt
        --permutations 0 --quiet)
for np in 1 2 3; do
  run "$np" run "${common[@]}" --output run.np$np.h5ad
done
for np in 2 3; do
  echo "== run: np 1 vs np $np (PS differ by rounding: 1e-6)"
  cmp_dosage run.np1.h5ad run.np$np.h5ad 1e-6
done
"$PYTHON" - run.np1.h5ad <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    s = f["var/dosage_status"]
    cats = s["categories"].asstr()[:]
    status = [cats[c] for c in s["codes"][:]]
    print("statuses:", {c: status.count(c) for c in set(status)})
    assert status.count("fitted") >= 8, "expected most of the 12 perturbations fitted"
PY
for np in 1 2 3; do
  run "$np" dosage --results run.np1.h5ad --output dosage.np$np.h5ad --table dosage.np$np.tsv --quiet
done
for np in 1 2 3; do
  echo "== pertscore dosage np $np vs run np 1 (same PS: bit for bit)"
  cmp_dosage run.np1.h5ad dosage.np$np.h5ad 0
done
cmp dosage.np1.tsv dosage.np2.tsv && cmp dosage.np1.tsv dosage.np3.tsv
"$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" dosage.np2.h5ad run.np1.h5ad
echo "== --score-all-cells: X has every perturbation; run and pertscore dosage both use the carried ones"
run 2 run "${common[@]}" --score-all-cells --output all.h5ad
run 3 dosage --results all.h5ad --output all.dosage.h5ad --quiet
cmp_dosage all.h5ad all.dosage.h5ad 0
echo "== pertscore dosage over its own results file, --min-dosage-cells"
cp run.np1.h5ad inplace.h5ad
run 3 dosage --results inplace.h5ad --output inplace.h5ad --min-dosage-cells 100000 --quiet --json
"$PYTHON" - inplace.h5ad <<'PY'
import sys, anndata
a = anndata.read_h5ad(sys.argv[1])
assert set(a.var["dosage_status"]) == {"too few cells"}, set(a.var["dosage_status"])
assert a.var["ed50"].isna().all() and a.var["pcc"].notna().all()
assert a.uns["pertscore"]["dosage"]["min_cells"] == 100000
assert "pertscore dosage" in a.uns["pertscore"]["dosage"]["command"]
print("in place: OK,", a.n_obs, "cells,", list(a.var.columns)[-6:])
PY
echo "== --unit guide (no perturbation named like a gene) and --no-dosage"
run 2 run --input small.h5ad --guides small.guides.tsv --control NonTargeting --unit guide --permutations 0 \
  --output guide.h5ad 2> guide.log
grep -q "nothing to fit" guide.log
run 2 run "${common[@]}" --no-dosage --output nodosage.h5ad
"$PYTHON" - guide.h5ad nodosage.h5ad <<'PY'
import sys, anndata
g = anndata.read_h5ad(sys.argv[1])
assert set(g.var["dosage_status"]) == {"own gene not measured"}, set(g.var["dosage_status"])
assert set(g.var["dosage_class"]) == {"none"}
n = anndata.read_h5ad(sys.argv[2])
assert "ed50" not in n.var.columns and "dosage" not in n.uns["pertscore"]
print("unit guide / no-dosage: OK")
PY
