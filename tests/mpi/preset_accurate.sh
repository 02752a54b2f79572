# SPEC.md section 9: --preset accurate and each of its flags, against an independent
# numpy/scipy implementation (tests/scripts/accurate_reference.py, 1e-8 on PS):
# 1. the preset, one guide per cell and several (high MOI), with a dud "perturbation"
#    (control cells relabelled: pure noise; at these seeds BH leaves it no gene, as it
#    should for a null with probability >= 0.95) that the FDR leaves without targets: not scored (NaN,
#    var scored = 0, a warning), the others scored;
# 2. np 1, 2 and 3 give the same results (PS, beta to 1e-12);
# 3. each flag alone (the rest the paper's) against the reference switched the same way,
#    and the paper's method untouched: no flag, --preset paper and --preset accurate
#    --preset paper give the same bytes of X and the same parameters digest;
# 4. flags after the preset override it (parameters record it).
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
ref="$PYTHON $TESTS_DIR/scripts/accurate_reference.py"
common="--control NonTargeting --no-dosage --permutations 0 --quiet --force"

# 1-2. MOI 1 and MOI 2; 60 control guide rows of each screen become the dud perturbation DUD
for design in "moi1 --moi 1 --seed 7" "moi2 --moi 2 --seed 8"; do
  set -- $design
  name=$1; shift
  run 2 simulate --cells 1500 --genes 300 --perturbations 5 --control-fraction 0.3 --library-size 2000 "$@" \
    --out "$name.h5ad" --quiet
  awk -F'\t' 'BEGIN{OFS="\t"} NR>1 && $4=="NonTargeting" && n<60 {n++; $2="DUD_g"; $4="DUD"} {print}' \
    "$name.guides.tsv" > "$name.dud.tsv"
  for np in 1 2 3; do
    run "$np" run --input "$name.h5ad" --guides "$name.dud.tsv" $common --preset accurate \
      --output "$name.np$np.h5ad" 2> "$name.np$np.err"
  done
  grep -q "1 of 6 perturbations left without targets" "$name.np1.err" || { cat "$name.np1.err"; echo "FAIL: no warning"; exit 1; }
  $ref "$name.h5ad" "$name.dud.tsv" NonTargeting "$name.np1.h5ad" 1e-8
  "$PYTHON" - "$name.np1.h5ad" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    names = list(f["var/_index"].asstr()[:]); scored = f["var/scored"][:]; x = f["X/data"][:]
    idx = f["X/indices"][:]
    dud = names.index("DUD")
    assert scored[dud] == 0 and scored.sum() == len(names) - 1, scored
    assert np.isnan(x[idx == dud]).all() and (idx == dud).sum() > 0, "DUD entries must be NaN"
    assert not np.isnan(x[idx != dud]).any()
    assert f["uns/pertscore/parameters/preset"][()].decode() == "accurate"
print("DUD not scored: OK")
PY
  for np in 2 3; do
    "$PYTHON" "$TESTS_DIR/scripts/compare_results.py" "$name.np1.h5ad" "$name.np$np.h5ad" 1e-12
    "$PYTHON" - "$name.np1.h5ad" "$name.np$np.h5ad" <<'PY'
import sys, h5py, numpy as np
def load(p):
    with h5py.File(p, "r") as f:
        return f["X/indptr"][:], f["X/indices"][:], f["X/data"][:], f["uns/pertscore/gene_weights"][:]
a, b = load(sys.argv[1]), load(sys.argv[2])
assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
assert np.array_equal(np.isnan(a[2]), np.isnan(b[2])), "NaN (not scored) entries differ"
ok = ~np.isnan(a[2])
assert np.abs(a[2][ok] - b[2][ok]).max() <= 1e-12 and np.abs(a[3] - b[3]).max() <= 1e-12 * np.abs(a[3]).max()
print(f"{sys.argv[2]}: same NaN entries, PS and gene weights within 1e-12: OK")
PY
  done
done

# 3. each flag alone, the reference switched the same way (MOI 2 screen without the dud)
paper_ref="--fdr 0 --scale 1e4 --winsorize --qp-genes union --gene-weights none"
check_alone() { # pertscore flag, reference options
  run 2 run --input moi2.h5ad --guides moi2.guides.tsv $common $1 --output alone.h5ad
  echo "flag alone: $1"
  $ref moi2.h5ad moi2.guides.tsv NonTargeting alone.h5ad 1e-8 $2
}
check_alone "" "$paper_ref"
check_alone "--scale median" "--fdr 0 --winsorize --qp-genes union --gene-weights none"
check_alone "--target-fdr 0.05" "--scale 1e4 --winsorize --qp-genes union --gene-weights none"
check_alone "--no-winsorize" "--fdr 0 --scale 1e4 --qp-genes union --gene-weights none"
check_alone "--qp-genes own" "--fdr 0 --scale 1e4 --winsorize --gene-weights none"
check_alone "--gene-weights residual" "--fdr 0 --scale 1e4 --winsorize --qp-genes union"
check_alone "--preset accurate --qp-genes union" "--qp-genes union"

