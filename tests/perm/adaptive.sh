#!/bin/bash
# --permutations-adaptive H (Besag and Clifford 1991, docs/method.md): a (row, gene)
# pair stops at its H-th exceedance after L permutations with p = H / L, else
# p = count / R as the fixed permutations. Checked on simulated high-MOI screens
# (X^T Y_r by gene tile):
#  - the fixed run's every exceedance (PERTSCORE_PERM_TRACE) gives its p-values, and
#    numpy's stopping rule on them gives the adaptive run's p-values exactly;
#  - the adaptive p-values are identical on 1, 2 and 3 ranks; the fused X^T Y_r
#    (PERTSCORE_PERM_FUSE=1 vs the default) gives bitwise the same beta and p;
#  - under the null (--effects none) P(p <= a) <= a within binomial bounds at
#    a = 0.05, 0.1, 0.2 (validity);
#  - with effects, the decisions p <= 0.01 and p <= 0.05 are the fixed run's for every
#    pair whose fixed p is not within 0.02 of 0.05 (0.01: all pairs);
#  - the results file records permutations_adaptive, and fewer columns are computed
#    (on the 4-perturbation null screens y is compacted to the open genes, both paths).
set -euo pipefail
: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
rm -rf "$WORK_DIR" && mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" --oversubscribe -n "$1" "${@:2}"; }
R=200 H=10
# null: by gene tile (MOI 3), lowmoi: by row (MOI 1); 4 perturbations, so most genes close and y is compacted
for screen in null lowmoi effects; do
  case $screen in
    null) extra=(--effects none --perturbations 4 --moi 3 --poisson-moi) ;;
    lowmoi) extra=(--effects none --perturbations 4 --moi 1) ;;
    effects) extra=(--perturbations 20 --moi 3 --poisson-moi) ;;
  esac
  run 1 "$PERTSCORE" simulate --output $screen.h5ad --cells 3000 --genes 300 --seed 7 "${extra[@]}" --quiet
  # every perturbation against the same 150 genes (the null screen's GMT has none)
  "$PYTHON" - $screen <<'PY'
import sys, h5py
s = sys.argv[1]
f = h5py.File(s + ".h5ad", "r")
genes = [g.decode() for g in f["var/_index"][()]][:150]
with open(s + ".gmt", "w") as out:
    for line in open(s + ".targets.gmt"):
        out.write("\t".join([line.split("\t")[0], "test"] + genes) + "\n")
PY
  common=(run --input $screen.h5ad --guides $screen.guides.tsv --control NonTargeting --targets $screen.gmt
          --permutations $R --seed 3 --no-dosage --no-calibration --quiet --force)
  PERTSCORE_PERM_TRACE=$screen.trace PERTSCORE_STATS=$screen.fixed run 2 "$PERTSCORE" "${common[@]}" --output $screen.fixed.h5ad
  PERTSCORE_PERM_FUSE=1 run 2 "$PERTSCORE" "${common[@]}" --output $screen.nofuse.h5ad
  for np in 1 2 3; do
    PERTSCORE_STATS=$screen.np$np run $np "$PERTSCORE" "${common[@]}" --permutations-adaptive $H --output $screen.adaptive.np$np.h5ad
  done
done
# job file: the key is accepted and recorded the same way
cat > job.yaml <<EOF2
input: effects.h5ad
guides: effects.guides.tsv
control: NonTargeting
targets: effects.gmt
permutations: $R
seed: 3
no-dosage: true
no-calibration: true
permutations-adaptive: $H
output: effects.job.h5ad
EOF2
run 2 "$PERTSCORE" run --config job.yaml --quiet --force
# sweep: off and H as two points
grep -v permutations-adaptive job.yaml | sed 's/effects.job.h5ad/sweep.h5ad/' >sweep.yaml
printf 'sweep:\n  permutations-adaptive: [0, %s]\n' $H >>sweep.yaml
for t in 0 1; do run 2 "$PERTSCORE" sweep --config sweep.yaml --task $t --quiet >/dev/null; done

"$PYTHON" - $R $H <<'PY'
import sys, glob, json, h5py, numpy as np
from scipy.stats import binom
R, H = int(sys.argv[1]), int(sys.argv[2])
def fail(m): print("FAIL:", m, file=sys.stderr); sys.exit(1)
def pvalues(path):  # (K + 1) x N: row 0 the intercept, then the perturbations
    f = h5py.File(path, "r")
    return np.vstack([f["uns/pertscore/basal_pvalue"][()], f["varm/pvalue"][()]]), f
def beta(f): return np.vstack([f["uns/pertscore/basal"][()], f["varm/beta"][()]])
def stats(prefix):
    return json.load(open(prefix + ".rank0.json"))
