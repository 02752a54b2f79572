/* Reading 10x Genomics feature-barcode matrices (filtered_feature_bc_matrix.h5,
 * Cell Ranger >= 3) and telling input formats apart (SPEC.md section 0).
 *
 * The 10x matrix is CSC over barcodes: indptr has one entry per barcode + 1 and a
 * barcode's features are a contiguous run, i.e. it is CSR by cell. It is read like
 * an h5ad CSR X (compressed.h): nnz-balanced cell blocks, collective hyperslab
 * reads (DESIGN.md data flow 1). The block then splits by feature type: Gene
 * Expression entries become the expression matrix, CRISPR Guide Capture entries
 * become guide calls at the UMI threshold. */
#include <stdlib.h>
#include <string.h>

#include "compressed.h"
#include "h5.h"
#include "pertscore/io.h"

#define TENX_GENE "Gene Expression"
#define TENX_GUIDE "CRISPR Guide Capture"

typedef struct {
  int64_t n_features, n_barcodes;
  ps_strlist names;   /* features/name, every feature */
  int32_t *gene_col;  /* feature -> column of the expression matrix, or -1 */
  int64_t *guide_id;  /* feature -> index among guide features, or -1 */
  ps_strlist units;   /* per guide feature: its unit (targeted gene) */
  int64_t n_genes, n_guides;
} tenx_features;

static void features_free(tenx_features *f) {
  ps_strlist_free(&f->names);
  ps_strlist_free(&f->units);
  free(f->gene_col);
  free(f->guide_id);
}

static int check_length(const ps_h5 *h, const char *name, int64_t want, const char *what) {
  int64_t n = 0;
  PS_CALL(ps_h5_length(h, name, &n));
  if (n != want)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s has %lld entries but /matrix/shape says %lld %s", h->path, name, (long long)n,
            (long long)want, what);
  return PS_OK;
}

typedef struct {
  const char *name;
  int64_t feature;
} named_feature;

static int compare_named(const void *a, const void *b) {
  const named_feature *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  return (x->feature > y->feature) - (x->feature < y->feature);
}

/* Gene names become var names downstream and must be unique; name every duplicate
 * (up to a few) with its feature positions so the user can find them. */
static int check_unique_genes(const ps_h5 *h, const tenx_features *f) {
  named_feature *list;
  PS_ALLOC(list, f->n_genes);
  int64_t n = 0;
  for (int64_t i = 0; i < f->n_features; i++)
    if (f->gene_col[i] >= 0) list[n++] = (named_feature){f->names.items[i], i};
  qsort(list, (size_t)n, sizeof *list, compare_named);
  char text[1024] = "";
  int64_t n_dup = 0;
  for (int64_t i = 1; i < n; i++) {
    if (strcmp(list[i].name, list[i - 1].name) != 0) continue;
    int first_of_run = i == 1 || strcmp(list[i - 1].name, list[i - 2].name) != 0;
    if (first_of_run) {
      n_dup++;
      size_t used = strlen(text);
      if (n_dup <= 5 && used < 700)
        snprintf(text + used, sizeof text - used, "%s'%s' (0-based positions %lld, %lld", n_dup > 1 ? "), " : "",
                 list[i].name, (long long)list[i - 1].feature, (long long)list[i].feature);
    } else if (n_dup <= 5) {
      size_t used = strlen(text);
      if (used < 900) snprintf(text + used, sizeof text - used, ", %lld", (long long)list[i].feature);
    }
  }
  free(list);
  if (n_dup)
    PS_FAIL(PS_ERR_INPUT, "%s: /matrix/features/name has %lld duplicated Gene Expression name%s: %s)%s; gene names "
            "must be unique (rename them in the file, or convert the MEX folder with `pertscore convert "
            "--var-names id`)", h->path, (long long)n_dup, n_dup > 1 ? "s" : "", text, n_dup > 5 ? ", ..." : "");
  return PS_OK;
}

/* Shape, names and types of the features; identical on every rank, so every
 * check here fails on all ranks alike. */
