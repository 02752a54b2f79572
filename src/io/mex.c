/* Cell Ranger MEX folders (matrix.mtx, barcodes.tsv, features.tsv or genes.tsv,
 * each plain or gzipped) for `pertscore convert` (SPEC.md section 0).
 *
 * Parsing is serial (one rank): a MatrixMarket file is a text stream with no
 * index to split on. The matrix is never dense: coordinate entries are kept as
 * triplets, bucketed by barcode in place (a counting sort), and become CSR by
 * cell; each row is then sorted by feature. zlib's gzopen/gzgets read gzipped and
 * plain files alike. The .h5ad is written collectively with the h5ad writer. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "pertscore/io.h"

#define MEX_GENE "Gene Expression"
#define MEX_GUIDE "CRISPR Guide Capture"
#define MEX_OTHER (-1) /* role of a feature of another type; guides are -2 - index */

/* ---------------------------------------------------------------- text lines (gzip or plain) */

typedef struct {
  gzFile gz;
  const char *path;
  char *line;
  size_t cap;
  int64_t line_no;
} text_in;

static int text_open(text_in *t, const char *path) {
  memset(t, 0, sizeof *t);
  t->path = path;
  t->gz = gzopen(path, "rb");
  if (!t->gz) PS_FAIL(PS_ERR_INPUT, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
  gzbuffer(t->gz, 1 << 17);
  t->cap = 512;
  PS_ALLOC(t->line, t->cap);
  return PS_OK;
}

static void text_close(text_in *t) {
  if (t->gz) gzclose(t->gz);
  free(t->line);
  t->gz = NULL;
  t->line = NULL;
}

/* Next line into t->line without its line end; *got = 0 at the end of the file. */
static int text_next(text_in *t, int *got) {
  size_t len = 0;
  *got = 0;
  for (;;) {
    if (t->cap - len < 2) {
      char *bigger = realloc(t->line, 2 * t->cap);
      if (!bigger) PS_FAIL(PS_ERR_SYSTEM, "%s: out of memory reading line %lld", t->path, (long long)t->line_no + 1);
      t->line = bigger;
      t->cap *= 2;
    }
    if (!gzgets(t->gz, t->line + len, (int)(t->cap - len))) break;
    len += strlen(t->line + len);
    if (len && t->line[len - 1] == '\n') break;
  }
  int errnum = Z_OK;
  const char *msg = gzerror(t->gz, &errnum);
  size_t plen = strlen(t->path); /* zlib prefixes its message with the path */
  if (strncmp(msg, t->path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0) msg += plen + 2;
  if (errnum != Z_OK)
    PS_FAIL(PS_ERR_INPUT, "%s: line %lld: %s (damaged or truncated gzip file?)", t->path, (long long)t->line_no + 1,
            errnum == Z_ERRNO ? strerror(errno) : msg);
  if (len == 0) return PS_OK;
  while (len && (t->line[len - 1] == '\n' || t->line[len - 1] == '\r')) t->line[--len] = '\0';
  t->line_no++;
  *got = 1;
  return PS_OK;
}

/* ---------------------------------------------------------------- the three files */

static int find_file(const char *dir, const char *const *names, int n, char *path, size_t size) {
  char tried[256] = "";
  for (int i = 0; i < n; i++) {
    snprintf(path, size, "%s/%s", dir, names[i]);
    if (access(path, R_OK) == 0) return PS_OK;
    size_t used = strlen(tried);
    snprintf(tried + used, sizeof tried - used, "%s%s", i ? ", " : "", names[i]);
  }
  PS_FAIL(PS_ERR_INPUT, "%s: the MEX folder has none of %s (or it is not readable)", dir, tried);
}

/* Split line in place at tabs; returns the number of fields (at most max). */
static int split_tabs(char *line, char **fields, int max) {
  int n = 0;
  while (n < max) {
    fields[n++] = line;
    char *tab = strchr(line, '\t');
    if (!tab) break;
    *tab = '\0';
    line = tab + 1;
  }
  return n;
}

/* features.tsv: id, name, feature_type; genes.tsv (Cell Ranger 2): id, name. A
 * two-column features.tsv is taken as all Gene Expression too. role[f] is the
 * X column of a Gene Expression feature, -2 - i for guide-capture feature i. */
static int read_features(ps_mex *m, int by_id, int32_t **role_out) {
  text_in t;
  PS_CALL(text_open(&t, m->features_path));
  ps_strmap seen;
  PS_CALL(ps_strmap_init(&seen, 1024));
  int64_t cap = 1024;
  int32_t *role;
  PS_ALLOC(role, cap);
  int got, err = PS_OK;
  while (!err && !(err = text_next(&t, &got)) && got) {
    char *f[4];
    int n = split_tabs(t.line, f, 4);
    if (n < 2 || !*f[0] || !*f[1]) {
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld: expected 'id<TAB>name[<TAB>feature_type]', "
                         "got '%.80s'", t.path, (long long)t.line_no, f[0]);
      break;
    }
    const char *type = n >= 3 && *f[2] ? f[2] : MEX_GENE;
    if (m->n_features == INT32_MAX) {
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: too many features", t.path);
      break;
    }
    if (m->n_features == cap) {
      int32_t *bigger = realloc(role, (size_t)(2 * cap) * sizeof *role);
      if (!bigger) {
        err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory reading %s", t.path);
        break;
      }
      role = bigger;
      cap *= 2;
    }
    if (strcmp(type, MEX_GENE) == 0) {
      const char *key = by_id ? f[0] : f[1];
      int64_t before = ps_strmap_get(&seen, key);
      if (before >= 0) {
        err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld: gene %s '%s' is already on line %lld "
                           "(var names must be unique%s)", t.path, (long long)t.line_no, by_id ? "id" : "name", key,
                           (long long)before, by_id ? "" : "; --var-names id names genes by their ids");
        break;
      }
      if (!err) err = ps_strmap_put(&seen, key, t.line_no);
      role[m->n_features] = (int32_t)m->gene_ids.n;
      if (!err) err = ps_strlist_push(&m->gene_ids, f[0]);
      if (!err) err = ps_strlist_push(&m->gene_names, f[1]);
    } else if (strcmp(type, MEX_GUIDE) == 0) {
      if (strpbrk(f[1], ",|")) {
        err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld: guide name '%s' contains ',' or '|', "
                           "which a protospacer calls table cannot hold", t.path, (long long)t.line_no, f[1]);
        break;
      }
      role[m->n_features] = (int32_t)(-2 - m->guide_names.n);
      err = ps_strlist_push(&m->guide_names, f[1]);
    } else {
      role[m->n_features] = MEX_OTHER;
      m->n_other++;
    }
    m->n_features++;
  }
  ps_strmap_free(&seen);
  text_close(&t);
  if (!err && m->gene_ids.n == 0)
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: no '" MEX_GENE "' feature (%lld features of other "
                       "types); there is no expression to convert", m->features_path, (long long)m->n_features);
  if (err) {
    free(role);
    return err;
  }
  *role_out = role;
  return PS_OK;
}

