/* libFuzzer harness: our decoding of AnnData metadata (src/io/h5ad_read.c, h5.c),
 * structure-aware.
 *
 * Mutating raw HDF5 bytes mostly tests libhdf5 (fuzz_h5ad_bytes.c). Here the
 * input bytes are instead a recipe: each byte picks one choice while a valid
 * HDF5 file is built with libhdf5 itself, so every input reaches our code with
 * a well-formed file whose AnnData content may be anything: X as CSR, CSC, dense
 * or neither; encoding attributes missing, misspelt or of the wrong type; shape
 * of any length, type and value; indptr / indices / data of any length, type,
 * rank and value (negative, decreasing, out of range, NaN, inf); obs / var
 * _index attributes naming anything; index datasets of the wrong length, type
 * or rank; the obs column "guide" categorical (codes of any type and value),
 * string or numeric, of any rank. A byte value 0, and running out of bytes,
 * always picks the valid default, so the empty input is a valid 3 x 4 CSR file.
 *
 * The file is then read as `pertscore run` reads it on one rank: the matrix
 * (ps_read_expression: the format sniffer, then X or layers/counts), then the
 * obs column for every cell. Checked beyond
 * memory safety: a successful read is a consistent CSR block with sorted
 * in-range indices and finite values >= 0, and names for every cell and gene. */
#include <hdf5.h>
#include <math.h>

#include "fuzz_common.h"
#include "pertscore/io.h"

/* ------------------------------------------------------------ known bugs */

/* Constructs that trigger a bug already reported but not yet fixed can be left
 * out, so that a fuzz run looks for new ones: PS_FUZZ_AVOID is a comma-separated
 * list of tags from tests/fuzz/known/README.md (tests/fuzz/run.sh passes the
 * tags listed in tests/fuzz/known/avoid.txt). Unset, every construct is made. */
static int avoid(const char *tag) {
  const char *list = getenv("PS_FUZZ_AVOID");
  if (!list) return 0;
  size_t n = strlen(tag);
  for (const char *p = list; (p = strstr(p, tag)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
  return 0;
}

/* ------------------------------------------------------------ the recipe */

typedef struct {
  const uint8_t *p;
  size_t n;
} recipe;

static unsigned take(recipe *r) {
  if (!r->n) return 0;
  r->n--;
  return *r->p++;
}
/* 0 (or no bytes left) -> def; otherwise a value in [0, max]. */
static int64_t take_small(recipe *r, int64_t def, int64_t max) {
  unsigned b = take(r);
  return b ? (int64_t)(b - 1) % (max + 1) : def;
}
/* One of n choices, 0 being the valid default. */
static int take_choice(recipe *r, int n) { return (int)(take(r) % (unsigned)n); }

/* A number for a corrupted integer field: small values near the edges mostly. */
static int64_t take_int(recipe *r, int64_t near) {
  switch (take_choice(r, 8)) {
    case 0: return near;
    case 1: return near + 1;
    case 2: return near - 1;
    case 3: return -1;
    case 4: return (int64_t)take(r) - 16;
    case 5: return INT32_MAX;
    case 6: return INT64_MAX;
    default: return INT64_MIN;
  }
}

static double take_value(recipe *r) {
  switch (take_choice(r, 10)) {
    case 0: return 1.0;
    case 1: return 0.0;
    case 2: return (double)take(r);
    case 3: return 2.5;
    case 4: return -1.0;
    case 5: return NAN;
    case 6: return INFINITY;
    case 7: return -0.0;
    case 8: return 1e308;
    default: return 1e-310; /* subnormal */
  }
}

/* ------------------------------------------------------------ writing helpers */

/* File type for a numeric dataset: 0 = the usual one (given), then the others. */
static hid_t take_numeric_type(recipe *r, hid_t usual) {
  switch (take_choice(r, 8)) {
    case 0: return usual;
    case 1: return H5T_STD_I32LE;
    case 2: return H5T_STD_U64LE;
    case 3: return H5T_IEEE_F64LE;
    case 4: return H5T_STD_I8LE;
    case 5: return H5T_IEEE_F32BE;
    case 6: return H5T_STD_U32LE;
    default: return -1; /* strings */
  }
}

/* Shape of a 1-D dataset of n elements: 0 = 1-D, else 2-D (n x 1), 2-D (1 x n) or scalar. */
static int take_rank(recipe *r, int64_t n, hsize_t dims[2]) {
  switch (take_choice(r, 6)) {
    case 1: dims[0] = (hsize_t)n; dims[1] = 1; return 2;
    case 2: dims[0] = 1; dims[1] = (hsize_t)n; return 2;
    case 3: dims[0] = 1; return 0;
    default: dims[0] = (hsize_t)n; return 1;
  }
}

static void write_doubles(hid_t loc, const char *name, hid_t ftype, int rank, const hsize_t *dims,
                          const double *values, int64_t n) {
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  int64_t elements = rank ? (int64_t)H5Sget_simple_extent_npoints(space) : 1;
  if (ftype < 0) { /* numbers stored as fixed-length strings */
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 24);
    char *text = calloc((size_t)(elements ? elements : 1), 24);
    for (int64_t i = 0; i < elements && i < n; i++) snprintf(text + 24 * i, 24, "%.17g", values[i]);
    hid_t ds = H5Dcreate2(loc, name, st, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds >= 0) {
      H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, text);
      H5Dclose(ds);
    }
    free(text);
    H5Tclose(st);
  } else {
    double *buf = calloc((size_t)(elements ? elements : 1), sizeof *buf);
    for (int64_t i = 0; i < elements && i < n; i++) buf[i] = values[i];
    hid_t ds = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds >= 0) {
      /* conversions that overflow (NaN to int, 1e308 to float) are clipped by libhdf5 */
      H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
      H5Dclose(ds);
    }
    free(buf);
  }
  H5Sclose(space);
}