static int read_features(const ps_h5 *h, tenx_features *f) {
  if (!ps_h5_exists(h->file, "matrix"))
    PS_FAIL(PS_ERR_INPUT, "%s: no /matrix group: not a Cell Ranger >= 3 feature-barcode matrix .h5 (Cell Ranger 2 "
            "files, with one group per genome, are not supported: convert their MEX folder with `pertscore convert`)",
            h->path);
  int64_t n_shape = 0, shape[2] = {0, 0};
  PS_CALL(ps_h5_length(h, "matrix/shape", &n_shape));
  if (n_shape != 2)
    PS_FAIL(PS_ERR_INPUT, "%s: /matrix/shape has %lld entries, expected 2 ([features, barcodes])", h->path,
            (long long)n_shape);
  PS_CALL(ps_h5_read_range(h, "matrix/shape", H5T_NATIVE_INT64, 0, 2, shape));
  f->n_features = shape[0];
  f->n_barcodes = shape[1];
  if (f->n_features <= 0 || f->n_barcodes <= 0)
    PS_FAIL(PS_ERR_INPUT, "%s: /matrix is empty (%lld features x %lld barcodes)", h->path, (long long)f->n_features,
            (long long)f->n_barcodes);
  if (f->n_features > INT32_MAX)
    PS_FAIL(PS_ERR_INPUT, "%s: too many features (%lld)", h->path, (long long)f->n_features);
  PS_CALL(check_length(h, "matrix/barcodes", f->n_barcodes, "barcodes"));
  PS_CALL(check_length(h, "matrix/features/name", f->n_features, "features"));
  PS_CALL(ps_h5_read_strings(h, "matrix/features/name", 0, f->n_features, &f->names));
  ps_strlist types = {0};
  int has_types = ps_h5_exists(h->file, "matrix/features/feature_type");
  if (has_types) {
    PS_CALL(check_length(h, "matrix/features/feature_type", f->n_features, "features"));
    PS_CALL(ps_h5_read_strings(h, "matrix/features/feature_type", 0, f->n_features, &types));
  }
  PS_ALLOC(f->gene_col, f->n_features);
  PS_ALLOC(f->guide_id, f->n_features);
  char unit[1024];
  for (int64_t i = 0; i < f->n_features; i++) {
    const char *type = has_types ? types.items[i] : TENX_GENE;
    f->gene_col[i] = -1;
    f->guide_id[i] = -1;
    if (strcmp(type, TENX_GENE) == 0) {
      f->gene_col[i] = (int32_t)f->n_genes++;
    } else if (strcmp(type, TENX_GUIDE) == 0) {
      f->guide_id[i] = f->n_guides++;
      ps_guide_unit(f->names.items[i], unit, sizeof unit);
      PS_CALL(ps_strlist_push(&f->units, unit));
    }
  }
  ps_strlist_free(&types);
  if (f->n_genes == 0)
    PS_FAIL(PS_ERR_INPUT, "%s: /matrix/features/feature_type has no '" TENX_GENE "' feature (%lld features of other "
            "types); there is no expression to score", h->path, (long long)f->n_features);
  return check_unique_genes(h, f);
}

/* Split the raw block (all features) in place into the Gene Expression matrix,
 * and collect the guide calls. The gene columns are increasing in the feature
 * index, so each row stays sorted. */
static int split_block(const tenx_features *f, ps_csr *x, double min_guide_umi, ps_guide_calls *guides) {
  int64_t w = 0, with_call = 0;
  for (int64_t r = 0; r < x->n_rows; r++) {
    int64_t begin = x->indptr[r], end = x->indptr[r + 1], calls_before = guides ? guides->n : 0;
    x->indptr[r] = w;
    for (int64_t p = begin; p < end; p++) {
      int32_t feature = x->indices[p];
      if (f->gene_col[feature] >= 0) {
        x->indices[w] = f->gene_col[feature];
        x->data[w++] = x->data[p];
      } else if (guides && f->guide_id[feature] >= 0 && x->data[p] >= min_guide_umi) {
        PS_CALL(ps_guide_calls_push(guides, r, f->units.items[f->guide_id[feature]], f->names.items[feature],
                                    x->data[p]));
      }
    }
    if (guides && guides->n > calls_before) with_call++;
  }
  x->indptr[x->n_rows] = w;
  x->n_cols = f->n_genes;
  if (guides) guides->n_rows_local = with_call;
  return PS_OK;
}

static int read_block(const ps_h5 *h, const tenx_features *f, double min_guide_umi, ps_matrix *out,
                      ps_guide_calls *guides) {
  snprintf(out->layout, sizeof out->layout, "10x");
  snprintf(out->element, sizeof out->element, "matrix");
  out->n_cells = f->n_barcodes;
  out->n_genes = f->n_genes;
  int64_t *bounds, nnz = 0;
  PS_ALLOC(bounds, h->size + 1);
  int err = ps_compressed_bounds(h, "matrix/indptr", f->n_barcodes, bounds, &nnz);
  out->cell_begin = bounds[h->rank];
  out->x.n_cols = f->n_features; /* indices are feature positions until split */
  if (!err)
    err = ps_error_sync(h->comm, ps_compressed_read_block(h, "matrix", bounds[h->rank], bounds[h->rank + 1], nnz,
                                                          &out->x));
  free(bounds);
  PS_CALL(err);
  /* a bad value sits in one rank's block: agree before the collective reads below */
  PS_CALL(ps_error_sync(h->comm, ps_compressed_check_values(h, "matrix", &out->x, out->cell_begin, 1)));
  PS_CALL(ps_error_sync(h->comm, split_block(f, &out->x, min_guide_umi, guides)));
  if (guides) {
    int64_t local = guides->n_rows_local;
    PS_CHECK_MPI(MPI_Allreduce(&local, &guides->n_rows_read, 1, MPI_INT64_T, MPI_SUM, h->comm));
  }
  PS_CALL(ps_h5_read_strings(h, "matrix/barcodes", out->cell_begin, out->x.n_rows, &out->cells));
  for (int64_t i = 0; i < f->n_features; i++)
    if (f->gene_col[i] >= 0) PS_CALL(ps_strlist_push(&out->genes, f->names.items[i]));
  return PS_OK;
}

