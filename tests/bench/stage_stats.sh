# PERTSCORE_STATS: every rank records per-stage seconds, peak RSS and MPI bytes, and the
# ScaLAPACK (BLACS point-to-point) traffic of the ridge stage is counted.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
rm -f st.* res.h5ad
"$PERTSCORE" simulate --cells 3000 --genes 400 --perturbations 150 --seed 3 --out sim.h5ad --quiet < /dev/null
OPENBLAS_NUM_THREADS=1 PERTSCORE_STATS="$WORK_DIR/st" "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" run \
  --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --output res.h5ad --permutations 5 \
  --no-dosage --quiet < /dev/null
"$PYTHON" - <<'PY'
import json
for rank in (0, 1):
    s = json.load(open("st.rank%d.json" % rank))
    assert s["rank"] == rank
    for stage in ("read", "ridge", "score", "write"):
        assert s[stage + ".seconds"] > 0 and s[stage + ".cpu_seconds"] > 0, (rank, stage)
        assert s[stage + ".peak_rss_bytes"] > 1e6, (rank, stage)
        assert s[stage + ".peak_rss_bytes"] <= s["process.peak_rss_bytes"], (rank, stage)
        assert s[stage + ".mpi_calls"] >= 1, (rank, stage)
    assert s["read.mpi_bytes"] > 0, rank
    # pdpotrf/pdpotrs on 2 ranks move matrix blocks with BLACS sends (through our PMPI wrappers)
    assert s["ridge.mpi_p2p_bytes"] > 1000, s["ridge.mpi_p2p_bytes"]
    assert s["process.mpi_bytes"] >= sum(s[k] for k in s if k.endswith(".mpi_bytes") and not k.startswith("process"))
print("stage statistics ok")
PY
