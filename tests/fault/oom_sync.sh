# Fault: an allocation that fails on one rank just before a collective write (issue 14).
# PERTSCORE_FAULT=cv-write:oom=N@1 makes rank 1's N-th counted allocation (PS_ALLOC,
# ps_calloc, ps_strdup) after the start of the cv writer fail (src/util/fault.c,
# src/util/alloc.c). For N = 1..40 and then every ~N/6-th (the writers make some hundreds,
# most of them table labels of one loop) until the run gets through unharmed, both ranks must
# stop with pertscore's out-of-memory message (no hang: the others do not wait in the
# collective for the failed rank) and leave no output; both cv schemes, 2 ranks.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
run 2 simulate --cells 900 --genes 80 --perturbations 6 --seed 4 --out sim.h5ad --quiet
fails=0
for scheme in perturbations cells; do
  args=(cv --scheme "$scheme" --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --folds 2
        --output "cv_$scheme.h5ad" --quiet)
  [[ $scheme == cells ]] && args+=(--targets sim.targets.gmt)
  failed_runs=0
  for ((nth = 1; nth <= 2000; nth += nth < 40 ? 1 : nth / 6)); do
    rm -f cv_"$scheme".*
    set +e
    PERTSCORE_FAULT="cv-write:oom=$nth@1" timeout 120 "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" "${args[@]}" \
      2> err.txt
    rc=$?
    set -e
    if ((rc == 0)); then break; fi # rank 1 made fewer than nth allocations there: nothing failed
    failed_runs=$((failed_runs + 1))
    if ((rc == 124)); then echo "FAIL: $scheme oom=$nth: hang (timeout)"; fails=1; continue; fi
    grep -q "pertscore: error: out of memory" err.txt ||
      { echo "FAIL: $scheme oom=$nth: exit $rc without pertscore's out-of-memory message:"; tail -3 err.txt; fails=1; }
    if ls cv_"$scheme".* >/dev/null 2>&1; then echo "FAIL: $scheme oom=$nth: output left behind: $(ls cv_"$scheme".*)"; fails=1; fi
  done
  echo "$scheme: $failed_runs allocations failed in turn on rank 1, each stopped every rank; run $nth went through"
  ((failed_runs > 0)) || { echo "FAIL: $scheme: no allocation was counted in the writer"; fails=1; }
  ((nth <= 2000)) || { echo "FAIL: $scheme: still failing after 2000 allocations"; fails=1; }
  [[ -s cv_$scheme.h5ad ]] || { echo "FAIL: $scheme: the unfaulted run wrote no results"; fails=1; }
done
exit $fails