static void write_ints(hid_t loc, const char *name, hid_t ftype, int rank, const hsize_t *dims,
                       const int64_t *values, int64_t n) {
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  int64_t elements = rank ? (int64_t)H5Sget_simple_extent_npoints(space) : 1;
  int64_t *buf = calloc((size_t)(elements ? elements : 1), sizeof *buf);
  for (int64_t i = 0; i < elements && i < n; i++) buf[i] = values[i];
  if (ftype < 0) {
    double *d = calloc((size_t)(elements ? elements : 1), sizeof *d);
    for (int64_t i = 0; i < elements; i++) d[i] = (double)buf[i];
    H5Sclose(space);
    write_doubles(loc, name, -1, rank, dims, d, elements);
    free(d);
    free(buf);
    return;
  }
  hid_t ds = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ds >= 0) {
    H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(ds);
  }
  free(buf);
  H5Sclose(space);
}

/* Strings: variable-length UTF-8 (AnnData's choice) or fixed-length. */
static void write_strings(hid_t loc, const char *name, int vlen, int rank, const hsize_t *dims,
                          char *const *values, int64_t n) {
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  int64_t elements = rank ? (int64_t)H5Sget_simple_extent_npoints(space) : 1;
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_cset(st, H5T_CSET_UTF8);
  size_t width = 1;
  for (int64_t i = 0; i < n; i++)
    if (strlen(values[i]) > width) width = strlen(values[i]);
  H5Tset_size(st, vlen ? H5T_VARIABLE : width);
  char **ptrs = calloc((size_t)(elements ? elements : 1), sizeof *ptrs);
  char *packed = calloc((size_t)(elements ? elements : 1), width);
  for (int64_t i = 0; i < elements; i++) {
    ptrs[i] = i < n ? values[i] : "";
    memcpy(packed + i * width, ptrs[i], strlen(ptrs[i]));
  }
  hid_t ds = H5Dcreate2(loc, name, st, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ds >= 0) {
    H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, vlen ? (void *)ptrs : (void *)packed);
    H5Dclose(ds);
  }
  free(ptrs);
  free(packed);
  H5Tclose(st);
  H5Sclose(space);
}

static void attr_string(hid_t obj, const char *name, const char *value, int vlen) {
  hid_t st = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
  H5Tset_cset(st, H5T_CSET_UTF8);
  H5Tset_size(st, vlen ? H5T_VARIABLE : (strlen(value) ? strlen(value) : 1));
  hid_t a = H5Acreate2(obj, name, st, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0) {
    H5Awrite(a, st, vlen ? (const void *)&value : (const void *)value);
    H5Aclose(a);
  }
  H5Sclose(space);
  H5Tclose(st);
}

