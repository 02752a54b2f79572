/* pertscore/io.h: every file format pertscore reads or writes (SPEC.md section 0,
 * DESIGN.md "Results file"). No other module calls HDF5 directly. This is the
 * generic layer: the objects of the results file (their paths) belong to
 * src/results (pertscore/results.h), which writes and reads them through it.
 *
 * All functions are collective over comm unless they say otherwise. */
#ifndef PERTSCORE_IO_H
#define PERTSCORE_IO_H

#include "pertscore/util.h"

/* ---------------------------------------------------------------- input matrix */

/* A block of an AnnData expression matrix: this rank's contiguous cells. */
typedef struct {
  int64_t n_cells, n_genes; /* global shape */
  int64_t cell_begin;       /* first global cell of this rank's block */
  ps_csr x;                 /* local cells x genes, values as stored */
  ps_strlist genes;         /* all gene names (var index), every rank */
  ps_strlist cells;         /* this block's cell names (obs index) */
  char layout[8];           /* "csr", "csc" or "dense", as stored */
  char element[256];        /* "X" or "layers/NAME" */
} ps_matrix;

/* Read X (layer == NULL) or layers/LAYER of an .h5ad. CSR input is split into
 * contiguous cell blocks balanced by nonzeros; each rank reads only its block
 * (collective hyperslab reads). CSC is read in gene blocks and exchanged into
 * cell blocks; dense in row blocks. Values are validated (finite, >= 0; indices
 * in range and increasing within a row; indptr monotone). */
int ps_h5ad_read_matrix(MPI_Comm comm, const char *path, const char *layer, ps_matrix *out);
void ps_matrix_free(ps_matrix *m);

/* Values of obs column COLUMN for global cells [begin, end), as strings
 * (categorical and string columns; numbers are formatted). */
int ps_h5ad_read_obs_column(MPI_Comm comm, const char *path, const char *column, int64_t begin,
                            int64_t end, ps_strlist *out);

/* Rows [begin, end) (end = -1: all rows) of column COLUMN of data frame FRAME
 * ("obs", "var"; COLUMN "_index" is the index), as strings. Collective over comm
 * (MPI_COMM_SELF to read alone). */
int ps_h5ad_read_frame_column(MPI_Comm comm, const char *path, const char *frame, const char *column, int64_t begin,
                              int64_t end, ps_strlist *out);

/* A scalar string dataset NAME of an existing file (serial). A missing file, a
 * file that is not HDF5 or a missing NAME give found = 0, not an error. */
int ps_h5ad_read_scalar_string(const char *path, const char *name, char *buf, size_t size, int *found);

/* ---------------------------------------------------------------- guide tables */

/* One guide call: a cell (local index into the matrix block), the unit label
 * (targeted gene), the guide name and its UMI count. */
typedef struct {
  int64_t n, capacity;
  int64_t *cell;
  char **unit;
  char **guide;
  double *umi;
  int64_t n_rows_read;   /* data rows in the file */
  int64_t n_rows_local;  /* of those, rows naming a cell of this rank's block */
  uint8_t *row_matched;  /* guide tables: per data row, 1 if it named a cell of this block (row_capacity long,
                          * rows beyond it 0); OR over ranks gives the rows that name no cell at all */
  int64_t row_capacity;
  /* internal to ps_guides_unmatched_examples */
  const uint8_t *example_matched;
  int64_t example_rows;
  int max_examples;
  ps_strlist examples;
} ps_guide_calls;

/* Read a scMAGeCK barcode table (TSV: cell barcode sgrna gene read_count umi_count)
 * or a Cell Ranger protospacer_calls_per_cell.csv (format sniffed from the header).
 * Every rank streams the file and keeps the rows whose cell is in cell_index
 * (local cell name -> local index). A trailing "-1" on cell names is ignored on
 * both sides. */
int ps_guides_read_table(const char *path, const ps_strmap *cell_index, ps_guide_calls *out);
/* Guide calls from per-cell labels (an obs column): one label per cell, or several
 * separated by ',', '|' or '+'. Empty labels mean no guide. */
int ps_guides_from_labels(const ps_strlist *labels, ps_guide_calls *out);
void ps_guide_calls_free(ps_guide_calls *g);
/* The cell names of the first max data rows of the guide table at path whose
 * matched[row] is 0 (rows at or beyond n_rows count as unmatched). Serial: one
 * rank streams the file again, stopping at max. */
