#!/usr/bin/python3
"""Calibrated calls (SPEC section 10) end to end: pertscore simulate + run, then checks.

modes:
  null   several seeds of `simulate --effects none`, default run options (automatic targets):
         no perturbation at effect_fdr < 0.05 on any seed; 2-8% of perturbed cells at
         ps_pvalue < 0.05 on every seed (and pooled); effect p-values not piled up at 0
  power  a screen with effects and two inert perturbations (simulate --inert 2): every
         responding perturbation called, the inert ones not
  ranks  np 1, 2, 3: identical effect_pvalue, effect_fdr and ps_pvalue
  numpy  --calibration-record: ps_pvalue, the per-fit rank-sum z, effect_pvalue and BH
         recomputed with numpy/scipy from the stage's recorded held-out and null scores;
         ps_pvalue's pattern and int32 dtypes equal X's; the null cells are controls
"""
import json, os, subprocess, sys
import h5py
import numpy as np
from scipy import stats

PS = os.environ["PERTSCORE"]
MPI = os.environ.get("MPIEXEC", "mpirun")
WORK = os.environ.get("WORK_DIR", "/tmp/calibration_test")
os.makedirs(WORK, exist_ok=True)


def sh(args, np_=1):
    cmd = ([MPI, "--oversubscribe", "-n", str(np_)] if np_ > 1 else []) + args
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("FAIL: %s\n%s" % (" ".join(cmd), r.stderr[-3000:]))
    return r


def simulate(name, seed, extra):
    prefix = os.path.join(WORK, name)
    sh([PS, "simulate", "--out", prefix + ".h5ad", "--cells", "2000", "--genes", "500", "--perturbations", "8",
        "--control-fraction", "0.3", "--seed", str(seed), "--quiet"] + extra)
    return prefix


def run(prefix, out, np_=1, extra=()):
    r = sh([PS, "run", "--input", prefix + ".h5ad", "--guides", prefix + ".guides.tsv", "--control", "NonTargeting",
            "--output", out, "--json", "--force", "--no-dosage"] + list(extra), np_)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    last = r.stderr.strip().splitlines()[-1]
    return summary, last


def read(out):
    with h5py.File(out, "r") as f:
        v = {k: f["var/" + k][:] for k in ("effect_pvalue", "effect_fdr", "effect_z_fit0", "effect_z_fit1")}
        v["ps_pvalue"] = f["layers/ps_pvalue/data"][:]
        v["indices"] = f["layers/ps_pvalue/indices"][:]
        v["indptr"] = f["layers/ps_pvalue/indptr"][:]
        v["X_indices"] = f["X/indices"][:]
        v["X_indptr"] = f["X/indptr"][:]
        g = f["var"]
        v["names"] = [x.decode() if isinstance(x, bytes) else x for x in g[g.attrs["_index"]][:]]
    return v


def mode_null():
    fails, fracs, allp = [], [], []
    for seed in range(1, 7):
        prefix = simulate("null%d" % seed, seed, ["--effects", "none"])
        s, last = run(prefix, prefix + ".out.h5ad", extra=["--seed", str(seed)])
        v = read(prefix + ".out.h5ad")
        called = int((v["effect_fdr"] < 0.05).sum())
        frac = float(np.mean(v["ps_pvalue"] < 0.05))
        fracs.append(frac)
        allp.extend(v["effect_pvalue"])
        print("seed %d: %d of 8 at effect_fdr < 0.05, %.4f of perturbed cells at ps_pvalue < 0.05; %s"
              % (seed, called, frac, last))
        assert s["calibration"]["perturbations_called"] == called
        assert "of 8 perturbations with an effect at FDR 0.05" in last, last
        if called:
            fails.append("seed %d: %d perturbations called under the null" % (seed, called))
        if not 0.02 <= frac <= 0.08:
            fails.append("seed %d: %.4f of cells at ps_pvalue < 0.05 (want 2-8%%)" % (seed, frac))
    allp = np.array(allp)
    print("pooled: cells %.4f, effect p-values < 0.05: %d of %d, KS vs uniform p = %.3g"
          % (np.mean(fracs), (allp < 0.05).sum(), len(allp), stats.kstest(allp, "uniform").pvalue))
    if (allp < 0.01).sum() > 2:
        fails.append("%d of %d null effect p-values below 0.01" % ((allp < 0.01).sum(), len(allp)))
    return fails


def mode_power():
    fails = []
    for seed in (11, 12):
        prefix = simulate("power%d" % seed, seed, ["--inert", "2"])
        s, last = run(prefix, prefix + ".out.h5ad", extra=["--seed", str(seed)])
        v = read(prefix + ".out.h5ad")
        called = v["effect_fdr"] < 0.05
        print("seed %d: effect_fdr %s; %s" % (seed, np.array2string(v["effect_fdr"], precision=3), last))
        # perturbations are sorted by name; the inert ones are the simulator's last two ids
        eff = open(prefix + ".effects.tsv").read().splitlines()[1:]
        order = []
        for line in eff:
            name = line.split("\t")[0]
            if name not in order:
                order.append(name)
        inert = set(order[-2:])
        for k, name in enumerate(v["names"]):
            if name in inert and called[k]:
                fails.append("seed %d: inert %s called (fdr %.3g)" % (seed, name, v["effect_fdr"][k]))
            if name not in inert and not called[k]:
                fails.append("seed %d: responding %s not called (fdr %.3g)" % (seed, name, v["effect_fdr"][k]))
    return fails