/* A string attribute as AnnData writes it, or the same name with a wrong type. */
static void take_attr_string(recipe *r, hid_t obj, const char *name, const char *value) {
  switch (take_choice(r, 6)) {
    case 0: attr_string(obj, name, value, 1); break;
    case 1: attr_string(obj, name, value, 0); break;
    case 2: break; /* absent */
    case 3: { /* an integer */
      hid_t space = H5Screate(H5S_SCALAR);
      hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
      int64_t v = 7;
      if (a >= 0) {
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
      }
      H5Sclose(space);
      break;
    }
    case 4: attr_string(obj, name, "", 1); break;
    default: { /* a 1-D array of two strings */
      if (avoid("attr-array")) {
        attr_string(obj, name, value, 1);
        break;
      }
      hsize_t two = 2;
      hid_t st = H5Tcopy(H5T_C_S1), space = H5Screate_simple(1, &two, NULL);
      H5Tset_size(st, H5T_VARIABLE);
      const char *v[2] = {value, value};
      hid_t a = H5Acreate2(obj, name, st, space, H5P_DEFAULT, H5P_DEFAULT);
      if (a >= 0) {
        H5Awrite(a, st, v);
        H5Aclose(a);
      }
      H5Sclose(space);
      H5Tclose(st);
    }
  }
}

/* ------------------------------------------------------------ building the file */

typedef struct {
  int64_t n_cells, n_genes; /* true size of the matrix written */
  int use_layer;
} built;

