/* Writing .h5ad files (results and simulated input) collectively: every rank
 * writes its rows with hyperslab selections, small items come from identical
 * copies on every rank. Strings are stored fixed-length so they can be written
 * in parallel; AnnData reads them as ordinary strings. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5.h"
#include "pertscore/io.h"

struct ps_h5ad_writer {
  ps_h5 h;
  char path[4096];
};

static int create_plain_group(ps_h5 *h, const char *name, hid_t *group) {
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_obj_track_times(gcpl, 0);
  *group = H5Gcreate2(h->file, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  if (*group < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot create group /%s", h->path, name);
  return PS_OK;
}

int ps_h5ad_create(MPI_Comm comm, const char *path, ps_h5ad_writer **out) {
  ps_h5ad_writer *w;
  PS_ALLOC_SYNC(comm, w, 1); /* the file is created collectively */
  snprintf(w->path, sizeof w->path, "%s", path);
  int err = ps_h5_create(comm, w->path, &w->h);
  if (err) {
    free(w);
    return err;
  }
  hid_t root = H5Gopen2(w->h.file, "/", H5P_DEFAULT);
  PS_CALL(ps_h5_encoding(root, "anndata", "0.1.0"));
  H5Gclose(root);
  static const char *dicts[] = {"layers", "obsm", "obsp", "varm", "varp", "uns"};
  for (size_t i = 0; i < sizeof dicts / sizeof *dicts; i++) {
    hid_t g;
    PS_CALL(ps_h5_group_path(&w->h, dicts[i], &g));
    H5Gclose(g);
  }
  *out = w;
  return PS_OK;
}

int ps_h5ad_close(ps_h5ad_writer **w) {
  if (!w || !*w) return PS_OK;
  int err = ps_h5_close(&(*w)->h);
  free(*w);
  *w = NULL;
  return err;
}

int ps_csr_index_wide(int64_t nnz_total, int64_t n_cols) {
  return nnz_total > INT32_MAX || n_cols > INT32_MAX;
}

int ps_h5ad_write_csr(ps_h5ad_writer *w, const char *name, const ps_csr *local, int64_t row_offset,
                      int64_t n_rows_global, int data_float32) {
  ps_h5 *h = &w->h;
  int64_t nnz = ps_csr_nnz(local), nnz_before = 0, nnz_total = 0;
  PS_CHECK_MPI(MPI_Exscan(&nnz, &nnz_before, 1, MPI_INT64_T, MPI_SUM, h->comm));
  if (h->rank == 0) nnz_before = 0;
  PS_CHECK_MPI(MPI_Allreduce(&nnz, &nnz_total, 1, MPI_INT64_T, MPI_SUM, h->comm));
  char parent[512], sub[600];
  snprintf(parent, sizeof parent, "%s", name);
  char *slash = strrchr(parent, '/');
  if (slash) { /* e.g. layers/counts: make sure layers exists */
    *slash = '\0';
    hid_t pg;
    PS_CALL(ps_h5_group_path(h, parent, &pg));
    H5Gclose(pg);
  }
  hid_t g;
  PS_CALL(create_plain_group(h, name, &g));
  PS_CALL(ps_h5_encoding(g, "csr_matrix", "0.1.0"));
  int64_t shape[2] = {n_rows_global, local->n_cols};
  PS_CALL(ps_h5_attr_write_i64s(g, "shape", shape, 2));
  H5Gclose(g);
  snprintf(sub, sizeof sub, "%s/data", name);
  PS_CALL(ps_h5_write_range(h, sub, data_float32 ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, nnz_total,
                            nnz_before, nnz, local->data));
  /* indices and indptr get one integer type, as scipy (and so anndata) writes
   * them: int32 when nnz and the column count fit, else int64 for both. scipy
   * 1.10 refuses to index a matrix whose two index arrays differ in type
   * ("Output dtype not compatible with inputs"). */
  int wide = ps_csr_index_wide(nnz_total, local->n_cols);
  hid_t index_type = wide ? H5T_STD_I64LE : H5T_STD_I32LE;
  snprintf(sub, sizeof sub, "%s/indices", name);
  PS_CALL(ps_h5_write_range(h, sub, index_type, H5T_NATIVE_INT32, nnz_total, nnz_before, nnz, local->indices));
  /* indptr: rank r writes its n_rows entries shifted to global positions; the
   * last rank also writes the final entry (HDF5 converts int64 to the file's
   * int32, which holds every entry since nnz_total fits). */
  int64_t count = local->n_rows + (h->rank == h->size - 1 ? 1 : 0);
  int64_t *ptr;
  PS_ALLOC_SYNC(h->comm, ptr, count); /* before the collective write */
  for (int64_t i = 0; i < count; i++) ptr[i] = local->indptr[i] + nnz_before;
  snprintf(sub, sizeof sub, "%s/indptr", name);
  PS_CALL(ps_h5_write_range(h, sub, index_type, H5T_NATIVE_INT64, n_rows_global + 1, row_offset, count, ptr));
  free(ptr);
  return PS_OK;
}

