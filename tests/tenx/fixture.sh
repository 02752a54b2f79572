#!/bin/bash
# Fixture of the 10x reader test (test_tenx_read, np 1 and 3): one simulated
# screen as h5ad + scMAGeCK guide table, and the same screen as 10x Genomics
# feature-barcode .h5 files with CRISPR Guide Capture features, plus broken .h5
# files (make_tenx.py). The C test finds them through TENX_DIR = this WORK_DIR.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"

echo "== simulate (1500 cells, 200 genes, 4 perturbations, seed 5)"
timeout 120 "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells 1500 --genes 200 --perturbations 4 \
  --seed 5 --out sim.h5ad --quiet
echo "== write the 10x .h5 files with h5py"
"$PYTHON" "$TESTS_DIR/tenx/make_tenx.py" h5 sim .
for f in sim_10x.h5 sim_10x_mixed.h5 sim_10x_noguides.h5 bad_list.tsv; do
  [[ -s $f ]] || { echo "FAIL: $f not written" >&2; exit 1; }
done
h5dump -H sim_10x.h5 >/dev/null
echo "PASS: fixture in $WORK_DIR"