static int read_barcodes(ps_mex *m) {
  text_in t;
  PS_CALL(text_open(&t, m->barcodes_path));
  ps_strmap seen;
  PS_CALL(ps_strmap_init(&seen, 1024));
  int got, err = PS_OK;
  while (!err && !(err = text_next(&t, &got)) && got) {
    char *tab = strchr(t.line, '\t');
    if (tab) *tab = '\0';
    int64_t before = *t.line ? ps_strmap_get(&seen, t.line) : -1;
    if (!*t.line)
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld is empty (expected a cell barcode)", t.path,
                         (long long)t.line_no);
    else if (before >= 0)
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld: barcode '%s' is already on line %lld",
                         t.path, (long long)t.line_no, t.line, (long long)before);
    else if (m->barcodes.n == INT32_MAX)
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: too many barcodes", t.path);
    if (!err) err = ps_strmap_put(&seen, t.line, t.line_no);
    if (!err) err = ps_strlist_push(&m->barcodes, t.line);
  }
  ps_strmap_free(&seen);
  text_close(&t);
  if (!err && m->barcodes.n == 0)
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: no barcodes", m->barcodes_path);
  return err;
}

/* ---------------------------------------------------------------- matrix.mtx */

/* Coordinate entries of one kind (expression or guides) as triplets. */
typedef struct {
  int32_t *cell, *feature;
  double *value;
  int64_t n, cap;
} triplets;

