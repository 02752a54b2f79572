#!/usr/bin/python3
"""Write broken copies of one simulated screen for tests/errors/errors.sh.

usage: make_bad.py SIM_PREFIX OUT_DIR

Each file differs from the valid input in exactly one way (h5py edits a byte-copy
of the valid .h5ad, so everything else stays AnnData-valid).
"""
import os
import shutil
import sys

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp


def fail(msg):
    print(f"make_bad: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def copy(src, dst):
    shutil.copyfile(src, dst)
    return h5py.File(dst, "r+")


def replace(f, name, values):
    """Rewrite dataset /name with new values of the same dtype."""
    dtype = f[name].dtype
    del f[name]
    f.create_dataset(name, data=np.asarray(values, dtype=dtype))


def main():
    prefix, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    h5ad = prefix + ".h5ad"

    with open(f"{out}/not_hdf5.h5ad", "w") as f:
        f.write("this is a text file, not HDF5\n" * 20)

    with copy(h5ad, f"{out}/no_x.h5ad") as f:
        del f["X"]

    with h5py.File(h5ad, "r") as f:
        indptr = f["X/indptr"][...]
        data = f["X/data"][...]
        n_cells = len(indptr) - 1
    # NaN in the last cell (read by the last rank), a negative value in the first
    # (rank 0): the error must travel to rank 0 and no rank may hang.
    bad = data.astype(np.float64).copy()
    bad[indptr[n_cells - 1]] = np.nan
    with copy(h5ad, f"{out}/nan_x.h5ad") as f:
        replace(f, "X/data", bad)
    bad = data.astype(np.float64).copy()
    bad[indptr[0]] = -3
    with copy(h5ad, f"{out}/negative_x.h5ad") as f:
        replace(f, "X/data", bad)
    # NaN in the first cell too (rank 0 fails, the others do not)
    bad = data.astype(np.float64).copy()
    bad[indptr[0]] = np.nan
    with copy(h5ad, f"{out}/nan_first_x.h5ad") as f:
        replace(f, "X/data", bad)

    # duplicate gene names in var, duplicate cell names in obs
    with copy(h5ad, f"{out}/dup_genes.h5ad") as f:
        genes = f["var/_index"][...]
        genes[1] = genes[0]
        replace(f, "var/_index", genes)
    with copy(h5ad, f"{out}/dup_cells.h5ad") as f:
        cells = f["obs/_index"][...]
        cells[1] = cells[0]
        replace(f, "obs/_index", cells)
    # a truncated HDF5 file: the first half of a valid one
    raw = open(h5ad, "rb").read()
    with open(f"{out}/truncated.h5ad", "wb") as f:
        f.write(raw[: len(raw) // 2])

    # indptr decreasing in the middle (rows n/2 and n/2+1 swapped in the pointer)
    mid = n_cells // 2
    if indptr[mid] == indptr[mid + 1]:
        fail("cannot make a non-monotone indptr: empty row at the middle")
    bad = indptr.copy()
    bad[mid], bad[mid + 1] = indptr[mid + 1], indptr[mid]
    if np.all(np.diff(bad) >= 0):
        fail("indptr edit did not make it non-monotone")
    with copy(h5ad, f"{out}/indptr_x.h5ad") as f:
        replace(f, "X/indptr", bad)

    # guide tables
    lines = open(prefix + ".guides.tsv").read().splitlines()
    header, rows = lines[0], [l.split("\t") for l in lines[1:] if l]
    cols = header.split("\t")
    c_cell, c_gene, c_umi = cols.index("cell"), cols.index("gene"), cols.index("umi_count")

    def write_table(name, head, body):
        with open(f"{out}/{name}", "w") as f:
            f.write("\t".join(head) + "\n")
            for r in body:
                f.write("\t".join(r) + "\n")

    # every control row removed: the label NonTargeting no longer exists
    write_table("no_control_rows.tsv", cols, [r for r in rows if r[c_gene] != "NonTargeting"])
    # only the cells whose guides are all controls removed: the label still exists
    # (cells with a control and a targeting guide), but no cell is a control cell
    genes_of = {}
    for r in rows:
        genes_of.setdefault(r[c_cell], set()).add(r[c_gene])
    control_only = {c for c, g in genes_of.items() if g == {"NonTargeting"}}
    mixed = [c for c, g in genes_of.items() if "NonTargeting" in g and len(g) > 1]
    if not control_only or not mixed:
        fail(f"simulation has {len(control_only)} control-only and {len(mixed)} mixed cells; need both")
    write_table("no_control_cells.tsv", cols, [r for r in rows if r[c_cell] not in control_only])
    # cell names of another sample
    write_table("foreign_cells.tsv", cols,
                [r[:c_cell] + ["OTHER" + r[c_cell]] + r[c_cell + 1:] for r in rows])
    # the umi_count column missing
    keep = [i for i in range(len(cols)) if i != c_umi]
    write_table("missing_column.tsv", [cols[i] for i in keep], [[r[i] for i in keep] for r in rows])
    # a non-numeric umi_count on the 10th data row
    bad_rows = [list(r) for r in rows]
    bad_rows[9][c_umi] = "abc"
    write_table("bad_umi.tsv", cols, bad_rows)

    # a Cell Ranger protospacer_calls_per_cell.csv whose num_umis is not a number for
    # one cell near the end (a cell of the last rank)
    by_cell = {}
    for r in rows:
        by_cell.setdefault(r[c_cell], []).append(r)
    c_guide = cols.index("barcode")
    lines = ["cell_barcode,num_features,feature_call,num_umis"]
    cells = list(by_cell)
    for i, cell in enumerate(cells):
        grp = by_cell[cell]
        umis = [r[c_umi] for r in grp]
        if i == len(cells) - 2:
            umis[0] = "x" + umis[0]
        lines.append(f"{cell}-1,{len(grp)},{'|'.join(r[c_guide] for r in grp)},{'|'.join(umis)}")
    with open(f"{out}/bad_num_umis.csv", "w") as f:
        f.write("\n".join(lines) + "\n")

    # an index outside [0, n_genes) in the last cell
    with h5py.File(h5ad, "r") as f:
        indices = f["X/indices"][...]
        n_genes = int(f["X"].attrs["shape"][1])
    bad = indices.copy()
    bad[indptr[n_cells - 1]] = n_genes + 7
    with copy(h5ad, f"{out}/index_x.h5ad") as f:
        replace(f, "X/indices", bad)

    # X as CSC (written by anndata) with two indices of the last gene column swapped
    a = ad.read_h5ad(h5ad)
    a.X = sp.csc_matrix(a.X)
    a.obs["guide"] = a.obs["guide"].astype("category")
    a.write_h5ad(f"{out}/csc_ok.h5ad")
    with copy(f"{out}/csc_ok.h5ad", f"{out}/csc_unsorted_x.h5ad") as f:
        cptr = f["X/indptr"][...]
        cidx = f["X/indices"][...]
        last = len(cptr) - 2
        if cptr[last + 1] - cptr[last] < 2:
            fail("last gene column has fewer than 2 entries")
        s = cptr[last]
        cidx[s], cidx[s + 1] = cidx[s + 1], cidx[s]
        replace(f, "X/indices", cidx)
    # the obs column 'guide' as a categorical whose code for the last cell is past
    # the categories
    with copy(f"{out}/csc_ok.h5ad", f"{out}/bad_code.h5ad") as f:
        codes = f["obs/guide/codes"][...]
        n_cat = len(f["obs/guide/categories"])
        codes[-1] = n_cat + 3
        replace(f, "obs/guide/codes", codes)

    # targets naming genes the data does not have
    gmt = open(prefix + ".targets.gmt").read().splitlines()
    first = gmt[0].split("\t")
    gmt[0] = "\t".join(first + ["NOSUCHGENE1", "NOSUCHGENE2"])
    with open(f"{out}/unknown_genes.gmt", "w") as f:
        f.write("\n".join(gmt) + "\n")
    print(f"make_bad: wrote the broken inputs to {out}")


if __name__ == "__main__":
    main()
