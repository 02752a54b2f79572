#!/usr/bin/python3
"""Write the .h5ad seeds of tests/fuzz/corpus/h5ad_bytes (tiny, valid AnnData files).

usage: make_corpus.py OUT_DIR [SIMULATED.h5ad]

Each seed is a few KB: 3-5 cells x 3-4 genes written by anndata itself in the
layouts pertscore reads (X as CSR, CSC and dense; a layer; categorical and
string obs columns "guide"), and one 10x Genomics feature-barcode .h5 (Cell
Ranger >= 3 layout, genes and guide-capture features, written with h5py). SIMULATED, if given, is a `pertscore simulate` file
that is copied as is. The committed seeds were made with Debian 12's anndata 0.8
and h5py 3.7; re-running it elsewhere gives equivalent, not identical, bytes.
"""
import os
import shutil
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp


def frame(prefix, n, **columns):
    return pd.DataFrame(columns, index=[f"{prefix}{i}" for i in range(n)])


def tenx(path):
    """3 barcodes x (3 genes + 2 guides), CSC over barcodes as Cell Ranger writes it."""
    counts = sp.csc_matrix(np.array([[4, 0, 1], [0, 2, 0], [1, 1, 0], [5, 0, 0], [0, 0, 3]], dtype=np.int32))
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"], m["indices"], m["indptr"] = counts.data, counts.indices.astype(np.int64), counts.indptr.astype(np.int64)
        m["shape"] = np.array(counts.shape, dtype=np.int32)
        m["barcodes"] = np.array([b"AAACCTGAGAAGGCCT-1", b"AAACCTGAGACAGACC-1", b"AAACCTGAGCGATAGC-1"])
        feats = m.create_group("features")
        feats["id"] = np.array([b"ENSG1", b"ENSG2", b"ENSG3", b"CD81_sg1", b"NT_1"])
        feats["name"] = np.array([b"GENE1", b"GENE2", b"CD81", b"CD81_sg1", b"NT_1"])
        feats["feature_type"] = np.array([b"Gene Expression"] * 3 + [b"CRISPR Guide Capture"] * 2)
        feats["genome"] = np.array([b"GRCh38"] * 5)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    counts = np.array([[0, 2, 0, 1], [3, 0, 0, 0], [0, 1, 4, 0]], dtype=np.float32)
    guides = pd.Categorical(["NonTargeting", "CD81", "CD81+IRF1"])
    obs = frame("cell", 3, guide=guides)
    var = frame("gene", 4)

    ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var, dtype=np.float32).write_h5ad(f"{out}/csr.h5ad")
    ad.AnnData(sp.csc_matrix(counts), obs=obs, var=var, dtype=np.float32).write_h5ad(f"{out}/csc.h5ad")
    ad.AnnData(counts.astype(np.float64), obs=obs, var=var, dtype=np.float64).write_h5ad(f"{out}/dense.h5ad")
    # log-normalized values in X, counts in a layer, guide labels as plain strings
    lognorm = sp.csr_matrix(np.log1p(counts))
    strings = frame("cell", 3, guide=np.array(["NonTargeting", "CD81", "IRF1|CD81"], dtype=object))
    a = ad.AnnData(lognorm, obs=strings, var=var, layers={"counts": sp.csr_matrix(counts)}, dtype=np.float32)
    a.write_h5ad(f"{out}/layer_strings.h5ad")
    # a cell without any value, int64 counts, barcodes with the Cell Ranger "-1"
    wide = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0], [0, 0, 7], [2, 2, 2], [0, 5, 0]], dtype=np.int64))
    obs5 = pd.DataFrame({"guide": pd.Categorical(["A", "B", "A", "NonTargeting", "B"])},
                        index=[f"AAACCTGAGAAGG{i:03d}-1" for i in range(5)])
    ad.AnnData(wide, obs=obs5, var=frame("g", 3), dtype=np.int64).write_h5ad(f"{out}/empty_row_int.h5ad")

    tenx(f"{out}/tenx.h5")

    if len(sys.argv) > 2:
        shutil.copyfile(sys.argv[2], f"{out}/simulated.h5ad")


if __name__ == "__main__":
    main()