static int triplets_push(triplets *t, int32_t cell, int32_t feature, double value) {
  if (t->n == t->cap) {
    int64_t want = t->cap ? 2 * t->cap : 4096;
    int32_t *c = realloc(t->cell, (size_t)want * sizeof *c);
    if (c) t->cell = c;
    int32_t *f = c ? realloc(t->feature, (size_t)want * sizeof *f) : NULL;
    if (f) t->feature = f;
    double *v = f ? realloc(t->value, (size_t)want * sizeof *v) : NULL;
    if (!v) PS_FAIL(PS_ERR_SYSTEM, "out of memory holding %lld matrix entries", (long long)want);
    t->value = v;
    t->cap = want;
  }
  t->cell[t->n] = cell;
  t->feature[t->n] = feature;
  t->value[t->n++] = value;
  return PS_OK;
}

typedef struct {
  int32_t feature;
  double value;
} row_entry;

static int compare_row_entries(const void *a, const void *b) {
  const row_entry *x = a, *y = b;
  return (x->feature > y->feature) - (x->feature < y->feature);
}

/* Triplets -> CSR by cell: count per cell, then an in-place counting sort (each
 * swap puts one entry into its cell's bucket for good), then sort each row by
 * feature. Takes over the feature and value arrays. A feature twice in a cell is
 * an error. */
static int triplets_to_csr(triplets *t, int64_t n_cells, int64_t n_cols, const ps_mex *m, int guides, ps_csr *out) {
  out->n_rows = n_cells;
  out->n_cols = n_cols;
  PS_ALLOC(out->indptr, n_cells + 1);
  int64_t *next;
  PS_ALLOC(next, n_cells);
  for (int64_t i = 0; i < t->n; i++) out->indptr[t->cell[i] + 1]++;
  for (int64_t c = 0; c < n_cells; c++) {
    out->indptr[c + 1] += out->indptr[c];
    next[c] = out->indptr[c];
  }
  for (int64_t c = 0; c < n_cells; c++) {
    while (next[c] < out->indptr[c + 1]) {
      int64_t i = next[c], d;
      int32_t cell = t->cell[i];
      if (cell == c) {
        next[c]++;
        continue;
      }
      d = next[cell]++;
      int32_t tc = t->cell[d], tf = t->feature[d];
      double tv = t->value[d];
      t->cell[d] = cell;
      t->feature[d] = t->feature[i];
      t->value[d] = t->value[i];
      t->cell[i] = tc;
      t->feature[i] = tf;
      t->value[i] = tv;
    }
  }
  free(next);
  free(t->cell);
  out->indices = t->feature;
  out->data = t->value;
  memset(t, 0, sizeof *t);
  row_entry *row = NULL;
  int64_t row_cap = 0;
  for (int64_t c = 0; c < n_cells; c++) {
    int64_t b = out->indptr[c], e = out->indptr[c + 1], sorted = 1;
    for (int64_t p = b + 1; p < e && sorted; p++) sorted = out->indices[p] > out->indices[p - 1];
    if (sorted) continue;
    int64_t descending = 1; /* some writers list a barcode's features backwards */
    for (int64_t p = b + 1; p < e && descending; p++) descending = out->indices[p] < out->indices[p - 1];
    if (descending) {
      for (int64_t lo = b, hi = e - 1; lo < hi; lo++, hi--) {
        int32_t ti = out->indices[lo];
        double tv = out->data[lo];
        out->indices[lo] = out->indices[hi];
        out->data[lo] = out->data[hi];
        out->indices[hi] = ti;
        out->data[hi] = tv;
      }
      continue;
    }
    if (e - b > row_cap) {
      free(row);
      row_cap = e - b;
      PS_ALLOC(row, row_cap);
    }
    for (int64_t p = b; p < e; p++) row[p - b] = (row_entry){out->indices[p], out->data[p]};
    qsort(row, (size_t)(e - b), sizeof *row, compare_row_entries);
    for (int64_t p = b; p < e; p++) {
      out->indices[p] = row[p - b].feature;
      out->data[p] = row[p - b].value;
      if (p > b && out->indices[p] == out->indices[p - 1]) {
        const char *name = guides ? m->guide_names.items[out->indices[p]] : m->gene_names.items[out->indices[p]];
        free(row);
        PS_FAIL(PS_ERR_INPUT, "%s: feature '%s' has two entries for barcode %lld ('%s'); entries must be unique",
                m->matrix_path, name, (long long)c + 1, m->barcodes.items[c]);
      }
    }
  }
  free(row);
  return PS_OK;
}