/* X as a CSR (csc = 0) or CSC (csc = 1) group. */
static void write_sparse(recipe *r, hid_t file, const char *where, int csc, int64_t n_cells, int64_t n_genes) {
  int64_t n_major = csc ? n_genes : n_cells, n_minor = csc ? n_cells : n_genes;
  hid_t g = H5Gcreate2(file, where, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return;
  static const char *encodings[] = {NULL, "csr_matrix", "csc_matrix", "array", "coo_matrix", "cs", "csrx"};
  int enc = take_choice(r, 7);
  const char *encoding = enc ? encodings[enc] : (csc ? "csc_matrix" : "csr_matrix");
  if (take_choice(r, 4) == 3) attr_string(g, "h5sparse_format", csc ? "csc" : "csr", 1); /* old anndata */
  else take_attr_string(r, g, "encoding-type", encoding);
  attr_string(g, "encoding-version", "0.1.0", 1);

  /* shape: [cells, genes] as int64, or corrupted */
  int64_t shape[3] = {n_cells, n_genes, 1};
  int shape_mode = take_choice(r, 6);
  if (shape_mode == 1) shape[0] = take_int(r, n_cells);
  if (shape_mode == 2) shape[1] = take_int(r, n_genes);
  for (int i = 0; i < 2; i++) {
    if (shape[i] == INT64_MAX && avoid("shape-max")) shape[i] = INT64_MAX - 1;
    if (shape[i] > (1 << 20) && avoid("shape-vs-obs")) shape[i] = 1 << 20;
  }
  if (shape_mode != 3) {
    hsize_t len = shape_mode == 4 ? 3 : shape_mode == 5 ? 1 : 2;
    hid_t type = take_numeric_type(r, H5T_STD_I64LE);
    if (type < 0) type = H5T_IEEE_F64LE;
    hid_t space = H5Screate_simple(1, &len, NULL);
    hid_t a = H5Acreate2(g, "shape", type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
      H5Awrite(a, H5T_NATIVE_INT64, shape);
      H5Aclose(a);
    }
    H5Sclose(space);
  }

  /* a valid pointer array, indices and values, then optional damage */
  int64_t *indptr = calloc((size_t)n_major + 2, sizeof *indptr);
  int64_t cap = n_major * n_minor + 4, nnz = 0;
  int64_t *indices = calloc((size_t)cap, sizeof *indices);
  double *data = calloc((size_t)cap, sizeof *data);
  for (int64_t i = 0; i < n_major; i++) {
    int64_t count = take_small(r, i % 2 ? 1 : 2, n_minor);
    if (count > n_minor) count = n_minor;
    int64_t start = take_small(r, 0, n_minor - count);
    for (int64_t k = 0; k < count; k++) {
      indices[nnz] = start + k;
      data[nnz++] = take_value(r);
    }
    indptr[i + 1] = nnz;
  }
  int64_t n_ptr = n_major + 1, n_idx = nnz, n_data = nnz;
  switch (take_choice(r, 8)) {
    case 1: indptr[take_small(r, 0, n_major)] = take_int(r, nnz); break;
    case 2: n_ptr = take_small(r, n_major, n_major + 2); break;
    case 3: if (nnz) indices[take_small(r, 0, nnz - 1)] = take_int(r, n_minor); break;
    case 4: n_idx = take_small(r, nnz + 1, nnz + 1); break;
    case 5: n_data = take_small(r, nnz > 0 ? nnz - 1 : 0, nnz + 1); break;
    case 6: if (nnz > 1) indices[1] = indices[0]; break; /* duplicate / unsorted */
    case 7: for (int64_t i = 0; i <= n_major; i++) indptr[i] = take_int(r, indptr[i]); break;
    default: break;
  }
  if (avoid("nnz-huge"))
    for (int64_t i = 0; i < n_ptr; i++)
      if (indptr[i] > INT64_MAX / 2) indptr[i] = INT64_MAX / 2;
  hsize_t dims[2];
  int rank = take_rank(r, n_ptr, dims);
  write_ints(g, "indptr", take_numeric_type(r, H5T_STD_I64LE), rank, dims, indptr, n_ptr);
  rank = take_rank(r, n_idx, dims);
  write_ints(g, "indices", take_numeric_type(r, H5T_STD_I32LE), rank, dims, indices, n_idx);
  if (take_choice(r, 8) == 7) { /* data as a group: the wrong kind of object */
    hid_t d = H5Gcreate2(g, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0) H5Gclose(d);
  } else {
    rank = take_rank(r, n_data, dims);
    write_doubles(g, "data", take_numeric_type(r, H5T_IEEE_F32LE), rank, dims, data, n_data);
  }
  free(indptr);
  free(indices);
  free(data);
  H5Gclose(g);
}

static void write_dense(recipe *r, hid_t file, const char *where, int64_t n_cells, int64_t n_genes) {
  hsize_t dims[3] = {(hsize_t)n_cells, (hsize_t)n_genes, 2};
  int rank = 2;
  switch (take_choice(r, 6)) {
    case 1: rank = 1; break;
    case 2: rank = 3; break;
    case 3: dims[0] = 0; break;
    case 4: dims[1] = 0; break;
    default: break;
  }
  hsize_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  double *v = calloc((size_t)n + 1, sizeof *v);
  for (hsize_t i = 0; i < n; i++) v[i] = take_choice(r, 3) ? 0.0 : take_value(r);
  write_doubles(file, where, take_numeric_type(r, H5T_IEEE_F64LE), rank, dims, v, (int64_t)n);
  free(v);
}

/* Rank of an obs column dataset: as take_rank, or always 1-D while the known bug
 * "obs-rank" is avoided. */
static int take_column_rank(recipe *r, int64_t n, hsize_t dims[2]) {
  int rank = take_rank(r, n, dims);
  if (rank != 1 && avoid("obs-rank")) {
    dims[0] = (hsize_t)n;
    rank = 1;
  }
  return rank;
}

/* obs or var: the _index attribute and the names it points to. */
static void write_frame(recipe *r, hid_t file, const char *frame, const char *prefix, int64_t n) {
  if (take_choice(r, 16) == 15) return; /* no frame at all */
  hid_t g = H5Gcreate2(file, frame, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return;
  attr_string(g, "encoding-type", "dataframe", 1);
  static const char *index_names[] = {"_index", "index", "", "missing", "/X", "../var/_index", "a/b/c", ".", "guide"};
  int which = take_choice(r, 9);
  take_attr_string(r, g, "_index", index_names[which]);
  int64_t len = take_choice(r, 4) == 3 ? take_small(r, n, n + 2) : n;
  char **names = calloc((size_t)len + 1, sizeof *names);
  for (int64_t i = 0; i < len; i++) {
    names[i] = malloc(32);
    switch (take_choice(r, 4)) {
      case 1: snprintf(names[i], 32, "%s", ""); break;
      case 2: snprintf(names[i], 32, "%s%lld-1", prefix, (long long)i); break;
      case 3: snprintf(names[i], 32, "%s", "same"); break;
      default: snprintf(names[i], 32, "%s%lld", prefix, (long long)i);
    }
  }
  hsize_t dims[2];
  const char *dataset = which == 0 || which == 1 || which == 8 ? index_names[which] : "_index";
  /* obs index named "guide" is also the guide column */
  int rank = strcmp(dataset, "guide") == 0 ? take_column_rank(r, len, dims) : take_rank(r, len, dims);
  if (take_choice(r, 8) == 7) {
    int64_t *numbers = calloc((size_t)len + 1, sizeof *numbers);
    write_ints(g, dataset, H5T_STD_I64LE, rank, dims, numbers, len);
    free(numbers);
  } else {
    write_strings(g, dataset, take_choice(r, 3) != 2, rank, dims, names, len);
  }
  for (int64_t i = 0; i < len; i++) free(names[i]);
  free(names);
  H5Gclose(g);
}

/* obs column "guide": categorical (the AnnData way), strings, numbers or absent. */
static void write_guide_column(recipe *r, hid_t file, int64_t n) {
  hid_t obs = H5Gopen2(file, "obs", H5P_DEFAULT);
  if (obs < 0) return;
  static char *labels[] = {"NonTargeting", "GENE1", "GENE2+GENE3", "", "GENE1|NonTargeting"};
  hsize_t dims[2];
  int kind = take_choice(r, 5);
  if (kind == 0 || kind == 1) {
    hid_t g = H5Gcreate2(obs, "guide", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g >= 0) {
      attr_string(g, "encoding-type", "categorical", 1);
      int64_t n_cat = take_small(r, 3, 5);
      int rank = take_rank(r, n_cat, dims);
      write_strings(g, "categories", take_choice(r, 2) == 0, rank, dims, labels, n_cat);
      int64_t *codes = calloc((size_t)n + 1, sizeof *codes);
      for (int64_t i = 0; i < n; i++) codes[i] = kind == 1 ? take_int(r, n_cat - 1) : take_small(r, i % 3, n_cat + 1) - 1;
      rank = take_column_rank(r, n, dims);
      write_ints(g, "codes", take_numeric_type(r, H5T_STD_I8LE), rank, dims, codes, n);
      free(codes);
      H5Gclose(g);
    }
  } else if (kind == 2) {
    char **values = calloc((size_t)n + 1, sizeof *values);
    for (int64_t i = 0; i < n; i++) values[i] = labels[take_small(r, i % 3, 4)];
    int rank = take_column_rank(r, n, dims);
    write_strings(obs, "guide", take_choice(r, 2) == 0, rank, dims, values, n);
    free(values);
  } else if (kind == 3) {
    double *values = calloc((size_t)n + 1, sizeof *values);
    for (int64_t i = 0; i < n; i++) values[i] = take_value(r);
    int rank = take_column_rank(r, n, dims);
    write_doubles(obs, "guide", take_numeric_type(r, H5T_IEEE_F64LE), rank, dims, values, n);
    free(values);
  }
  H5Gclose(obs);
}

static int build(recipe *r, const char *path, built *b) {
  hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) return -1;
  take_attr_string(r, file, "encoding-type", "anndata"); /* what the input sniffer looks at */
  b->n_cells = take_small(r, 3, 6);
  b->n_genes = take_small(r, 4, 6);
  b->use_layer = take_choice(r, 4) == 3;
  const char *where = "X";
  if (b->use_layer) {
    hid_t layers = H5Gcreate2(file, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (layers >= 0) H5Gclose(layers);
    where = "layers/counts";
  }
  switch (take_choice(r, 5)) {
    case 0: write_sparse(r, file, where, 0, b->n_cells, b->n_genes); break;
    case 1: write_sparse(r, file, where, 1, b->n_cells, b->n_genes); break;
    case 2: write_dense(r, file, where, b->n_cells, b->n_genes); break;
    case 3: { /* a group with no matrix in it */
      hid_t g = H5Gcreate2(file, where, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (g >= 0) H5Gclose(g);
      break;
    }
    default: break; /* absent */
  }
  write_frame(r, file, "obs", "cell", b->n_cells);
  write_frame(r, file, "var", "gene", b->n_genes);
  write_guide_column(r, file, b->n_cells);
  return H5Fclose(file) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ the harness */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* Open MPI's MPI-IO opens shared-file-pointer helpers (lock files under /tmp)
   * on every file open; pertscore never uses shared file pointers. */
  setenv("OMPI_MCA_sharedfp", "^sm,lockedfile", 0);
  /* libFuzzer, not Open MPI, must handle SIGABRT/SIGSEGV (to save the input). */
  setenv("OMPI_MCA_opal_signal", "", 0);
  int provided;
  MPI_Init_thread(argc, argv, MPI_THREAD_SINGLE, &provided);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  /* Every file open allocates a 512 KiB cache index; let libhdf5 keep freed blocks
   * for reuse instead of returning them (fresh pages cost more than the run). */
  H5set_free_list_limits(-1, -1, -1, -1, -1, -1);
  return 0;
}

/* Close every HDF5 object our reader left open on an error path. */
static void close_leftovers(void) {
  ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (n <= 0) return;
  hid_t *ids = malloc((size_t)n * sizeof *ids);
  if (!ids) abort();
  n = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_ALL, (size_t)n, ids);
  for (ssize_t i = 0; i < n; i++) {
    H5I_type_t t = H5Iget_type(ids[i]);
    if (t == H5I_DATASET) H5Dclose(ids[i]);
    else if (t == H5I_GROUP) H5Gclose(ids[i]);
    else if (t == H5I_DATATYPE) H5Tclose(ids[i]);
    else if (t == H5I_ATTR) H5Aclose(ids[i]);
  }
  for (ssize_t i = 0; i < n; i++)
    if (H5Iget_type(ids[i]) == H5I_FILE) H5Fclose(ids[i]);
  free(ids);
}

static void check_matrix(const ps_matrix *m) {
  FUZZ_CHECK(m->n_cells > 0 && m->n_genes > 0);
  FUZZ_CHECK(m->cell_begin == 0 && m->x.n_rows == m->n_cells && m->x.n_cols == m->n_genes);
  FUZZ_CHECK(m->cells.n == m->n_cells && m->genes.n == m->n_genes);
  FUZZ_CHECK(m->x.indptr[0] == 0);
  for (int64_t i = 0; i < m->x.n_rows; i++) {
    FUZZ_CHECK(m->x.indptr[i] <= m->x.indptr[i + 1]);
    for (int64_t p = m->x.indptr[i]; p < m->x.indptr[i + 1]; p++) {
      FUZZ_CHECK(m->x.indices[p] >= 0 && m->x.indices[p] < m->n_genes);
      FUZZ_CHECK(p == m->x.indptr[i] || m->x.indices[p] > m->x.indices[p - 1]);
      FUZZ_CHECK(isfinite(m->x.data[p]) && m->x.data[p] >= 0);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  recipe r = {data, size};
  built b;
  /* PS_FUZZ_KEEP=FILE.h5ad keeps the file built from the input (to triage a finding) */
  const char *path = getenv("PS_FUZZ_KEEP") ? getenv("PS_FUZZ_KEEP") : fuzz_scratch(".h5ad");
  if (build(&r, path, &b) != 0) {
    close_leftovers();
    return 0;
  }
  ps_matrix m;
  int err = ps_read_expression(MPI_COMM_SELF, path, b.use_layer ? "counts" : NULL, &m);
  if (err == PS_OK) check_matrix(&m);
  else FUZZ_CHECK(ps_error_message()[0] != '\0');
  ps_matrix_free(&m);
  close_leftovers();
  ps_error_clear();

  /* the obs column, for the cells the recipe wrote (the reader's caller passes
   * its block of cells, so begin <= end always holds) */
  ps_strlist labels;
  err = ps_h5ad_read_obs_column(MPI_COMM_SELF, path, "guide", 0, b.n_cells, &labels);
  if (err == PS_OK) FUZZ_CHECK(labels.n == b.n_cells);
  else FUZZ_CHECK(ps_error_message()[0] != '\0');
  ps_strlist_free(&labels);
  close_leftovers();
  ps_error_clear();
  return 0;
}
