# Check 4: the simulated screen scored with the true downstream genes
# as targets: Pearson(PS, true efficiency) over perturbed cells >= 0.85.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" simulate --cells 20000 --genes 2000 --perturbations 20 --moi 1 \
  --efficiencies 0,0.25,0.5,0.75,1 --seed 1 --out sim.h5ad --quiet
"$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting \
  --targets sim.targets.gmt --output results.h5ad --quiet --json
"$PYTHON" "$TESTS_DIR/scripts/truth_check.py" results.h5ad sim.truth.tsv 0.85