static int parse_header(text_in *t, int *integer) {
  int got;
  PS_CALL(text_next(t, &got));
  char banner[64] = "", object[64] = "", format[64] = "", field[64] = "", symmetry[64] = "";
  if (!got || sscanf(t->line, "%63s %63s %63s %63s %63s", banner, object, format, field, symmetry) != 5 ||
      strcasecmp(banner, "%%MatrixMarket") != 0)
    PS_FAIL(PS_ERR_INPUT, "%s: line 1: not a MatrixMarket header ('%.60s'); expected "
            "'%%%%MatrixMarket matrix coordinate integer general'", t->path, got ? t->line : "");
  *integer = strcasecmp(field, "integer") == 0;
  if (strcasecmp(object, "matrix") != 0 || strcasecmp(format, "coordinate") != 0 ||
      (!*integer && strcasecmp(field, "real") != 0 && strcasecmp(field, "double") != 0) ||
      strcasecmp(symmetry, "general") != 0)
    PS_FAIL(PS_ERR_INPUT, "%s: line 1: MatrixMarket '%s %s %s %s' is not supported; expected 'matrix coordinate "
            "integer general' (or real)", t->path, object, format, field, symmetry);
  return PS_OK;
}

/* The size line after the comments: rows (features), columns (barcodes), entries. */
static int parse_sizes(text_in *t, const ps_mex *m, int64_t *nnz) {
  int got;
  for (;;) {
    PS_CALL(text_next(t, &got));
    if (!got) PS_FAIL(PS_ERR_INPUT, "%s: ends before the size line 'features barcodes entries'", t->path);
    if (t->line[0] != '%' && strspn(t->line, " \t") != strlen(t->line)) break;
  }
  long long rows, cols, entries;
  char extra;
  if (sscanf(t->line, "%lld %lld %lld %c", &rows, &cols, &entries, &extra) != 3 || rows < 0 || cols < 0 || entries < 0)
    PS_FAIL(PS_ERR_INPUT, "%s: line %lld: expected the size line 'features barcodes entries', got '%.80s'", t->path,
            (long long)t->line_no, t->line);
  if (rows != m->n_features)
    PS_FAIL(PS_ERR_INPUT, "%s: line %lld: the matrix has %lld rows but %s lists %lld features", t->path,
            (long long)t->line_no, rows, m->features_path, (long long)m->n_features);
  if (cols != m->barcodes.n)
    PS_FAIL(PS_ERR_INPUT, "%s: line %lld: the matrix has %lld columns but %s lists %lld barcodes", t->path,
            (long long)t->line_no, cols, m->barcodes_path, (long long)m->barcodes.n);
  if (cols > 0 && rows > 0 && entries / cols > rows)
    PS_FAIL(PS_ERR_INPUT, "%s: line %lld: %lld entries cannot fit a %lld x %lld matrix", t->path, (long long)t->line_no,
            entries, rows, cols);
  *nnz = entries;
  return PS_OK;
}

