"""cv --scheme perturbations --control-by COL: each cell against its own group's controls.

usage: check_control_by.py DATA.h5ad CV.h5ad COL [NO_GROUPS.h5ad]
Recomputes from the counts (ln(1 + 1e4 x / total)) every perturbation's observed
delta as the mean over its cells j of x_j - c_b(j), c_b the mean of the control
cells of j's group b of obs column COL, and the control mean as the mean of all
control cells (docs/cv.md "Groups"); CV.h5ad (written with --save-predictions)
must hold these in X and uns/cv/control_mean to 1e-10. With NO_GROUPS.h5ad (the
same run without --control-by) the deltas there must differ from the grouped ones
(the screen has basal shifts per group, so the check can tell them apart)."""
import sys

import anndata
import numpy as np
import scipy.sparse as sp

data_path, cv_path, column = sys.argv[1:4]
plain_path = sys.argv[4] if len(sys.argv) > 4 else None
a = anndata.read_h5ad(data_path)
x = sp.csr_matrix(a.X, dtype=np.float64)
total = np.asarray(x.sum(axis=1)).ravel()
x = sp.diags(1e4 / total) @ x
x.data = np.log1p(x.data)
x = x.toarray()
labels = a.obs["guide"].astype(str).to_numpy()
group = a.obs[column].astype(str).to_numpy()
control = labels == "NonTargeting"
c_all = x[control].mean(axis=0)
own = {g: x[control & (group == g)].mean(axis=0) for g in set(group)}
shift = np.stack([own[g] for g in group])

cv = anndata.read_h5ad(cv_path)
obs = cv.X
worst = 0.0
for i, k in enumerate(cv.obs_names):
    cells = labels == k
    want = (x[cells] - shift[cells]).mean(axis=0)
    got = obs[i]
    ok = ~np.isnan(got)
    assert ok.sum() >= len(got) - 1, f"{k}: more than the own gene missing"
    worst = max(worst, np.max(np.abs(got[ok] - want[ok])))
d_control = np.max(np.abs(np.asarray(cv.uns["cv"]["control_mean"]).ravel() - c_all))
assert worst < 1e-10 and d_control < 1e-10, (worst, d_control)
print(f"{cv.n_obs} deltas against each cell's own group's controls equal numpy's (max difference {worst:.2g}); "
      f"control mean {d_control:.2g}")
if plain_path:
    plain = anndata.read_h5ad(plain_path).X
    gap = np.nanmax(np.abs(plain - obs))
    assert gap > 1e-3, f"without --control-by the deltas are the same ({gap:.2g}): the check cannot tell them apart"
    print(f"without --control-by the deltas differ by up to {gap:.3g}")