static int write_column(ps_h5 *h, const char *frame, const ps_column *c, int64_t n_local, int64_t offset,
                        int64_t n_global) {
  char name[600];
  snprintf(name, sizeof name, "%s/%s", frame, c->name);
  if (c->kind == PS_COL_CATEGORICAL) {
    hid_t g;
    PS_CALL(create_plain_group(h, name, &g));
    PS_CALL(ps_h5_encoding(g, "categorical", "0.2.0"));
    PS_CALL(ps_h5_attr_write_bool(g, "ordered", 0));
    H5Gclose(g);
    char sub[700];
    snprintf(sub, sizeof sub, "%s/codes", name);
    int64_t n_cat = c->categories->n;
    hid_t code_type = n_cat < 127 ? H5T_STD_I8LE : (n_cat < 32767 ? H5T_STD_I16LE : H5T_STD_I32LE);
    PS_CALL(ps_h5_write_range(h, sub, code_type, H5T_NATIVE_INT32, n_global, offset, n_local, c->codes));
    snprintf(sub, sizeof sub, "%s/categories", name);
    /* categories are identical everywhere: rank 0 writes them */
    int64_t mine = h->rank == 0 ? n_cat : 0;
    PS_CALL(ps_h5_write_strings(h, sub, n_cat, 0, mine, c->categories->items));
    hid_t ds = H5Dopen2(h->file, sub, H5P_DEFAULT);
    PS_CALL(ps_h5_encoding(ds, "string-array", "0.2.0"));
    H5Dclose(ds);
    return PS_OK;
  }
  if (c->kind == PS_COL_STRING) {
    PS_CALL(ps_h5_write_strings(h, name, n_global, offset, n_local, c->strings));
  } else if (c->kind == PS_COL_F64) {
    PS_CALL(ps_h5_write_range(h, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n_global, offset, n_local, c->f64));
  } else {
    PS_CALL(ps_h5_write_range(h, name, H5T_STD_I64LE, H5T_NATIVE_INT64, n_global, offset, n_local, c->i64));
  }
  hid_t ds = H5Dopen2(h->file, name, H5P_DEFAULT);
  PS_CALL(ps_h5_encoding(ds, c->kind == PS_COL_STRING ? "string-array" : "array", "0.2.0"));
  H5Dclose(ds);
  return PS_OK;
}

