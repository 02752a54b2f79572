"""Do with a pertscore output file what an anndata user does, with the real anndata.

usage: anndata_user.py RESULTS.h5ad [OTHER.h5ad]

On the file: every CSR matrix (X, layers/*) stores indices and indptr with one
integer type (scipy refuses to index a matrix whose two differ); then, with
anndata, subset by var names (one and several), by a list of obs names, by a
boolean obs mask and by a boolean var mask, to_df() of a cells x perturbations
subset, anndata.concat of this file with OTHER (or with itself, obs names made
unique), write_h5ad and read again. Every subset's X must equal the same slice
of the dense X (computed here from the raw arrays with numpy, not with scipy's
indexing); the written copy must hold the same obs, var and X. Exits 1 on the
first failure.
"""
import os
import sys
import tempfile
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")


def fail(path, msg):
    print(f"FAIL: {path}: {msg}", file=sys.stderr)
    sys.exit(1)


def raw_dense(path, group):
    """The CSR at group as a dense numpy array, built from its arrays by hand."""
    with h5py.File(path, "r") as f:
        g = f[group]
        n, m = (int(v) for v in g.attrs["shape"])
        indptr, indices, data = g["indptr"][:], g["indices"][:], g["data"][:]
        if indptr.dtype != indices.dtype:
            fail(path, f"/{group}: indptr is {indptr.dtype}, indices {indices.dtype}; "
                       "anndata/scipy need one type")
        want = np.int32 if max(len(data), m) <= np.iinfo(np.int32).max else np.int64
        if indptr.dtype != want:
            fail(path, f"/{group}: index type {indptr.dtype}, scipy would use {np.dtype(want)}")
    dense = np.zeros((n, m))
    for i in range(n):
        dense[i, indices[indptr[i]:indptr[i + 1]]] = data[indptr[i]:indptr[i + 1]]
    return dense


def csr_groups(path):
    out = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and obj.attrs.get("encoding-type") in ("csr_matrix", b"csr_matrix"):
                out.append(name)
        f.visititems(visit)
    return out


def dense_of(x):
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def same(a, b):
    return a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b)) and \
        np.allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=0, atol=0)


def check(path, other):
    groups = csr_groups(path)
    dense = {g: raw_dense(path, g) for g in groups}
    a = ad.read_h5ad(path)
    n, m = a.shape
    # a file without X (pertscore cv without --save-predictions): the same
    # operations on obs and var, with an all-NaN stand-in to compare shapes
    X = dense.get("X", dense_of(a.X) if a.X is not None else np.full((n, m), np.nan))
    if a.X is None:
        a.X = X.copy()
    obs, var = list(a.obs_names), list(a.var_names)
    rng = np.random.default_rng(0)
    one = var[m // 2]
    try:
        got = dense_of(a[:, [one]].X)
        if not same(got, X[:, [m // 2]]):
            fail(path, f"a[:, [{one!r}]].X differs from column {m // 2} of X")
        cols = sorted(rng.choice(m, size=min(m, 3), replace=False))
        got = dense_of(a[:, [var[c] for c in cols]].X)
        if not same(got, X[:, cols]):
            fail(path, "a[:, var names].X differs from those columns of X")
        rows = sorted(rng.choice(n, size=min(n, 25), replace=False))
        sub = a[[obs[r] for r in rows]]
        if not same(dense_of(sub.X), X[rows]):
            fail(path, "a[list of obs names].X differs from those rows of X")
        mask = rng.random(n) < 0.3
        if not same(dense_of(a[mask].X), X[mask]):
            fail(path, "a[boolean obs mask].X differs from those rows of X")
        vmask = np.arange(m) % 2 == 0
        if not same(dense_of(a[:, vmask].X), X[:, vmask]):
            fail(path, "a[:, boolean var mask].X differs from those columns of X")
        df = a[[obs[r] for r in rows], [var[c] for c in cols]].to_df()
        if list(df.index) != [obs[r] for r in rows] or list(df.columns) != [var[c] for c in cols]:
            fail(path, "to_df() of a cells x perturbations subset has the wrong labels")
        if not same(df.to_numpy(dtype=float), X[np.ix_(rows, cols)]):
            fail(path, "to_df() of a cells x perturbations subset has the wrong values")
        for name in a.obs.columns:  # every obs column survives subsetting
            if len(a[mask].obs[name]) != int(mask.sum()):
                fail(path, f"obs column {name} has the wrong length after subsetting")
    except ValueError as e:
        fail(path, f"subsetting raised ValueError: {e}")
    # concat of two results
    if other:
        b = ad.read_h5ad(other)
    else:
        b = a.copy()
        b.obs_names = [f"{s}-copy" for s in b.obs_names]
    try:
        both = ad.concat([a, b], join="outer", index_unique=None if not other else "-")
    except Exception as e:  # noqa: BLE001 (any failure is the finding)
        fail(path, f"anndata.concat of two results failed: {type(e).__name__}: {e}")
    if both.n_obs != a.n_obs + b.n_obs:
        fail(path, f"concat has {both.n_obs} cells, expected {a.n_obs + b.n_obs}")
    top = dense_of(both[: a.n_obs, var].X)
    if not same(top, X):
        fail(path, "concat: the first file's rows changed")
    # write back and read again
    fd, tmp = tempfile.mkstemp(suffix=".h5ad", dir=".")
    os.close(fd)
    try:
        a.write_h5ad(tmp)
        r = ad.read_h5ad(tmp)
        if list(r.obs_names) != obs or list(r.var_names) != var:
            fail(path, "written copy has other obs/var names")
        if not same(dense_of(r.X), X):
            fail(path, "written copy has another X")
        for name in a.obs.columns:
            if not pd.Series(r.obs[name]).equals(pd.Series(a.obs[name])):
                fail(path, f"written copy changed obs column {name}")
        dense_of(r[:, [one]].X)
    finally:
        os.unlink(tmp)
    print(f"  anndata user checks on {path}: {n} x {m}, CSR {groups or 'none'}; "
          f"subset by names/lists/masks, to_df, concat, write+read OK")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    check(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
