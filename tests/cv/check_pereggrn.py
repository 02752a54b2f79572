"""PEREGGRN's conventions (docs/cv.md) against their definitions in numpy/scipy, as the
PEREGGRN evaluator writes them (ekernf01/pereggrn, pereggrn/evaluator.py, METRICS):
sums of squared errors (norm ** 2) over the genes and over the top n = 20, 100, 200 by
|observed| with scipy's rankdata(-|o|) <= n (average ranks), their means, and
mean(sign(o) == sign(p)) over all genes; here over the genes except the perturbed one.

usage: check_pereggrn.py CV.h5ad   (a --save-predictions file: X = observed deltas, layers = predicted)
"""
import sys

import anndata
import numpy as np
from scipy.stats import rankdata

a = anndata.read_h5ad(sys.argv[1])
cv = a.uns["cv"]
table = cv["pereggrn"]
worst, rows = 0.0, 0
for model in ["mean", "median", "zero", "embedding"]:
    t = table[table.model == model].set_index("perturbation")
    pred = a.layers[model]
    for k, name in enumerate(a.obs_names):
        if a.obs.fold.iloc[k] < 0:
            continue
        o, p = a.X[k], pred[k]
        keep = ~np.isnan(o)  # the perturbed gene is NaN in X
        o, p = o[keep], p[keep]
        want = {"mse_sum": np.linalg.norm(o - p) ** 2,
                "proportion_correct_direction": np.mean(np.sign(o) == np.sign(p))}
        for n in (20, 100, 200):
            top = rankdata(-np.abs(o)) <= n
            want[f"mse_top_{n}_sum"] = np.linalg.norm((o - p)[top]) ** 2
            want[f"mse_top_{n}"] = want[f"mse_top_{n}_sum"] / top.sum()
        for c, v in want.items():
            d = abs(t.loc[name, c] - v) / max(1.0, abs(v))
            worst = max(worst, d)
            assert d < 1e-10, f"{model} {name} {c}: {t.loc[name, c]} vs numpy {v}"
        rows += 1
s = cv["pereggrn_summary"]
m = cv["metrics"]
comp = set(a.obs_names[a.obs.compared.astype(bool)])
for model in s.index:
    t = table[(table.model == model) & table.perturbation.isin(comp)]
    for c in ["mse_sum", "mse_top_20", "proportion_correct_direction"]:
        assert abs(s.loc[model, c] - t[c].mean()) <= 1e-12 * max(1, abs(t[c].mean())), (model, c)
        assert s.loc[model, f"n_{c}"] == t[c].notna().sum()
# the ceiling: squared errors of the split halves / 4; the direction as our sign fraction's correction
raw = table[table.model == "split_half"].set_index("perturbation")
ceil = table[table.model == "ceiling"].set_index("perturbation").loc[raw.index]
for c in ["mse_sum", "mse_top_20", "mse_top_200_sum"]:
    assert np.allclose(ceil[c], raw[c] / 4, rtol=1e-14, atol=0), c
# mean(sign) over all genes equals our sign_fraction where no observed change is exactly 0
ours = m[m.model == "embedding"].set_index("perturbation").sign_fraction
pg = table[table.model == "embedding"].set_index("perturbation").proportion_correct_direction.loc[ours.index]
print(f"PEREGGRN conventions: {rows} (perturbation, model) rows equal numpy's within {worst:.3g}; the summary's "
      f"means and counts; the ceiling = split half / 4; embedding direction {pg.mean():.4f} (ours {ours.mean():.4f})")