int ps_h5ad_write_frame(ps_h5ad_writer *w, const char *name, char *const *index, int64_t n_local,
                        int64_t row_offset, int64_t n_global, const ps_column *columns, int n_columns) {
  ps_h5 *h = &w->h;
  hid_t g;
  PS_CALL(create_plain_group(h, name, &g));
  PS_CALL(ps_h5_encoding(g, "dataframe", "0.2.0"));
  PS_CALL(ps_h5_attr_write_string(g, "_index", "_index"));
  char **order;
  PS_ALLOC_SYNC(h->comm, order, n_columns);
  for (int i = 0; i < n_columns; i++) order[i] = (char *)columns[i].name;
  PS_CALL(ps_h5_attr_write_strings(g, "column-order", order, n_columns));
  free(order);
  H5Gclose(g);
  char sub[600];
  snprintf(sub, sizeof sub, "%s/_index", name);
  PS_CALL(ps_h5_write_strings(h, sub, n_global, row_offset, n_local, index));
  hid_t ds = H5Dopen2(h->file, sub, H5P_DEFAULT);
  PS_CALL(ps_h5_encoding(ds, "string-array", "0.2.0"));
  H5Dclose(ds);
  for (int i = 0; i < n_columns; i++) PS_CALL(write_column(h, name, &columns[i], n_local, row_offset, n_global));
  return PS_OK;
}

static int ensure_parent(ps_h5 *h, const char *name) {
  char parent[600];
  snprintf(parent, sizeof parent, "%s", name);
  char *slash = strrchr(parent, '/');
  if (!slash) return PS_OK;
  *slash = '\0';
  hid_t g;
  PS_CALL(ps_h5_group_path(h, parent, &g));
  H5Gclose(g);
  return PS_OK;
}

