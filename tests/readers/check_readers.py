#!/usr/bin/python3
"""Check the results readers against the raw HDF5 (read here with h5py only).

usage: check_readers.py python RESULTS.h5ad EXPRESSION.h5ad
       check_readers.py r RESULTS.h5ad PREFIX     (PREFIX.{cells,long,perturbations,beta}.tsv of read_pertscore)
       check_readers.py future RESULTS.h5ad GUIDES.tsv OUT.h5ad
           writes OUT.h5ad: RESULTS with the columns a newer pertscore stores (obs guide,
           n_guides from the guide table, layers ps_pvalue), and checks that the python
           readers take them from the file rather than computing them

The expected per-cell values are computed here from X (CSR data / indices / indptr)
and obs/perturbations by the definitions of docs/results-format.md: a cell's
perturbation is its carried labels joined by '+' (the control label if none), ps
the largest stored PS among them (a carried, unstored entry is 0), ps_perturbation
the label it belongs to (the first on ties), NaN / missing for control cells.
"""
import sys
import warnings

import h5py
import numpy as np


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def dec(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def raw(path):
    with h5py.File(path, "r") as f:
        r = {}
        r["cells"] = [dec(v) for v in f["obs/_index"][()]]
        r["perts"] = [dec(v) for v in f["var/_index"][()]]
        lab = f["obs/perturbations"]
        if isinstance(lab, h5py.Group):  # categorical (anndata writes strings back as categoricals)
            cats = [dec(v) for v in lab["categories"][()]]
            r["labels"] = [cats[k] if k >= 0 else "" for k in lab["codes"][()]]
        else:
            r["labels"] = [dec(v) for v in lab[()]]
        r["data"], r["indices"], r["indptr"] = (f["X/" + k][()] for k in ("data", "indices", "indptr"))
        r["beta"] = f["varm/beta"][()]
        r["genes"] = [dec(v) for v in f["uns/pertscore/regression_genes"][()]]
        r["control"] = dec(f["uns/pertscore/parameters/control"][()])
        r["pairs"] = list(zip((dec(v) for v in f["uns/pertscore/targets/perturbation"][()]),
                              (dec(v) for v in f["uns/pertscore/targets/gene"][()])))
        gb = "uns/pertscore/parameters/group_by"
        r["group_by"] = dec(f[gb][()]) if gb in f else None
        if r["group_by"]:
            g = f["obs/" + r["group_by"]]
            cats = [dec(v) for v in g["categories"][()]]
            r["group"] = [cats[c] for c in g["codes"][()]]
            pc = [dec(v) for v in f["var/perturbation"][()]]
            gg = f["var/group"]
            gcats = [dec(v) for v in gg["categories"][()]]
            r["pair_index"] = {(p, gcats[c]): k for k, (p, c) in enumerate(zip(pc, gg["codes"][()]))}
        r["n_cells_var"] = f["var/n_cells"][()]
        r["mean_ps"] = f["var/mean_ps"][()]
    n, K = len(r["cells"]), len(r["perts"])
    stored = {}
    for j in range(n):
        for p in range(int(r["indptr"][j]), int(r["indptr"][j + 1])):
            stored[(j, int(r["indices"][p]))] = float(r["data"][p])
    pindex = {p: k for k, p in enumerate(r["perts"])}
    long, per = [], []
    for j, lab in enumerate(r["labels"]):
        items = [t for t in lab.split(",") if t]
        best, bestv = None, None
        for t in items:
            k = pindex.get(t)
            if k is None and r["group_by"]:
                k = r["pair_index"].get((t, r["group"][j]))
            if k is None:
                fail(f"{path}: cell {r['cells'][j]} carries '{t}', which is no perturbation of var")
            v = stored.get((j, k), 0.0)
            long.append((r["cells"][j], t, v))
            if bestv is None or v > bestv:
                best, bestv = t, v
        per.append(("+".join(items) if items else r["control"], len(items),
                    np.nan if bestv is None else bestv, best))
    r["long"], r["per"], r["stored"], r["n"], r["K"] = long, per, stored, n, K
    dense = np.zeros((n, K))
    for (j, k), v in stored.items():
        dense[j, k] = v
    r["dense"] = dense
    return r


def close(a, b, what, tol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        fail(f"{what}: shape {a.shape} != {b.shape}")
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        fail(f"{what}: NaN at different places ({int(np.isnan(a).sum())} vs {int(np.isnan(b).sum())})")
    ok = ~np.isnan(a)
    if ok.any() and np.max(np.abs(a[ok] - b[ok])) > tol:
        fail(f"{what}: differs by {np.max(np.abs(a[ok] - b[ok])):.3g}")


def check_python(path, expression):
    import anndata as ad
    import pertscore

    r = raw(path)
    n, K = r["n"], r["K"]
    a = pertscore.read(path)
    if list(a.obs_names) != r["cells"] or list(a.var_names) != r["perts"]:
        fail("read: obs / var names differ from obs/_index / var/_index")
    close(a.X.toarray(), r["dense"], "read: X")
    if a.X.indices.dtype != a.X.indptr.dtype:
        fail(f"read: X indices {a.X.indices.dtype} vs indptr {a.X.indptr.dtype}")
    exp_pert = [p[0] for p in r["per"]]
    if list(a.obs["perturbation"].astype(str)) != exp_pert:
        bad = [(c, x, y) for c, x, y in zip(r["cells"], a.obs["perturbation"].astype(str), exp_pert) if x != y]
        fail(f"read: obs perturbation differs, e.g. {bad[:3]}")
    if not str(a.obs["perturbation"].dtype) == "category":
        fail("read: obs perturbation is not categorical")
    with h5py.File(path, "r") as f:  # a stored obs/n_guides (guide rows of the cell) is taken as it is
        want_ng = f["obs/n_guides"][()] if "obs/n_guides" in f else [p[1] for p in r["per"]]
    close(a.obs["n_guides"], want_ng, "read: obs n_guides")
    close(a.obs["ps"], [p[2] for p in r["per"]], "read: obs ps")
    got = [None if (isinstance(x, float) and np.isnan(x)) else str(x) for x in a.obs["ps_perturbation"].astype(object)]
    if got != [p[3] for p in r["per"]]:
        fail("read: obs ps_perturbation differs")
    n_control = sum(1 for p in r["per"] if p[3] is None)
    if n_control == 0 or n_control == n:
        fail(f"{path}: {n_control} control cells of {n}: the check needs both kinds")
    multi = sum(1 for p in r["per"] if p[1] > 1)
    if multi == 0:
        fail(f"{path}: no cell carries several perturbations; the MOI > 1 columns go unchecked")
    # what users do: subset by names, lists and masks, to_df, concat, write and read back
    name = r["perts"][1]
    close(a[:, [name]].to_df()[name], r["dense"][:, 1], "a[:, [name]].to_df()")
    pick = [r["cells"][i] for i in range(0, n, 7)]
    close(a[pick].X.toarray(), r["dense"][::7], "a[list of cells]")
    mask = (a.obs["ps"] > 0.5).to_numpy()
    close(a[mask, r["perts"][:2]].to_df().to_numpy(), r["dense"][mask][:, :2], "a[mask, perts].to_df()")
    both = ad.concat([a[: n // 2], a[n // 2:]])
    close(both.X.toarray(), r["dense"], "anndata.concat of two halves")
    a.write_h5ad("readback.h5ad")
    b = ad.read_h5ad("readback.h5ad")
    close(b.obs["ps"], a.obs["ps"], "write_h5ad / read_h5ad: obs ps")
    close(b[:, [name]].to_df()[name], r["dense"][:, 1], "read back, subset")

    c = pertscore.cells(path)
    if len(c) != len(r["long"]):
        fail(f"cells: {len(c)} rows, expected {len(r['long'])} (one per carried perturbation)")
    if list(c["cell"]) != [x[0] for x in r["long"]] or list(c["perturbation"].astype(str)) != [x[1] for x in r["long"]]:
        fail("cells: cell / perturbation columns differ from obs/perturbations")
    close(c["ps"], [x[2] for x in r["long"]], "cells: ps")
    if list(c.columns) != ["cell", "perturbation", "guide", "ps", "ps_pvalue"]:
        fail(f"cells: columns {list(c.columns)}")

    B = pertscore.beta(path)
    if list(B.index) != r["perts"] or list(B.columns) != r["genes"]:
        fail("beta: labels differ from var/_index x uns/pertscore/regression_genes")
    close(B.to_numpy(), r["beta"], "beta", 0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = pertscore.read(path, expression)
    with h5py.File(expression, "r") as f:
        ecells = [dec(v) for v in f["obs/_index"][()]]
        egenes = [dec(v) for v in f["var/_index"][()]]
    if list(e.obs_names) != ecells or list(e.var_names) != egenes:
        fail("read(results, expression): not the expression's cells x genes")
    pos = {c: j for j, c in enumerate(r["cells"])}
    exp_ps = [r["per"][pos[c]][2] if c in pos else np.nan for c in ecells]
    close(e.obs["ps"], exp_ps, "read(results, expression): obs ps joined by name")
    n_absent = sum(1 for c in ecells if c not in pos)
    if n_absent == 0:
        fail("the expression has no cell without results: the NaN join goes unchecked")
    absent_pert = e.obs["perturbation"][[c not in pos for c in ecells]]
    if not absent_pert.isna().all():
        fail("read(results, expression): cells without results must have a missing perturbation")
    bt = e.varm["pertscore_beta"]
    gpos = {g: i for i, g in enumerate(r["genes"])}
    want = np.array([[r["beta"][k, gpos[g]] if g in gpos else np.nan for k in range(K)] for g in egenes])
    close(np.asarray(bt, dtype=float), want, "varm pertscore_beta (genes x perturbations)", 0)
    if list(bt.columns) != r["perts"]:
        fail("varm pertscore_beta: columns are not the perturbations")
    tg = e.uns["pertscore_targets"]
    pairs = [(p, g) for p in tg for g in tg[p]]
    if sorted(pairs) != sorted(r["pairs"]):
        fail("uns pertscore_targets differs from uns/pertscore/targets")
    e.write_h5ad("joined.h5ad")
    e2 = ad.read_h5ad("joined.h5ad")
    close(e2.obs["ps"], exp_ps, "joined file written and read back: obs ps")
    print(f"PASS: python readers on {path}: {n} cells ({n_control} control, {multi} with several perturbations), "
          f"{K} perturbations, {len(r['long'])} long rows; joined onto {len(ecells)} cells ({n_absent} NaN)")


def check_r(path, prefix):
    import pandas as pd

    r = raw(path)
    cells = pd.read_csv(prefix + ".cells.tsv", sep="\t", index_col=0, keep_default_na=False, na_values=["NA"])
    if list(cells.index) != r["cells"]:
        fail("R cells: row names differ from obs/_index")
    if list(cells["perturbation"]) != [p[0] for p in r["per"]]:
        fail("R cells: perturbation differs")
    with h5py.File(path, "r") as f:  # a stored obs/n_guides must be taken as it is
        want_ng = f["obs/n_guides"][()] if "obs/n_guides" in f else [p[1] for p in r["per"]]
    close(cells["n_guides"], want_ng, "R cells: n_guides")
    close(cells["ps"], [p[2] for p in r["per"]], "R cells: ps", 1e-12)
    got = [None if isinstance(x, float) else x for x in cells["ps_perturbation"]]
    if got != [p[3] for p in r["per"]]:
        fail("R cells: ps_perturbation differs")
    long = pd.read_csv(prefix + ".long.tsv", sep="\t", keep_default_na=False, na_values=["NA"])
    if list(zip(long["cell"], long["perturbation"])) != [(x[0], x[1]) for x in r["long"]]:
        fail("R long: (cell, perturbation) rows differ")
    close(long["ps"], [x[2] for x in r["long"]], "R long: ps", 1e-12)
    with h5py.File(path, "r") as f:
        if "layers/ps_pvalue" in f:
            g = f["layers/ps_pvalue"]
            pv = {}
            pd_, pi, pp = g["data"][()], g["indices"][()], g["indptr"][()]
            for j in range(r["n"]):
                for q in range(int(pp[j]), int(pp[j + 1])):
                    pv[(j, int(pi[q]))] = float(pd_[q])
            pindex = {p: k for k, p in enumerate(r["perts"])}
            pos = {c: j for j, c in enumerate(r["cells"])}
            close(long["ps_pvalue"], [pv.get((pos[c], pindex[t]), np.nan) for c, t, _ in r["long"]],
                  "R long: ps_pvalue from layers/ps_pvalue", 1e-12)
            print("PASS: R long ps_pvalue from layers/ps_pvalue")
        if "obs/guide" in f:
            cats = [dec(v) for v in f["obs/guide/categories"][()]]
            gcol = [cats[k] for k in f["obs/guide/codes"][()]]
            pos = {c: j for j, c in enumerate(r["cells"])}
            want = []
            units = [dec(v) for v in f["obs/guide_units"][()]] if "obs/guide_units" in f else None
            for c, t, _ in r["long"]:
                j = pos[c]
                items = [x for x in r["labels"][j].split(",") if x]
                if units is None:
                    want.append(gcol[j].split("+")[items.index(t)])
                    continue
                pairs = list(zip(gcol[j].split("+"), units[j].split("+")))
                mine = [g for g, u in pairs if u == t] or [g for g, u in pairs if u == t.split("@")[0]]
                want.append("+".join(mine) if mine else gcol[j])
            if list(long["guide"]) != want:
                fail("R long: guide is not the cell's guide of each perturbation")
            print("PASS: R long guide from obs/guide")
    per = pd.read_csv(prefix + ".perturbations.tsv", sep="\t", index_col=0, keep_default_na=False)
    if list(per.index) != r["perts"]:
        fail("R perturbations: row names differ")
    close(per["n_cells"], r["n_cells_var"], "R perturbations: n_cells")
    close(per["mean_ps"], r["mean_ps"], "R perturbations: mean_ps", 1e-12)
    beta = pd.read_csv(prefix + ".beta.tsv", sep="\t", index_col=0)
    if list(beta.index) != r["perts"] or list(beta.columns) != r["genes"]:
        fail("R beta: labels differ (perturbations x regression genes)")
    close(beta.to_numpy(), r["beta"], "R beta", 1e-14)
    print(f"PASS: R read_pertscore on {path}: {r['n']} cells, {len(r['long'])} long rows, beta {r['beta'].shape}")


def future_file(path, guides_tsv, out):
    """The results as a newer pertscore writes them, built here with anndata (guides from the table)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    r = raw(path)
    table = pd.read_csv(guides_tsv, sep="\t")
    by_cell = {}
    for c, g, gene in zip(table["cell"], table["barcode"], table["gene"]):
        by_cell.setdefault(c, []).append((g, gene))
    guide, n_guides = [], []
    for c, lab in zip(r["cells"], r["labels"]):
        items = [t for t in lab.split(",") if t]
        rows = by_cell.get(c, [])
        if items:
            guide.append("+".join(next(g for g, gene in rows if gene == t) for t in items))
        else:
            guide.append("+".join(g for g, _ in rows))
        n_guides.append(len(rows))
    a = ad.read_h5ad(path)
    X = sp.csr_matrix((r["data"], r["indices"].astype(np.int64), r["indptr"].astype(np.int64)), shape=(r["n"], r["K"]))
    a.X = X
    a.obs["guide"] = pd.Categorical(guide)
    a.obs["n_guides"] = np.array(n_guides, dtype=np.int64)
    P = X.copy()
    P.data = np.random.default_rng(7).uniform(0.001, 1, len(P.data))
    a.layers["ps_pvalue"] = P
    # obs ps_pvalue (a calibrated run stores it) would no longer match the new layer:
    # drop it so that the readers derive it from layers/ps_pvalue
    # and obs guide_units belongs to the stored guide column, not to the one built here
    a.obs = a.obs.drop(columns=["ps_pvalue", "guide_units"], errors="ignore")
    a.write_h5ad(out)
    return guide, n_guides, P


def check_future(path, guides_tsv, out):
    import pertscore

    guide, n_guides, P = future_file(path, guides_tsv, out)
    r = raw(out)
    a = pertscore.read(out)
    if list(a.obs["guide"].astype(str)) != guide:
        fail("future file: read() does not return the stored obs guide")
    close(a.obs["n_guides"], n_guides, "future file: read() obs n_guides (stored, not recomputed)")
    if all(len(g.split("+")) == n for g, n in zip(guide, n_guides)):
        fail("future file: stored n_guides equals the perturbation count everywhere; the check is void")
    pindex = {p: k for k, p in enumerate(r["perts"])}
    want = []
    for j, (_, _, _, best) in enumerate(r["per"]):
        want.append(np.nan if best is None else P[j, pindex[best]] if best in pindex else np.nan)
    close(a.obs["ps_pvalue"], want, "future file: obs ps_pvalue from layers/ps_pvalue")
    c = pertscore.cells(out)
    exp_guides, exp_pv = [], []
    pos = {cell: j for j, cell in enumerate(r["cells"])}
    for cell, t, _ in r["long"]:
        j = pos[cell]
        items = [x for x in r["labels"][j].split(",") if x]
        exp_guides.append(guide[j].split("+")[items.index(t)])
        exp_pv.append(P[j, pindex[t]])
    if list(c["guide"]) != exp_guides:
        fail("future file: cells() guide is not the cell's guide of each perturbation")
    close(c["ps_pvalue"], exp_pv, "future file: cells() ps_pvalue")
    print(f"PASS: python readers take guide, n_guides, ps_pvalue from {out} when it has them")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "future":
        check_future(*sys.argv[2:])
    elif len(sys.argv) != 4 or sys.argv[1] not in ("python", "r"):
        fail(__doc__)
    else:
        (check_python if sys.argv[1] == "python" else check_r)(sys.argv[2], sys.argv[3])
