#!/usr/bin/python3
"""Write variants of one simulated screen with the real anndata package.

usage: make_variants.py SIM_PREFIX OUT_DIR

Reads SIM_PREFIX.h5ad (written by `pertscore simulate`) and SIM_PREFIX.guides.tsv
and writes into OUT_DIR:

  csr64.h5ad       X as CSR, float64 data, int64 indices and indptr
  csr32.h5ad       X as CSR, float32 data, int32 indices (scipy's default)
  csc.h5ad         X as CSC (float32)
  dense.h5ad       X as a dense numpy array (float32)
  layer.h5ad       the counts in layers['counts']; X holds something else
                   (log-normalized counts of shuffled cells), so reading X by
                   mistake gives different scores
  lognorm.h5ad     X = ln(1 + 1e4 x / rowsum) in float64 (non-integral: pertscore
                   must use it as is, giving the same scores as the counts)
  cellranger.csv   the guides as a Cell Ranger protospacer_calls_per_cell.csv
                   (barcodes with the usual '-1' suffix, plus rows for cells that
                   are not in the data, which must be ignored)
  analysed.txt     names of the cells that carry a guide, in input order

Every .h5ad keeps the obs column 'guide' (anndata stores it as a categorical).
Each variant is checked with h5py to really have the claimed layout.
"""
import os
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp


def fail(msg):
    print(f"make_variants: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def lognorm(counts):
    """ln(1 + 1e4 x / rowsum) of a CSR matrix, in float64 (rows summing to 0 stay 0)."""
    m = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    totals = np.asarray(m.sum(axis=1)).ravel()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    with np.errstate(divide="ignore", invalid="ignore"):
        m.data = np.where(totals[rows] > 0, np.log1p(1e4 * m.data / totals[rows]), 0.0)
    return m


def write(adata, path, expect):
    adata.write_h5ad(path)
    with h5py.File(path, "r") as f:
        for name, (kind, dtype) in expect.items():
            node = f[name]
            if kind == "dense":
                if not isinstance(node, h5py.Dataset) or node.ndim != 2:
                    fail(f"{path}: /{name} is not a dense 2-D dataset")
                got = node.dtype
            else:
                enc = node.attrs.get("encoding-type")
                if isinstance(enc, bytes):
                    enc = enc.decode()
                if enc != kind:
                    fail(f"{path}: /{name} has encoding {enc!r}, wanted {kind!r}")
                got = node["data"].dtype
                for part, want in (("indices", dtype[1]), ("indptr", dtype[2])):
                    if want is not None and node[part].dtype != np.dtype(want):
                        fail(f"{path}: /{name}/{part} is {node[part].dtype}, wanted {want}")
                dtype = dtype[0]
            if got != np.dtype(dtype):
                fail(f"{path}: /{name} values are {got}, wanted {dtype}")
    print(f"  wrote {os.path.basename(path)}: " +
          ", ".join(f"{k}={v[0]} {v[1]}" for k, v in expect.items()))


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    prefix, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    base = ad.read_h5ad(prefix + ".h5ad")
    counts = sp.csr_matrix(base.X)
    counts.sort_indices()
    if not np.all(counts.data == np.floor(counts.data)):
        fail("the simulated X is not integral counts")
    obs = base.obs.copy()
    var = base.var.copy()
    if "guide" not in obs.columns:
        fail("the simulated data has no obs column 'guide'")

    def make(X, layers=None):
        # dtype= keeps X's dtype (and its index dtype) exactly as given
        return ad.AnnData(X=X, obs=obs.copy(), var=var.copy(), layers=layers, dtype=X.dtype)

    # CSR float64 with 64-bit indices: set after construction (scipy would downcast).
    m64 = sp.csr_matrix(counts.astype(np.float64))
    m64.indices = m64.indices.astype(np.int64)
    m64.indptr = m64.indptr.astype(np.int64)
    write(make(m64), f"{out}/csr64.h5ad", {"X": ("csr_matrix", ("float64", "int64", "int64"))})

    m32 = sp.csr_matrix(counts.astype(np.float32))
    m32.indices = m32.indices.astype(np.int32)
    m32.indptr = m32.indptr.astype(np.int32)
    write(make(m32), f"{out}/csr32.h5ad", {"X": ("csr_matrix", ("float32", "int32", None))})

    write(make(sp.csc_matrix(counts.astype(np.float32))), f"{out}/csc.h5ad",
          {"X": ("csc_matrix", ("float32", None, None))})

    write(make(counts.astype(np.float32).toarray()), f"{out}/dense.h5ad", {"X": ("dense", "float32")})

    rng = np.random.default_rng(5)
    decoy = lognorm(counts[rng.permutation(counts.shape[0])])
    write(make(decoy, layers={"counts": sp.csr_matrix(counts.astype(np.float32))}), f"{out}/layer.h5ad",
          {"X": ("csr_matrix", ("float64", None, None)), "layers/counts": ("csr_matrix", ("float32", None, None))})

    ln = lognorm(counts)
    if np.all(ln.data == np.floor(ln.data)):
        fail("log-normalized X is integral?")
    write(make(ln), f"{out}/lognorm.h5ad", {"X": ("csr_matrix", ("float64", None, None))})

    # Cell Ranger protospacer calls, one row per cell with a guide.
    g = pd.read_csv(prefix + ".guides.tsv", sep="\t", dtype=str)
    need = {"cell", "barcode", "gene", "umi_count"}
    if not need <= set(g.columns):
        fail(f"guide table columns {list(g.columns)} lack {need - set(g.columns)}")
    for _, row in g.iterrows():
        guide = row["barcode"]
        # pertscore maps a Cell Ranger guide name back to its unit by dropping '_sgN'
        if guide.rsplit("_", 1)[0] != row["gene"]:
            fail(f"guide {guide} does not map back to gene {row['gene']}")
    lines = ["cell_barcode,num_features,feature_call,num_umis"]
    for cell, grp in g.groupby("cell", sort=False):
        lines.append(f"{cell}-1,{len(grp)},{'|'.join(grp['barcode'])},{'|'.join(grp['umi_count'])}")
    # cells absent from the data (e.g. called on another lane): ignored by pertscore
    lines.append("NOTACELL000001-1,1,NonTargeting_sg1,7")
    lines.append("NOTACELL000002-1,2,GENE99999_sg1|NonTargeting_sg2,5|3")
    with open(f"{out}/cellranger.csv", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"  wrote cellranger.csv: {len(lines) - 1} cells")

    with_guide = set(g["cell"])
    analysed = [c for c in base.obs_names if c in with_guide]
    with open(f"{out}/analysed.txt", "w") as f:
        f.write("\n".join(analysed) + "\n")
    print(f"  {len(analysed)} of {base.n_obs} cells carry a guide")


if __name__ == "__main__":
    main()
