#!/bin/bash
# Interop: the same screen stored in every input layout AnnData users produce must
# give the same perturbation scores, and the results file must read back with the
# real anndata package (and h5dump).
#
# One small simulated screen (Poisson MOI, so some cells carry no guide and some
# several) is rewritten by make_variants.py with anndata: CSR float64/int64, CSR
# float32/int32, CSC, dense, counts in layers['counts'], log-normalized X; the
# guides also as a Cell Ranger protospacer_calls_per_cell.csv and as the obs
# column 'guide'. pertscore runs on each (1, 2 or 3 ranks); every PS matrix must
# equal the baseline within 1e-9.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"

fail() { echo "FAIL: $*" >&2; exit 1; }
mpi() { local np=$1; shift; timeout 120 "$MPIEXEC" --oversubscribe -n "$np" "$@"; }

echo "== simulate a small screen (1500 cells, 200 genes, 4 perturbations, Poisson MOI 1)"
mpi 2 "$PERTSCORE" simulate --cells 1500 --genes 200 --perturbations 4 --moi 1 --poisson-moi \
  --seed 11 --out sim.h5ad --quiet
for f in sim.h5ad sim.guides.tsv sim.targets.gmt; do [[ -s $f ]] || fail "simulate did not write $f"; done

echo "== write the variants with anndata"
"$PYTHON" "$TESTS_DIR/interop/make_variants.py" sim var

# run NAME NP INPUT GUIDE_ARGS... : results in res_NAME.h5ad, --json summary in res_NAME.json
run() {
  local name=$1 np=$2 input=$3
  shift 3
  echo "-- run $name (np $np): --input $input $*"
  if ! mpi "$np" "$PERTSCORE" run --input "$input" "$@" --control NonTargeting --targets sim.targets.gmt \
      --output "res_$name.h5ad" --quiet --json >"res_$name.json" 2>"res_$name.err"; then
    cat "res_$name.err" >&2
    fail "pertscore run failed for variant $name"
  fi
  [[ -s res_$name.h5ad ]] || fail "$name: no results file"
  [[ ! -e res_$name.h5ad.partial ]] || fail "$name: res_$name.h5ad.partial left behind"
  h5dump -H "res_$name.h5ad" >/dev/null || fail "$name: h5dump -H cannot read res_$name.h5ad"
}

echo "== baseline: the simulated file with the scMAGeCK barcode table"
run base 2 sim.h5ad --guides sim.guides.tsv --cells-table cells_base.tsv

echo "== the same input on 1 and 3 ranks"
run base_np1 1 sim.h5ad --guides sim.guides.tsv
run base_np3 3 sim.h5ad --guides sim.guides.tsv --cells-table cells_base_np3.tsv

echo "== matrix layouts"
run csr64 1 var/csr64.h5ad --guides sim.guides.tsv
run csr32 3 var/csr32.h5ad --guides sim.guides.tsv
run csc 2 var/csc.h5ad --guides sim.guides.tsv
run csc_np3 3 var/csc.h5ad --guides sim.guides.tsv
run dense 3 var/dense.h5ad --guides sim.guides.tsv
run layer 2 var/layer.h5ad --guides sim.guides.tsv --layer counts
run lognorm 2 var/lognorm.h5ad --guides sim.guides.tsv
echo "== guide formats"
run cellranger 2 sim.h5ad --guides var/cellranger.csv
run cellranger_np1 1 var/csr32.h5ad --guides var/cellranger.csv
run column 3 sim.h5ad --guide-column guide
run column_cat 1 var/csr32.h5ad --guide-column guide
echo "== decoy: layer.h5ad read without --layer must NOT match (its X is other data)"
run decoy 2 var/layer.h5ad --guides sim.guides.tsv

echo "== compare every result with the baseline"
"$PYTHON" - <<'EOF'
import json
import sys

import anndata as ad
import h5py
import numpy as np

