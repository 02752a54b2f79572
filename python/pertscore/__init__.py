"""Read pertscore results files in Python (pure Python: anndata, h5py, pandas, numpy, scipy).

    import pertscore
    res = pertscore.read("results.h5ad")                   # the results as AnnData
    adata = pertscore.read("results.h5ad", "screen.h5ad")  # the expression, PS columns joined on obs
    long = pertscore.cells("results.h5ad")                 # one row per (cell, carried perturbation)
    B = pertscore.beta("results.h5ad")                     # perturbations x regression genes

The per-cell columns (docs/python.md): ``perturbation`` (categorical; the control
label for control cells; '+'-joined labels at MOI > 1), ``guide``, ``n_guides``,
``ps`` (PS of the cell's perturbation; at MOI > 1 the largest, NaN for control
cells), ``ps_perturbation`` (the perturbation that PS belongs to). A results file
written by a pertscore that stores them in ``obs`` is read as is; for older files
they are computed here from ``X`` and ``obs/perturbations`` (``guide`` is then
missing and ``n_guides`` the number of perturbations: those files hold no guides).

``X`` is always returned with ``indices`` and ``indptr`` of one dtype, so that
anndata subsetting (``a[:, ["G1"]]``, ``a[cells]``, ``.to_df()``) works on files
whose X stores int32 indices with int64 indptr.
"""
import warnings

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["read", "cells", "beta", "targets", "parameters", "CELL_COLUMNS"]
__version__ = "0.1.0"

#: the per-cell columns read() puts on obs
CELL_COLUMNS = ("perturbation", "guide", "n_guides", "ps", "ps_perturbation", "ps_pvalue")


# ---------------------------------------------------------------- h5py helpers

def _str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _str(v.item())
    return v


def _strings(ds):
    return np.array([_str(v) for v in np.atleast_1d(ds[()])], dtype=object)


def _column(node):
    """One AnnData data-frame column (categorical, strings or numbers) as a numpy array / Categorical."""
    if isinstance(node, h5py.Group):  # categorical: codes + categories
        cats = _strings(node["categories"])
        codes = node["codes"][()].astype(np.int64)
        return pd.Categorical.from_codes(codes, categories=cats)
    if node.dtype.kind in "SOU":
        return _strings(node)
    return node[()]


def _frame(group):
    index_name = _str(group.attrs.get("_index", "_index"))
    index = _strings(group[index_name])
    order = [_str(c) for c in np.atleast_1d(group.attrs.get("column-order", []))]
    names = [c for c in order if c in group] + sorted(c for c in group if c not in order and c != index_name)
    return pd.DataFrame({c: _column(group[c]) for c in names}, index=pd.Index(index, dtype=object))


def _csr(f, name, shape=None):
    """A CSR group as scipy.sparse.csr_matrix with indices and indptr of one dtype (int64)."""
    g = f[name]
    if shape is None:
        shape = tuple(int(s) for s in g.attrs["shape"])
    return sp.csr_matrix((g["data"][()], g["indices"][()].astype(np.int64), g["indptr"][()].astype(np.int64)),
                         shape=shape)


def _open(results):
    if isinstance(results, h5py.File):
        return results, False
    try:
        return h5py.File(results, "r"), True
    except OSError as e:
        raise OSError(f"pertscore: {results}: cannot open as HDF5 ({e})") from None


def _check(f):
    missing = [p for p in ("X", "obs", "var", "uns/pertscore") if p not in f]
    if missing:
        raise ValueError(f"pertscore: {f.filename}: not a pertscore results file (missing {', '.join(missing)})")


def _uns_tree(node):
    """uns/pertscore as nested dicts of scalars / arrays (strings decoded)."""
    if isinstance(node, h5py.Group):
        return {k: _uns_tree(node[k]) for k in node}
    v = node[()]
    if isinstance(v, bytes) or (isinstance(v, np.ndarray) and v.dtype.kind in "SO"):
        return _str(v) if np.ndim(v) == 0 else _strings(node)
    if isinstance(v, np.ndarray) and v.shape == ():
        return v.item()
    return v


# ---------------------------------------------------------------- the per-cell table

def _control_label(f):
    p = "uns/pertscore/parameters/control"
    return _str(f[p][()]) if p in f else "control"


def _var_lookup(var):
    """label -> column of X; with --group-by the labels are P@group (var columns perturbation, group)."""
    index = {n: k for k, n in enumerate(var.index)}
    pairs = None
    if "perturbation" in var and "group" in var:
        pairs = {(str(p), str(g)): k for k, (p, g) in enumerate(zip(var["perturbation"], var["group"]))}
    return index, pairs


def _carried(f, obs, var):
    """Per analysed cell the list of (label, column of X or -1) it carries, from obs/perturbations."""
    index, pairs = _var_lookup(var)
    group_col = _str(f["uns/pertscore/parameters/group_by"][()]) if "uns/pertscore/parameters/group_by" in f else None
    groups = obs[group_col].astype(str).to_numpy() if group_col and group_col in obs else None
    labels = obs["perturbations"].astype(str).to_numpy() if "perturbations" in obs else np.full(len(obs), "")
    out = []
    for j, lab in enumerate(labels):
        items = [t for t in lab.split(",") if t] if lab and lab != "nan" else []
        row = []
        for t in items:
            k = index.get(t, -1)
            if k < 0 and pairs is not None and groups is not None:
                k = pairs.get((t, groups[j]), -1)
            row.append((t, k))
        out.append(row)
    return out


