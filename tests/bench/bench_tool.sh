# tools/bench/bench.py on a tiny screen: generates it once (cached), runs the pipeline on
# 2 ranks with the ceilings, and writes per-stage seconds, RSS, MPI bytes and ratios.
# No timing is asserted (performance is measured by tools/bench itself, not by tests).
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
rm -rf results.json runs screens
BENCH="$TESTS_DIR/../tools/bench/bench.py"
CEILINGS="$(dirname "$PERTSCORE")/tools/bench/ceilings"
for pass in 1 2; do  # the second pass reuses the cached screen
  "$PYTHON" "$BENCH" --work "$WORK_DIR" --screens quick --np 2 --pertscore "$PERTSCORE" --ceilings "$CEILINGS" \
    --mpiexec "$MPIEXEC" --json results.json --timeout 600 > out$pass.txt 2> err$pass.txt
done
grep -q "generating quick" err1.txt
if grep -q "generating quick" err2.txt; then echo "the screen was not cached"; exit 1; fi
grep -q "== quick  np 2" out2.txt
"$PYTHON" - <<'PY'
import json
r = json.load(open("results.json"))["runs"][0]
assert r["screen"] == "quick" and r["np"] == 2 and "failure" not in r, r.get("failure")
stages = {row["stage"]: row for row in r["stages"]}
for s in ("read", "ridge", "score", "write"):
    assert stages[s]["seconds"] > 0 and len(stages[s]["peak_rss_per_rank_bytes"]) == 2, s
assert stages["read"]["mpi_bytes_sum"] > 0
c = r["ceilings"]["before"]
assert c["ranks"] == 2 and c["dgemm"][0]["gflops_per_rank_min"] > 0 and c["read"]["mb_per_s"] > 0
d = r["derived"]
assert d["dgemm_gflops_per_rank"] > 0 and d["perm_solve_vs_dgemm"] > 0 and d["read_stage_vs_file"] > 0
assert r["model"]["peak"] > 0 and r["peak_rss_sum_bytes"] > 0
print("bench tool ok")
PY