static int parse_entries(text_in *t, ps_mex *m, const int32_t *role, int integer, int64_t nnz, ps_progress *progress,
                         triplets *genes, triplets *guides) {
  int got;
  int64_t n = 0;
  m->integral = 1;
  for (;;) {
    PS_CALL(text_next(t, &got));
    if (!got) break;
    char *p = t->line, *end;
    if (*p == '%' || strspn(p, " \t") == strlen(p)) continue;
    errno = 0;
    long long i = strtoll(p, &end, 10);
    int ok = end != p;
    p = end;
    long long j = ok ? strtoll(p, &end, 10) : 0;
    ok = ok && end != p;
    p = end;
    const char *value_text = p + strspn(p, " \t");
    double v = ok ? strtod(p, &end) : 0;
    ok = ok && end != p && !errno;
    p = end;
    while (*p == ' ' || *p == '\t') p++;
    if (!ok || *p)
      PS_FAIL(PS_ERR_INPUT, "%s: line %lld: expected 'feature barcode value', got '%.80s'", t->path,
              (long long)t->line_no, t->line);
    if (++n > nnz)
      PS_FAIL(PS_ERR_INPUT, "%s: line %lld: more entries than the %lld the size line announces", t->path,
              (long long)t->line_no, (long long)nnz);
    if (i < 1 || i > m->n_features)
      PS_FAIL(PS_ERR_INPUT, "%s: line %lld: feature index %lld is outside [1, %lld]", t->path, (long long)t->line_no, i,
              (long long)m->n_features);
    if (j < 1 || j > m->barcodes.n)
      PS_FAIL(PS_ERR_INPUT, "%s: line %lld: barcode index %lld is outside [1, %lld]", t->path, (long long)t->line_no, j,
              (long long)m->barcodes.n);
    if (!isfinite(v) || v < 0 || (integer && v != floor(v)))
      PS_FAIL(PS_ERR_INPUT, "%s: line %lld: value '%.40s' is not a %s", t->path, (long long)t->line_no, value_text,
              integer ? "count (whole number >= 0)" : "finite number >= 0");
    if (v == 0) continue;
    int32_t r = role[i - 1];
    if (r >= 0) {
      if (v != floor(v) || v >= 16777216.0) m->integral = 0;
      PS_CALL(triplets_push(genes, (int32_t)(j - 1), r, v));
    } else if (r <= -2) {
      PS_CALL(triplets_push(guides, (int32_t)(j - 1), -2 - r, v));
    }
    if (progress && (n & 0xFFFFF) == 0) ps_progress_update(progress, (double)n / (double)nnz);
  }
  if (n < nnz)
    PS_FAIL(PS_ERR_INPUT, "%s: ends after %lld of the %lld entries the size line announces (truncated?)", t->path,
            (long long)n, (long long)nnz);
  return PS_OK;
}

static int read_matrix(ps_mex *m, const int32_t *role, ps_progress *progress) {
  text_in t;
  PS_CALL(text_open(&t, m->matrix_path));
  int integer = 0;
  int64_t nnz = 0;
  triplets genes = {0}, guides = {0};
  int err = parse_header(&t, &integer);
  if (!err) err = parse_sizes(&t, m, &nnz);
  if (!err) err = parse_entries(&t, m, role, integer, nnz, progress, &genes, &guides);
  text_close(&t);
  if (!err) err = triplets_to_csr(&genes, m->barcodes.n, m->gene_ids.n, m, 0, &m->x);
  if (!err) err = triplets_to_csr(&guides, m->barcodes.n, m->guide_names.n, m, 1, &m->guides);
  free(genes.cell);
  free(genes.feature);
  free(genes.value);
  free(guides.cell);
  free(guides.feature);
  free(guides.value);
  return err;
}

int ps_mex_read(const char *dir, int by_id, ps_progress *progress, ps_mex *out) {
  memset(out, 0, sizeof *out);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    PS_FAIL(PS_ERR_INPUT, "%s: not a folder (expected a MEX folder with matrix.mtx, barcodes.tsv and features.tsv, "
            "plain or .gz)", dir);
  static const char *const matrix[] = {"matrix.mtx.gz", "matrix.mtx"};
  static const char *const barcodes[] = {"barcodes.tsv.gz", "barcodes.tsv"};
  static const char *const features[] = {"features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"};
  PS_CALL(find_file(dir, matrix, 2, out->matrix_path, sizeof out->matrix_path));
  PS_CALL(find_file(dir, barcodes, 2, out->barcodes_path, sizeof out->barcodes_path));
  PS_CALL(find_file(dir, features, 4, out->features_path, sizeof out->features_path));
  int32_t *role = NULL;
  int err = read_features(out, by_id, &role);
  if (!err) err = read_barcodes(out);
  if (!err) err = read_matrix(out, role, progress);
  free(role);
  if (err) ps_mex_free(out);
  return err;
}

