#!/bin/bash
# valgrind memcheck on small `pertscore run`s (issue #7 "Sanitizers"; docs/reliability.md).
#
# A few hundred simulated cells with automatic targets, permutation p-values and
# the dosage stage, run under memcheck:
#   1. one rank;
#   2. two ranks (mpirun ... valgrind pertscore: every rank under memcheck);
#   3. --resume on one rank from the checkpoint of a run stopped in the score stage
#      (reads the checkpoint back: src/results/checkpoint.c).
# Any invalid read or write, use of uninitialised memory, or definite leak fails
# (exit code 99 from --error-exitcode), except in the library internals listed in
# tests/valgrind/openmpi.supp, each with its reason; no suppression names a frame
# of pertscore's code. The per-rank logs are in WORK_DIR/*.vg.*.log.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset PERTSCORE_FAULT
command -v valgrind >/dev/null || { echo "FAIL: valgrind is not installed (tools/debian-packages.txt lists it)"; exit 1; }
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"

SUPP=$TESTS_DIR/valgrind/openmpi.supp
VALGRIND=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
  --show-leak-kinds=definite --num-callers=40 --suppressions="$SUPP")

"$MPIEXEC" --oversubscribe -n 1 "$PERTSCORE" simulate --cells 300 --genes 120 --perturbations 4 --moi 2 \
  --poisson-moi --control-fraction 0.25 --downstream 10 --seed 3 --out sim.h5ad --quiet </dev/null
RUN=(run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --permutations 20 --min-dosage-cells 20
  --quiet)

failures=()
# memcheck NAME NP ARGS...: pertscore ARGS on NP ranks, each under memcheck
memcheck() {
  local name=$1 np=$2
  shift 2
  echo "== $name: $np rank(s) under memcheck"
  set +e
  timeout 800 "$MPIEXEC" --oversubscribe -n "$np" "${VALGRIND[@]}" --log-file="$name.vg.%q{OMPI_COMM_WORLD_RANK}.log" \
    "$PERTSCORE" "$@" </dev/null >"$name.out" 2>"$name.err"
  local rc=$?
  set -e
  local log
  for log in "$name".vg.*.log; do
    echo "   $log: $(grep -m1 'ERROR SUMMARY' "$log" | sed 's/^==[0-9]*== //')"
  done
  if ((rc != 0)); then
    echo "   FAIL: exit code $rc (99: memcheck found errors); the first report follows"
    for log in "$name".vg.*.log; do
      awk '/^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|Argument)|definitely lost in/ {p = 1}
           p {print; if (++n > 40) exit} /^==[0-9]+== $/ && p {exit}' "$log"
    done
    tail -5 "$name.err"
    failures+=("$name")
  fi
}

memcheck np1 1 "${RUN[@]}" --output np1.h5ad
memcheck np2 2 "${RUN[@]}" --output np2.h5ad
echo "== a run stopped at the score stage (not under memcheck), then --resume under memcheck"
set +e
PERTSCORE_FAULT=score:exit=3 "$MPIEXEC" --oversubscribe -n 1 "$PERTSCORE" "${RUN[@]}" --output resumed.h5ad \
  </dev/null 2>stop.err
set -e
[[ -e resumed.h5ad.partial ]] || { echo "   FAIL: the stopped run left no checkpoint"; failures+=("stop"); }
memcheck resume 1 "${RUN[@]}" --output resumed.h5ad --resume
# a resume that started over would pass memcheck without ever reading the checkpoint back
if [[ -s resumed.h5ad ]]; then
  taken=$("${PYTHON:?}" -c "import sys, h5py; f = h5py.File(sys.argv[1], 'r'); n = 'uns/pertscore/parameters/resumed'
print(f[n][()].decode() if n in f else '')" resumed.h5ad)
  [[ $taken == ridge ]] || { echo "   FAIL: the --resume run took '$taken' from the checkpoint, not the ridge stage"; failures+=(resume-taken); }
fi
[[ -s np1.h5ad && -s np2.h5ad && -s resumed.h5ad ]] || { echo "   FAIL: a results file is missing"; failures+=(files); }

echo
if ((${#failures[@]})); then
  echo "FAIL: memcheck errors in: ${failures[*]}"
  exit 1
fi
echo "PASS: no invalid access, uninitialised use or definite leak outside the suppressed library internals"
