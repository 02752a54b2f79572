# pertscore cv refuses bad options and inputs with a message naming the problem, and
# leaves no output behind.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
run 2 simulate --cells 600 --genes 100 --perturbations 6 --seed 2 --out sim.h5ad --quiet
in=(--input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt --quiet)
"$PYTHON" - <<'PY'
# two prediction rows for one perturbation
import anndata, numpy as np, pandas as pd
a = anndata.read_h5ad("sim.h5ad")
label = next(g for g in a.obs["guide"].astype(str) if g != "NonTargeting")
ad = anndata.AnnData(X=np.ones((2, 5)), obs=pd.DataFrame({"perturbation": [label, label]}, index=["r1", "r2"]),
                     var=pd.DataFrame(index=list(a.var_names[:5])), dtype=np.float64)
ad.write_h5ad("dup.h5ad")
PY
expect() { # expect MESSAGE NP ARGS...: the command fails, prints MESSAGE, writes no output
  local msg="$1" np="$2"; shift 2
  rm -f out.h5ad out.summary.tsv
  if out=$(run "$np" cv "$@" 2>&1); then echo "FAIL: succeeded: $*"; exit 1; fi
  grep -qF -- "$msg" <<<"$out" || { echo "FAIL: expected '$msg', got: $out"; exit 1; }
  [ ! -e out.h5ad ] && [ ! -e out.summary.tsv ] && [ ! -e out.h5ad.partial ] || { echo "FAIL: output left behind"; exit 1; }
  echo "ok: $msg"
}
expect "--scheme perturbations|cells is required" 1 "${in[@]}" --output out.h5ad
expect "--predictions applies to --scheme perturbations" 1 --scheme cells "${in[@]}" --output out.h5ad --predictions dup.h5ad
expect "--folds must be in [2, 1000]" 1 --scheme cells "${in[@]}" --output out.h5ad --folds 1
expect "the perturbations scheme needs at least --folds (5)" 2 --scheme perturbations "${in[@]}" --output out.h5ad --min-cells 100000
expect "has 2 rows; give one row per perturbation" 2 --scheme perturbations "${in[@]}" --output out.h5ad --predictions dup.h5ad
expect "no obs column 'nope'" 2 --scheme perturbations "${in[@]}" --output out.h5ad --predictions dup.h5ad --predictions-column nope
expect "--ridge-lambdas must all be > 0" 1 --scheme cells "${in[@]}" --output out.h5ad --ridge-lambdas 1,0
# each command names its own option ("--ridge-lambdas" is a substring of "--cv-ridge-lambdas")
expect "--ridge-lambdas expects comma-separated numbers, got '1,abc'" 1 --scheme cells "${in[@]}" --output out.h5ad \
  --ridge-lambdas 1,abc
if run 1 cv --scheme cells "${in[@]}" --output out.h5ad --ridge-lambdas 1,abc 2>&1 | grep -qF -- "--cv-ridge-lambdas"; then
  echo "FAIL: cv names run's option --cv-ridge-lambdas"; exit 1
fi
expect "an output path is also an input" 1 --scheme cells "${in[@]}" --output sim.h5ad
# the dataset options are checked as in run (one table and one check, src/cli/dataset_options.c)
expect "--min-pct must be in [0, 1] (got 5)" 1 --scheme cells "${in[@]}" --output out.h5ad --min-pct 5
# groups (docs/cv.md "Groups"): a missing column, two different columns, a group without control cells
expect "--group-by: " 2 --scheme cells "${in[@]}" --output out.h5ad --group-by nope
expect "name different columns" 1 --scheme cells "${in[@]}" --output out.h5ad --group-by guide --control-by other
expect "is not among the guide labels of the analysed cells" 2 --scheme perturbations "${in[@]}" --output out.h5ad --group-by guide
# lambda names them too, and a prefix of two dataset options is refused there as well
for args in "--group-by guide --control-by x|lambda: --group-by guide and --control-by x name different columns" \
    "--min 1|unknown or incomplete option '--min'"; do
  rm -f out.h5ad
  if out=$(run 1 lambda --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --output out.h5ad ${args%%|*} 2>&1);
  then echo "FAIL: lambda ${args%%|*} succeeded"; exit 1; fi
  grep -qF -- "${args#*|}" <<<"$out" || { echo "FAIL: expected '${args#*|}', got: $out"; exit 1; }
  [ ! -e out.h5ad ] || { echo "FAIL: output left behind"; exit 1; }
  echo "ok: ${args#*|}"
done
# run --cv: the same refusals, nothing written (no results file, no OUTPUT.cv.tsv)
expect_run() { # expect_run MESSAGE NP ARGS...
  local msg="$1" np="$2"; shift 2
  rm -f out.h5ad out.cv.tsv
  if out=$(run "$np" run "$@" 2>&1); then echo "FAIL: succeeded: $*"; exit 1; fi
  grep -qF -- "$msg" <<<"$out" || { echo "FAIL: expected '$msg', got: $out"; exit 1; }
  ls out.* 2>/dev/null && { echo "FAIL: output left behind"; exit 1; }
  echo "ok: run: $msg"
}
expect_run "--cv expects cells or perturbations, got 'folds'" 1 "${in[@]}" --output out.h5ad --cv folds
expect_run "--cv-ridge-lambdas must all be > 0" 1 "${in[@]}" --output out.h5ad --cv cells --cv-ridge-lambdas 1,-2
expect_run "--cv-ridge-lambdas expects comma-separated numbers, got '1,abc'" 1 "${in[@]}" --output out.h5ad --cv cells \
  --cv-ridge-lambdas 1,abc
expect_run "the perturbations scheme needs at least --folds (5)" 2 "${in[@]}" --output out.h5ad --permutations 0 \
  --cv perturbations --cv-min-cells 100000
# into files, not a pipe: grep -q closes the pipe at its match and mpiexec aborts on SIGPIPE
run 1 cv --help >cv_help.txt && grep -q -- "--scheme KIND" cv_help.txt
run 1 run --help >run_help.txt && grep -q -- "--cv SCHEME" run_help.txt
echo "cv errors: all checks passed"
