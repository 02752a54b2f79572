#!/bin/bash
# Fault: a rank killed with SIGKILL in the middle of a run (docs/reliability.md).
#
# A first, complete run writes RESULTS. Then the same run is started again with
# the same --output and one rank is sent SIGKILL while the job is in the score
# (QP) stage: once rank 1, once rank 0 (the rank that renames the output). Each
# time the job must
#   - exit non-zero within 60 s of the kill (no hang),
#   - leave RESULTS byte-identical to the first run's,
#   - leave no pertscore process of this test behind.
# A kill in the score stage leaves OUTPUT.partial holding the ridge stage's
# checkpoint (--resume continues from it: tests/fault/resume.sh). If the "commit" fault point exists (after OUTPUT.partial is complete,
# before the rename), a rank is also killed there: RESULTS must still be the old
# file; OUTPUT.partial is left behind (a SIGKILLed process cannot clean up) and the
# next run, which must succeed, overwrites it and publishes a new RESULTS.
#
# The stage is hit with the fault hook (src/util/fault.c): PERTSCORE_FAULT=
# score:sleep=300 makes every rank sleep at the start of the score stage, and
# commit:sleep=300 after OUTPUT.partial is complete. Both fault points must announce
# themselves on the first run; if either does not (renamed, removed, message
# changed), the test fails instead of killing somewhere it did not mean to.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset PERTSCORE_FAULT
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"
WORK_DIR=$(pwd -P)
OUT=$WORK_DIR/results.h5ad # unique to this build's test: processes are found by it
DEADLINE=60                 # seconds from the kill to the end of mpirun

