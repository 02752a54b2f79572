# pertscore run --cv (docs/cv.md "In pertscore run"): the CV stage of run, on the
# dataset run has read, writes into uns/cv of the results file the same tables as
# a separate `pertscore cv` with the same options (uns/cv/obs and uns/cv/var hold
# the cv file's obs and var), and the same summary TSV next to the output; np 1
# and 2 agree. Run's own results stay as without --cv.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
run 2 simulate --cells 3000 --genes 300 --perturbations 10 --effect 0.3 --seed 9 --out sim.h5ad --quiet
loud=(--input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt --seed 4)
in=("${loud[@]}" --quiet)
fast=(--permutations 0 --no-dosage)
for scheme in cells perturbations; do
  opts=(--folds 4)
  [ "$scheme" = cells ] && opts+=(--cv-ridge-lambdas 0.01,1,100)
  [ "$scheme" = cells ] && cv_opts=(--ridge-lambdas 0.01,1,100) || cv_opts=()
  run 2 cv --scheme "$scheme" "${in[@]}" --folds 4 "${cv_opts[@]}" --output cv.$scheme.h5ad
  "$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" cv.$scheme.h5ad
  for np in 1 2; do
    rm -f run.$scheme.np$np.*
    run "$np" run "${in[@]}" "${fast[@]}" --force --cv "$scheme" "${opts[@]}" --output run.$scheme.np$np.h5ad
    [ -s run.$scheme.np$np.cv.tsv ] || { echo "FAIL: no run.$scheme.np$np.cv.tsv"; exit 1; }
    ls run.$scheme.np$np.* | grep -q partial && { echo "FAIL: a .partial file is left"; exit 1; }
    "$PYTHON" "$TESTS_DIR/cv/compare_cv.py" cv.$scheme.h5ad run.$scheme.np$np.h5ad 1e-9
    "$PYTHON" "$TESTS_DIR/scripts/anndata_user.py" run.$scheme.np$np.h5ad
    # the TSV: identical labels and counts, numbers to rounding
    cmp <(cut -f1-3 cv.$scheme.summary.tsv) <(cut -f1-3 run.$scheme.np$np.cv.tsv)
  done
done
# run's own tables do not change with the stage
rm -f plain.h5ad
run 2 run "${in[@]}" "${fast[@]}" --force --output plain.h5ad
"$PYTHON" - <<'PY'
import h5py, numpy as np
with h5py.File("plain.h5ad") as a, h5py.File("run.cells.np2.h5ad") as b:
    assert "cv" not in a["uns"] and "cv" in b["uns"]
    for name in ("X/data", "X/indices", "varm/beta"):
        assert np.array_equal(a[name][()], b[name][()]), name
    assert b["uns/pertscore/parameters/cv"][()].decode() == "cells"
print("run --cv: run's own results unchanged; parameters record the stage")
PY
# the stage is its own progress stage "cv" (between dosage and write), and its seconds
# are recorded like the other stages': the JSON summary and uns/pertscore/parameters
rm -f loud.*
run 2 run "${loud[@]}" --permutations 0 --force --cv perturbations --folds 4 --json --output loud.h5ad \
  >loud.json 2>loud.err
grep -q "pertscore: cv .* 0%" loud.err && grep -q "pertscore: cv .*100%" loud.err ||
  { echo "FAIL: no cv progress stage: $(grep pertscore: loud.err | head -20)"; exit 1; }
stages=$(grep -o "pertscore: [a-z]* .*100%" loud.err | awk '{print $2}' | tr '\n' ' ')
[[ $stages == *"dosage cv write"* ]] || { echo "FAIL: stages in the order: $stages"; exit 1; }
"$PYTHON" - loud.json loud.h5ad <<'PY'
import json, sys, h5py
summary = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert summary["cv"]["scheme"] == "perturbations" and summary["cv"]["seconds"] > 0, summary["cv"]
with h5py.File(sys.argv[2]) as f:
    seconds = f["uns/pertscore/parameters/seconds_cv"][()]
    assert seconds > 0, seconds
print(f"run --cv: cv stage {summary['cv']['seconds']:.2f} s (JSON), {seconds:.2f} s (parameters)")
PY
echo "run --cv: all checks passed"
