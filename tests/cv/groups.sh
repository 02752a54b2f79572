# pertscore cv with groups (docs/cv.md "Groups"), np 1, 2, 3:
#   --group-by: each group's tables equal a cv of a file holding that group's cells only
#     (both schemes), the same on any number of ranks; the joined summary has a group column;
#   --control-by: cells scheme equal to a numpy ridge with one intercept per group
#     (check_cells.py), perturbations scheme's deltas against each cell's own group's
#     controls (check_control_by.py), the same on any number of ranks, and run --cv
#     --control-by writes the tables cv writes (its results file read by anndata).
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
cmp_cv() { "$PYTHON" "$TESTS_DIR/cv/compare_cv.py" "$@"; }
run 2 simulate --cells 1500 --genes 200 --perturbations 8 --cell-types 2 --seed 3 --out diff.h5ad --quiet
run 2 simulate --cells 2000 --genes 200 --perturbations 8 --cell-types 3 --type-responses same --seed 4 \
  --out same.h5ad --quiet
"$PYTHON" - <<'PY'
import anndata
a = anndata.read_h5ad("diff.h5ad")
for t in sorted(a.obs.cell_type.unique()):
    a[a.obs.cell_type == t].copy().write_h5ad(f"sub_{t}.h5ad")
PY
common=(--guide-column guide --control NonTargeting --quiet)
for scheme in perturbations cells; do
  for t in type1 type2; do
    run 1 cv --scheme "$scheme" --input sub_$t.h5ad "${common[@]}" --min-cells 5 --output alone.$scheme.$t.h5ad
  done
  for np in 1 2 3; do
    run "$np" cv --scheme "$scheme" --input diff.h5ad "${common[@]}" --min-cells 5 --group-by cell_type \
      --output g.$scheme.np$np.h5ad
    for t in type1 type2; do cmp_cv g.$scheme.np$np.$t.h5ad alone.$scheme.$t.h5ad 1e-9; done
  done
  "$PYTHON" - "$scheme" <<'PY'
import sys
import pandas as pd
scheme = sys.argv[1]
joined = pd.read_csv(f"g.{scheme}.np2.summary.tsv", sep="\t", dtype=str, keep_default_na=False)
assert list(joined.columns)[0] == "group", joined.columns
parts = []
for t in ["type1", "type2"]:
    p = pd.read_csv(f"g.{scheme}.np2.summary.{t}.tsv", sep="\t", dtype=str, keep_default_na=False)
    alone = pd.read_csv(f"alone.{scheme}.{t}.summary.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert p.equals(alone), f"{scheme} {t}: the group's summary differs from the subset file's"
    p.insert(0, "group", t)
    parts.append(p)
assert joined.equals(pd.concat(parts, ignore_index=True)), "the joined summary is not the groups' summaries"
print(f"{scheme}: joined summary = the two groups' summaries with a group column ({len(joined)} rows)")
PY
done
# --control-by
gmt=(--targets same.targets.gmt)
for np in 1 2 3; do
  run "$np" cv --scheme cells --input same.h5ad "${common[@]}" "${gmt[@]}" --control-by cell_type --output cb.np$np.h5ad
  run "$np" cv --scheme perturbations --input same.h5ad "${common[@]}" --control-by cell_type --save-predictions \
    --output pb.np$np.h5ad
done
run 1 cv --scheme perturbations --input same.h5ad "${common[@]}" --save-predictions --output pn.h5ad
"$PYTHON" "$TESTS_DIR/cv/check_cells.py" same.h5ad same.targets.gmt cb.np3.h5ad cb.np3.summary.tsv cell_type
"$PYTHON" "$TESTS_DIR/cv/check_control_by.py" same.h5ad pb.np2.h5ad cell_type pn.h5ad
for np in 2 3; do cmp_cv cb.np1.h5ad cb.np$np.h5ad 1e-9; cmp_cv pb.np1.h5ad pb.np$np.h5ad 1e-9; done
for scheme in cells perturbations; do
  run 2 run --input same.h5ad "${common[@]}" "${gmt[@]}" --control-by cell_type --cv $scheme --no-dosage \
    --output run.$scheme.h5ad 2>/dev/null
  "$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" run.$scheme.h5ad
done
cmp_cv run.cells.h5ad cb.np1.h5ad 1e-9
run 1 cv --scheme perturbations --input same.h5ad "${common[@]}" --control-by cell_type --output pb.plain.h5ad
cmp_cv run.perturbations.h5ad pb.plain.h5ad 1e-9
# run --cv --group-by is refused with the command that does it
if out=$(run 1 run --input diff.h5ad "${common[@]}" --group-by cell_type --cv cells --output no.h5ad 2>&1); then
  echo "FAIL: run --cv --group-by succeeded"; exit 1; fi
grep -qF "pertscore cv --group-by cell_type" <<<"$out" || { echo "FAIL: $out"; exit 1; }
[ ! -e no.h5ad ] || { echo "FAIL: output left behind"; exit 1; }
echo "cv groups: all checks passed"