int ps_guides_unmatched_examples(const char *path, const uint8_t *matched, int64_t n_rows, int max,
                                 ps_strlist *examples);
/* Cell-name key used for matching (drops a trailing "-1"); writes into buf. */
const char *ps_cell_key(const char *name, char *buf, size_t size);

/* ---------------------------------------------------------------- target genes */

/* User targets: GMT (name TAB description TAB gene...) or TSV (perturbation TAB gene).
 * Read on every rank (small). Returns parallel arrays of (perturbation, gene). */
typedef struct {
  ps_strlist perturbation;
  ps_strlist gene;
} ps_target_pairs;
int ps_targets_read(const char *path, ps_target_pairs *out);
void ps_target_pairs_free(ps_target_pairs *t);

/* ---------------------------------------------------------------- writing h5ad */

typedef struct ps_h5ad_writer ps_h5ad_writer;

/* Create path (truncating) collectively, with the AnnData root attributes and the
 * empty groups AnnData expects. Object timestamps are off so that the same content
 * gives the same bytes on any number of ranks. */
int ps_h5ad_create(MPI_Comm comm, const char *path, ps_h5ad_writer **out);
/* Close; returns an error if anything failed on the way. */
int ps_h5ad_close(ps_h5ad_writer **w);

/* Distributed CSR matrix at NAME ("X", "layers/counts"): this rank's rows start at
 * global row row_offset; n_rows_global rows in all. data_float32 stores data as float32.
 * indices and indptr are stored with the same integer type (see ps_csr_index_wide). */
int ps_h5ad_write_csr(ps_h5ad_writer *w, const char *name, const ps_csr *local, int64_t row_offset,
                      int64_t n_rows_global, int data_float32);
/* 1 when a CSR with nnz_total entries and n_cols columns needs int64 indices and
 * indptr (as scipy decides), 0 when both fit int32. ps_h5ad_write_csr writes both
 * arrays with this one type. */
int ps_csr_index_wide(int64_t nnz_total, int64_t n_cols);

/* A data frame column. Rows are distributed like the frame (see write_frame). */
typedef enum { PS_COL_F64, PS_COL_I64, PS_COL_STRING, PS_COL_CATEGORICAL } ps_column_kind;
typedef struct {
  const char *name;
  ps_column_kind kind;
  const double *f64;             /* PS_COL_F64 */
  const int64_t *i64;            /* PS_COL_I64 */
  char *const *strings;          /* PS_COL_STRING: one per local row */
  const int32_t *codes;          /* PS_COL_CATEGORICAL: one per local row, -1 = missing */
  const ps_strlist *categories;  /* PS_COL_CATEGORICAL: the same on every rank */
} ps_column;

/* Data frame NAME ("obs", "var"): index names and columns for this rank's rows
 * [row_offset, row_offset + n_local) of n_global. For a frame every rank holds
 * whole (var), pass row_offset 0 on rank 0 and n_local 0 elsewhere. */
int ps_h5ad_write_frame(ps_h5ad_writer *w, const char *name, char *const *index, int64_t n_local,
                        int64_t row_offset, int64_t n_global, const ps_column *columns,
                        int n_columns);

/* Dense row-major matrix (every rank passes the same data; rank 0 writes it). */
int ps_h5ad_write_dense(ps_h5ad_writer *w, const char *name, const double *data, int64_t rows,
                        int64_t cols);
/* Small uns entries (every rank passes the same values). NAME is a path such as
 * "uns/pertscore/lambda"; missing parent groups are created as AnnData dicts. */
int ps_h5ad_write_scalar(ps_h5ad_writer *w, const char *name, double value);
int ps_h5ad_write_string(ps_h5ad_writer *w, const char *name, const char *value);
int ps_h5ad_write_strings(ps_h5ad_writer *w, const char *name, char *const *values, int64_t n);

/* Updating an existing .h5ad in place (h5ad_write.c): open it collectively for
 * writing (close with ps_h5ad_close); remove an element (dataset or group, e.g.
 * "uns/pertscore/dosage") if present; add columns to data frame NAME, replacing
 * columns of the same name (column-order keeps the others in place and appends new
 * names; rows are given as for ps_h5ad_write_frame, index is used only when the
 * frame does not exist yet). */
int ps_h5ad_open_update(MPI_Comm comm, const char *path, ps_h5ad_writer **out);
int ps_h5ad_remove(ps_h5ad_writer *w, const char *name);
int ps_h5ad_frame_set_columns(ps_h5ad_writer *w, const char *name, char *const *index, int64_t n_local,
                              int64_t row_offset, int64_t n_global, const ps_column *columns, int n_columns);
