#!/bin/bash
# `pertscore convert MEXDIR --out DATA.h5ad` (SPEC.md section 0):
#   - a gzipped Cell Ranger 3 MEX folder (genes, antibodies, guide capture) and a
#     plain Cell Ranger 2 one (genes.tsv, real values, entries in random order) give
#     X, obs_names and var_names equal to the simulated screen they were made from
#     (checked with anndata); guide capture becomes DATA.guides.csv at --min-guide-umi;
#   - `pertscore run` on the converted h5ad + guides.csv gives the PS of the original
#     h5ad + scMAGeCK table;
#   - duplicate gene names are refused unless --var-names id;
#   - every broken folder gives `pertscore: error:` naming the file (and line), exits
#     non-zero without hanging (2 ranks), and leaves no output behind.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"

fail() { echo "FAIL: $*" >&2; exit 1; }
mpi() { local np=$1; shift; timeout 120 "$MPIEXEC" --oversubscribe -n "$np" "$@"; }

echo "== simulate (1500 cells, 200 genes, 4 perturbations, seed 5) and write MEX folders"
mpi 2 "$PERTSCORE" simulate --cells 1500 --genes 200 --perturbations 4 --seed 5 --out sim.h5ad --quiet
"$PYTHON" "$TESTS_DIR/tenx/make_tenx.py" mex sim mex

convert() { # NP OUT MEXDIR [options]
  local np=$1 out=$2 dir=$3
  shift 3
  echo "-- convert (np $np) $dir -> $out $*"
  mpi "$np" "$PERTSCORE" convert "$dir" --out "$out" "$@" 2>"$out.err" || { cat "$out.err" >&2; fail "convert $dir"; }
  cat "$out.err"
  [[ -s $out && ! -e $out.partial ]] || fail "$out missing or $out.partial left behind"
}
convert 1 gz.h5ad mex/mex_gz
convert 3 plain.h5ad mex/mex_plain --quiet
convert 2 thr.h5ad mex/mex_gz --min-guide-umi 20 --quiet
convert 2 ids.h5ad mex/dup_names --var-names id --quiet
[[ -s gz.guides.csv && -s thr.guides.csv ]] || fail "guide-capture features did not give OUT.guides.csv"
[[ ! -e plain.guides.csv ]] || fail "plain.guides.csv written for a folder without guide capture"
grep -q "dropped" gz.h5ad.err || fail "the antibody features were not reported as dropped"

echo "== compare with the simulated screen (anndata)"
"$PYTHON" - <<'PY'
import sys

import anndata as ad
import numpy as np


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


src = ad.read_h5ad("sim.h5ad")
x0 = src.X.toarray()
for name in ("gz", "plain", "thr", "ids"):
    a = ad.read_h5ad(f"{name}.h5ad")
    if a.shape != src.shape:
        fail(f"{name}: shape {a.shape}, expected {src.shape}")
    if list(a.obs_names) != list(src.obs_names):
        fail(f"{name}: obs_names differ from the original")
    want_var = [f"ENSSIM{i + 1:08d}" for i in range(src.n_vars)] if name == "ids" else list(src.var_names)
    if list(a.var_names) != want_var:
        fail(f"{name}: var_names differ from the original")
    d = np.abs(a.X.toarray() - x0).max()
    if d != 0:
        fail(f"{name}: X differs from the original by {d}")
    if a.X.format != "csr":
        fail(f"{name}: X is {a.X.format}, expected csr")
    cols = ["gene_ids", "feature_types"] + (["gene_symbols"] if name == "ids" else [])
    if list(a.var.columns) != cols:
        fail(f"{name}: var columns {list(a.var.columns)}, expected {cols}")
    if list(a.var["gene_ids"]) != [f"ENSSIM{i + 1:08d}" for i in range(src.n_vars)]:
        fail(f"{name}: var.gene_ids are not the feature ids")
    if set(a.var["feature_types"]) != {"Gene Expression"}:
        fail(f"{name}: feature_types {set(a.var['feature_types'])}")
    print(f"  {name:6s} X, obs_names, var_names and var columns as expected ({a.X.nnz} nonzeros)")
