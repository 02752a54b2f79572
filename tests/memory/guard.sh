#!/bin/bash
# Memory guard (issue #7; src/cost, pertscore/cost.h): a run whose estimate per
# rank exceeds --max-memory, or Slurm's per-node memory shared by the node's ranks
# (SLURM_MEM_PER_NODE, in MB), is refused as early as the sizes allow: before the
# matrix is read (read stage, from the input's shape), before target selection
# (targets stage, from the design) or before the ridge (the rest): non-zero exit,
# a message with the estimate, the limit and its source and what to change, no
# output file and no OUTPUT.partial. A generous limit runs, and records the
# estimate for the benchmarks (PERTSCORE_STATS: memory.estimate_bytes).
# `pertscore cv` has the same guard: before the matrix is read, and after the read
# with the cv stage's estimate (both schemes).
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

# refused NAME EXPECTED-SOURCE ARGS...: the run must fail with the guard's message;
# ADVICE is the option the message must suggest lowering (cv has no --permutations)
ADVICE=--permutations
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
  [[ $msg == *"more ranks"*"fewer $ADVICE"* ]] || fail "$name: the message does not say what to change"
  (($(grep -c "pertscore: error:" "$name.err") == 1)) || fail "$name: the message is not printed exactly once"
  no_output "$name"
}
# no_output NAME: nothing but NAME.err was written (results, .partial, cv summaries)
no_output() {
  local left
  left=$(find . -maxdepth 1 -name "$1.*" ! -name "$1.err" -printf '%f ')
  [[ -z $left ]] || fail "$1: output left behind: $left"
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

# pertscore cv: the same option and checks. A tiny limit refuses both schemes
# before the matrix is read; the message names the estimate and the limit.
CV=(cv --input sim.h5ad --guides sim.guides.tsv --control NonTargeting)
ADVICE=--perturbations
for scheme in cells perturbations; do
  refused "cv_$scheme" "--max-memory 1.0 MiB per rank" -n 2 "$PERTSCORE" "${CV[@]}" --scheme "$scheme" --max-memory 1M
  grep -q "at the read stage.*before the matrix is read" "cv_$scheme.err" ||
    fail "cv_$scheme: not refused before the matrix is read: $(grep -m1 error "cv_$scheme.err")"
  ! grep -q "pertscore: read .*50%" "cv_$scheme.err" || fail "cv_$scheme: the matrix was read before the refusal"
done
SLURM_MEM_PER_NODE=1 refused cv_slurm "SLURM_MEM_PER_NODE=1 MB shared by the 2 rank(s)" -x SLURM_MEM_PER_NODE \
  -n 2 "$PERTSCORE" "${CV[@]}" --scheme cells
for bad in 12x -1G; do
  if run -n 1 "$PERTSCORE" "${CV[@]}" --scheme cells --output cv_bad.h5ad --max-memory="$bad" 2>cv_bad.err; then
    fail "cv --max-memory $bad accepted"
  else
    grep -q "max-memory: '$bad' is not a size" cv_bad.err || fail "cv --max-memory $bad: unclear message"
  fi
done

# After the read, the cv stage's estimate: on a screen of many perturbations and
# genes the dataset plus the cv stage (pseudobulk tables; a fold's system and fit)
# is the peak. A generous limit runs and records the estimate; a limit between the
# read's parts and that peak is refused once the matrix is read (100%) and before
# the cv stage starts, naming the scheme.
run -n 2 "$PERTSCORE" simulate --cells 1500 --genes 3000 --perturbations 120 --library-size 1000 --seed 5 \
  --out wide.h5ad --quiet
for scheme in cells perturbations; do
  args=(cv --input wide.h5ad --guides wide.guides.tsv --control NonTargeting --scheme "$scheme")
  echo "== cv --scheme $scheme: a generous limit runs, a limit below the cv stage is refused after the read"
  rm -rf "stats_$scheme"
  mkdir "stats_$scheme"
  if PERTSCORE_STATS=$PWD/stats_$scheme/s run -x PERTSCORE_STATS -n 2 "$PERTSCORE" "${args[@]}" --quiet \
    --max-memory 4G --output "cv_ok_$scheme.h5ad" 2>"cv_ok_$scheme.err"; then
    [[ -s cv_ok_$scheme.h5ad && -s cv_ok_$scheme.summary.tsv ]] || fail "cv $scheme generous: no output"
  else
    fail "cv $scheme generous: failed: $(grep -m1 error "cv_ok_$scheme.err")"
    continue
  fi
  limit=$("$PYTHON" - "stats_$scheme"/s.rank*.json <<'PY'
import json, sys
late = []
for path in sys.argv[1:]:
    s = json.load(open(path))
    e = lambda k: s[f"memory.estimate.{k}_bytes"]
    est, limit, rss = s["memory.estimate_bytes"], s["memory.limit_bytes"], s.get("process.peak_rss_bytes", 0)
    print(f"   {path}: estimate {est / 2**20:.1f} MiB (cv stage {e('cv') / 2**20:.2f} MiB), "
          f"peak RSS {rss / 2**20:.1f} MiB", file=sys.stderr)
    assert 0 < est < limit == 4 * 2**30, (est, limit)
    assert e("cv") > 0 and e("score") == 0, "the cv stage is not estimated"
    early = max(e("read"), e("targets"), e("regression"))
    assert e("resident") + e("cv") > early, "the cv stage is not the peak on this screen"
    late.append(e("runtime") + (early + e("resident") + e("cv")) / 2)
print(int(min(late)))
PY
) || { fail "cv $scheme: no cv-stage estimate in the statistics"; continue; }
  name=cv_late_$scheme
  set +e
  run -n 2 "$PERTSCORE" "${args[@]}" --max-memory "$limit" --output "$name.h5ad" 2>"$name.err"
  rc=$?
  set -e
  ((rc != 0)) || fail "$name: exit code 0 with --max-memory $limit"
  grep -q "pertscore: read .*100%" "$name.err" || fail "$name: refused before the read finished"
  ! grep -q "pertscore: cv " "$name.err" || fail "$name: the cv stage started"
  grep -q "at the cv stage.*the $scheme scheme on 2 ranks), more than the limit of" "$name.err" ||
    fail "$name: not refused at the cv stage: $(grep -m1 error "$name.err")"
  no_output "$name"
done

echo
if ((${#failures[@]})); then
  echo "FAIL: ${#failures[@]} problem(s):"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "PASS: the memory guard (run and cv) refuses over --max-memory and Slurm's limits, cleanly, and lets a generous limit run"