int ps_h5ad_write_dense(ps_h5ad_writer *w, const char *name, const double *data, int64_t rows, int64_t cols) {
  ps_h5 *h = &w->h;
  PS_CALL(ensure_parent(h, name));
  hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
  hid_t space = H5Screate_simple(2, dims, NULL);
  hid_t dcpl = ps_h5_dataset_plist();
  hid_t ds = H5Dcreate2(h->file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  if (ds < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot create /%s", h->path, name);
  hid_t mspace = H5Screate_simple(2, dims, NULL);
  if (h->rank != 0 || rows * cols == 0) {
    H5Sselect_none(space);
    H5Sselect_none(mspace);
  }
  int rc = H5Dwrite(ds, H5T_NATIVE_DOUBLE, mspace, space, h->xfer_collective, data);
  H5Sclose(mspace);
  H5Sclose(space);
  if (rc >= 0) rc = ps_h5_encoding(ds, "array", "0.2.0") == PS_OK ? 0 : -1;
  H5Dclose(ds);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: writing /%s failed", h->path, name);
  return PS_OK;
}

int ps_h5ad_write_scalar(ps_h5ad_writer *w, const char *name, double value) {
  ps_h5 *h = &w->h;
  PS_CALL(ensure_parent(h, name));
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t dcpl = ps_h5_dataset_plist();
  hid_t ds = H5Dcreate2(h->file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  if (ds < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot create /%s", h->path, name);
  hid_t fsel = H5Scopy(space);
  if (h->rank != 0) H5Sselect_none(fsel);
  int rc = H5Dwrite(ds, H5T_NATIVE_DOUBLE, fsel, fsel, h->xfer_collective, &value);
  H5Sclose(fsel);
  H5Sclose(space);
  if (rc >= 0) rc = ps_h5_encoding(ds, "numeric-scalar", "0.2.0") == PS_OK ? 0 : -1;
  H5Dclose(ds);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: writing /%s failed", h->path, name);
  return PS_OK;
}

int ps_h5ad_write_string(ps_h5ad_writer *w, const char *name, const char *value) {
  ps_h5 *h = &w->h;
  PS_CALL(ensure_parent(h, name));
  size_t len = strlen(value);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, len ? len : 1);
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t dcpl = ps_h5_dataset_plist();
  hid_t ds = H5Dcreate2(h->file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  if (ds < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot create /%s", h->path, name);
  char *buf = calloc(len + 1, 1);
  if (!buf) PS_FAIL(PS_ERR_SYSTEM, "out of memory");
  memcpy(buf, value, len);
  hid_t fsel = H5Scopy(space);
  if (h->rank != 0) H5Sselect_none(fsel);
  int rc = H5Dwrite(ds, type, fsel, fsel, h->xfer_collective, buf);
  free(buf);
  H5Sclose(fsel);
  H5Sclose(space);
  H5Tclose(type);
  if (rc >= 0) rc = ps_h5_encoding(ds, "string", "0.2.0") == PS_OK ? 0 : -1;
  H5Dclose(ds);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: writing /%s failed", h->path, name);
  return PS_OK;
}

int ps_h5ad_write_strings(ps_h5ad_writer *w, const char *name, char *const *values, int64_t n) {
  ps_h5 *h = &w->h;
  PS_CALL(ensure_parent(h, name));
  PS_CALL(ps_h5_write_strings(h, name, n, 0, h->rank == 0 ? n : 0, values));
  hid_t ds = H5Dopen2(h->file, name, H5P_DEFAULT);
  PS_CALL(ps_h5_encoding(ds, "string-array", "0.2.0"));
  H5Dclose(ds);
  return PS_OK;
}

int ps_text_write_ordered(MPI_Comm comm, const char *path, const char *chunk, int64_t length) {
  int64_t before = 0;
  int rank;
  MPI_Comm_rank(comm, &rank);
  PS_CHECK_MPI(MPI_Exscan(&length, &before, 1, MPI_INT64_T, MPI_SUM, comm));
  if (rank == 0) before = 0;
  MPI_File fh;
  int rc = MPI_File_open(comm, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
  if (rc != MPI_SUCCESS) PS_FAIL(PS_ERR_INPUT, "%s: cannot create file (folder missing or not writable?)", path);
  PS_CHECK_MPI(MPI_File_set_size(fh, 0));
  /* MPI counts are int: write in pieces below 1 GiB */
  const int64_t piece = 1 << 30;
  int64_t my_pieces = (length + piece - 1) / piece, pieces = 0;
  PS_CHECK_MPI(MPI_Allreduce(&my_pieces, &pieces, 1, MPI_INT64_T, MPI_MAX, comm));
  for (int64_t p = 0; p < pieces; p++) {
    int64_t off = p * piece, n = off < length ? (length - off < piece ? length - off : piece) : 0;
    PS_CHECK_MPI(MPI_File_write_at_all(fh, before + off, chunk + (n ? off : 0), (int)n, MPI_CHAR, MPI_STATUS_IGNORE));
  }
  PS_CHECK_MPI(MPI_File_close(&fh));
  return PS_OK;
}

int ps_output_commit(MPI_Comm comm, const char *partial, const char *final_path) {
  int rank, rc = 0;
  MPI_Comm_rank(comm, &rank);
  PS_CHECK_MPI(MPI_Barrier(comm));
  if (rank == 0) rc = rename(partial, final_path);
  PS_CHECK_MPI(MPI_Bcast(&rc, 1, MPI_INT, 0, comm));
  if (rc != 0) PS_FAIL(PS_ERR_SYSTEM, "cannot rename %s to %s", partial, final_path);
  return PS_OK;
}

/* ---------------------------------------------------------------- updating a file in place
 * (pertscore dosage rewrites the dosage columns of a copy of a results file) */

int ps_h5ad_open_update(MPI_Comm comm, const char *path, ps_h5ad_writer **out) {
  ps_h5ad_writer *w;
  PS_ALLOC_SYNC(comm, w, 1); /* the file is opened collectively */
  snprintf(w->path, sizeof w->path, "%s", path);
  int err = ps_h5_open_update(comm, w->path, &w->h);
  if (err) {
    free(w);
    return err;
  }
  *out = w;
  return PS_OK;
}

int ps_h5ad_remove(ps_h5ad_writer *w, const char *name) {
  if (!ps_h5_exists(w->h.file, name)) return PS_OK;
  if (H5Ldelete(w->h.file, name, H5P_DEFAULT) < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot remove /%s", w->path, name);
  return PS_OK;
}

/* The names of a frame's column-order attribute (variable- or fixed-length strings;
 * AnnData writes an empty one as a float array). */
static int read_column_order(hid_t g, const char *path, ps_strlist *out) {
  memset(out, 0, sizeof *out);
  if (H5Aexists(g, "column-order") <= 0) return PS_OK;
  hid_t attr = H5Aopen(g, "column-order", H5P_DEFAULT);
  PS_CHECK_H5(attr);
  hid_t type = H5Aget_type(attr), space = H5Aget_space(attr);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  int rc = 0;
  if (H5Tget_class(type) == H5T_STRING && n > 0) {
    int variable = H5Tis_variable_str(type) > 0;
    size_t width = variable ? sizeof(char *) : H5Tget_size(type) + 1;
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, variable ? H5T_VARIABLE : width);
    H5Tset_cset(mem, H5Tget_cset(type));
    char *buf = calloc((size_t)n, width);
    rc = buf ? H5Aread(attr, mem, buf) : -1;
    for (hssize_t i = 0; rc >= 0 && i < n; i++) {
      const char *s = variable ? ((char **)buf)[i] : buf + i * width;
      if (ps_strlist_push(out, s ? s : "") != PS_OK) rc = -1;
    }
    if (buf && variable && rc >= 0) H5Dvlen_reclaim(mem, space, H5P_DEFAULT, buf);
    free(buf);
    H5Tclose(mem);
  }
  H5Sclose(space);
  H5Tclose(type);
  H5Aclose(attr);
  if (rc < 0) PS_FAIL(PS_ERR_INPUT, "%s: cannot read the column-order of a data frame", path);
  return PS_OK;
}

int ps_h5ad_frame_set_columns(ps_h5ad_writer *w, const char *name, char *const *index, int64_t n_local,
                              int64_t row_offset, int64_t n_global, const ps_column *columns, int n_columns) {
  ps_h5 *h = &w->h;
  char sub[600];
  if (!ps_h5_exists(h->file, name)) /* no such frame: write a new one */
    return ps_h5ad_write_frame(w, name, index, n_local, row_offset, n_global, columns, n_columns);
  int64_t rows = 0;
  snprintf(sub, sizeof sub, "%s/_index", name);
  PS_CALL(ps_h5_length(h, sub, &rows));
  if (rows != n_global)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s has %lld rows, the new columns %lld", w->path, name, (long long)rows,
            (long long)n_global);
  hid_t g = H5Gopen2(h->file, name, H5P_DEFAULT);
  PS_CHECK_H5(g);
  ps_strlist order;
  int err = read_column_order(g, w->path, &order);
  if (err) {
    H5Gclose(g);
    return err;
  }
  for (int i = 0; i < n_columns; i++) {
    int known = 0;
    for (int64_t c = 0; c < order.n && !known; c++) known = strcmp(order.items[c], columns[i].name) == 0;
    if (!known) PS_CALL(ps_strlist_push(&order, columns[i].name));
    snprintf(sub, sizeof sub, "%s/%s", name, columns[i].name);
    PS_CALL(ps_h5ad_remove(w, sub));
  }
  if (H5Aexists(g, "column-order") > 0 && H5Adelete(g, "column-order") < 0) {
    H5Gclose(g);
    PS_FAIL(PS_ERR_SYSTEM, "%s: cannot rewrite the column order of /%s", w->path, name);
  }
  err = ps_h5_attr_write_strings(g, "column-order", order.items, (int)order.n);
  H5Gclose(g);
  ps_strlist_free(&order);
  PS_CALL(err);
  for (int i = 0; i < n_columns; i++) PS_CALL(write_column(h, name, &columns[i], n_local, row_offset, n_global));
  return PS_OK;
}

int ps_file_copy(MPI_Comm comm, const char *from, const char *to) {
  int rank, err = PS_OK;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    if (!in) err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: cannot open for reading", from);
    else if (!out) err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: cannot create (folder missing or not writable?)", to);
    char buf[1 << 16];
    size_t n;
    while (!err && (n = fread(buf, 1, sizeof buf, in)) > 0)
      if (fwrite(buf, 1, n, out) != n) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: write failed (disk full?)", to);
    if (!err && ferror(in)) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: read failed", from);
    if (in) fclose(in);
    if (out && fclose(out) != 0 && !err) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: write failed", to);
  }
  return ps_error_sync(comm, err);
}