def _entry(m, j, k):
    """m[j, k] of a CSR matrix with sorted or unsorted indices; NaN if not stored."""
    lo, hi = m.indptr[j], m.indptr[j + 1]
    hit = np.nonzero(m.indices[lo:hi] == k)[0]
    return float(m.data[lo + hit[0]]) if len(hit) else np.nan


def _cell_frame(f, obs, var, X, P):
    """The per-cell columns, from obs when the file has them, computed from X / obs otherwise."""
    n = len(obs)
    have = [c for c in ("perturbation", "guide", "n_guides", "ps", "ps_perturbation") if c in obs]
    carried = _carried(f, obs, var)
    control = _control_label(f)
    out = pd.DataFrame(index=obs.index)
    if "perturbation" in have:
        out["perturbation"] = obs["perturbation"]
    else:
        lab = ["+".join(t for t, _ in row) if row else control for row in carried]
        out["perturbation"] = pd.Categorical(lab)
    if "guide" in have:
        out["guide"] = obs["guide"]
    else:  # results files before the per-cell columns hold no guide names
        out["guide"] = pd.Categorical([np.nan] * n, categories=[])
    if "n_guides" in have:
        out["n_guides"] = obs["n_guides"]
    else:
        out["n_guides"] = np.array([len(row) for row in carried], dtype=np.int64)
    ps = np.full(n, np.nan)
    best = np.full(n, None, dtype=object)
    pv = np.full(n, np.nan)
    for j, row in enumerate(carried):
        for t, k in row:
            v = _entry(X, j, k) if k >= 0 else np.nan
            if np.isnan(v):
                v = 0.0 if k >= 0 else np.nan  # carried but not stored: PS 0 (SPEC section 3)
            if not np.isnan(v) and (np.isnan(ps[j]) or v > ps[j]):
                ps[j], best[j] = v, t
                pv[j] = _entry(P, j, k) if P is not None else np.nan
    out["ps"] = obs["ps"].to_numpy(dtype=float) if "ps" in have else ps
    if "ps_perturbation" in have:
        out["ps_perturbation"] = obs["ps_perturbation"]
    else:
        out["ps_perturbation"] = pd.Categorical(best)
    if "ps_pvalue" in obs:
        out["ps_pvalue"] = obs["ps_pvalue"].to_numpy(dtype=float)
    else:
        out["ps_pvalue"] = pv
    return out, carried


def _load(f):
    _check(f)
    obs, var = _frame(f["obs"]), _frame(f["var"])
    X = _csr(f, "X", (len(obs), len(var)))
    P = _csr(f, "layers/ps_pvalue", (len(obs), len(var))) if "layers/ps_pvalue" in f else None
    return obs, var, X, P


# ---------------------------------------------------------------- public API

def read(results, expression=None, prefix=None):
    """Read a pertscore results file.

    Parameters
    ----------
    results : str or path
        The results ``.h5ad`` of ``pertscore run`` (or ``lambda``, ``cv``, ``dosage``).
    expression : str, path or anndata.AnnData, optional
        The expression ``.h5ad`` (or AnnData) the results were computed from.
    prefix : str, optional
        Prefix for the joined column names (default: none; a name the expression's
        obs already has gets ``pertscore_`` in front, with a warning).

    Returns
    -------
    anndata.AnnData
        Without ``expression``: the results (analysed cells x perturbations; X the PS,
        with index arrays of one dtype so that subsetting works), with the per-cell
        columns (:data:`CELL_COLUMNS`) on ``obs``.

        With ``expression``: that AnnData (cells x genes, all its cells), with
        ``obs`` gaining the per-cell columns joined by cell name (cells the results
        do not have, e.g. without guides: NaN / missing), ``varm["pertscore_beta"]``
        a genes x perturbations DataFrame of the ridge coefficients (NaN for genes
        that were not regression genes), ``uns["pertscore_targets"]`` a dict
        perturbation -> list of target genes, ``uns["pertscore_var"]`` the results'
        var table (per perturbation) and ``uns["pertscore_parameters"]`` the run's
        parameters.
    """
    f, close = _open(results)
    try:
        obs, var, X, P = _load(f)
        percell, _ = _cell_frame(f, obs, var, X, P)
        tg = _targets(f)
        params = _uns_tree(f["uns/pertscore/parameters"]) if "uns/pertscore/parameters" in f else {}
        B = _beta(f, var)
    finally:
        if close:
            f.close()
    if expression is None:
        a = anndata.read_h5ad(results) if not isinstance(results, h5py.File) else anndata.read_h5ad(results.filename)
        a.X = X
        if P is not None:
            a.layers["ps_pvalue"] = P
        for c in percell:
            a.obs[c] = percell[c].to_numpy() if not isinstance(percell[c].dtype, pd.CategoricalDtype) \
                else percell[c].values
        return a
    a = expression if isinstance(expression, anndata.AnnData) else anndata.read_h5ad(expression)
    missing = percell.index.difference(a.obs_names)
    if len(missing):
        warnings.warn(f"pertscore.read: {len(missing)} of {len(percell)} cells of the results are not in the "
                      f"expression data (e.g. {', '.join(map(str, missing[:3]))}); they are left out")
    joined = percell.reindex(a.obs_names)
    for c in joined:
        name = (prefix or "") + c
        if prefix is None and name in a.obs and joined[c].isna().all():
            continue  # nothing to add (e.g. no guide names in the file): keep the expression's column
        if prefix is None and name in a.obs:
            warnings.warn(f"pertscore.read: the expression obs already has a column '{name}'; "
                          f"the results' one is 'pertscore_{c}'")
            name = "pertscore_" + c
        col = joined[c]
        if isinstance(percell[c].dtype, pd.CategoricalDtype):
            col = pd.Categorical(col.astype(object), categories=percell[c].cat.categories)
        a.obs[name] = col.values if hasattr(col, "values") else col
    genes = pd.Index(a.var_names)
    bt = B.T.reindex(genes)
    bt.index = genes
    a.varm["pertscore_beta"] = bt
    a.uns["pertscore_targets"] = {k: list(v) for k, v in tg.items()}
    a.uns["pertscore_var"] = var
    a.uns["pertscore_parameters"] = params
    return a


