#!/bin/bash
# pertscore inspect: the summary of a results file (parameters, head of the var
# table, the calls when var/effect_fdr exists) and the recognition of 10x Genomics
# .h5 files (Cell Ranger >= 3 with and without guide capture, features interleaved;
# Cell Ranger 2), every number checked against h5py.
set -euo pipefail
: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK_DIR" && mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 120 "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
run 2 simulate --cells 1200 --genes 200 --perturbations 5 --moi 1 --seed 3 --out sim.h5ad --quiet
# --no-calibration: a results file without var/effect_fdr (the calls' absence is checked first)
run 2 run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt \
  --permutations 0 --no-calibration --output res.h5ad --quiet
"$PERTSCORE" inspect res.h5ad >res.txt || fail "inspect res.h5ad failed"

echo "== results without var/effect_fdr"
"$PYTHON" - res.h5ad res.txt <<'PY'
import sys, h5py, numpy as np
path, txt = sys.argv[1], open(sys.argv[2]).read()
def fail(m): print("FAIL:", m, file=sys.stderr); sys.exit(1)
f = h5py.File(path, "r")
lines = txt.splitlines()
if "(pertscore results)" not in lines[0]: fail("first line: " + lines[0])
if "parameters (uns/pertscore/parameters):" not in txt: fail("no parameters section")
for key in ("control", "lambda", "input", "command"):
    v = f["uns/pertscore/parameters/" + key][()]
    v = v.decode() if isinstance(v, bytes) else "%.6g" % v
    if not any(l.split(None, 1) == [key, v] for l in (x.strip() for x in lines)):
        fail(f"parameter {key} = {v} not printed")
labels = [v.decode() for v in f["var/_index"][()]]
head = [l for l in lines if l.strip().split(" ")[0] in labels]
if len(head) != min(10, len(labels)): fail(f"{len(head)} var rows printed, expected {min(10, len(labels))}")
for l in head:
    k = labels.index(l.split()[0])
    got = [float(x) for x in l.split()[1:]]
    want = [f["var/" + c][k] for c in ("n_cells", "n_targets", "mean_ps", "cumulative_score")]
    if not np.allclose(got, want, rtol=1e-5): fail(f"var row {labels[k]}: {got} vs {want}")
n = f["obs/n_perturbations"][()]
want = f"cells: {len(n)} analysed, {int((n == 0).sum())} control, {int((n > 0).sum())} perturbed"
if want not in txt: fail("no line: " + want)
if "calls: no var/effect_fdr" not in txt: fail("missing-FDR note not printed")
print("PASS: results summary:", len(head), "var rows, parameters, cells")
PY

echo "== results with var/effect_fdr (written here with h5py)"
cp res.h5ad fdr.h5ad
"$PYTHON" - fdr.h5ad <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    K = len(f["var/_index"])
    fdr = np.array([0.2, 0.01, np.nan, 0.05, 0.0001][:K])
    f["var/effect_fdr"] = fdr
    f["var/effect_pvalue"] = fdr / 2
PY
"$PERTSCORE" inspect fdr.h5ad >fdr.txt || fail "inspect fdr.h5ad failed"
"$PYTHON" - fdr.h5ad fdr.txt <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r"); txt = open(sys.argv[2]).read()
labels = [v.decode() for v in f["var/_index"][()]]
fdr = f["var/effect_fdr"][()]
calls = sorted((v, labels[k]) for k, v in enumerate(fdr) if np.isfinite(v) and v <= 0.05)
want = (f"calls (var/effect_fdr <= 0.05): {len(calls)} of {len(labels)} perturbations: "
        + ", ".join(f"{n} ({v:.3g})" for v, n in calls))
if want not in txt:
    print("FAIL: expected\n  " + want + "\ngot\n" + txt[:2000], file=sys.stderr); sys.exit(1)
if "effect_fdr" not in txt.split("var (perturbations")[1].splitlines()[1]:
    print("FAIL: effect_fdr not a column of the var head", file=sys.stderr); sys.exit(1)
print("PASS:", want)
PY

echo "== 10x Genomics .h5"
"$PYTHON" "$TESTS_DIR/tenx/make_tenx.py" h5 sim . >/dev/null
"$PYTHON" - <<'PY'
import h5py, numpy as np
# a Cell Ranger 2 file: one group per genome
with h5py.File("v2.h5", "w") as f:
    g = f.create_group("GRCh38")
    g["barcodes"] = np.array([b"AAAC-1", b"AAAG-1"]); g["genes"] = np.array([b"ENSG1"]); g["gene_names"] = np.array([b"A"])
    g["data"] = np.array([1], dtype=np.int32); g["indices"] = np.array([0], dtype=np.int64)
    g["indptr"] = np.array([0, 1, 1], dtype=np.int64); g["shape"] = np.array([1, 2], dtype=np.int32)
PY
for f in sim_10x.h5 sim_10x_mixed.h5 sim_10x_noguides.h5 v2.h5; do
  "$PERTSCORE" inspect "$f" >"$f.txt" || fail "inspect $f failed"
done
"$PYTHON" - <<'PY'
import sys, h5py, numpy as np
def fail(m): print("FAIL:", m, file=sys.stderr); sys.exit(1)
for name in ("sim_10x.h5", "sim_10x_mixed.h5", "sim_10x_noguides.h5"):
    txt = open(name + ".txt").read()
    with h5py.File(name, "r") as f:
        F, B = (int(v) for v in f["matrix/shape"][()])
        nnz = len(f["matrix/data"])
        types = [v.decode() for v in f["matrix/features/feature_type"][()]]
    if f"{name}: 10x Genomics feature-barcode matrix (.h5 of Cell Ranger >= 3)" not in txt:
        fail(f"{name}: not recognized as 10x: {txt.splitlines()[0]}")
    if f"matrix: {F} features x {B} barcodes, {nnz} stored values" not in txt: fail(f"{name}: shape line")
    counts = {}
    for t in types: counts[t] = counts.get(t, 0) + 1
    want = "feature types: " + ", ".join(f"{t} {n}" for t, n in counts.items())
    if want not in txt: fail(f"{name}: expected '{want}'")
    guides = counts.get("CRISPR Guide Capture", 0)
    if guides and "reads the genes and the guide calls" not in txt: fail(f"{name}: no guide-capture hint")
    if not guides and "no CRISPR Guide Capture features" not in txt: fail(f"{name}: no missing-guides hint")
    print(f"PASS: {name}: {want}")
txt = open("v2.h5.txt").read()
if "Cell Ranger 2 (genome group 'GRCh38')" not in txt or "pertscore convert" not in txt: fail("v2: " + txt)
print("PASS: Cell Ranger 2 file recognized")
PY
if "$PERTSCORE" inspect missing.h5 2>missing.err; then fail "inspect of a missing file exited 0"; fi
grep -q "missing.h5" missing.err || fail "missing file: message does not name it"
echo "PASS: inspect"
