#!/bin/bash
# Fault: --resume after a killed run (issue #7 "Faults", issue #6 check 4; docs/reliability.md).
#
# 1. An uninterrupted run on 2 ranks gives the reference results (direct.h5ad).
# 2. An older results file sits at OUT. The same run, on 2 ranks, is killed
#    (rank 1 SIGKILLs itself at the start of the score stage, PERTSCORE_FAULT):
#    non-zero exit, OUT byte-identical, OUT.partial holds the ridge checkpoint
#    and no score checkpoint.
# 3. --resume on 1 rank and, from a copy of the same partial, on 3 ranks: each
#    says it took the ridge stage, completes, removes OUT.partial, and its results
#    equal the uninterrupted run's (compare_results.py: exact, but for two sums over
#    cells that round with the rank count, 1e-12 relative).
# 4. A kill after the score stage (the dosage fault point) resumes both stages.
# 5. --resume with a changed parameter, a damaged partial, a partial another
#    pertscore version wrote, or one whose score entries only some ranks can read
#    (no hang), starts over and says why; a run without --resume ignores and
#    replaces a stale partial.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset PERTSCORE_FAULT
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"

failures=()
fail() { echo "   FAIL: $*"; failures+=("$*"); }
run() { # NP ARGS...: pertscore on NP ranks, stdin closed (mpirun would eat it)
  local np=$1
  shift
  timeout 300 "$MPIEXEC" --oversubscribe -n "$np" "$PERTSCORE" "$@" </dev/null
}
# stages OUT.partial holds: "ridge", "ridge score", or "" (none / unreadable)
checkpoint_stages() {
  "$PYTHON" - "$1" <<'EOF'
import sys, h5py
try:
    f = h5py.File(sys.argv[1], "r")
except OSError:
    sys.exit(0)
print(" ".join(s for s in ("ridge", "score") if f"uns/pertscore/checkpoint/{s}/complete" in f))
EOF
}
parameter() { # FILE NAME: a string of uns/pertscore/parameters, "" if absent
  "$PYTHON" -c "import sys, h5py; f = h5py.File(sys.argv[1], 'r'); n = 'uns/pertscore/parameters/' + sys.argv[2]
print(f[n][()].decode() if n in f else '')" "$1" "$2"
}
compare() { "$PYTHON" "$TESTS_DIR/fault/compare_results.py" "$@" || fail "results of $2 differ from $1"; }

echo "== simulate a screen; the uninterrupted run on 2 ranks"
run 2 simulate --cells 1500 --genes 200 --perturbations 6 --moi 2 --poisson-moi --control-fraction 0.25 \
  --seed 5 --out sim.h5ad --quiet
# automatic targets, permutation p-values and the dosage stage: every checkpointed item is exercised
RUN=(run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --permutations 30 --min-dosage-cells 30)
OUT=$PWD/results.h5ad
run 2 "${RUN[@]}" --output direct.h5ad --quiet
run 2 "${RUN[@]}" --output "$OUT" --lambda 0.05 --quiet # an older results file at OUT
cp "$OUT" old.h5ad

echo "== kill rank 1 at the start of the score stage (2 ranks)"
set +e
PERTSCORE_FAULT=score:kill@1 run 2 "${RUN[@]}" --output "$OUT" 2>kill_score.err
rc=$?
set -e
echo "   exit code $rc"
((rc != 0)) || fail "the killed run exited 0"
cmp -s old.h5ad "$OUT" || fail "$OUT changed although the run was killed"
[[ -e $OUT.partial ]] || fail "no $OUT.partial after the kill"
stages=$(checkpoint_stages "$OUT.partial")
echo "   $OUT.partial holds: ${stages:-nothing}"
[[ $stages == ridge ]] || fail "the partial should hold the ridge checkpoint only, holds '${stages}'"
cp "$OUT.partial" killed_in_score.partial

for np in 1 3; do
  echo "== --resume on $np rank(s)"
  cp old.h5ad "$OUT" # not up to date, so the run does start
  cp killed_in_score.partial "$OUT.partial"
  if run "$np" "${RUN[@]}" --output "$OUT" --resume 2>"resume_np$np.err"; then
    grep "resume:" "resume_np$np.err" | sed 's/^/   /'
    grep -q "resume: stages ridge taken from" "resume_np$np.err" || fail "np $np: no 'stages ridge taken' message"
    [[ ! -e $OUT.partial ]] || fail "np $np: $OUT.partial left after a complete run"
    [[ $(parameter "$OUT" resumed) == ridge ]] || fail "np $np: uns/pertscore/parameters/resumed is not 'ridge'"
    compare direct.h5ad "$OUT"
  else
    fail "np $np: --resume failed: $(tail -3 "resume_np$np.err")"
  fi
done

