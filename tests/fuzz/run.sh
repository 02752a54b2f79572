#!/usr/bin/env bash
# Fuzz the input readers for a while and fail on a crash (docs/reliability.md).
#
# usage: tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET[:SECONDS]...]
#   BUILD_DIR  a build configured with -DPS_FUZZ=ON -DCMAKE_C_COMPILER=clang
#              (the fuzzers are built here if missing)
#   SECONDS    fuzzing time per target (TARGET:SECONDS overrides it for one)
#   TARGET     guides targets job h5ad_meta h5ad_bytes (default: all five)
#
# Every target starts from the committed seeds (tests/fuzz/corpus/TARGET) plus
# what earlier runs in BUILD_DIR found (BUILD_DIR/fuzz-run/TARGET/corpus); the
# committed corpus is never modified. Findings land in BUILD_DIR/fuzz-run/TARGET/.
#
# guides, targets, job, h5ad_meta stop at the first finding, which fails the run.
# Bugs already reported (tests/fuzz/known/avoid.txt) are left out of the guides and
# h5ad_meta inputs (PS_FUZZ_AVOID) so that the run looks for new ones.
# h5ad_bytes mutates raw HDF5 bytes, which crashes libhdf5 1.10 itself within
# seconds; it runs in libFuzzer's fork mode, keeps going after a crash, and every
# finding is triaged (triage.py): the run fails only on one in our code.
set -euo pipefail

build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET[:SECONDS]...]}
default_seconds=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET[:SECONDS]...]}
shift 2
targets=("$@")
((${#targets[@]})) || targets=(guides targets job h5ad_meta h5ad_bytes)
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd)
python=${PYTHON:-python3}

cmake --build "$build" --target fuzzers -j"$(nproc)" >/dev/null

# Singleton MPI_Init (h5ad harnesses) as root needs these, like mpirun.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
avoid=$(grep -v '^#' "$here/known/avoid.txt" 2>/dev/null | awk 'NF {print $1}' | paste -sd, - || true)

failures=()
for spec in "${targets[@]}"; do
  t=${spec%%:*}
  seconds=$default_seconds
  [[ $spec == *:* ]] && seconds=${spec#*:}
  bin=$build/tests/fuzz/fuzz_$t
  work=$build/fuzz-run/$t
  mkdir -p "$work/corpus" "$work/findings"
  # a healthy input takes milliseconds; libhdf5's endless loops on damaged raw
  # bytes are cut short (h5ad_bytes) so that they do not eat the time budget
  timeout=10
  [[ $t == h5ad_bytes ]] && timeout=5
  flags=(-max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 -artifact_prefix="$work/findings/")
  case $t in
    guides | targets | job)
      # no MPI_Init here, so LeakSanitizer works: leaks on any path are findings
      export ASAN_OPTIONS=detect_leaks=1
      flags+=(-max_len=4096 -dict="$here/dict/$t.dict")
      ;;
    h5ad_meta | h5ad_bytes)
      # Open MPI's allocations at MPI_Init look like leaks; sizes read from the
      # file may ask for more than the machine has: that must be an error
      # message (calloc returns NULL), not a fuzzer finding, unless real use
      # (rss) passes 4 GB
      export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
      flags+=(-malloc_limit_mb=1048576 -rss_limit_mb=4096)
      ;;
    *) echo "run.sh: unknown target '$t'" >&2; exit 2 ;;
  esac
  [[ $t == h5ad_meta ]] && flags+=(-max_len=512)
  [[ $t == h5ad_bytes ]] && flags+=(-max_len=65536 -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  export PS_FUZZ_AVOID=$avoid
  # scratch files of the harnesses (left behind by children that crash)
  scratch_base=/tmp
  [[ -w /dev/shm ]] && scratch_base=/dev/shm
  export PS_FUZZ_SCRATCH=$scratch_base/pertscore-fuzz-run.$$
  mkdir -p "$PS_FUZZ_SCRATCH"
  echo "== fuzz_$t for ${seconds}s${avoid:+ (known bugs left out: $avoid)}"
  set +e
  (cd "$work" && "$bin" "${flags[@]}" "$work/corpus" "$here/corpus/$t") >"$work/log" 2>&1
  rc=$?
  set -e
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|#[0-9]+.*DONE' "$work/log" | tail -3 | sed 's/^/   /' || true
  shopt -s nullglob
  found=("$work"/findings/{crash,oom,timeout,leak}-*)
  shopt -u nullglob
  if [[ $t == h5ad_bytes ]]; then
    if ((${#found[@]})); then
      set +e
      PS_FUZZ_FLAGS="-timeout=$timeout -malloc_limit_mb=1048576 -rss_limit_mb=4096" \
        "$python" "$here/triage.py" "$bin" "${found[@]}" >"$work/triage.txt"
      rc=$?
      set -e
      echo "   ${#found[@]} finding(s): $(grep -c ': libhdf5: ' "$work/triage.txt") in libhdf5," \
        "$(grep -c ': known:' "$work/triage.txt") known, $(grep -c ': regression:' "$work/triage.txt") regressions, $(grep -c ': ours: ' "$work/triage.txt") new in our code" \
        "(all: $work/triage.txt)"
      grep -v ': libhdf5: ' "$work/triage.txt" | sed 's/^/     /' || true
      ((rc == 0)) || failures+=("fuzz_$t: a crash in pertscore's code (see $work/triage.txt and $work/log)")
      # keep only the findings of this run in view next time
      mkdir -p "$work/seen" && mv "${found[@]}" "$work/seen/"
    else
      echo "   no finding"
    fi
  elif ((rc != 0)) || ((${#found[@]})); then
    echo "   FAIL: fuzz_$t exited $rc; finding(s): ${found[*]:-none}"
    grep -m1 -E 'ERROR: |runtime error|invariant violated' "$work/log" | sed 's/^/   /' || true
    ((${#found[@]})) && PS_FUZZ_FLAGS="-timeout=$timeout -malloc_limit_mb=1048576 -rss_limit_mb=4096" \
      "$python" "$here/triage.py" "$bin" "${found[@]}" | sed 's/^/     /' || true
    echo "   reproduce: $bin ${found[0]:-}; full log: $work/log"
    failures+=("fuzz_$t")
  else
    echo "   no crash"
  fi
  rm -rf "$PS_FUZZ_SCRATCH"
done

if ((${#failures[@]})); then
  printf 'FAIL: %s\n' "${failures[@]}"
  exit 1
fi
echo "PASS: no crash in our readers"
