#!/bin/bash
# Errors: `mpirun -n 2 pertscore run` with exactly one thing wrong must
#   - exit non-zero, and finish (timeout 60 s; a timeout is reported as a hang),
#   - print `pertscore: error: ...` naming the file or object at fault,
#   - leave neither the output file nor OUTPUT.partial behind (and never touch an input).
# Every case runs even if an earlier one fails; the summary lists the failures.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"

echo "== simulate a small screen (600 cells, 100 genes, 3 perturbations, Poisson MOI 1)"
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells 600 --genes 100 --perturbations 3 --moi 1 \
  --poisson-moi --seed 5 --out sim.h5ad --quiet
echo "== write the broken inputs"
"$PYTHON" "$TESTS_DIR/errors/make_bad.py" sim bad

VALID=(--input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt)
failures=()

run_pertscore() { # ARGS... ; stdout in $tcase.out, stderr in $tcase.err, exit code in $rc
  set +e
  timeout 60 "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" run --quiet "$@" >"$tcase.out" 2>"$tcase.err"
  rc=$?
  set -e
}

# expect_error NAME OUTPUT 'FRAGMENT'... -- RUN ARGS...
# OUTPUT is the --output path; with OUTPUT an input file, pass it as "input:PATH".
expect_error() {
  tcase=$1 out=$2
  shift 2
  local fragments=()
  while [[ $1 != -- ]]; do fragments+=("$1"); shift; done
  shift
  local is_input=0 sum=""
  if [[ $out == input:* ]]; then
    out=${out#input:}
    is_input=1
    sum=$(md5sum <"$out")
  fi
  echo "-- $tcase: pertscore run $* --output $out"
  run_pertscore "$@" --output "$out"
  local problems=()
  if ((rc == 124)); then
    problems+=("did not finish within 60 s (hang)")
  elif ((rc == 0)); then
    problems+=("exit code 0, expected an error")
  elif ((rc > 128)); then
    problems+=("killed by signal $((rc - 128)) (crash)")
  fi
  if ((rc != 124)); then # after a hang the message checks would only repeat it
    if ! grep -q '^pertscore: error: ' "$tcase.err"; then
      problems+=("no 'pertscore: error:' line on stderr")
    fi
    local frag
    for frag in "${fragments[@]}"; do
      grep -qF -- "$frag" "$tcase.err" || problems+=("stderr lacks '$frag'")
    done
  fi
  if ((is_input)); then
    [[ $(md5sum <"$out") == "$sum" ]] || problems+=("the input $out was modified")
  else
    [[ ! -e $out ]] || problems+=("output $out left behind")
  fi
  [[ ! -e $out.partial ]] || problems+=("$out.partial left behind")
  if ((${#problems[@]})); then
    local p
    for p in "${problems[@]}"; do echo "   FAIL: $p"; done
    [[ -s $tcase.err ]] && echo "   stderr was:" || echo "   stderr was empty"
    grep -v '^\(--\|Primary job\|a non-zero\|mpirun detected\|the job\|  Process name\|  Exit code\|$\)' \
      "$tcase.err" | sed 's/^/     | /' | head -8 || true
    failures+=("$tcase: ${problems[*]}")
  else
    echo "   ok: exit $rc, $(grep -m1 '^pertscore: error: ' "$tcase.err")"
  fi
  rm -f "$out.partial"
  ((is_input)) || rm -f "$out"
}

echo "== sanity: the valid inputs run"
tcase=valid
run_pertscore "${VALID[@]}" --output valid.h5ad
((rc == 0)) && [[ -s valid.h5ad ]] || { cat valid.err >&2; echo "FAIL: the valid input does not run" >&2; exit 1; }
tcase=valid_csc_column
run_pertscore --input bad/csc_ok.h5ad --guide-column guide --control NonTargeting --targets sim.targets.gmt \
  --output valid_csc.h5ad
((rc == 0)) && [[ -s valid_csc.h5ad ]] || {
  cat valid_csc_column.err >&2
  echo "FAIL: bad/csc_ok.h5ad (source of the CSC and categorical cases) does not run" >&2
  exit 1
}
echo "   ok"

echo "== input file"
expect_error missing_input out.h5ad "nothere.h5ad" "cannot open" -- \
  --input nothere.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error not_hdf5 out.h5ad "bad/not_hdf5.h5ad" "not an HDF5 file" -- \
  --input bad/not_hdf5.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error no_x out.h5ad "bad/no_x.h5ad" "/X" -- \
  --input bad/no_x.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error unknown_layer out.h5ad "sim.h5ad" "layers/nope" -- "${VALID[@]}" --layer nope
expect_error missing_obs_column out.h5ad "sim.h5ad" "'nope'" -- \
  --input sim.h5ad --guide-column nope --control NonTargeting --targets sim.targets.gmt

echo "== expression values (each broken in one rank's cells only)"
expect_error nan_last_cell out.h5ad "bad/nan_x.h5ad" "non-finite" -- \
  --input bad/nan_x.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error nan_first_cell out.h5ad "bad/nan_first_x.h5ad" "non-finite" -- \
  --input bad/nan_first_x.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error negative_value out.h5ad "bad/negative_x.h5ad" "negative value" -- \
  --input bad/negative_x.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error indptr_not_monotone out.h5ad "bad/indptr_x.h5ad" "/X/indptr" -- \
  --input bad/indptr_x.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error index_out_of_range out.h5ad "bad/index_x.h5ad" "/X/indices" -- \
  --input bad/index_x.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt

expect_error csc_unsorted_indices out.h5ad "bad/csc_unsorted_x.h5ad" "/X/indices" -- \
  --input bad/csc_unsorted_x.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt

echo "== guides and controls"
expect_error unknown_control out.h5ad "sim.guides.tsv" "'Foo'" -- \
  --input sim.h5ad --guides sim.guides.tsv --control Foo --targets sim.targets.gmt
expect_error no_control_rows out.h5ad "bad/no_control_rows.tsv" "NonTargeting" -- \
  --input sim.h5ad --guides bad/no_control_rows.tsv --control NonTargeting --targets sim.targets.gmt
expect_error no_control_cells out.h5ad "bad/no_control_cells.tsv" "no control cells" -- \
  --input sim.h5ad --guides bad/no_control_cells.tsv --control NonTargeting --targets sim.targets.gmt
expect_error foreign_cells out.h5ad "bad/foreign_cells.tsv" "sim.h5ad" -- \
  --input sim.h5ad --guides bad/foreign_cells.tsv --control NonTargeting --targets sim.targets.gmt
expect_error guide_column_bad_code out.h5ad "bad/bad_code.h5ad" "'guide'" -- \
  --input bad/bad_code.h5ad --guide-column guide --control NonTargeting --targets sim.targets.gmt
expect_error missing_column out.h5ad "bad/missing_column.tsv" "umi_count" -- \
  --input sim.h5ad --guides bad/missing_column.tsv --control NonTargeting --targets sim.targets.gmt
expect_error bad_umi_count out.h5ad "bad/bad_umi.tsv" "'abc'" -- \
  --input sim.h5ad --guides bad/bad_umi.tsv --control NonTargeting --targets sim.targets.gmt
expect_error bad_num_umis_cellranger out.h5ad "bad/bad_num_umis.csv" "num_umis" -- \
  --input sim.h5ad --guides bad/bad_num_umis.csv --control NonTargeting --targets sim.targets.gmt

echo "== targets"
expect_error unknown_target_genes out.h5ad "bad/unknown_genes.gmt" "NOSUCHGENE1" -- \
  --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets bad/unknown_genes.gmt

echo "== output path"
expect_error output_is_input input:sim.h5ad "sim.h5ad" "also an input" -- "${VALID[@]}"
expect_error output_is_input_other_spelling input:./sim.h5ad "./sim.h5ad" "also an input" -- "${VALID[@]}"
expect_error output_is_guides input:sim.guides.tsv "sim.guides.tsv" "also an input" -- "${VALID[@]}"
expect_error output_folder_missing no/such/dir/out.h5ad "no/such/dir" "does not exist" -- "${VALID[@]}"

expect_error duplicate_genes out.h5ad "bad/dup_genes.h5ad" "appears twice" -- \
  --input bad/dup_genes.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error duplicate_cells out.h5ad "bad/dup_cells.h5ad" "twice" -- \
  --input bad/dup_cells.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error truncated_hdf5 out.h5ad "bad/truncated.h5ad" -- \
  --input bad/truncated.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
printf 'perturbation\tgene\n' > bad/empty_targets.tsv
expect_error empty_targets out.h5ad "bad/empty_targets.tsv" "no target genes" -- \
  --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets bad/empty_targets.tsv
mkdir -p readonly && chmod 555 readonly
if [[ $(id -u) -ne 0 ]]; then # root writes anywhere: the check only means something for other users
  expect_error output_folder_readonly readonly/out.h5ad "readonly" "not writable" -- "${VALID[@]}"
fi
printf 'input: sim.h5ad\nguides: sim.guides.tsv\ncontrol: NonTargeting\noutput: out.h5ad\nlamda: 0.1\n' > bad/unknown_key.yaml
expect_error job_unknown_key out.h5ad "bad/unknown_key.yaml" "line 5" "lamda" -- --config bad/unknown_key.yaml
printf 'input: sim.h5ad\nguides: sim.guides.tsv\ncontrol: NonTargeting\noutput: out.h5ad\njson: sometimes\n' > bad/wrong_type.yaml
expect_error job_wrong_type out.h5ad "bad/wrong_type.yaml" "true or false" -- --config bad/wrong_type.yaml
printf 'input: sim.h5ad\nsweep:\n  lambda: 0.1\n' > bad/bad_sweep.yaml
expect_error job_bad_sweep out.h5ad "bad/bad_sweep.yaml" "list of values" -- --config bad/bad_sweep.yaml
printf 'input: [sim.h5ad\n' > bad/not_yaml.yaml
expect_error job_not_yaml out.h5ad "bad/not_yaml.yaml" "not valid YAML" -- --config bad/not_yaml.yaml

# options: a prefix of two dataset options is refused (each has its own getopt value;
# with one shared value getopt_long took the first match: --min-g became --min-guide-umi)
expect_error ambiguous_prefix out.h5ad "unknown or incomplete option '--min-g'" -- "${VALID[@]}" --min-g 0.05

# simulate's int32 counts: a value beyond 2^31 is refused by name (a cast wrapped it)
for opt in --genes --perturbations --downstream --unmeasured-targets --cell-types --type-genes; do
  tcase=simulate_${opt#--}
  echo "-- $tcase: pertscore simulate $opt 5000000000"
  set +e
  timeout 60 "$PERTSCORE" simulate --cells 100 --genes 200 --perturbations 4 "$opt" 5000000000 --out bad/huge \
    --quiet </dev/null >"$tcase.out" 2>"$tcase.err"
  rc=$?
  set -e
  if ((rc == 0 || rc > 128)) || [[ -e bad/huge.h5ad ]] ||
    ! grep -qF -- "pertscore: error: $opt must be at most 2147483647, got '5000000000'" "$tcase.err"; then
    echo "   FAIL: exit $rc: $(head -2 "$tcase.err")"
    failures+=("$tcase")
  else
    echo "   ok: exit $rc, $(head -1 "$tcase.err")"
  fi
done

echo "== likely mistakes that must not pass silently (issue 16)"
# expect_warning NAME 'FRAGMENT'... -- RUN ARGS... : exit 0 and every fragment on stderr
expect_warning() {
  tcase=$1
  shift
  local fragments=()
  while [[ $1 != -- ]]; do fragments+=("$1"); shift; done
  shift
  echo "-- $tcase: pertscore run $*"
  run_pertscore "$@"
  local problems=() frag
  ((rc == 0)) || problems+=("exit $rc, expected 0 with a warning")
  grep -q '^pertscore: warning: ' "$tcase.err" || problems+=("no 'pertscore: warning:' line on stderr")
  for frag in "${fragments[@]}"; do
    grep -qF -- "$frag" "$tcase.err" || problems+=("stderr lacks '$frag'")
  done
  if ((${#problems[@]})); then
    local p
    for p in "${problems[@]}"; do echo "   FAIL: $p"; done
    sed 's/^/     | /' "$tcase.err" | head -8
    failures+=("$tcase: ${problems[*]}")
  else
    echo "   ok: $(grep -m1 '^pertscore: warning: ' "$tcase.err")"
  fi
}
# targets whose perturbation names match none of the guide assignment's
awk -F'\t' 'BEGIN { OFS = "\t" } { $1 = "X" $1; print }' sim.targets.gmt > bad/renamed_targets.gmt
first=$(cut -f1 sim.targets.gmt | sort | head -1)
expect_error targets_match_nothing out.h5ad "bad/renamed_targets.gmt" "none of its" "X$first" "$first" -- \
  --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets bad/renamed_targets.gmt
# targets for all but one perturbation: the one left is named
grep -v "^$first	" sim.targets.gmt > bad/one_missing.gmt
expect_warning targets_missing_one "have no target gene" "$first" -- \
  --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets bad/one_missing.gmt --output w1.h5ad
# a guide name as the control: the gene's other guides are scored as a perturbation
cg=$(awk -F'\t' 'NR > 1 && $4 == "NonTargeting" { print $2; exit }' sim.guides.tsv)
expect_warning control_is_a_guide "--control $cg is one guide of 'NonTargeting'" "--control NonTargeting" -- \
  --input sim.h5ad --guides sim.guides.tsv --control "$cg" --targets sim.targets.gmt --output w2.h5ad
# every other guide row names a cell the matrix does not have: warned with the count, and in --json
awk 'NR == 1 || NR % 2 == 0 { print; next } { sub(/^SIMCELL/, "GONE"); print }' sim.guides.tsv > bad/half_foreign.tsv
rows=$(($(wc -l <sim.guides.tsv) - 1))
gone=$(grep -c '^GONE' bad/half_foreign.tsv)
first_gone=$(grep -m1 '^GONE' bad/half_foreign.tsv | cut -f1)
expect_warning guide_rows_unmatched "$gone of $rows guide rows of bad/half_foreign.tsv name no cell" "$first_gone" -- \
  --input sim.h5ad --guides bad/half_foreign.tsv --control NonTargeting --targets sim.targets.gmt \
  --output w3.h5ad --json
"$PYTHON" - "$tcase.out" "$rows" "$gone" <<'PY' || failures+=("guide_rows_unmatched: --json guide_rows")
import json, sys
info = json.loads(open(sys.argv[1]).read())
want = {"read": int(sys.argv[2]), "unmatched": int(sys.argv[3])}
if info.get("guide_rows") != want:
    print(f"   FAIL: --json guide_rows {info.get('guide_rows')}, expected {want}")
    sys.exit(1)
print(f"   ok: --json guide_rows {want}")
PY
# --input-is contradicting the values, both ways
"$PYTHON" - <<'PY'
import anndata as ad, numpy as np, scipy.sparse as sp
a = ad.read_h5ad("sim.h5ad")
x = sp.csr_matrix(a.X, dtype=np.float64)
x = sp.diags(1e4 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1)) @ x
x.data = np.log1p(x.data)
x = x.tocsr()
x.sort_indices()
a.X = x
a.write_h5ad("bad/lognorm.h5ad")
PY
expect_warning input_is_counts_on_lognorm "--input-is counts, but" "not whole numbers" -- \
  --input bad/lognorm.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt \
  --input-is counts --output w4.h5ad
expect_warning input_is_lognorm_on_counts "--input-is lognorm, but every one" "look like counts" -- \
  "${VALID[@]}" --input-is lognorm --output w5.h5ad
# a PETSc option nothing reads
expect_warning petsc_option_unused "PETSc option -tao_no_such_option was never used" -- \
  "${VALID[@]}" -tao_no_such_option 1 --output w6.h5ad
# a negative number is a value (it was taken for a PETSc option: "expects a number, got '--output'")
expect_error negative_lambda out.h5ad "--lambda must be >= 0 (got -1)" -- "${VALID[@]}" --lambda -1
# did you mean: a misspelled option and a misspelled job-file key
expect_error misspelled_option out.h5ad "'--guids'" "did you mean --guides?" -- \
  --input sim.h5ad --guids sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
expect_error misspelled_job_key out.h5ad "bad/unknown_key.yaml" "did you mean 'lambda'?" -- --config bad/unknown_key.yaml
rm -f w?.h5ad

echo
if ((${#failures[@]})); then
  echo "FAIL: ${#failures[@]} case(s):"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "PASS: every broken input gives a clear error, no output and no hang"