echo "== kill rank 0 after the score stage (dosage fault point), --resume on 3 ranks"
cp old.h5ad "$OUT"
set +e
PERTSCORE_FAULT=dosage:kill@0 run 2 "${RUN[@]}" --output "$OUT" 2>kill_dosage.err
rc=$?
set -e
((rc != 0)) || fail "the run killed after scoring exited 0"
cmp -s old.h5ad "$OUT" || fail "$OUT changed although the run was killed after scoring"
stages=$(checkpoint_stages "$OUT.partial")
echo "   $OUT.partial holds: ${stages:-nothing}"
[[ $stages == "ridge score" ]] || fail "the partial should hold ridge and score, holds '${stages}'"
cp "$OUT.partial" killed_after_score.partial
if run 3 "${RUN[@]}" --output "$OUT" --resume 2>resume_score.err; then
  grep "resume:" resume_score.err | sed 's/^/   /'
  grep -q "resume: stages ridge and score taken" resume_score.err || fail "no 'stages ridge and score taken' message"
  [[ $(parameter "$OUT" resumed) == ridge,score ]] || fail "uns/pertscore/parameters/resumed is not 'ridge,score'"
  compare direct.h5ad "$OUT"
else
  fail "--resume after the score stage failed: $(tail -3 resume_score.err)"
fi

echo "== --resume with a changed parameter starts over"
cp killed_in_score.partial "$OUT.partial"
if run 2 "${RUN[@]}" --output "$OUT" --resume --lambda 0.02 2>resume_changed.err; then
  grep "resume:" resume_changed.err | sed 's/^/   /'
  grep -q "resume: starting from the beginning: .*other parameters" resume_changed.err ||
    fail "a changed parameter did not start over with a reason"
  [[ -z $(parameter "$OUT" resumed) ]] || fail "a run that started over records resumed stages"
  "$PYTHON" -c "import sys, h5py; assert h5py.File(sys.argv[1])['uns/pertscore/parameters/lambda'][()] == 0.02" "$OUT" ||
    fail "the restarted run did not use --lambda 0.02"
else
  fail "--resume with a changed parameter failed: $(tail -3 resume_changed.err)"
fi

# starts_over NAME PATTERN: --resume on 2 ranks from the OUT.partial in place must start
# over saying why (PATTERN), record no resumed stage and equal the uninterrupted run
starts_over() {
  local name=$1 pattern=$2
  cp old.h5ad "$OUT" # not up to date, so the run does start
  if run 2 "${RUN[@]}" --output "$OUT" --resume 2>"resume_$name.err"; then
    grep "resume:" "resume_$name.err" | sed 's/^/   /'
    grep -q "resume: starting from the beginning: .*$pattern" "resume_$name.err" ||
      fail "$name: did not start over with the reason '$pattern'"
    [[ -z $(parameter "$OUT" resumed) ]] || fail "$name: a run that started over records resumed stages"
    compare direct.h5ad "$OUT"
  else
    fail "$name: --resume failed or hung: $(tail -3 "resume_$name.err")"
  fi
}

echo "== --resume with a damaged partial starts over"
head -c 3000 killed_in_score.partial >"$OUT.partial"
starts_over damaged "cannot be read"

echo "== --resume from another version's partial starts over"
cp killed_in_score.partial "$OUT.partial"
"$PYTHON" -c "import sys, h5py; d = h5py.File(sys.argv[1], 'r+')['uns/pertscore/checkpoint/version']
d[0] = b'x' * d.dtype.itemsize" "$OUT.partial"
starts_over version "written by pertscore x"

echo "== --resume from a partial whose score entries one rank cannot read starts over (no hang)"
# score/ids cut to 90%: the last rank's rows point past its end, rank 0's do not
cp killed_after_score.partial "$OUT.partial"
"$PYTHON" -c "import sys, h5py; g = h5py.File(sys.argv[1], 'r+')['uns/pertscore/checkpoint/score']
ids = g['ids'][()]; del g['ids']; g['ids'] = ids[: len(ids) * 9 // 10]" "$OUT.partial"
starts_over cut "cannot read /uns/pertscore/checkpoint/score/ids"

echo "== without --resume a stale partial is replaced"
cp killed_in_score.partial "$OUT.partial"
if run 2 "${RUN[@]}" --output "$OUT" --force 2>plain.err; then
  ! grep -q "resume:" plain.err || fail "a run without --resume talks about resuming"
  [[ -z $(parameter "$OUT" resumed) ]] || fail "a run without --resume records resumed stages"
  [[ ! -e $OUT.partial ]] || fail "$OUT.partial left after a complete run"
else
  fail "a run over a stale partial failed: $(tail -3 plain.err)"
fi

echo
if ((${#failures[@]})); then
  echo "FAIL: ${#failures[@]} problem(s):"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "PASS: a run killed during or after the score stage resumes on 1 or 3 ranks with the uninterrupted run's results"