static int read_tenx(const ps_h5 *h, double min_guide_umi, ps_matrix *out, ps_guide_calls *guides) {
  tenx_features f = {0};
  int err = read_features(h, &f);
  if (!err) err = read_block(h, &f, min_guide_umi, out, guides);
  features_free(&f);
  return err;
}

int ps_tenx_read(MPI_Comm comm, const char *path, double min_guide_umi, ps_matrix *expression,
                 ps_guide_calls *guides) {
  memset(expression, 0, sizeof *expression);
  if (guides) memset(guides, 0, sizeof *guides);
  ps_h5 h;
  PS_CALL(ps_h5_open_read(comm, path, &h));
  /* every failure inside is the same on all ranks or synced, so all ranks close */
  int err = read_tenx(&h, min_guide_umi, expression, guides);
  int close_err = ps_h5_close(&h);
  if (err) {
    ps_matrix_free(expression);
    if (guides) ps_guide_calls_free(guides);
    return ps_error_trace(err, __FILE__, __LINE__);
  }
  PS_CALL(close_err);
  return PS_OK;
}

/* ---------------------------------------------------------------- format sniffing */

static int sniff_local(const char *path, ps_input_format *format) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  FILE *probe = fopen(path, "rb");
  if (!probe) PS_FAIL(PS_ERR_INPUT, "%s: cannot open: no such file or not readable", path);
  fclose(probe);
  if (H5Fis_hdf5(path) <= 0)
    PS_FAIL(PS_ERR_INPUT, "%s: not an HDF5 file (expected an AnnData .h5ad or a 10x Genomics .h5; convert a MEX "
            "folder with `pertscore convert`)", path);
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) PS_FAIL(PS_ERR_INPUT, "%s: HDF5 file cannot be opened (truncated or damaged?)", path);
  char enc[64] = "";
  int found = 0;
  hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  int err = root < 0 ? PS_ERR_SYSTEM : ps_h5_attr_string(root, "encoding-type", enc, sizeof enc, &found);
  if (root >= 0) H5Gclose(root);
  int anndata = !err && ((found && strcmp(enc, "anndata") == 0) || ps_h5_exists(file, "X"));
  int tenx = 0;
  if (!err && !anndata && ps_h5_exists(file, "matrix")) {
    H5O_info_t info;
    tenx = H5Oget_info_by_name(file, "matrix", &info, H5P_DEFAULT) >= 0 && info.type == H5O_TYPE_GROUP;
  }
  H5Fclose(file);
  if (err) return ps_error_trace(err, __FILE__, __LINE__);
  if (anndata) *format = PS_FORMAT_H5AD;
  else if (tenx) *format = PS_FORMAT_TENX;
  else
    PS_FAIL(PS_ERR_INPUT, "%s: neither an AnnData .h5ad (no /X, root encoding-type is not 'anndata') nor a 10x "
            "Genomics feature-barcode matrix .h5 (no /matrix group; Cell Ranger 2 files are not supported)", path);
  return PS_OK;
}

int ps_input_sniff(MPI_Comm comm, const char *path, ps_input_format *format) {
  int rank, value = 0;
  MPI_Comm_rank(comm, &rank);
  ps_input_format mine = 0;
  int err = rank == 0 ? sniff_local(path, &mine) : PS_OK;
  PS_CALL(ps_error_sync(comm, err));
  value = (int)mine;
  PS_CHECK_MPI(MPI_Bcast(&value, 1, MPI_INT, 0, comm));
  *format = (ps_input_format)value;
  return PS_OK;
}

int ps_read_expression(MPI_Comm comm, const char *path, const char *layer, ps_matrix *out) {
  memset(out, 0, sizeof *out);
  ps_input_format format;
  PS_CALL(ps_input_sniff(comm, path, &format));
  if (format == PS_FORMAT_H5AD) {
    PS_CALL(ps_error_sync(comm, ps_h5ad_read_matrix(comm, path, layer, out)));
    return PS_OK;
  }
  if (layer && *layer)
    PS_CALL(ps_error_sync(comm, ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                                             "%s: a 10x Genomics .h5 has no layers (--layer %s); drop --layer",
                                             path, layer)));
  PS_CALL(ps_error_sync(comm, ps_tenx_read(comm, path, 0, out, NULL)));
  return PS_OK;
}