# the paper's method untouched by the preset machinery
run 2 run --input moi2.h5ad --guides moi2.guides.tsv $common --output p0.h5ad
run 2 run --input moi2.h5ad --guides moi2.guides.tsv $common --preset paper --output p1.h5ad
run 2 run --input moi2.h5ad --guides moi2.guides.tsv $common --preset accurate --preset paper --output p2.h5ad
"$PYTHON" - p0.h5ad p1.h5ad p2.h5ad <<'PY'
import sys, h5py, numpy as np
def load(p):
    with h5py.File(p, "r") as f:
        return f["X/data"][:], f["uns/pertscore/parameters/parameters_digest"][()], "preset" in f["uns/pertscore/parameters"]
a = load(sys.argv[1])
for other in sys.argv[2:]:
    b = load(other)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and not b[2], other
print("paper: same PS bytes and parameters digest with and without --preset paper: OK")
PY
# 4. a flag after the preset overrides it, and is recorded
run 1 run --input moi1.h5ad --guides moi1.guides.tsv $common --preset accurate --gene-weights none --output o.h5ad
"$PYTHON" - o.h5ad <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    p = f["uns/pertscore/parameters"]
    got = {k: p[k][()] for k in ("preset", "scale", "qp_genes", "gene_weights", "target_fdr", "winsorize")}
    assert got["gene_weights"].decode() == "none" and got["qp_genes"].decode() == "own", got
    assert got["target_fdr"] == 0.05 and got["winsorize"] == 0 and "gene_weights" not in f["uns/pertscore"], got
print("override after --preset recorded: OK")
PY

# 5. the dosage stage and pertscore dosage recompute agree under --scale median (the
#    recorded s), a job file and a sweep over presets take the options, --resume takes
#    an accurate run's checkpoint, --group-by runs in the preset on 1 and 2 ranks
run 2 run --input moi1.h5ad --guides moi1.guides.tsv --control NonTargeting --permutations 0 --quiet --force \
  --preset accurate --output dose.h5ad
run 2 dosage --results dose.h5ad --input moi1.h5ad --output dose.again.h5ad --quiet
"$PYTHON" "$TESTS_DIR/dosage_stage/compare_dosage.py" dose.h5ad dose.again.h5ad 1e-12
cat > job.yaml <<YAML
input: moi1.h5ad
guides: moi1.guides.tsv
control: [NonTargeting]
output: job.h5ad
permutations: 0
no-dosage: true
quiet: true
preset: accurate
sweep:
  preset: [paper, accurate]
YAML
run 2 run --config job.yaml --force
"$PYTHON" - job.h5ad moi1.np1.h5ad <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert f["uns/pertscore/parameters/preset"][()].decode() == "accurate"
    assert f["uns/pertscore/parameters/qp_genes"][()].decode() == "own"
print("job file: preset recorded: OK")
PY
test "$("$PERTSCORE" sweep --config job.yaml --count)" = 2
for t in 0 1; do run 1 sweep --config job.yaml --task $t; done
"$PYTHON" - job.point000.h5ad job.point001.h5ad <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    assert "preset" not in a["uns/pertscore/parameters"], "paper point records no preset"
    assert b["uns/pertscore/parameters/preset"][()].decode() == "accurate"
print("sweep over presets: OK")
PY
# --resume: a run killed after its score stage continues from the accurate checkpoint
rm -f res.h5ad res.h5ad.partial
set +e
PERTSCORE_FAULT=dosage:kill@0 run 2 run --input moi1.h5ad --guides moi1.guides.tsv --control NonTargeting \
  --permutations 0 --quiet --preset accurate --output res.h5ad 2>/dev/null
set -e
run 2 run --input moi1.h5ad --guides moi1.guides.tsv --control NonTargeting --permutations 0 \
  --preset accurate --output res.h5ad --resume 2> resume.err
grep -q "stages ridge and score taken" resume.err || { cat resume.err; echo "FAIL: resume"; exit 1; }
"$PYTHON" "$TESTS_DIR/scripts/compare_results.py" dose.h5ad res.h5ad 1e-12
"$PYTHON" - res.h5ad <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert "gene_weights" in f["uns/pertscore"], "resumed scores keep their weights"
print("resume: OK")
PY
run 2 simulate --cells 2000 --genes 300 --perturbations 4 --control-fraction 0.3 --library-size 2000 --cell-types 2 \
  --seed 9 --out groups.h5ad --quiet
for np in 1 2; do
  run "$np" run --input groups.h5ad --guides groups.guides.tsv $common --preset accurate --group-by cell_type \
    --output groups.np$np.h5ad
done
"$PYTHON" "$TESTS_DIR/scripts/compare_results.py" groups.np1.h5ad groups.np2.h5ad 1e-12
echo OK
