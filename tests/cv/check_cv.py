"""Checks of `pertscore cv --scheme perturbations` against independent numpy (docs/cv.md).

  truth DATA.h5ad OUT.h5ad       predictions = each perturbation's observed mean
                                 log-normalized expression (computed here from the counts)
  from-model CV.h5ad MODEL OUT   predictions = control mean + MODEL's predicted delta
                                 (a --save-predictions results file)
  observed CV.h5ad DATA.h5ad     the saved observed deltas equal numpy's pseudobulk deltas
  perfect CV.h5ad                every held-out perturbation: Pearson delta 1, retrieval 1
  same CV.h5ad MODEL TOL         the predictions model scores as MODEL does (check 6)
  embedding LOWRANK.h5ad NOISE.h5ad   check 3 (per fold on low rank; paired noise test)
"""
import sys

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp


def lognorm_means(path):
    """Mean log-normalized expression per guide label (moi 1 simulations: one label a cell)."""
    a = anndata.read_h5ad(path)
    x = sp.csr_matrix(a.X, dtype=np.float64)
    total = np.asarray(x.sum(axis=1)).ravel()
    x = sp.diags(1e4 / total) @ x
    x.data = np.log1p(x.data)
    labels = a.obs["guide"].astype(str).to_numpy()
    means = {}
    for lab in np.unique(labels):
        if lab == "" or "," in lab:
            continue
        rows = np.flatnonzero(labels == lab)
        means[lab] = np.asarray(x[rows].mean(axis=0)).ravel()
    return means, list(a.var_names)


def write_predictions(path, names, genes, values):
    ad = anndata.AnnData(X=np.asarray(values, dtype=np.float64), dtype=np.float64,
                         obs=pd.DataFrame({"perturbation": names}, index=[f"row{i}" for i in range(len(names))]),
                         var=pd.DataFrame(index=genes))
    ad.write_h5ad(path)


def metrics(path):
    return anndata.read_h5ad(path).uns["cv"]["metrics"]


cmd = sys.argv[1]
if cmd == "truth":
    means, genes = lognorm_means(sys.argv[2])
    names = sorted(k for k in means if k != "NonTargeting")
    write_predictions(sys.argv[3], names, genes, [means[k] for k in names])
    print(f"truth predictions: {len(names)} perturbations x {len(genes)} genes")
elif cmd == "from-model":
    a = anndata.read_h5ad(sys.argv[2])
    control = a.uns["cv"]["control_mean"].ravel()
    pred = a.layers[sys.argv[3]]
    keep = ~np.isnan(pred).all(axis=1)
    values = np.maximum(pred[keep] + control, 0.0)  # the reader refuses negative expression (rounding)
    write_predictions(sys.argv[4], list(a.obs_names[keep]), list(a.var_names), values)
    print(f"{sys.argv[3]} predictions: {keep.sum()} perturbations")
elif cmd == "observed":
    a = anndata.read_h5ad(sys.argv[2])
    means, genes = lognorm_means(sys.argv[3])
    assert list(a.var_names) == genes
    control = means["NonTargeting"]
    worst = np.max(np.abs(a.uns["cv"]["control_mean"].ravel() - control))
    for k, name in enumerate(a.obs_names):
        obs = a.X[k]
        want = means[name] - control
        ok = ~np.isnan(obs)
        assert ok.sum() == len(genes) - 1, f"{name}: the own gene should be the only NaN"
        worst = max(worst, np.max(np.abs(obs[ok] - want[ok])))
    assert worst < 1e-12, f"observed deltas differ from numpy by {worst:.3g}"
    print(f"observed deltas and control mean equal numpy's to {worst:.3g}")
elif cmd == "perfect":
    m = metrics(sys.argv[2])
    p = m[m.model == "predictions"]
    assert len(p) > 0
    assert np.all(np.abs(p.pearson - 1) < 1e-12), p.pearson.min()
    assert np.all(p.retrieval == 1), p.retrieval.min()
    assert np.all(p.overlap_top == 1) and np.all(p.mse < 1e-25)
    print(f"perfect predictions: {len(p)} held-out perturbations, Pearson delta >= {p.pearson.min():.15f}, "
          f"retrieval {p.retrieval.min()}, max MSE {p.mse.max():.3g}")
elif cmd == "same":
    m, model, tol = metrics(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    p = m[m.model == "predictions"].set_index("perturbation")
    q = m[m.model == model].set_index("perturbation").loc[p.index]
    worst = 0.0
    for c in ["mse", "mae", "pearson", "spearman", "sign_fraction", "mse_top", "pearson_top", "overlap_top",
              "r2_top_de", "retrieval"]:
        u, v = p[c].to_numpy(), q[c].to_numpy()
        assert np.array_equal(np.isnan(u), np.isnan(v)), c
        ok = ~np.isnan(u)
        d = np.max(np.abs(u[ok] - v[ok]) / np.maximum(1, np.abs(v[ok]))) if ok.any() else 0
        worst = max(worst, d)
        assert d <= tol, f"{c}: predictions vs {model} differ by {d:.3g}"
    print(f"predictions = {model} baseline: {len(p)} perturbations, every metric within {worst:.3g}")
elif cmd == "embedding":
    lr, nz = anndata.read_h5ad(sys.argv[2]).uns["cv"], anndata.read_h5ad(sys.argv[3]).uns["cv"]
    s = lr["summary"]
    for f in sorted(set(s.fold) - {"all"}):
        e = float(s[(s.fold == f) & (s.model == "embedding")].pearson.iloc[0])
        b = float(s[(s.fold == f) & (s.model == "mean")].pearson.iloc[0])
        print(f"low rank, fold {f}: Pearson delta embedding {e:.4f}, mean baseline {b:.4f}")
        assert e > b, f"fold {f}: the embedding model does not beat the mean baseline"
    m = nz["metrics"]
    e = m[m.model == "embedding"].set_index("perturbation").pearson
    b = m[m.model == "mean"].set_index("perturbation").pearson.loc[e.index]
    d = (e - b).to_numpy()
    se = d.std(ddof=1) / np.sqrt(len(d))
    print(f"pure noise: Pearson delta embedding {e.mean():.4f}, mean baseline {b.mean():.4f}; "
          f"paired difference {d.mean():+.4f} (standard error {se:.4f}, {len(d)} perturbations)")
    assert d.mean() < 2 * se, "on pure noise the embedding beats the mean baseline by more than noise"
else:
    sys.exit(f"unknown command {cmd}")
