# The simulator writes the same bytes for np = 1, 2, 3 with the same seed.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
for np in 1 2 3; do
  "$MPIEXEC" --oversubscribe -n "$np" "$PERTSCORE" simulate --cells 2500 --genes 300 --perturbations 6 \
    --moi 2 --poisson-moi --seed 11 --out "np$np.h5ad" --quiet
done
for suffix in h5ad guides.tsv truth.tsv effects.tsv targets.gmt; do
  for np in 2 3; do
    cmp "np1.$suffix" "np$np.$suffix"
  done
  echo "identical: *.$suffix"
done
