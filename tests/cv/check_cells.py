"""Check 4: `pertscore cv --scheme cells` against an independent numpy ridge (docs/cv.md).

usage: check_cells.py DATA.h5ad TARGETS.gmt CV.h5ad SUMMARY.tsv [CONTROL_BY]
Rebuilds the regression genes (targets expressed in >= 1% of cells), the type-7
95th-percentile winsorizing, the design [1 | D] and, with the folds the results
file records, every fold's ridge beta for every lambda of the grid; the held-out
MSE and R^2 (all cells and per perturbation) must equal the written tables to
1e-8, and the chosen lambda must be the least pooled MSE of the written curve.
With CONTROL_BY (cv --control-by COL) the design is [intercepts | D]: a cell of
basal group b (sorted labels of obs column COL) has its intercept in column 0 for
b = 0 and in column K + b otherwise, as run's ridge (docs/cv.md "Groups")."""
import sys

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp

data_path, gmt_path, cv_path, tsv_path = sys.argv[1:5]
control_by = sys.argv[5] if len(sys.argv) > 5 else None
a = anndata.read_h5ad(data_path)
cv = anndata.read_h5ad(cv_path)
u = cv.uns["cv"]

x = sp.csr_matrix(a.X, dtype=np.float64)
total = np.asarray(x.sum(axis=1)).ravel()
x = sp.diags(1e4 / total) @ x
x.data = np.log1p(x.data)
labels = a.obs["guide"].astype(str).to_numpy()
assert list(cv.obs_names) == list(a.obs_names), "the simulation's cells are all analysed, in file order"

targets = set()
for line in open(gmt_path):
    targets.update(line.rstrip("\n").split("\t")[2:])
genes = list(a.var_names)
cand = sorted(genes.index(t) for t in targets)
y = x[:, cand].toarray()
expressed = (y > 0).mean(axis=0) >= 0.01
reg = [c for c, e in zip(cand, expressed) if e]
assert [genes[g] for g in reg] == list(u["regression_genes"]), "regression genes differ"
y = y[:, expressed]
y = np.minimum(y, np.quantile(y, 0.95, axis=0))  # numpy's default is R type 7

names = sorted(set(labels) - {"NonTargeting"})
K, N = len(names), y.shape[1]
basal = np.zeros(len(labels), dtype=int)
if control_by:
    col = a.obs[control_by].astype(str).to_numpy()
    basal = np.searchsorted(sorted(set(col)), col)
n_basal = basal.max() + 1
X = np.zeros((len(labels), K + n_basal))
X[np.arange(len(labels)), np.where(basal == 0, 0, K + basal)] = 1
for i, lab in enumerate(labels):
    if lab != "NonTargeting":
        X[i, 1 + names.index(lab)] = 1
fold = cv.obs["fold"].to_numpy()
lambdas = u["ridge_lambdas"].ravel()
F = fold.max() + 1
sse = np.zeros((F + 1, len(lambdas), K + 2))
sst = np.zeros((F + 1, K + 2))
count = np.zeros((F + 1, K + 2))
group = np.array([K if lab == "NonTargeting" else names.index(lab) for lab in labels])
for f in range(F):
    tr, te = fold != f, fold == f
    ybar = y[tr].mean(axis=0)
    for g in range(K + 1):
        sel = te & (group == g)
        sst[f, g] = ((y[sel] - ybar) ** 2).sum()
        count[f, g] = sel.sum()
    sst[f, K + 1] = ((y[te] - ybar) ** 2).sum()
    count[f, K + 1] = te.sum()
    for l, lam in enumerate(lambdas):
        B = np.linalg.solve(X[tr].T @ X[tr] + lam * np.eye(X.shape[1]), X[tr].T @ y[tr])
        err = ((y[te] - X[te] @ B) ** 2).sum(axis=1)
        for g in range(K + 1):
            sse[f, l, g] = err[group[te] == g].sum()
        sse[f, l, K + 1] = err.sum()
sse[F], sst[F], count[F] = sse[:F].sum(axis=0), sst[:F].sum(axis=0), count[:F].sum(axis=0)
mse = sse / (count[:, None, :] * N)
r2 = 1 - sse / sst[:, None, :]

groups = u["groups"]
want_mse = mse.reshape(-1)
want_r2 = r2.reshape(-1)
assert len(groups) == want_mse.size
d_mse = np.max(np.abs(groups.mse.to_numpy() - want_mse) / np.abs(want_mse))
d_r2 = np.max(np.abs(groups.r2.to_numpy() - want_r2) / np.maximum(1, np.abs(want_r2)))
assert d_mse < 1e-8 and d_r2 < 1e-8, (d_mse, d_r2)
print(f"held-out MSE and R^2 of {F} folds x {len(lambdas)} lambdas x {K + 2} groups equal numpy's "
      f"(max relative difference {d_mse:.2g}, {d_r2:.2g})")

curve = pd.read_csv(tsv_path, sep="\t", float_precision="round_trip")
pooled = curve[curve.fold == "all"].reset_index(drop=True)
chosen = float(u["chosen_ridge_lambda"])
# the TSV's numbers are %.6g: one row is marked chosen, it is the file's chosen lambda
# printed so, its printed MSE is the least, and it is the argmin of the file's curve
rows = [i for i in range(len(pooled)) if pooled.chosen[i] == 1]
assert len(rows) == 1, pooled.chosen.tolist()
best = rows[0]
assert pooled.ridge_lambda[best] == float(f"{chosen:.6g}"), (pooled.ridge_lambda[best], chosen)
assert pooled.mse[best] == pooled.mse.min(), (pooled.mse[best], pooled.mse.min())
assert np.argmin(mse[F, :, K + 1]) == best
print("pooled held-out MSE curve (ridge lambda: mse):")
for lam, m in zip(pooled.ridge_lambda, pooled.mse):
    print(f"  {lam:10.4g}: {m:.10f}{'  <- chosen' if lam == chosen else ''}")
ps = u["ps_stability"]
r_all = float(ps[(ps.fold == "all") & (ps.perturbation == "all")].pearson.iloc[0])
n_all = int(ps[(ps.fold == "all") & (ps.perturbation == "all")].n.iloc[0])
assert n_all == int((labels != "NonTargeting").sum()), n_all
print(f"held-out vs full-data PS at lambda {chosen:g}: Pearson {r_all:.4f} over {n_all} entries")
assert 0.5 < r_all <= 1