for screen in ("null", "lowmoi", "effects"):
    fixed, ff = pvalues(screen + ".fixed.h5ad")
    n, N = fixed.shape
    # the fixed run's exceedances, every rank's rows
    e = np.zeros((R, n, N), dtype=bool)
    for path in glob.glob(screen + ".trace.rank*.bin"):
        rec = np.fromfile(path, dtype=np.int32).reshape(-1, 3)
        e[rec[:, 0], rec[:, 1], rec[:, 2]] = True
    if not np.array_equal(e.sum(0) / R, fixed): fail(screen + ": the trace does not give the fixed p-values")
    nofuse, fn = pvalues(screen + ".nofuse.h5ad")
    if fixed.tobytes() != nofuse.tobytes() or beta(ff).tobytes() != beta(fn).tobytes():
        fail(screen + ": one pass per permutation and the fused X^T Y_r differ")
    # Besag-Clifford on the same exceedances
    c = np.cumsum(e, axis=0)
    reached = c[-1] >= H
    L = np.argmax(c >= H, axis=0) + 1
    ref = np.where(reached, H / np.where(reached, L, 1), c[-1] / R)
    ad, fa = pvalues(screen + ".adaptive.np1.h5ad")
    bad = np.sum(ad != ref)
    print("%s: %d pairs, %d closed (mean L %.1f of %d); adaptive p == numpy stopping rule on the fixed run's "
          "exceedances: %d mismatches" % (screen, ad.size, reached.sum(), L[reached].mean() if reached.any() else 0,
                                          R, bad))
    if bad: fail(screen + ": adaptive p-values differ from the numpy stopping rule")
    for np_ in (2, 3):
        other, _ = pvalues("%s.adaptive.np%d.h5ad" % (screen, np_))
        if other.tobytes() != ad.tobytes(): fail("%s: adaptive p-values on %d ranks differ from 1 rank" % (screen, np_))
    if fa["uns/pertscore/parameters/permutations_adaptive"][()] != H: fail("permutations_adaptive not recorded")
    if "permutations_adaptive" in ff["uns/pertscore/parameters"]: fail("a fixed run records permutations_adaptive")
    sf, sa = stats(screen + ".fixed"), stats(screen + ".np1")
    print("  columns of B_r computed: fixed %d, adaptive %d (%.0f%%); permutation stage rhs+solve+count %.3f s vs "
          "%.3f s" % (sf["perm.columns_done"], sa["perm.columns_done"], 100 * sa["perm.columns_done"] /
                       sf["perm.columns_done"], sf["perm.rhs_seconds"] + sf["perm.solve_seconds"] +
                       sf["perm.count_seconds"], sa["perm.rhs_seconds"] + sa["perm.solve_seconds"] +
                       sa["perm.count_seconds"]))
    if sa["perm.columns_done"] > sf["perm.columns_done"]: fail("adaptive computed more columns than fixed")
    if sf["perm.rhs_by_tiles"] != (screen != "lowmoi"): fail(screen + ": not the X^T Y_r path meant")
    if screen != "effects" and not sa.get("perm.y_compactions", 0): fail(screen + ": y was never compacted")
    p = ad[1:]  # the perturbations' rows
    if screen != "effects":
        # validity: P(p <= a) <= a; pairs share permutations, so the bound is loose (99.9%, no dependence correction)
        for a in (0.05, 0.1, 0.2):
            frac, hi = np.mean(p <= a + 1e-12), binom.ppf(0.999, p.size, a) / p.size
            lo = binom.ppf(0.001, p.size, a) / p.size
            print("  null: fraction p <= %.2f: %.4f (binomial 99.9%% range %.4f..%.4f)" % (a, frac, lo, hi))
            if frac > hi: fail("null: too many adaptive p <= %g (%.4f > %.4f)" % (a, frac, hi))
            if frac < lo / 2: fail("null: adaptive p-values far too conservative at %g (%.4f)" % (a, frac))
    else:
        fp = fixed[1:]
        d01 = np.sum((p <= 0.01) != (fp <= 0.01))
        away = np.abs(fp - 0.05) > 0.02
        d05 = np.sum(((p <= 0.05) != (fp <= 0.05)) & away)
        print("  effects: %d pairs with fixed p <= 0.01, %d <= 0.05; decisions differ at 0.01: %d; at 0.05 (fixed p "
              "not within 0.02 of it, %d pairs): %d; all pairs at 0.05: %d" % ((fp <= 0.01).sum(), (fp <= 0.05).sum(),
              d01, away.sum(), d05, np.sum((p <= 0.05) != (fp <= 0.05))))
        if (fp <= 0.01).sum() < 20: fail("effects: the screen has too few effects to compare decisions")
        if d01 or d05: fail("effects: adaptive decisions differ from the fixed ones")
        job, _ = pvalues("effects.job.h5ad")
        if job.tobytes() != ad.tobytes(): fail("job file: adaptive p-values differ from the command line's")
        s0, _ = pvalues("sweep.point000.h5ad")
        s1, _ = pvalues("sweep.point001.h5ad")
        if s0.tobytes() != fixed.tobytes() or s1.tobytes() != ad.tobytes():
            fail("sweep over permutations-adaptive [0, H]: not the fixed and the adaptive p-values")
print("ok")
PY