def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)

analysed = open("var/analysed.txt").read().split()
perts = sorted({line.split("\t")[0] for line in open("sim.targets.gmt") if line.strip()})
src = ad.read_h5ad("sim.h5ad")
labels = [l for s in src.obs["guide"] for l in s.split(",") if l]
if sorted(set(labels) - {"NonTargeting"}) != perts:
    fail(f"perturbation labels of obs/guide {sorted(set(labels))} do not match targets.gmt {perts}")

def load(name):
    path = f"res_{name}.h5ad"
    a = ad.read_h5ad(path)  # must open with the real anndata
    with h5py.File(path, "r") as f:  # and the raw layout must be AnnData's
        enc = f["X"].attrs["encoding-type"]
        if enc not in ("csr_matrix", b"csr_matrix"):
            fail(f"{path}: X encoding {enc!r}, expected csr_matrix")
    return a

base = load("base")
n, k = len(analysed), len(perts)
if base.shape != (n, k):
    fail(f"baseline shape {base.shape}, expected (analysed cells, perturbations) = {(n, k)}")
if list(base.obs_names) != analysed:
    fail("baseline obs_names are not the analysed cells of the input in input order")
if list(base.var_names) != perts:
    fail(f"baseline var_names {list(base.var_names)}, expected {perts}")
X0 = base.X.toarray()
if not np.all(np.isfinite(X0)) or X0.max() <= 0:
    fail("baseline PS is not finite or all zero")
print(f"  base: {n} x {k}, obs = analysed cells in input order, var = {perts}, "
      f"{base.X.nnz} stored PS, max {X0.max():.4g}")

counts_expected = {"lognorm": False, "decoy": False}
names = ["base_np1", "base_np3", "csr64", "csr32", "csc", "csc_np3", "dense", "layer", "lognorm",
         "cellranger", "cellranger_np1", "column", "column_cat"]
for name in names + ["decoy"]:
    info = json.load(open(f"res_{name}.json"))
    want = counts_expected.get(name, True)
    if info["input_was_counts"] is not want:
        fail(f"{name}: input_was_counts = {info['input_was_counts']}, expected {want}")
    if info["cells_analysed"] != n or info["perturbations"] != k:
        fail(f"{name}: --json says {info['cells_analysed']} cells x {info['perturbations']} perturbations, "
             f"expected {n} x {k}")
for name in names:
    a = load(name)
    if list(a.obs_names) != list(base.obs_names):
        fail(f"{name}: obs_names differ from the baseline")
    if list(a.var_names) != list(base.var_names):
        fail(f"{name}: var_names {list(a.var_names)} differ from the baseline {list(base.var_names)}")
    if a.shape != base.shape:
        fail(f"{name}: shape {a.shape} != baseline {base.shape}")
    diff = np.abs(a.X.toarray() - X0).max()
    if not diff <= 1e-9:
        fail(f"{name}: PS differs from the baseline by {diff:.3g} (> 1e-9)")
    print(f"  {name:15s} same cells, perturbations and PS (max |diff| {diff:.2g})")
decoy = load("decoy")
if decoy.shape == base.shape and np.abs(decoy.X.toarray() - X0).max() <= 1e-9:
    fail("decoy: layer.h5ad without --layer gave the baseline scores; the layer variant proves nothing")
print("  decoy           differs from the baseline, as it should")
EOF
echo "== what anndata users do with the results (subset, to_df, concat, write back)"
for name in base base_np3 csr32 column; do
  "$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" "res_$name.h5ad" res_base_np1.h5ad
done
echo "== per-cell obs columns and --cells-table (2 and 3 ranks: the same bytes)"
"$PYTHON" "$TESTS_DIR/interop/check_cells.py" res_base.h5ad sim.guides.tsv cells_base.tsv NonTargeting \
  cells_base_np3.tsv
echo "PASS: all input layouts and guide formats give the baseline scores"
