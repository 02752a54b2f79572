#!/bin/bash
# Memory guard (issue #7; src/cost, pertscore/cost.h): a run whose estimate per
# rank exceeds --max-memory, or Slurm's per-node memory shared by the node's ranks
# (SLURM_MEM_PER_NODE, in MB), is refused as early as the sizes allow: before the
# matrix is read (read stage, from the input's shape), before target selection
# (targets stage, from the design) or before the ridge (the rest): non-zero exit,
# a message with the estimate, the limit and its source and what to change, no
# output file and no OUTPUT.partial. A generous limit runs, and records the
# estimate for the benchmarks (PERTSCORE_STATS: memory.estimate_bytes).
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset PERTSCORE_FAULT SLURM_MEM_PER_NODE SLURM_MEM_PER_CPU SLURM_CPUS_PER_TASK
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"

failures=()
fail() { echo "   FAIL: $*"; failures+=("$*"); }
run() { timeout 300 "$MPIEXEC" --oversubscribe "$@" </dev/null; }

run -n 2 "$PERTSCORE" simulate --cells 1200 --genes 150 --perturbations 6 --moi 2 --poisson-moi --seed 4 \
  --out sim.h5ad --quiet
LOUD=(run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --permutations 20) # with progress
RUN=("${LOUD[@]}" --quiet)

# refused NAME EXPECTED-SOURCE ARGS...: the run must fail with the guard's message
refused() {
  local name=$1 source=$2
  shift 2
  echo "== $name"
  set +e
  run "$@" --output "$name.h5ad" 2>"$name.err"
  local rc=$?
  set -e
  local msg
  msg=$(grep -m1 "pertscore: error:" "$name.err" || true)
  echo "   exit $rc: ${msg:0:300}"
  ((rc != 0)) || fail "$name: exit code 0"
  [[ $msg == *"memory guard: this run needs about"*"per rank"* ]] || fail "$name: no estimate in the message"
  [[ $msg == *"more than the limit of"*"$source"* ]] || fail "$name: the limit's source '$source' is not named"
  [[ $msg == *"more ranks"*"--permutations"* ]] || fail "$name: the message does not say what to change"
  (($(grep -c "pertscore: error:" "$name.err") == 1)) || fail "$name: the message is not printed exactly once"
  [[ ! -e $name.h5ad && ! -e $name.h5ad.partial ]] || fail "$name: an output file was left behind"
}
refused max_memory_1M "--max-memory 1.0 MiB per rank" -n 2 "$PERTSCORE" "${RUN[@]}" --max-memory 1M
# mpirun -x passes the variable to every rank, as srun does inside an allocation
SLURM_MEM_PER_NODE=1 refused slurm_mem_per_node "SLURM_MEM_PER_NODE=1 MB shared by the 2 rank(s)" \
  -x SLURM_MEM_PER_NODE -n 2 "$PERTSCORE" "${RUN[@]}"
SLURM_MEM_PER_CPU=1 refused slurm_mem_per_cpu "SLURM_MEM_PER_CPU=1 MB" -x SLURM_MEM_PER_CPU -n 1 "$PERTSCORE" "${RUN[@]}"
# the explicit limit binds when it is the smaller one
SLURM_MEM_PER_NODE=100000 refused smaller_explicit "--max-memory" -x SLURM_MEM_PER_NODE -n 2 "$PERTSCORE" \
  "${RUN[@]}" --max-memory 2M

# refused before the matrix is read: the progress shows the read stage start but not
# its 50% mark (set once the matrix blocks are in memory)
echo "== refused before the matrix is read"
set +e
run -n 2 "$PERTSCORE" "${LOUD[@]}" --max-memory 1M --output early.h5ad 2>early.err
rc=$?
set -e
((rc != 0)) || fail "early: exit code 0"
grep -q "pertscore: read .* 0%" early.err || fail "early: the read stage did not start: $(head -3 early.err)"
! grep -q "pertscore: read .*50%" early.err || fail "early: the matrix was read before the refusal"
grep -q "at the read stage.*before the matrix is read" early.err || fail "early: not refused at the read stage: $(grep -m1 error early.err)"
[[ ! -e early.h5ad && ! -e early.h5ad.partial ]] || fail "early: an output file was left behind"

echo "== bad sizes are refused with a message"
for bad in 12x -1G; do
  if run -n 1 "$PERTSCORE" "${RUN[@]}" --output bad.h5ad --max-memory="$bad" 2>bad.err; then
    fail "--max-memory $bad accepted"
  else
    grep -q "max-memory: '$bad' is not a size" bad.err || fail "--max-memory $bad: unclear message: $(head -2 bad.err)"
  fi
done

echo "== a generous limit runs and records the estimate"
if SLURM_MEM_PER_NODE=20000 PERTSCORE_STATS=$PWD/stats run -x SLURM_MEM_PER_NODE -x PERTSCORE_STATS -n 2 \
  "$PERTSCORE" "${RUN[@]}" --output ok.h5ad --max-memory 4G 2>ok.err; then
  [[ -s ok.h5ad ]] || fail "generous limit: no results file"
  "$PYTHON" - stats.rank0.json stats.rank1.json <<'PY' || fail "generous limit: estimate not recorded or implausible"
import json, sys
for path in sys.argv[1:]:
    s = json.load(open(path))
    est, limit, rss = s["memory.estimate_bytes"], s["memory.limit_bytes"], s.get("process.peak_rss_bytes", 0)
    print(f"   {path}: estimate {est / 2**20:.1f} MiB, limit {limit / 2**20:.0f} MiB, peak RSS {rss / 2**20:.1f} MiB")
    assert 0 < est < limit == 4 * 2**30
PY
else
  fail "generous limit: the run failed: $(grep -m1 error ok.err)"
fi

# refused after the read, before target selection: a limit between the read stage's
# estimate and the targets stage's (from the generous run's statistics); the matrix
# was read (50%) but target selection (60%) never started
echo "== refused before target selection"
limit=$("$PYTHON" - stats.rank0.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
runtime, read, targets = (s[f"memory.estimate.{k}_bytes"] for k in ("runtime", "read", "targets"))
assert targets > read > 0, (read, targets)
print(int(runtime + (read + targets) / 2))
PY
) || fail "before targets: no read/targets estimates in the statistics"
if [[ -n $limit ]]; then
  set +e
  run -n 2 "$PERTSCORE" "${LOUD[@]}" --max-memory "$limit" --output design.h5ad 2>design.err
  rc=$?
  set -e
  ((rc != 0)) || fail "before targets: exit code 0 with --max-memory $limit"
  grep -q "pertscore: read .*50%" design.err || fail "before targets: refused before the matrix was read"
  ! grep -q "pertscore: read .*60%" design.err || fail "before targets: target selection started"
  grep -Eq "at the (targets|regression) stage.*checked before target selection" design.err ||
    fail "before targets: not refused at the targets stage: $(grep -m1 error design.err)"
  [[ ! -e design.h5ad && ! -e design.h5ad.partial ]] || fail "before targets: an output file was left behind"
fi

echo
if ((${#failures[@]})); then
  echo "FAIL: ${#failures[@]} problem(s):"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "PASS: the memory guard refuses over --max-memory and Slurm's limits, cleanly, and lets a generous limit run"
