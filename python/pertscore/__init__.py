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


class _Carried:
    """The (cell, perturbation) pairs of obs/perturbations, as flat arrays in file order.

    cell: row of the cell; label: the carried label; k: its column of X (-1 if none);
    pos: its position among the cell's labels; count: labels per cell.
    """

    def __init__(self, f, obs, var):
        n = len(obs)
        if "perturbations" in obs:
            lab = pd.Series(obs["perturbations"].astype(object).to_numpy(), dtype=object)
            lab = lab.where(lab.notna(), "").astype(str)
        else:
            lab = pd.Series([""] * n, dtype=object)
        parts = lab.str.split(",")
        parts = parts.map(lambda xs: [x for x in xs if x])
        self.count = parts.map(len).to_numpy(dtype=np.int64)
        self.cell = np.repeat(np.arange(n, dtype=np.int64), self.count)
        self.label = np.array([x for xs in parts for x in xs], dtype=object)
        starts = np.cumsum(self.count) - self.count
        self.pos = np.arange(len(self.cell), dtype=np.int64) - np.repeat(starts, self.count)
        self.k = pd.Index(var.index).get_indexer(self.label) if len(self.label) else np.zeros(0, dtype=np.int64)
        gb = "uns/pertscore/parameters/group_by"
        group_col = _str(f[gb][()]) if gb in f else None
        if ((self.k < 0).any() and group_col and group_col in obs and "perturbation" in var and "group" in var):
            # --group-by: var labels are P@group; a cell's label P is the pair (P, its group)
            pairs = pd.MultiIndex.from_arrays([var["perturbation"].astype(str).to_numpy(),
                                               var["group"].astype(str).to_numpy()])
            groups = obs[group_col].astype(str).to_numpy()[self.cell]
            k2 = pairs.get_indexer(pd.MultiIndex.from_arrays([self.label.astype(str), groups]))
            self.k = np.where(self.k < 0, k2, self.k)
        self.k = np.asarray(self.k, dtype=np.int64)
        self.labels_per_cell = parts


def _lookup(m, cell, k):
    """m[cell[i], k[i]] for CSR m (NaN where not stored or k < 0), vectorized."""
    out = np.full(len(cell), np.nan)
    if m is None or len(cell) == 0:
        return out
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    keys = rows * m.shape[1] + m.indices.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys, data = keys[order], np.asarray(m.data, dtype=float)[order]
    want = cell * m.shape[1] + k
    at = np.searchsorted(keys, want)
    ok = (k >= 0) & (at < len(keys))
    ok[ok] = keys[at[ok]] == want[ok]
    out[ok] = data[at[ok]]
    return out


def _carried_ps(car, X, P):
    """PS and p-value of every carried pair; a carried, unstored entry has PS 0 (SPEC section 3)."""
    ps = _lookup(X, car.cell, car.k)
    ps[np.isnan(ps) & (car.k >= 0)] = 0.0
    return ps, _lookup(P, car.cell, car.k)


def _cell_frame(f, obs, var, X, P):
    """The per-cell columns, from obs when the file has them, computed from X / obs otherwise."""
    n = len(obs)
    car = _Carried(f, obs, var)
    control = _control_label(f)
    out = pd.DataFrame(index=obs.index)
    if "perturbation" in obs:
        out["perturbation"] = obs["perturbation"]
    else:
        out["perturbation"] = pd.Categorical(["+".join(xs) if xs else control for xs in car.labels_per_cell])
    if "guide" in obs:
        out["guide"] = obs["guide"]
    else:  # results files before the per-cell columns hold no guide names
        out["guide"] = pd.Categorical([np.nan] * n, categories=[])
    out["n_guides"] = obs["n_guides"].to_numpy() if "n_guides" in obs else car.count
    ps_pair, pv_pair = _carried_ps(car, X, P)
    ps, pv = np.full(n, np.nan), np.full(n, np.nan)
    best = np.full(n, None, dtype=object)
    ok = np.nonzero(~np.isnan(ps_pair))[0]
    if len(ok):  # per cell the largest PS, the first in label order on ties
        o = ok[np.lexsort((car.pos[ok], -ps_pair[ok], car.cell[ok]))]
        first = o[np.r_[True, car.cell[o][1:] != car.cell[o][:-1]]]
        ps[car.cell[first]] = ps_pair[first]
        pv[car.cell[first]] = pv_pair[first]
        best[car.cell[first]] = car.label[first]
    out["ps"] = obs["ps"].to_numpy(dtype=float) if "ps" in obs else ps
    out["ps_perturbation"] = obs["ps_perturbation"] if "ps_perturbation" in obs else pd.Categorical(best)
    out["ps_pvalue"] = obs["ps_pvalue"].to_numpy(dtype=float) if "ps_pvalue" in obs else pv
    return out, car


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
        The results ``.h5ad`` of ``pertscore run`` (or ``lambda``, ``dosage``).
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
    ``obs["perturbations"]``. ``guide``: the cell's guides of that perturbation, taken
    from ``obs["guide"]`` by ``obs["guide_units"]`` (each guide's perturbation); in files
    without it, a '+'-joined guide with one guide per perturbation is split in that order,
    otherwise the cell's guide is repeated.
    """
    f, close = _open(results)
    try:
        obs, var, X, P = _load(f)
        car = _Carried(f, obs, var)
    finally:
        if close:
            f.close()
    ps, pv = _carried_ps(car, X, P)
    guide = np.full(len(car.cell), np.nan, dtype=object)
    if "guide" in obs:
        g = obs["guide"].astype(object).to_numpy()
        split = [str(x).split("+") if isinstance(x, str) else [] for x in g]
        units = None  # obs["guide_units"]: each guide's perturbation, parallel to obs["guide"]
        if "guide_units" in obs:
            units = [str(x).split("+") if isinstance(x, str) else [] for x in obs["guide_units"].astype(object)]
        for i, (j, q) in enumerate(zip(car.cell, car.pos)):
            gs = split[j]
            if units is not None and len(units[j]) == len(gs):
                t = str(car.label[i])
                mine = [x for x, u in zip(gs, units[j]) if u == t] or \
                       [x for x, u in zip(gs, units[j]) if u == t.split("@")[0]]  # --group-by: P@group
                guide[i] = "+".join(mine) if mine else (g[j] if isinstance(g[j], str) else np.nan)
            else:
                guide[i] = gs[q] if len(gs) == car.count[j] else (g[j] if isinstance(g[j], str) else np.nan)
    return pd.DataFrame({"cell": obs.index.to_numpy()[car.cell], "perturbation": pd.Categorical(car.label),
                         "guide": guide, "ps": ps, "ps_pvalue": pv})


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
