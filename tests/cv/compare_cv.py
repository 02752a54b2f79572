"""Check 5: two pertscore cv results files hold the same tables (docs/cv.md "Output").

usage: compare_cv.py A.h5ad B.h5ad TOL
Numbers agree to TOL relative (max(1, |a|) scaled; NaN only where NaN); every
string, fold and count agrees exactly. Parameters (ranks, seconds, command) are
not compared."""
import sys

import anndata
import numpy as np
import pandas as pd

a_path, b_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
a, b = anndata.read_h5ad(a_path), anndata.read_h5ad(b_path)
worst = 0.0


def same_frame(name, x, y):
    global worst
    assert list(x.index) == list(y.index), f"{name}: the rows differ"
    assert list(x.columns) == list(y.columns), f"{name}: the columns differ"
    for c in x.columns:
        u, v = x[c].to_numpy(), y[c].to_numpy()
        if u.dtype.kind == "f":
            assert np.array_equal(np.isnan(u), np.isnan(v)), f"{name}.{c}: NaN in different places"
            ok = ~np.isnan(u)
            if ok.any():
                d = np.max(np.abs(u[ok] - v[ok]) / np.maximum(1.0, np.abs(u[ok])))
                worst = max(worst, d)
                assert d <= tol, f"{name}.{c}: differs by {d:.3g} (tolerance {tol})"
        else:
            assert np.array_equal(u, v), f"{name}.{c}: values differ"


same_frame("obs", a.obs, b.obs)
assert list(a.var_names) == list(b.var_names), "var differs"
same_frame("var", a.var, b.var)
cv_a, cv_b = a.uns["cv"], b.uns["cv"]
assert cv_a["scheme"] == cv_b["scheme"]
tables = 0
for key in sorted(cv_a):
    if key in ("parameters", "version"):
        continue
    x, y = cv_a[key], cv_b[key]
    if isinstance(x, pd.DataFrame):
        same_frame(key, x, y)
        tables += 1
    elif isinstance(x, np.ndarray) and x.dtype.kind == "f":
        d = np.max(np.abs(x - y) / np.maximum(1.0, np.abs(x))) if x.size else 0.0
        worst = max(worst, d)
        assert d <= tol, f"{key}: differs by {d:.3g}"
    else:
        assert np.array_equal(np.asarray(x), np.asarray(y)), f"{key}: differs"
print(f"{a_path} vs {b_path}: {tables} tables agree; largest relative difference {worst:.3g}")
