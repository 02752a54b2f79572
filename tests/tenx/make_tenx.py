#!/usr/bin/python3
"""Write one simulated screen as 10x Genomics files, good and broken.

usage: make_tenx.py h5  SIM_PREFIX OUT_DIR   10x feature-barcode matrix .h5 files
       make_tenx.py mex SIM_PREFIX OUT_DIR   MEX folders

Reads SIM_PREFIX.h5ad (counts, written by `pertscore simulate`) and
SIM_PREFIX.guides.tsv (scMAGeCK table: cell, barcode = guide name, ..., umi_count).
The guide-capture features of the 10x files are the guides of the table with their
UMI counts, plus, for about one cell in eight, a different guide at 1 or 2 UMIs:
below the default --min-guide-umi 3, so a reader that ignores the threshold calls
guides the table does not have.

h5 writes into OUT_DIR (layout of Cell Ranger >= 3, written with h5py):
  sim_10x.h5           Gene Expression features, then CRISPR Guide Capture
  sim_10x_mixed.h5     features interleaved: genes, 2 Antibody Capture, guides, the
                       rest of the genes (the reader must map by feature_type)
  sim_10x_noguides.h5  Gene Expression only (no guide calls)
  bad_*.h5             broken files; bad_list.tsv lists FILE<TAB>expected message part

mex writes into OUT_DIR:
  mex_gz/     features.tsv.gz (id, name, type; genes, antibodies, guides),
              barcodes.tsv.gz, matrix.mtx.gz sorted by barcode then feature
  mex_plain/  genes.tsv (id, name), barcodes.tsv, matrix.mtx (real) in random order,
              expression only
  dup_names/  plain, two genes share a name (unique ids)
  bad_*/      broken folders; bad_list.tsv lists FOLDER<TAB>expected message part
  guides_expected.tsv  cell, guide, umi of every guide entry at >= 3 UMIs
"""
import gzip
import os
import shutil
import sys

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp


def fail(msg):
    print(f"make_tenx: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def load(prefix):
    """Counts (CSR int), cells, genes, guide names and the cells x guides UMI matrix."""
    a = ad.read_h5ad(prefix + ".h5ad")
    x = sp.csr_matrix(a.X)
    if not np.all(x.data == np.round(x.data)):
        fail("the simulated X is not counts")
    cells, genes = list(a.obs_names), list(a.var_names)
    rows = [line.rstrip("\n").split("\t") for line in open(prefix + ".guides.tsv")][1:]
    guides = sorted({r[1] for r in rows})
    gi = {g: i for i, g in enumerate(guides)}
    ci = {c: i for i, c in enumerate(cells)}
    pairs = {}
    for r in rows:
        key = (ci[r[0]], gi[r[1]])
        if key in pairs:
            fail(f"guide {r[1]} twice for cell {r[0]}: a 10x matrix cannot hold that")
        pairs[key] = int(r[5])
    umi = np.array(list(pairs.values()))
    if umi.min() < 3:
        fail("the simulated guide table has UMI counts below 3")
    # sub-threshold extras: a guide the cell does not carry, at 1 or 2 UMIs
    rng = np.random.default_rng(7)
    extra = 0
    for c in range(len(cells)):
        if rng.random() < 0.125:
            g = int(rng.integers(len(guides)))
            if (c, g) not in pairs:
                pairs[(c, g)] = int(rng.integers(1, 3))
                extra += 1
    if extra < 20:
        fail("too few sub-threshold guide entries")
    keys = np.array(list(pairs.keys()))
    g = sp.csr_matrix((np.array(list(pairs.values()), dtype=np.int64), (keys[:, 0], keys[:, 1])),
                      shape=(len(cells), len(guides)))
    g.sort_indices()
    return x.astype(np.int64), cells, genes, guides, g


def s_array(values):
    return np.array([v.encode() for v in values], dtype=f"S{max(1, max(len(v) for v in values))}")


def write_h5(path, counts, barcodes, features, genome="GRCh38"):
    """counts: cells x features CSR; features: list of (id, name, type)."""
    counts = sp.csr_matrix(counts)
    counts.sort_indices()
    with h5py.File(path, "w") as f:
        for k, v in {"filetype": "matrix", "version": 2, "software_version": "cellranger-7.1.0",
                     "chemistry_description": "Single Cell 3' v3", "library_ids": np.array([b"sim"]),
                     "original_gem_groups": np.array([1])}.items():
            f.attrs[k] = v
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=s_array(barcodes))
        m.create_dataset("data", data=counts.data.astype(np.int32), compression="gzip")
        m.create_dataset("indices", data=counts.indices.astype(np.int64), compression="gzip")
        m.create_dataset("indptr", data=counts.indptr.astype(np.int64))
        m.create_dataset("shape", data=np.array([counts.shape[1], counts.shape[0]], dtype=np.int32))
        fg = m.create_group("features")
        fg.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        fg.create_dataset("id", data=s_array([f[0] for f in features]))
        fg.create_dataset("name", data=s_array([f[1] for f in features]))
        fg.create_dataset("feature_type", data=s_array([f[2] for f in features]))
        fg.create_dataset("genome", data=s_array([genome if f[2] == "Gene Expression" else "" for f in features]))


