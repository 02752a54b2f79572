#!/usr/bin/python3
"""How far is `--preset accurate` from the best score of its kind? (docs/method.md, SPEC section 9)

usage: oracle_scores.py PREFIX
  PREFIX.h5ad, PREFIX.truth.tsv, PREFIX.effects.tsv: a `pertscore simulate` screen at MOI 1;
  PREFIX.acc.h5ad: `pertscore run --preset accurate --no-dosage --permutations 0` on it.

Pearson of the per-cell score with the true efficiency over perturbed cells, each score
divided by its perturbation's maximum (as `run` rescales):
  run          the results file's own entries, by (cell, perturbation) of the truth table
  spec         section 9 recomputed here from the file's beta, basal row, targets and scale
               (one perturbation per cell: psi = clip((sum w r B - lambda) / sum w B^2, 0, .)),
               weights recomputed from the residuals as SPEC 9.5 says; "none": w = 1;
               "controls": residual variance over control cells only
  linear oracle the same family given what no method knows: the simulator's true genes
               (own gene + downstream), beta and intercept the least-squares fit of each gene
               on the *true* efficiency (controls at 0), weights 1 / its residual variance
  count oracle  outside the family: per-cell maximum likelihood of e on a grid (0..1.5) under
               mu_g = total * p0_g * exp(e * lfc_g) with the true lfc, control proportions p0
               and Poisson or negative-binomial (dispersion 0.1, the simulator's) counts
"""
import sys

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp


def rescaled_pearson(ps, kidx, e, ctrl):
    ps = ps.copy()
    for k in np.unique(kidx[~ctrl]):
        m = kidx == k
        if ps[m].max() > 0:
            ps[m] /= ps[m].max()
    return np.corrcoef(ps[~ctrl], e[~ctrl])[0, 1]


def main(pre):
    with h5py.File(pre + ".h5ad", "r") as f:
        x = sp.csr_matrix((f["X/data"][:], f["X/indices"][:], f["X/indptr"][:]), shape=tuple(f["X"].attrs["shape"]))
        cells = pd.Index(f["obs/_index"].asstr()[:])
        genes = pd.Index(f["var/_index"].asstr()[:])
    with h5py.File(pre + ".acc.h5ad", "r") as f:
        B = f["varm/beta"][:]
        b0 = f["uns/pertscore/basal"][0]
        rg = pd.Index(f["uns/pertscore/regression_genes"].asstr()[:])
        names = list(f["var/_index"].asstr()[:])
        tg = f["uns/pertscore/targets/gene"].asstr()[:]
        tp = f["uns/pertscore/targets/perturbation"].asstr()[:]
        s = float(f["uns/pertscore/parameters/scale_value"][()])
        lam = float(f["uns/pertscore/parameters/lambda"][()])
        X = f["X"]
        run_ps = sp.csr_matrix((X["data"][:], X["indices"][:], X["indptr"][:]), shape=tuple(X.attrs["shape"]))
        run_cells = pd.Index(f["obs/_index"].asstr()[:])
    truth = pd.read_csv(pre + ".truth.tsv", sep="\t")
    if truth.cell.duplicated().any():
        sys.exit("oracle_scores.py: MOI 1 screens only (a cell appears twice in the truth table)")
    ci = cells.get_indexer(truth.cell)
    e = truth.efficiency.to_numpy().astype(float)
    kidx = np.array([names.index(p) if p in names else -1 for p in truth.perturbation])
    ctrl = kidx < 0
    tot = np.asarray(x.sum(1)).ravel()
    out = {}
    rv = np.zeros(len(e))
    rows, cols = run_cells.get_indexer(truth.cell[~ctrl]), kidx[~ctrl]
    rv[~ctrl] = np.nan_to_num(np.asarray(run_ps[rows, cols]).ravel())
    out["run"] = np.corrcoef(rv[~ctrl], e[~ctrl])[0, 1]
    # section 9 recomputed
    Y = np.log1p(np.asarray(x[:, genes.get_indexer(rg)].todense()) * (s / tot)[:, None])[ci]
    own = {k: rg.get_indexer(tg[tp == n]) for k, n in enumerate(names)}
    fit = b0 + np.where(ctrl[:, None], 0, B[np.maximum(kidx, 0)])

    def weights(v):
        v = np.maximum(v, 0.1 * np.median(v))
        return (1 / v) / np.mean(1 / v)

    def spec(w):
        ps = np.zeros(len(e))
        for k in range(len(names)):
            m, g = kidx == k, own[k]
            r, bk = Y[m][:, g] - b0[g], B[k, g]
            ps[m] = np.clip(((r * w[g] * bk).sum(1) - lam) / (w[g] * bk ** 2).sum(), 0, None)
        return rescaled_pearson(ps, kidx, e, ctrl)

    out["spec"] = spec(weights(((Y - fit) ** 2).mean(0)))
    out["spec, none"] = spec(np.ones(len(rg)))
    out["spec, controls"] = spec(weights(((Y[ctrl] - b0) ** 2).mean(0)))
    # oracles over the true genes
    effs = pd.read_csv(pre + ".effects.tsv", sep="\t")
    allg = pd.Index(sorted(set(effs.gene)))
    xa = np.asarray(x[:, genes.get_indexer(allg)].todense())[ci]
    ya = np.log1p(xa * (s / tot[ci])[:, None])
    for weighted in (False, True):
        ps = np.zeros(len(e))
        for k, n in enumerate(names):
            m, mm = kidx == k, (kidx == k) | ctrl
            g = allg.get_indexer(effs.gene[effs.perturbation == n])
            A = np.c_[np.ones(mm.sum()), np.where(ctrl, 0, e)[mm]]
            coef = np.linalg.lstsq(A, ya[mm][:, g], rcond=None)[0]
            w = 1 / ((ya[mm][:, g] - A @ coef) ** 2).mean(0) if weighted else 1.0
            ps[m] = np.clip(((ya[m][:, g] - coef[0]) * w * coef[1]).sum(1) / (w * coef[1] ** 2).sum(), 0, None)
        out["linear oracle" + (", weighted" if weighted else "")] = rescaled_pearson(ps, kidx, e, ctrl)
    p0 = xa[ctrl].sum(0) / tot[ci][ctrl].sum()
    grid = np.linspace(0, 1.5, 151)
    for disp in (0.0, 0.1):
        ps = np.zeros(len(e))
        for k, n in enumerate(names):
            m = kidx == k
            sub = effs[effs.perturbation == n]
            g, l = allg.get_indexer(sub.gene), sub.log_fold_change.to_numpy()
            xx, mu0 = xa[m][:, g], tot[ci][m][:, None] * p0[g][None, :]
            ll = []
            for ev in grid:
                mu = mu0 * np.exp(ev * l)
                ll.append((xx * np.log(mu) - (mu if disp == 0 else (xx + 1 / disp) * np.log(mu + 1 / disp))).sum(1))
            ps[m] = grid[np.argmax(np.array(ll), 0)]
        out["count oracle, " + ("Poisson" if disp == 0 else "NB 0.1")] = np.corrcoef(ps[~ctrl], e[~ctrl])[0, 1]
    for k, v in out.items():
        print("%-24s %.4f" % (k, v))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