mpirun_pid=""
our_pids() { pgrep -f -- "--output $OUT" || true; }
cleanup() {
  [[ -n $mpirun_pid ]] && kill -9 "$mpirun_pid" 2>/dev/null || true
  local p
  for p in $(our_pids); do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

failures=()
fail() { echo "   FAIL: $*"; failures+=("$*"); }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

simulate() { # CELLS GENES PERTURBATIONS MOI LIBRARY
  "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells "$1" --genes "$2" --perturbations "$3" \
    --moi "$4" --poisson-moi --control-fraction 0.25 --downstream 20 --library-size "$5" --seed 11 \
    --out sim.h5ad --quiet
}
# --force: the reruns use the same inputs and parameters, which would otherwise be "up to date"
RUN=(run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt --output "$OUT" --force)

echo "== simulate a screen and write a first, complete results file"
simulate 3000 200 8 2 2000
set +e
PERTSCORE_FAULT=score:sleep=0,commit:sleep=0 "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" "${RUN[@]}" 2>first.err
rc=$?
set -e
((rc == 0)) && [[ -s $OUT ]] || { cat first.err >&2; echo "FAIL: the first run did not complete" >&2; exit 1; }
hook_score=0 hook_commit=0
grep -q "fault injection: rank 0 sleeps 0 s at 'score'" first.err && hook_score=1
grep -q "fault injection: rank 0 sleeps 0 s at 'commit'" first.err && hook_commit=1
if ((!hook_score || !hook_commit)); then
  sed 's/^/     | /' first.err | head -20
  echo "FAIL: the fault points did not announce themselves (score=$hook_score commit=$hook_commit):" \
    "the kills cannot be placed where this test says" >&2
  exit 1
fi
cp "$OUT" first.h5ad
echo "   $(md5sum <"$OUT" | cut -c1-32)  $OUT (fault points: score=$hook_score commit=$hook_commit)"

# kill_in STAGE RANK: start the run, SIGKILL RANK once the run is in STAGE, check.
kill_in() {
  local stage=$1 victim_rank=$2 tag="kill_${1}_rank$2"
  echo "== SIGKILL rank $victim_rank in the $stage stage"
  local trigger="fault injection: rank [0-9]+ sleeps .* at '$stage'"
  local fault="$stage:sleep=300"
  PERTSCORE_FAULT=$fault "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" "${RUN[@]}" >"$tag.out" 2>"$tag.err" &
  mpirun_pid=$!
  local t_start t_stage t_kill t_end
  t_start=$(now)
  until grep -qE "$trigger" "$tag.err"; do
    if ! kill -0 "$mpirun_pid" 2>/dev/null; then
      fail "$tag: the run ended before reaching the $stage stage"
      wait "$mpirun_pid" || true
      mpirun_pid=""
      sed 's/^/     | /' "$tag.err" | head -20
      return
    fi
    if (($(date +%s) - ${t_start%.*} > 300)); then
      fail "$tag: the $stage stage not reached within 300 s"
      cleanup
      return
    fi
    sleep 0.05
  done
  t_stage=$(now)
  # the rank processes are mpirun's children; each knows its rank from the environment
  local p victim=""
  for p in $(pgrep -P "$mpirun_pid"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$victim_rank"; then
      victim=$p
    fi
  done
  if [[ -z $victim ]] || ! tr '\0' ' ' <"/proc/$victim/cmdline" | grep -qF -- "--output $OUT"; then
    fail "$tag: cannot find the process of rank $victim_rank among mpirun's children ($(pgrep -P "$mpirun_pid" | xargs))"
    cleanup
    return
  fi
  kill -KILL "$victim"
  t_kill=$(now)
  local scored_before=0
  [[ $stage == score ]] && grep -q '^pertscore: score *100%' "$tag.err" && scored_before=1
  # wait for mpirun, at most DEADLINE seconds
  while kill -0 "$mpirun_pid" 2>/dev/null; do
    if (($(date +%s) - ${t_kill%.*} > DEADLINE)); then break; fi
    sleep 0.1
  done
  local rc hung=0
  if kill -0 "$mpirun_pid" 2>/dev/null; then
    hung=1
    cleanup
  fi
  set +e
  wait "$mpirun_pid"
  rc=$?
  set -e
  mpirun_pid=""
  t_end=$(now)
  echo "   stage reached after $(elapsed "$t_start" "$t_stage") s; killed pid $victim (rank $victim_rank);" \
    "mpirun exited $rc after $(elapsed "$t_kill" "$t_end") s"
  ((hung)) && fail "$tag: mpirun still running ${DEADLINE} s after the kill (hang)"
  ((rc == 0)) && fail "$tag: exit code 0 after a rank was killed"
  ((scored_before)) && fail "$tag: the score stage had finished before the kill (screen too small to hit it)"
  cmp -s first.h5ad "$OUT" || fail "$tag: $OUT changed (it must stay the first run's file)"
  # mpirun has reaped its children; give the kernel a moment, then nothing may remain
  local left
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    left=$(our_pids | xargs)
    [[ -z $left ]] && break
    sleep 0.5
  done
  [[ -z $left ]] || { fail "$tag: processes left behind: $left"; cleanup; }
  if [[ $stage == score ]]; then
    # the ridge stage is done: its checkpoint is in OUT.partial for --resume (tests/fault/resume.sh)
    [[ -e $OUT.partial ]] || fail "$tag: no $OUT.partial holding the ridge checkpoint"
  fi
  grep -m1 -E 'exited on signal 9|killed' "$tag.err" | sed 's/^/   mpirun: /' || true
}

kill_in score 1
kill_in score 0

kill_in commit 1
if [[ -e $OUT.partial ]]; then
  echo "   $OUT.partial was left behind ($(stat -c %s "$OUT.partial") bytes): expected after SIGKILL"
else
  echo "   no $OUT.partial left behind"
fi
echo "== a new complete run after that overwrites OUTPUT.partial and publishes RESULTS"
if "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" "${RUN[@]}" --quiet 2>rerun.err; then
  [[ -s $OUT ]] || fail "rerun: no $OUT"
  [[ ! -e $OUT.partial ]] || fail "rerun: $OUT.partial still there after a successful run"
  echo "   ok: exit 0, $OUT replaced, no $OUT.partial"
else
  fail "rerun after the kill failed: $(head -3 rerun.err)"
fi

echo
if ((${#failures[@]})); then
  echo "FAIL: ${#failures[@]} problem(s):"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "PASS: a SIGKILLed rank ends the job non-zero within ${DEADLINE} s, the old results stay byte-identical, nothing is left running"