def gene_features(genes):
    return [(f"ENSSIM{i + 1:08d}", g, "Gene Expression") for i, g in enumerate(genes)]


def guide_features(guides):
    return [(g, g, "CRISPR Guide Capture") for g in guides]


def antibodies(n_cells):
    feats = [("CD3", "CD3_TotalSeqB", "Antibody Capture"), ("CD4", "CD4_TotalSeqB", "Antibody Capture")]
    rng = np.random.default_rng(3)
    return feats, sp.csr_matrix(rng.poisson(5, size=(n_cells, 2)))


def make_h5(prefix, out):
    x, cells, genes, guides, g = load(prefix)
    gf, qf = gene_features(genes), guide_features(guides)
    write_h5(f"{out}/sim_10x.h5", sp.hstack([x, g]).tocsr(), cells, gf + qf)
    ab_feats, ab = antibodies(len(cells))
    half = len(genes) // 2
    mixed = sp.hstack([x[:, :half], ab, g, x[:, half:]]).tocsr()
    write_h5(f"{out}/sim_10x_mixed.h5", mixed, cells, gf[:half] + ab_feats + qf + gf[half:])
    write_h5(f"{out}/sim_10x_noguides.h5", x, cells, gf)

    bad = []
    # duplicated gene names
    dup = [list(f) for f in gf]
    dup[7][1] = dup[3][1]
    dup[150][1] = dup[120][1]
    write_h5(f"{out}/bad_dup_names.h5", sp.hstack([x, g]).tocsr(), cells, [tuple(f) for f in dup] + qf)
    bad.append(("bad_dup_names.h5", f"duplicated Gene Expression names: '{genes[3]}' (0-based positions 3, 7)"))
    # Cell Ranger 2: one group per genome, no /matrix
    with h5py.File(f"{out}/bad_cr2.h5", "w") as f:
        grp = f.create_group("GRCh38")
        grp.create_dataset("gene_names", data=s_array(genes))
        grp.create_dataset("indptr", data=x.indptr)
    bad.append(("bad_cr2.h5", "no /matrix group"))
    # a feature index out of range, in the last cells (another rank's block at np 3)
    y = sp.hstack([x, g]).tocsr()
    write_h5(f"{out}/bad_index.h5", y, cells, gf + qf)
    with h5py.File(f"{out}/bad_index.h5", "a") as f:
        idx = f["matrix/indices"][:]
        idx[-1] = len(gf) + len(qf) + 5
        del f["matrix/indices"]
        f["matrix"].create_dataset("indices", data=idx)
    bad.append(("bad_index.h5", "/matrix/indices holds"))
    # unsorted features within a cell
    write_h5(f"{out}/bad_unsorted.h5", y, cells, gf + qf)
    with h5py.File(f"{out}/bad_unsorted.h5", "a") as f:
        idx = f["matrix/indices"][:]
        p = int(f["matrix/indptr"][1000])
        idx[p], idx[p + 1] = idx[p + 1], idx[p]
        f["matrix/indices"][:] = idx
    bad.append(("bad_unsorted.h5", "not strictly increasing within row 1000"))
    # barcodes that disagree with the shape
    write_h5(f"{out}/bad_barcodes.h5", y, cells[:-1] + [cells[-1]], gf + qf)
    with h5py.File(f"{out}/bad_barcodes.h5", "a") as f:
        del f["matrix/barcodes"]
        f["matrix"].create_dataset("barcodes", data=s_array(cells[:-3]))
    bad.append(("bad_barcodes.h5", f"/matrix/barcodes has {len(cells) - 3} entries but /matrix/shape says {len(cells)}"))
    # a negative count
    write_h5(f"{out}/bad_negative.h5", y, cells, gf + qf)
    with h5py.File(f"{out}/bad_negative.h5", "a") as f:
        f["matrix/data"][5] = -4
    bad.append(("bad_negative.h5", "negative value (-4)"))
    # no Gene Expression at all
    write_h5(f"{out}/bad_noexpr.h5", g, cells, qf)
    bad.append(("bad_noexpr.h5", "no 'Gene Expression' feature"))
    with open(f"{out}/bad_list.tsv", "w") as f:
        for name, msg in bad:
            f.write(f"{os.path.abspath(out)}/{name}\t{msg}\n")


