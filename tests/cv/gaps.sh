# Counts that do not hide gaps (docs/cv.md "Reading the summary"): a predictions file
# that misses held-out perturbations warns with their count and names, and every model
# is then averaged over the perturbations all models predict (obs `compared`, summary
# `n_compared` and n_<metric>, equal to numpy's means of the metrics table); --strict
# refuses it and leaves no output; ignored rows are counted in uns/cv and --json; the
# stderr line about the predictions file is well formed with and without ignored rows.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
cv() { run 2 cv --scheme perturbations --input sim.h5ad --guides sim.guides.tsv --control NonTargeting "$@"; }
run 2 simulate --cells 3000 --genes 200 --perturbations 12 --effects lowrank --effect 0.5 --seed 3 --out sim.h5ad --quiet
"$PYTHON" "$TESTS_DIR/cv/check_cv.py" truth sim.h5ad full.pred.h5ad
"$PYTHON" - <<'PY'
import anndata, numpy as np, pandas as pd
a = anndata.read_h5ad("full.pred.h5ad")
names = list(a.obs.perturbation)
keep = [n for n in names if n not in names[:2]]  # the first two perturbations have no row
x = np.vstack([a[a.obs.perturbation.isin(keep).to_numpy()].X, a.X[:1]])
labels = keep + ["NOT_A_PERTURBATION"]
ad = anndata.AnnData(X=x, dtype=np.float64, obs=pd.DataFrame({"perturbation": labels},
                     index=[f"r{i}" for i in range(len(labels))]), var=a.var.copy())
ad.write_h5ad("gaps.pred.h5ad")
open("missing.txt", "w").write(", ".join(names[:2]))
PY
cv --predictions full.pred.h5ad --output full.h5ad 2> full.err > /dev/null
grep -q "12 perturbation rows, 200 genes shared with the input; 0 rows of unknown perturbations ignored$" full.err \
  || { echo "FAIL: predictions line without ignored rows"; cat full.err; exit 1; }
cv --predictions gaps.pred.h5ad --output gaps.h5ad --json 2> gaps.err > gaps.json
grep -q "warning: --predictions gaps.pred.h5ad has no row for 2 held-out perturbation(s) ($(cat missing.txt))" gaps.err \
  || { echo "FAIL: no warning naming the missing perturbations"; cat gaps.err; exit 1; }
grep -q "10 perturbation rows, 200 genes shared with the input; 1 rows of unknown perturbations ignored$" gaps.err \
  || { echo "FAIL: predictions line"; cat gaps.err; exit 1; }
grep -q "means over the 10 held-out perturbations every model predicts (2 without a --predictions row left out)" gaps.err \
  || { echo "FAIL: summary header"; cat gaps.err; exit 1; }
"$PYTHON" - <<'PY'
import json, anndata, numpy as np
a = anndata.read_h5ad("gaps.h5ad")
cv = a.uns["cv"]
missing = open("missing.txt").read().split(", ")
assert int(cv["n_predictions_missing"]) == 2 and int(cv["n_prediction_rows_ignored"]) == 1
j = json.load(open("gaps.json"))
assert j["predictions_missing"] == 2 and j["prediction_rows_ignored"] == 1 and j["n_compared"] == 10, j
compared = a.obs.compared.astype(bool)
assert sorted(a.obs_names[~compared & (a.obs.fold >= 0)]) == sorted(missing), a.obs
m, s = cv["metrics"], cv["summary"]
metrics = ["mse", "mae", "pearson", "spearman", "sign_fraction", "mse_top", "pearson_top", "overlap_top",
           "r2_top_de", "retrieval"]
rows = 0
for _, r in s.iterrows():
    sel = m[(m.model == r.model) & m.perturbation.isin(a.obs_names[compared])]
    if r.fold != "all":
        sel = sel[sel.fold == int(r.fold)]
    assert r.n_compared == len(sel), (r.fold, r.model, r.n_compared, len(sel))
    for c in metrics:
        v = sel[c].dropna()
        assert r[f"n_{c}"] == len(v), (r.fold, r.model, c)
        want = v.mean() if len(v) else np.nan
        assert (np.isnan(want) and np.isnan(r[c])) or abs(r[c] - want) <= 1e-12 * max(1, abs(want)), (r.model, c)
        if r.fold == "all":
            assert j["models"][r.model]["n"][c] == len(v)
    rows += 1
allrow = s[(s.fold == "all") & (s.model == "zero")].iloc[0]
assert allrow.n_pearson == 0 and allrow.n_mse == 10, allrow
print(f"gaps: 2 missing perturbations named, 1 ignored row counted; {rows} summary rows equal numpy's means over "
      f"the 10 compared perturbations, with their counts")
PY
rm -f strict.h5ad strict.summary.tsv
if cv --predictions gaps.pred.h5ad --output strict.h5ad --strict --quiet 2> strict.err; then
  echo "FAIL: --strict accepted a predictions file with missing perturbations"; exit 1
fi
grep -q "has no row for 2 held-out perturbation(s) ($(cat missing.txt)); --strict refuses" strict.err \
  || { echo "FAIL: --strict message"; cat strict.err; exit 1; }
ls strict.* 2>/dev/null | grep -v strict.err && { echo "FAIL: output left behind"; exit 1; }
echo "gaps: all checks passed"