/* Copy a file byte for byte (rank 0 copies; errors are synced). Collective. */
int ps_file_copy(MPI_Comm comm, const char *from, const char *to);

/* Write text collectively: each rank's chunk lands after all lower ranks' chunks. */
int ps_text_write_ordered(MPI_Comm comm, const char *path, const char *chunk, int64_t length);

/* Publish OUTPUT.partial as OUTPUT (rank 0 renames after a barrier). */
int ps_output_commit(MPI_Comm comm, const char *partial, const char *final_path);

/* ---------------------------------------------------------------- typed 1-D datasets (h5file.c) */

/* An HDF5 file for a module's own section of plain one-dimensional datasets in
 * global order (the --resume checkpoint, src/results/checkpoint.c). NAME is a path
 * from the root. Every call is collective over the comm it was opened with, and
 * every rank joins each one even when its own range is empty (count 0); a range
 * outside the dataset fails after the collective read, on that rank. */
typedef struct ps_h5file ps_h5file;
typedef enum { PS_H5_I32, PS_H5_I64, PS_H5_F64 } ps_h5_type; /* stored little-endian */
int ps_h5file_create(MPI_Comm comm, const char *path, ps_h5file **out); /* replaces PATH */
int ps_h5file_open_update(MPI_Comm comm, const char *path, ps_h5file **out);
int ps_h5file_open_read(MPI_Comm comm, const char *path, ps_h5file **out);
int ps_h5file_close(ps_h5file **f); /* flushes to disk; NULL is fine */
/* 1 when NAME (dataset or group) exists, 0 when it or a parent group does not. */
int ps_h5file_exists(const ps_h5file *f, const char *name);
int ps_h5file_length(const ps_h5file *f, const char *name, int64_t *n);
/* Create group NAME and missing parents (each an AnnData dict). */
int ps_h5file_make_group(ps_h5file *f, const char *name);
/* Create NAME with n_global values; this rank writes its count values at offset. */
int ps_h5file_write(ps_h5file *f, const char *name, ps_h5_type type, int64_t n_global, int64_t offset,
                    int64_t count, const void *values);
/* Create NAME from n values every rank holds alike (rank 0 writes them). */
int ps_h5file_write_replicated(ps_h5file *f, const char *name, ps_h5_type type, int64_t n, const void *values);
/* Strings, stored fixed-length (the longest over all ranks), UTF-8. */
int ps_h5file_write_strings(ps_h5file *f, const char *name, int64_t n_global, int64_t offset, int64_t count,
                            char *const *values);
int ps_h5file_write_strings_replicated(ps_h5file *f, const char *name, int64_t n, char *const *values);
/* Values [begin, begin + count) of NAME, converted to type. */
int ps_h5file_read(const ps_h5file *f, const char *name, ps_h5_type type, int64_t begin, int64_t count,
                   void *values);
int ps_h5file_read_strings(const ps_h5file *f, const char *name, int64_t begin, int64_t count, ps_strlist *out);

/* ---------------------------------------------------------------- inspect */

/* Print a summary of an .h5ad (input or results) to stdout; rank 0 only, serial. */
int ps_h5ad_inspect(const char *path);

/* ---------------------------------------------------------------- 10x Genomics h5, any input (tenx.c) */

/* Append one guide call (the strings are copied). Not collective. */
int ps_guide_calls_push(ps_guide_calls *g, int64_t cell, const char *unit, const char *guide, double umi);
/* The unit (targeted gene) of a guide named Cell Ranger style: the name without a
 * trailing "_N" / "-N" / ".N" / "_sgN" part (a part holding a digit), e.g.
 * "CD81_sg2" -> "CD81". Used for protospacer_calls_per_cell.csv and for 10x
 * guide-capture features alike. Not collective. */
void ps_guide_unit(const char *guide, char *unit, size_t size);