void ps_mex_free(ps_mex *m) {
  if (!m) return;
  ps_csr_free(&m->x);
  ps_csr_free(&m->guides);
  ps_strlist_free(&m->barcodes);
  ps_strlist_free(&m->gene_ids);
  ps_strlist_free(&m->gene_names);
  ps_strlist_free(&m->guide_names);
}

/* ---------------------------------------------------------------- output */

int ps_mex_write_h5ad(MPI_Comm comm, const ps_mex *m, int by_id, const char *path) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  /* only rank 0 holds the data: every rank needs the shape for the collective writes */
  int64_t dims[3] = {0, 0, 0};
  if (rank == 0) {
    dims[0] = m->x.n_rows;
    dims[1] = m->x.n_cols;
    dims[2] = m->integral;
  }
  PS_CHECK_MPI(MPI_Bcast(dims, 3, MPI_INT64_T, 0, comm));
  int64_t n_cells = dims[0], n_genes = dims[1];
  int64_t zero_ptr = 0;
  ps_csr none = {.n_rows = 0, .n_cols = n_genes, .indptr = &zero_ptr};
  const ps_csr *local = rank == 0 ? &m->x : &none;
  int64_t local_genes = rank == 0 ? n_genes : 0;
  char **types;
  PS_ALLOC(types, local_genes);
  for (int64_t i = 0; i < local_genes; i++) types[i] = (char *)MEX_GENE;
  char *const *ids = rank == 0 ? m->gene_ids.items : NULL, *const *names = rank == 0 ? m->gene_names.items : NULL;
  ps_column columns[3] = {{.name = "gene_ids", .kind = PS_COL_STRING, .strings = ids},
                          {.name = "feature_types", .kind = PS_COL_STRING, .strings = types},
                          {.name = "gene_symbols", .kind = PS_COL_STRING, .strings = names}};
  ps_h5ad_writer *w;
  PS_CALL(ps_h5ad_create(comm, path, &w));
  /* rows of ranks > 0 start after rank 0's: the last rank writes the closing indptr */
  PS_CALL(ps_h5ad_write_csr(w, "X", local, rank == 0 ? 0 : n_cells, n_cells, (int)dims[2]));
  PS_CALL(ps_h5ad_write_frame(w, "obs", rank == 0 ? m->barcodes.items : NULL, rank == 0 ? n_cells : 0, 0, n_cells,
                              NULL, 0));
  PS_CALL(ps_h5ad_write_frame(w, "var", by_id ? ids : names, local_genes, 0, n_genes, columns, by_id ? 3 : 2));
  PS_CALL(ps_h5ad_close(&w));
  free(types);
  return PS_OK;
}

int ps_mex_write_guide_calls(const ps_mex *m, const char *path, double min_guide_umi, int64_t *n_cells) {
  *n_cells = 0;
  FILE *f = fopen(path, "w");
  if (!f) PS_FAIL(PS_ERR_INPUT, "%s: cannot create: %s", path, strerror(errno));
  fputs("cell_barcode,num_features,feature_call,num_umis\n", f);
  const ps_csr *g = &m->guides;
  int err = PS_OK;
  for (int64_t c = 0; c < g->n_rows && !err; c++) {
    int n = 0;
    for (int64_t p = g->indptr[c]; p < g->indptr[c + 1]; p++) n += g->data[p] >= min_guide_umi;
    if (!n) continue;
    if (strchr(m->barcodes.items[c], ',')) {
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: barcode '%s' contains ',', which a CSV cannot hold",
                         m->barcodes_path, m->barcodes.items[c]);
      break;
    }
    fprintf(f, "%s,%d,", m->barcodes.items[c], n);
    for (int pass = 0; pass < 2; pass++) {
      int k = 0;
      for (int64_t p = g->indptr[c]; p < g->indptr[c + 1]; p++) {
        if (g->data[p] < min_guide_umi) continue;
        if (k++) fputc('|', f);
        if (pass == 0) fputs(m->guide_names.items[g->indices[p]], f);
        else fprintf(f, "%.17g", g->data[p]);
      }
      fputc(pass == 0 ? ',' : '\n', f);
    }
    (*n_cells)++;
  }
  int bad = ferror(f);
  if (fclose(f) != 0) bad = 1;
  if (bad && !err) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: write failed (disk full?)", path);
  return err;
}
