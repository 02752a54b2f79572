# PETSc's -log_view shows our stages (issue 14): read, targets (inside read), ridge,
# permutations (inside ridge), score, dosage, cv, write, each with a time, on 2 ranks.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" "$@"; }
run simulate --cells 3000 --genes 300 --perturbations 4 --control-fraction 0.3 --seed 9 --out sim.h5ad --quiet
run run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --output results.h5ad --force --quiet \
  --cv cells --min-dosage-cells 50 -log_view > log.txt 2>&1
sed -n '/Summary of Stages/,/^$/p' log.txt
fails=0
for stage in read targets ridge permutations score dosage cv write; do
  grep -qE "^ *[0-9]+: +$stage: +[0-9.e+-]+ " log.txt || { echo "FAIL: no '$stage' stage in -log_view"; fails=1; }
done
exit $fails
