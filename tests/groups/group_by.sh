# --group-by (SPEC.md section 6; issue 3 check 7).
# 1. Two simulated cell types whose responses differ (each downstream gene flips its
#    sign or is replaced in type 2): with --group-by cell_type and automatic targets,
#    each (perturbation, type) recovers its type's true downstream genes and
#    Pearson(PS, true efficiency) >= 0.8 in each type; the Pearson without
#    --group-by is printed for comparison. The file's group columns, per-group
#    basal and winsorizing rows are checked, and `inspect` lists the groups.
# 2. np 1, 2 and 3 give the same targets and numbers (1e-8), with permutations.
# 3. Input errors: an unknown column, a group without control cells, and
#    --group-by / --control-by on different columns fail on every rank with a
#    message naming the column / group, and leave no output.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
rm -f ./*.h5ad ./*.partial
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}" < /dev/null; }
here="$TESTS_DIR/groups"
scripts="$TESTS_DIR/scripts"

run 2 simulate --cells 8000 --genes 1000 --perturbations 8 --cell-types 2 --seed 5 --out types.h5ad --quiet
run 2 run --input types.h5ad --guides types.guides.tsv --control NonTargeting --exclude-perturbed-gene \
  --group-by cell_type --output grouped.h5ad --quiet
run 2 run --input types.h5ad --guides types.guides.tsv --control NonTargeting --exclude-perturbed-gene \
  --output pooled.h5ad --quiet
"$PYTHON" "$here/groups_check.py" grouped.h5ad pooled.h5ad types 0.8 0.8 200
"$PYTHON" "$scripts/anndata_user.py" grouped.h5ad pooled.h5ad
"$PERTSCORE" inspect grouped.h5ad | tee inspect.txt | grep -E "uns/pertscore/groups|obs/cell_type|var/group"
grep -q "uns/pertscore/groups" inspect.txt

# np 1 / 2 / 3: the same selection, beta, basal rows and PS
run 2 simulate --cells 2400 --genes 500 --perturbations 5 --cell-types 3 --seed 8 --out small.h5ad --quiet
for np in 1 2 3; do
  run "$np" run --input small.h5ad --guides small.guides.tsv --control NonTargeting --group-by cell_type \
    --permutations 20 --output "small.np$np.h5ad" --quiet
done
for np in 2 3; do
  echo "np 1 vs np $np"
  "$PYTHON" "$scripts/compare_targets.py" small.np1.h5ad "small.np$np.h5ad"
  "$PYTHON" "$scripts/compare_results.py" small.np1.h5ad "small.np$np.h5ad" 1e-8
done

# errors: message on stderr, non-zero exit, no output file
expect_error() { # expect_error NAME PATTERN ARGS...
  local name=$1 pattern=$2
  shift 2
  if run 2 run --input types.h5ad --guides types.guides.tsv --control NonTargeting --quiet \
       --output "bad_$name.h5ad" "$@" 2> "bad_$name.err"; then
    echo "FAIL: $name: run succeeded"; exit 1
  fi
  cat "bad_$name.err"
  grep -q -- "$pattern" "bad_$name.err" || { echo "FAIL: $name: message lacks '$pattern'"; exit 1; }
  [[ ! -e "bad_$name.h5ad" && ! -e "bad_$name.h5ad.partial" ]] || { echo "FAIL: $name: output left behind"; exit 1; }
}
expect_error unknown_column "no obs column 'celltype'" --group-by celltype
expect_error two_columns "name different columns" --group-by cell_type --control-by guide
# a column whose group "no_controls" holds perturbed cells only
"$PYTHON" - <<'PY'
import anndata
a = anndata.read_h5ad("types.h5ad")
a.obs["site"] = ["with_controls" if "NonTargeting" in g or i % 2 else "no_controls"
                 for i, g in enumerate(a.obs["guide"].astype(str))]
a.write_h5ad("types_site.h5ad")
PY
if run 2 run --input types_site.h5ad --guides types.guides.tsv --control NonTargeting --group-by site --quiet \
     --output bad_site.h5ad 2> bad_site.err; then echo "FAIL: group without controls accepted"; exit 1; fi
cat bad_site.err
grep -q "group 'no_controls' of obs column 'site'" bad_site.err
[[ ! -e bad_site.h5ad ]]
echo "group_by: OK"
