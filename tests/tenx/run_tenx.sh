# Issue check 6 (full method) end to end: the same screen as h5ad + guide table
# and as a 10x .h5 with guide capture (guides called at --min-guide-umi 3) gives
# identical PS, beta and p-values from `pertscore run`.
set -euo pipefail
: "${TENX_DIR:?}"
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { timeout 300 "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" run "${@:2}" --control NonTargeting --quiet; }
run 2 --input "$TENX_DIR/sim.h5ad" --guides "$TENX_DIR/sim.guides.tsv" --output h5ad.h5ad
for f in sim_10x sim_10x_mixed; do
  for np in 1 3; do
    run "$np" --input "$TENX_DIR/$f.h5" --output "$f.np$np.h5ad"
    echo "$f.h5 (guide capture), np=$np vs h5ad + guide table, np=2"
    "$PYTHON" "$TESTS_DIR/scripts/compare_results.py" h5ad.h5ad "$f.np$np.h5ad" 1e-10
  done
done