def write_mex(folder, counts, barcodes, features, gz=True, shuffle=False, field="integer", genes_tsv=False):
    """counts: cells x features; written as features x barcodes coordinates."""
    os.makedirs(folder, exist_ok=True)
    op = (lambda p: gzip.open(p + ".gz", "wt")) if gz else (lambda p: open(p, "w"))
    c = sp.coo_matrix(counts)
    order = np.lexsort((c.col, c.row))  # by barcode, then feature
    if shuffle:
        order = np.random.default_rng(11).permutation(len(c.data))
    with op(f"{folder}/matrix.mtx") as f:
        f.write(f"%%MatrixMarket matrix coordinate {field} general\n%metadata_json: {{}}\n")
        f.write(f"{counts.shape[1]} {counts.shape[0]} {len(c.data)}\n")
        for k in order:
            v = int(c.data[k])
            f.write(f"{c.col[k] + 1} {c.row[k] + 1} {v if field == 'integer' else float(v)}\n")
    with op(f"{folder}/barcodes.tsv") as f:
        f.writelines(b + "\n" for b in barcodes)
    with op(f"{folder}/{'genes' if genes_tsv else 'features'}.tsv") as f:
        for feat in features:
            f.write("\t".join(feat[:2] if genes_tsv else feat) + "\n")