ids = ad.read_h5ad("ids.h5ad")
sym = list(src.var_names)
sym[9] = sym[4]
if list(ids.var["gene_symbols"]) != sym:
    fail("ids: var.gene_symbols are not the gene names")

expected = [l.rstrip("\n").split("\t") for l in open("mex/guides_expected.tsv")]
for name, threshold in (("gz", 3), ("thr", 20)):
    lines = open(f"{name}.guides.csv").read().splitlines()
    if lines[0] != "cell_barcode,num_features,feature_call,num_umis":
        fail(f"{name}.guides.csv header {lines[0]!r}")
    got = set()
    for line in lines[1:]:
        cell, n, calls, umis = line.split(",")
        calls, umis = calls.split("|"), umis.split("|")
        if int(n) != len(calls) or len(calls) != len(umis):
            fail(f"{name}.guides.csv: inconsistent line {line!r}")
        got |= {(cell, c, u) for c, u in zip(calls, umis)}
    want = {(c, g, u) for c, g, u in expected if int(u) >= threshold}
    if got != want:
        fail(f"{name}.guides.csv: {len(got - want)} unexpected and {len(want - got)} missing calls")
    print(f"  {name}.guides.csv: {len(got)} calls at >= {threshold} UMIs, as expected")
PY

echo "== pertscore run: converted h5ad + guides.csv vs the original h5ad + scMAGeCK table"
for v in orig conv; do
  if [[ $v == orig ]]; then args=(--input sim.h5ad --guides sim.guides.tsv); else args=(--input gz.h5ad --guides gz.guides.csv); fi
  mpi 2 "$PERTSCORE" run "${args[@]}" --control NonTargeting --targets sim.targets.gmt --output "res_$v.h5ad" \
    --quiet 2>"res_$v.err" || { cat "res_$v.err" >&2; fail "run on $v"; }
done
"$PYTHON" "$TESTS_DIR/scripts/compare_results.py" res_orig.h5ad res_conv.h5ad 0 || fail "PS of the converted screen differ"

echo "== duplicate gene names without --var-names id"
if mpi 2 "$PERTSCORE" convert mex/dup_names --out dup.h5ad 2>dup.err; then fail "duplicate gene names accepted"; fi
grep -q "genes.tsv\|features.tsv" dup.err && grep -q "line 10: gene name" dup.err || { cat dup.err >&2; fail "unclear duplicate-name error"; }
[[ ! -e dup.h5ad && ! -e dup.h5ad.partial ]] || fail "output left behind after the duplicate-name error"

echo "== broken MEX folders (2 ranks)"
n=0
while IFS=$'\t' read -r dir expect; do
  name=$(basename "$dir")
  out="bad_$name.h5ad"
  set +e
  timeout 60 "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" convert "$dir" --out "$out" --quiet </dev/null >/dev/null 2>"$out.err"
  rc=$?
  set -e
  [[ $rc -ne 124 ]] || fail "$name: convert hung"
  [[ $rc -ne 0 ]] || fail "$name: convert succeeded on a broken folder"
  grep -q "pertscore: error:" "$out.err" || { cat "$out.err" >&2; fail "$name: no 'pertscore: error:' line"; }
  grep -qF -- "$expect" "$out.err" || { cat "$out.err" >&2; fail "$name: message lacks '$expect'"; }
  [[ ! -e $out && ! -e $out.partial && ! -e bad_$name.guides.csv && ! -e bad_$name.guides.csv.partial ]] \
    || fail "$name: output left behind"
  printf '  %-22s %s\n' "$name" "$(grep 'pertscore: error:' "$out.err" | sed 's/^pertscore: error: //')"
  n=$((n + 1))
done < mex/bad_list.tsv
[[ $n -ge 10 ]] || fail "only $n broken folders tested"
echo "PASS: convert"
