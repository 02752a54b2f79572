#!/usr/bin/env bash
# The AddressSanitizer + UBSan build's tests with LeakSanitizer on (.ci/run,
# docs/reliability.md "Leak checking"):
#   bash tests/sanitize/run.sh BUILD_DIR [CTEST ARGS...]
#   bash tests/sanitize/run.sh build-asan -L "unit|mpi|interop|errors" -E "truth_efficiency|test_dosage_np1"
# A leak not matched by tests/sanitize/lsan.supp (third-party lifetimes only) fails its test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [CTEST ARGS...]}" && pwd)
shift
keep=$build/tests/libps_keep_plugins.so
[[ -f $keep ]] || { echo "run.sh: no $keep (configure with -DPS_SANITIZE=ON and build)" >&2; exit 2; }
# fast_unwind_on_malloc=0: Debian's MPI, PETSc and HDF5 have no frame pointers, so the
# default unwinder stops inside them and the suppressions would not see their callers.
# verify_asan_link_order=0: the preloaded keep_plugins library (no allocations) comes
# before the ASan runtime in the ranks; mpirun, bash and python run it too, harmlessly
# (mpirun -x, used by some tests, cannot be mixed with a variable for the ranks only).
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:verify_asan_link_order=0${ASAN_EXTRA:+:$ASAN_EXTRA}
export LSAN_OPTIONS=suppressions=$here/lsan.supp:print_suppressions=0${LSAN_EXTRA:+:$LSAN_EXTRA}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LD_PRELOAD=$keep${LD_PRELOAD:+:$LD_PRELOAD}
exec ctest --test-dir "$build" --output-on-failure "$@"