def make_mex(prefix, out):
    x, cells, genes, guides, g = load(prefix)
    gf, qf = gene_features(genes), guide_features(guides)
    ab_feats, ab = antibodies(len(cells))
    write_mex(f"{out}/mex_gz", sp.hstack([x, ab, g]).tocsr(), cells, gf + ab_feats + qf)
    write_mex(f"{out}/mex_plain", x, cells, gf, gz=False, shuffle=True, field="real", genes_tsv=True)
    dup = [list(f) for f in gf]
    dup[9][1] = dup[4][1]
    write_mex(f"{out}/dup_names", x, cells, [tuple(f) for f in dup], gz=False)
    with open(f"{out}/guides_expected.tsv", "w") as f:
        gc = g.tocoo()
        for c, q, u in sorted(zip(gc.row, gc.col, gc.data)):
            if u >= 3:
                f.write(f"{cells[c]}\t{guides[q]}\t{u}\n")

    bad = []

    def variant(name, msg, edit):
        d = f"{out}/{name}"
        shutil.copytree(f"{out}/mex_plain", d)
        edit(d)
        bad.append((d, msg))

    def replace_line(path, number, text):
        lines = open(path).read().split("\n")
        lines[number - 1] = text
        open(path, "w").write("\n".join(lines))

    n_feat, n_cells = len(genes), len(cells)
    variant("bad_header", "matrix.mtx: line 1: not a MatrixMarket header",
            lambda d: replace_line(f"{d}/matrix.mtx", 1, "%%MatrixMarkt matrix coordinate real general"))
    variant("bad_array", "matrix.mtx: line 1: MatrixMarket 'matrix array real general' is not supported",
            lambda d: replace_line(f"{d}/matrix.mtx", 1, "%%MatrixMarket matrix array real general"))
    variant("bad_feature_index", f"matrix.mtx: line 40: feature index {n_feat + 1} is outside [1, {n_feat}]",
            lambda d: replace_line(f"{d}/matrix.mtx", 40, f"{n_feat + 1} 3 2.0"))
    variant("bad_barcode_index", f"matrix.mtx: line 41: barcode index 0 is outside [1, {n_cells}]",
            lambda d: replace_line(f"{d}/matrix.mtx", 41, "3 0 2.0"))
    variant("bad_value", "matrix.mtx: line 42: value '-2.0' is not a finite number >= 0",
            lambda d: replace_line(f"{d}/matrix.mtx", 42, "3 3 -2.0"))
    variant("bad_fields", "matrix.mtx: line 43: expected 'feature barcode value'",
            lambda d: replace_line(f"{d}/matrix.mtx", 43, "3 3"))
    variant("bad_barcode_count",
            f"matrix.mtx: line 3: the matrix has {n_cells} columns but ",
            lambda d: open(f"{d}/barcodes.tsv", "a").write("EXTRACELL\n"))
    variant("bad_feature_count", f"matrix.mtx: line 3: the matrix has {n_feat} rows but ",
            lambda d: open(f"{d}/genes.tsv", "a").write("ENSX\tEXTRAGENE\n"))
    variant("bad_dup_barcode", f"barcodes.tsv: line 10: barcode '{cells[3]}' is already on line 4",
            lambda d: replace_line(f"{d}/barcodes.tsv", 10, cells[3]))
    variant("bad_truncated", "ends after",
            lambda d: open(f"{d}/matrix.mtx", "w").write("".join(open(f"{out}/mex_plain/matrix.mtx").readlines()[:500])))
    variant("bad_sizes", "matrix.mtx: line 3: expected the size line",
            lambda d: replace_line(f"{d}/matrix.mtx", 3, f"{n_feat} {n_cells}"))
    def duplicate_entry(d):
        line = open(f"{d}/matrix.mtx").read().split("\n")[7]  # an entry
        open(f"{d}/matrix.mtx", "a").write(line + "\n")
        fix_count(f"{d}/matrix.mtx", 1)
    variant("bad_duplicate_entry", "has two entries for barcode", duplicate_entry)

    def no_features(d):
        os.remove(f"{d}/genes.tsv")
    variant("bad_no_features", "the MEX folder has none of features.tsv.gz, features.tsv, genes.tsv.gz, genes.tsv",
            no_features)

    def gz_truncated(d):
        for n in ("matrix.mtx", "barcodes.tsv", "genes.tsv"):
            os.remove(f"{d}/{n}")
        shutil.copy(f"{out}/mex_gz/barcodes.tsv.gz", d)
        shutil.copy(f"{out}/mex_gz/features.tsv.gz", d)
        data = open(f"{out}/mex_gz/matrix.mtx.gz", "rb").read()
        open(f"{d}/matrix.mtx.gz", "wb").write(data[: len(data) // 2])
    variant("bad_gzip", "matrix.mtx.gz: line", gz_truncated)
    with open(f"{out}/bad_list.tsv", "w") as f:
        for d, msg in bad:
            f.write(f"{d}\t{msg}\n")


def fix_count(path, extra):
    """Raise the entry count of the size line by extra."""
    lines = open(path).read().split("\n")
    r, c, n = lines[2].split()
    lines[2] = f"{r} {c} {int(n) + extra}"
    open(path, "w").write("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("h5", "mex"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    os.makedirs(sys.argv[3], exist_ok=True)
    (make_h5 if sys.argv[1] == "h5" else make_mex)(sys.argv[2], sys.argv[3])
