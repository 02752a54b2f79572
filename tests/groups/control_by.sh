# --control-by (SPEC.md section 2, last bullet): a simulated batch shift in basal
# expression (two "cell types" with the same responses, type 2 shifting 40 genes'
# basal expression). The targets are the true downstream genes plus the shifted
# genes (so the shift reaches the regression genes). With --control-by cell_type the
# per-group basal rows recover the shift, and PS follows the true efficiency at
# least as well as with one intercept; np 1, 2 and 3 give the same numbers.
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
rm -f ./*.h5ad ./*.partial
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}" < /dev/null; }
here="$TESTS_DIR/groups"
scripts="$TESTS_DIR/scripts"

run 2 simulate --cells 6000 --genes 800 --perturbations 8 --cell-types 2 --type-responses same \
  --type-genes 40 --type-shift 1 --seed 11 --out batch.h5ad --quiet
"$PYTHON" - <<'PY'
import pandas as pd
shifted = list(pd.read_csv("batch.basal.tsv", sep="\t").gene)
with open("batch.targets.gmt") as src, open("with_shifted.gmt", "w") as out:
    for line in src:
        out.write(line.rstrip("\n") + "".join("\t" + g for g in shifted) + "\n")
PY
common=(--input batch.h5ad --guides batch.guides.tsv --control NonTargeting --targets with_shifted.gmt --quiet)
run 2 run "${common[@]}" --control-by cell_type --output with.h5ad
run 2 run "${common[@]}" --output without.h5ad
"$PYTHON" "$here/control_by_check.py" with.h5ad without.h5ad batch 0.9

for np in 1 3; do
  run "$np" run "${common[@]}" --control-by cell_type --permutations 20 --output "with.np$np.h5ad"
done
"$PYTHON" "$scripts/compare_results.py" with.np1.h5ad with.np3.h5ad 1e-8
echo "control_by: OK"