def cells(results):
    """The long per-cell table: one row per (analysed cell, perturbation it carries).

    Columns: ``cell``, ``perturbation``, ``guide`` (missing when the file holds no
    guide names), ``ps`` (the stored PS; 0 for a carried perturbation with no stored
    value), ``ps_pvalue`` (``layers["ps_pvalue"]`` when the file has it, else NaN).
    Control cells carry no perturbation and have no rows. Rows follow the cells'
    order in the file, and each cell's perturbations in the order of
    ``obs["perturbations"]``.
    """
    f, close = _open(results)
    try:
        obs, var, X, P = _load(f)
        carried = _carried(f, obs, var)
    finally:
        if close:
            f.close()
    guides = obs["guide"].astype(object).to_numpy() if "guide" in obs else None
    rows = {"cell": [], "perturbation": [], "guide": [], "ps": [], "ps_pvalue": []}
    names = obs.index.to_numpy()
    for j, row in enumerate(carried):
        g = guides[j] if guides is not None else None
        gs = str(g).split("+") if isinstance(g, str) else []
        for i, (t, k) in enumerate(row):
            v = _entry(X, j, k) if k >= 0 else np.nan
            if k >= 0 and np.isnan(v):
                v = 0.0
            rows["cell"].append(names[j])
            rows["perturbation"].append(t)
            rows["guide"].append(gs[i] if len(gs) == len(row) else (g if isinstance(g, str) else np.nan))
            rows["ps"].append(v)
            rows["ps_pvalue"].append(_entry(P, j, k) if P is not None and k >= 0 else np.nan)
    out = pd.DataFrame(rows)
    out["perturbation"] = out["perturbation"].astype("category")
    out["ps"] = out["ps"].astype(float)
    out["ps_pvalue"] = out["ps_pvalue"].astype(float)
    return out


def _beta(f, var):
    genes = _strings(f["uns/pertscore/regression_genes"]) if "uns/pertscore/regression_genes" in f else None
    if "varm/beta" not in f:
        return pd.DataFrame(index=var.index, columns=genes if genes is not None else [], dtype=float)
    b = f["varm/beta"][()]
    if genes is None or len(genes) != b.shape[1]:
        genes = np.array([f"gene_{i}" for i in range(b.shape[1])], dtype=object)
    return pd.DataFrame(b, index=pd.Index(var.index, name="perturbation"), columns=pd.Index(genes, name="gene"))


def beta(results):
    """The ridge coefficients B: a DataFrame, perturbations (rows, var order) x regression genes (columns)."""
    f, close = _open(results)
    try:
        _check(f)
        return _beta(f, _frame(f["var"]))
    finally:
        if close:
            f.close()


def _targets(f):
    out = {}
    if "uns/pertscore/targets/perturbation" in f:
        for p, g in zip(_strings(f["uns/pertscore/targets/perturbation"]), _strings(f["uns/pertscore/targets/gene"])):
            out.setdefault(p, []).append(g)
    return out


def targets(results):
    """The target genes of each perturbation: dict perturbation -> list of genes (file order)."""
    f, close = _open(results)
    try:
        _check(f)
        return _targets(f)
    finally:
        if close:
            f.close()


def parameters(results):
    """uns/pertscore/parameters as a dict (command line, inputs, lambda, ...)."""
    f, close = _open(results)
    try:
        _check(f)
        return _uns_tree(f["uns/pertscore/parameters"]) if "uns/pertscore/parameters" in f else {}
    finally:
        if close:
            f.close()