def mode_ranks():
    prefix = simulate("ranks", 21, ["--inert", "3"])
    res = [read(run(prefix, prefix + ".np%d.h5ad" % n, n)[0]["output"]) for n in (1, 2, 3)]
    fails = []
    for n, r in zip((2, 3), res[1:]):
        for key in ("effect_pvalue", "effect_fdr", "ps_pvalue"):
            d = np.nanmax(np.abs(r[key] - res[0][key]))
            print("np %d vs 1: max |diff| of %s = %.3g" % (n, key, d))
            if not d <= 1e-12:
                fails.append("np %d: %s differs by %.3g" % (n, key, d))
    return fails


def ranksum_z(x, null):
    n1, n0 = len(x), len(null)
    if n1 == 0 or n0 == 0:
        return 0.0
    allv = np.concatenate([null, x])
    ranks = stats.rankdata(allv)
    u = ranks[n0:].sum() - n1 * (n1 + 1) / 2
    _, t = np.unique(allv, return_counts=True)
    n = n0 + n1
    var = n1 * n0 / 12 * ((n + 1) - (t ** 3 - t).sum() / (n * (n - 1)))
    if var <= 0:
        return 0.0
    d = u - n1 * n0 / 2
    d = d - 0.5 if d > 0.5 else d + 0.5 if d < -0.5 else 0.0
    return d / np.sqrt(var)


def mode_numpy():
    prefix = simulate("numpy", 31, ["--inert", "2"])
    out = prefix + ".out.h5ad"
    run(prefix, out, 2, ["--calibration-record"])
    fails = []
    with h5py.File(out, "r") as f:
        K = f["var/effect_pvalue"].shape[0]
        indptr, ind = f["X/indptr"][:], f["X/indices"][:]
        for name in ("ps_pvalue", "calibration_score"):
            g = f["layers/" + name]
            if g["indptr"].dtype != np.int32 or g["indices"].dtype != np.int32:
                fails.append("%s: indptr %s, indices %s (want int32)" % (name, g["indptr"].dtype, g["indices"].dtype))
            if not (np.array_equal(g["indptr"][:], indptr) and np.array_equal(g["indices"][:], ind)):
                fails.append("%s: pattern differs from X" % name)
        pv, sc = f["layers/ps_pvalue/data"][:], f["layers/calibration_score/data"][:]
        role = f["obs/calibration_role"][:]
        nulls = [f["uns/pertscore/calibration/null_score_%d" % i][:] for i in (0, 1)]
        zf = [f["var/effect_z_fit0"][:], f["var/effect_z_fit1"][:]]
        ep, fdr = f["var/effect_pvalue"][:], f["var/effect_fdr"][:]
    nrow = np.diff(indptr)
    if np.any(nrow[(role == 0) | (role == 1) | (role == -1)] != 0):
        fails.append("a null or fit control cell carries a perturbation")
    row = np.repeat(np.arange(len(nrow)), nrow)
    held_fit = np.where(role[row] == 3, 0, 1)  # half 1 (role 3) is held out by fit 0
    want_p = np.empty_like(pv)
    for e in range(len(pv)):
        null = nulls[held_fit[e]][:, ind[e]]
        want_p[e] = (1 + (null >= sc[e]).sum()) / (1 + len(null))
    d = np.max(np.abs(want_p - pv))
    print("ps_pvalue vs numpy: max |diff| %.3g over %d cells" % (d, len(pv)))
    if d > 1e-12:
        fails.append("ps_pvalue differs from numpy by %.3g" % d)
    want_z = np.zeros((2, K))
    for fi in (0, 1):
        for k in range(K):
            want_z[fi, k] = ranksum_z(sc[(held_fit == fi) & (ind == k)], nulls[fi][:, k])
    dz = np.nanmax(np.abs(want_z - np.array(zf)))
    # Bonferroni over the two fits, then BH
    want_ep = np.minimum(1, 2 * stats.norm.sf(want_z.max(axis=0)))
    o = np.argsort(want_ep)  # Benjamini-Hochberg, written out
    q = want_ep[o] * K / np.arange(1, K + 1)
    want_fdr = np.empty(K)
    want_fdr[o] = np.minimum.accumulate(q[::-1])[::-1]
    de, dq = np.max(np.abs(want_ep - ep)), np.max(np.abs(want_fdr - fdr))
    print("z vs numpy %.3g, effect_pvalue %.3g, effect_fdr %.3g" % (dz, de, dq))
    for what, x in (("z", dz), ("effect_pvalue", de), ("effect_fdr", dq)):
        if not x <= 1e-10:
            fails.append("%s differs from numpy by %.3g" % (what, x))
    return fails


if __name__ == "__main__":
    fails = {"null": mode_null, "power": mode_power, "ranks": mode_ranks, "numpy": mode_numpy}[sys.argv[1]]()
    for f in fails:
        print("FAIL:", f)
    sys.exit(1 if fails else 0)