/* Read a 10x Genomics feature-barcode matrix .h5 (Cell Ranger >= 3:
 * /matrix/{data,indices,indptr,shape,barcodes,features/{id,name,feature_type}}).
 * The matrix is stored CSC over barcodes, i.e. CSR by cell, and is read exactly
 * like an h5ad CSR X: contiguous cell blocks balanced by nonzeros, collective
 * hyperslab reads, the same validation (indptr monotone, indices in range and
 * strictly increasing per cell, values finite and >= 0).
 *   expression: the "Gene Expression" features only (cells x genes, file order;
 *     genes = features/name, which must be unique: duplicates are an error that
 *     names them; cells = barcodes as stored, e.g. "AAAC...-1"); layout "10x",
 *     element "matrix". A file without features/feature_type is all Gene Expression.
 *   guides (may be NULL): the "CRISPR Guide Capture" features as guide calls of this
 *     rank's cells: called where the UMI count >= min_guide_umi (SPEC.md section 0,
 *     default 3); guide = feature name, unit = ps_guide_unit(name), umi = count,
 *     cell = local row. n_rows_local = this block's cells with a call,
 *     n_rows_read = such cells in the whole file. No guide features: zero calls.
 * Features of other types (Antibody Capture, ...) are skipped. Cell Ranger 2 files
 * (one group per genome) are refused with a message. Collective. */
int ps_tenx_read(MPI_Comm comm, const char *path, double min_guide_umi, ps_matrix *expression,
                 ps_guide_calls *guides);

typedef enum { PS_FORMAT_H5AD = 1, PS_FORMAT_TENX = 2 } ps_input_format;
/* What kind of expression file PATH is: AnnData (root attribute encoding-type
 * "anndata", or an /X) or 10x (a /matrix group). Rank 0 looks, every rank gets the
 * answer (or the same error). Collective. */
int ps_input_sniff(MPI_Comm comm, const char *path, ps_input_format *format);

/* Read the expression matrix of any supported file: ps_h5ad_read_matrix for an
 * .h5ad (layer as there), ps_tenx_read (Gene Expression only, no guides) for a 10x
 * h5, where a layer is an error. Collective; errors are already synced. */
int ps_read_expression(MPI_Comm comm, const char *path, const char *layer, ps_matrix *out);

/* The shape of the expression matrix without reading it (src/io/shape.c; for the
 * memory guard): shape = {cells, genes, stored values} from the metadata and the
 * last indptr entry (dense: cells x genes; 10x: genes counts every feature). All 0
 * when the file is irregular (the reader reports why). Rank 0 reads; collective. */
int ps_input_shape(MPI_Comm comm, const char *path, const char *layer, int64_t shape[3]);

/* ---------------------------------------------------------------- MEX folders (mex.c) */

/* A Cell Ranger MEX folder (matrix.mtx, barcodes.tsv, features.tsv or genes.tsv,
 * each optionally .gz), parsed serially and held as CSR by barcode (never dense). */
typedef struct {
  char matrix_path[4096], barcodes_path[4096], features_path[4096];
  int64_t n_features;     /* all features of the file */
  int64_t n_other;        /* features neither Gene Expression nor CRISPR Guide Capture (dropped) */
  ps_csr x;               /* barcodes x Gene Expression features, indices increasing per row */
  ps_csr guides;          /* barcodes x CRISPR Guide Capture features */
  ps_strlist barcodes;
  ps_strlist gene_ids, gene_names; /* Gene Expression features, file order */
  ps_strlist guide_names;          /* CRISPR Guide Capture features, file order */
  int integral;           /* every stored value is a whole number below 2^24 */
} ps_mex;

/* Parse DIR (not collective: call on one rank; progress may be NULL). Every
 * malformed item is an error naming the file and line: header, sizes, index out of
 * range, row/column counts that disagree with features/barcodes, duplicate
 * entries, barcodes or gene names (by_id = 0: gene names must be unique; by_id = 1:
 * gene ids must be). Zeros are dropped. Memory: about 16 bytes per nonzero. */
int ps_mex_read(const char *dir, int by_id, ps_progress *progress, ps_mex *out);
void ps_mex_free(ps_mex *m);
/* Write the Gene Expression matrix as an .h5ad: X = CSR counts (float32 when
 * integral), obs index = barcodes, var index = gene names (by_id: gene ids) with
 * columns gene_ids, feature_types (and gene_symbols when by_id). m is used on rank
 * 0 only (pass NULL elsewhere); the write itself is collective. */
int ps_mex_write_h5ad(MPI_Comm comm, const ps_mex *m, int by_id, const char *path);
/* Write the guide-capture features as a Cell Ranger protospacer_calls_per_cell.csv
 * (cell_barcode,num_features,feature_call,num_umis; calls '|'-separated in feature
 * order) for cells with a guide at >= min_guide_umi UMIs. Not collective. */
int ps_mex_write_guide_calls(const ps_mex *m, const char *path, double min_guide_umi, int64_t *n_cells);

#endif
