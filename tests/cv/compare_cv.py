"""Check 5: two cross-validation results hold the same tables (docs/cv.md "Output").

usage: compare_cv.py A.h5ad B.h5ad TOL
Each file is a `pertscore cv` file (the scheme's obs and var are the file's) or a
`pertscore run --cv` results file (they are uns/cv/obs and uns/cv/var).
Numbers agree to TOL relative (max(1, |a|) scaled; NaN only where NaN); every
string, fold and count agrees exactly. Parameters (ranks, seconds, command) are
not compared."""
import sys

import anndata
import numpy as np
import pandas as pd

a_path, b_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
worst = 0.0


def tables(path):
    """(obs, var names, var, uns/cv without obs and var) of either kind of file."""
    f = anndata.read_h5ad(path)
    cv = dict(f.uns["cv"])
    if "obs" in cv:  # pertscore run --cv
        obs, var = cv.pop("obs"), cv.pop("var")
        return obs, list(var.index), var, cv
    return f.obs, list(f.var_names), f.var, cv


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


obs_a, names_a, var_a, cv_a = tables(a_path)
obs_b, names_b, var_b, cv_b = tables(b_path)
same_frame("obs", obs_a, obs_b)
assert names_a == names_b, "var differs"
same_frame("var", var_a, var_b)
assert cv_a["scheme"] == cv_b["scheme"]
assert sorted(cv_a) == sorted(cv_b), f"uns/cv holds different elements: {sorted(cv_a)} vs {sorted(cv_b)}"
n_tables = 0
for key in sorted(cv_a):
    if key in ("parameters", "version"):
        continue
    x, y = cv_a[key], cv_b[key]
    if isinstance(x, pd.DataFrame):
        same_frame(key, x, y)
        n_tables += 1
    elif isinstance(x, np.ndarray) and x.dtype.kind == "f":
        d = np.max(np.abs(x - y) / np.maximum(1.0, np.abs(x))) if x.size else 0.0
        worst = max(worst, d)
        assert d <= tol, f"{key}: differs by {d:.3g}"
    else:
        assert np.array_equal(np.asarray(x), np.asarray(y)), f"{key}: differs"
print(f"{a_path} vs {b_path}: {n_tables} tables agree; largest relative difference {worst:.3g}")
