/* Reading AnnData .h5ad input: the expression matrix by cell blocks, and obs
 * columns (SPEC.md section 0). Each rank reads only its block (DESIGN.md data flow 1). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compressed.h"
#include "h5.h"
#include "pertscore/io.h"

/* Split points of a CSR/CSC pointer array so that every rank gets about the same
 * number of nonzeros, while each rank reads only 1/P of the pointer array.
 * bounds has size + 1 entries: rank r gets major rows [bounds[r], bounds[r+1]).
 * Shared with the 10x reader (compressed.h). */
int ps_compressed_bounds(const ps_h5 *h, const char *indptr_name, int64_t n_major, int64_t *bounds,
                         int64_t *nnz_total) {
  int64_t n_ptr = 0;
  PS_CALL(ps_h5_length(h, indptr_name, &n_ptr));
  if (n_ptr != n_major + 1)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s has %lld entries, expected %lld (shape + 1)", h->path, indptr_name,
            (long long)n_ptr, (long long)(n_major + 1));
  int64_t b, e;
  ps_block_range(n_ptr, h->rank, h->size, &b, &e);
  int64_t lo = b > 0 ? b - 1 : b; /* one entry of overlap to check monotonicity across slices */
  int64_t *ptr;
  PS_ALLOC(ptr, e - lo + 1);
  PS_CALL(ps_h5_read_range(h, indptr_name, H5T_NATIVE_INT64, lo, e - lo, ptr));
  int64_t last = 0, n_data = 0;
  PS_CALL(ps_h5_read_range(h, indptr_name, H5T_NATIVE_INT64, n_ptr - 1, 1, &last));
  char data_name[512];
  snprintf(data_name, sizeof data_name, "%.*s/data", (int)(strlen(indptr_name) - strlen("/indptr")), indptr_name);
  PS_CALL(ps_h5_length(h, data_name, &n_data));
  if (last != n_data)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s ends at %lld but /%s holds %lld values", h->path, indptr_name, (long long)last,
            data_name, (long long)n_data);
  int bad = 0;
  if (h->rank == 0 && e > lo && ptr[0] != 0) bad = 1;
  for (int64_t i = lo + 1; i < e && !bad; i++)
    if (ptr[i - lo] < ptr[i - lo - 1]) bad = 1;
  for (int64_t i = lo; i < e && !bad; i++)
    if (ptr[i - lo] < 0 || ptr[i - lo] > last) bad = 1;
  int any_bad = 0;
  PS_CHECK_MPI(MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, h->comm));
  if (any_bad)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s is not a valid pointer array (must start at 0, never decrease, end at nnz)",
            h->path, indptr_name);
  int64_t *local_split, *split;
  PS_ALLOC(local_split, h->size + 1);
  PS_ALLOC(split, h->size + 1);
  for (int r = 0; r <= h->size; r++) {
    local_split[r] = INT64_MAX;
    int64_t target = (int64_t)((double)last * r / h->size);
    for (int64_t i = b; i < e; i++)
      if (ptr[i - lo] >= target) {
        local_split[r] = i;
        break;
      }
  }
  PS_CHECK_MPI(MPI_Allreduce(local_split, split, h->size + 1, MPI_INT64_T, MPI_MIN, h->comm));
  bounds[0] = 0;
  for (int r = 1; r < h->size; r++) {
    int64_t s = split[r] == INT64_MAX ? n_major : split[r];
    bounds[r] = s < bounds[r - 1] ? bounds[r - 1] : (s > n_major ? n_major : s);
  }
  bounds[h->size] = n_major;
  *nnz_total = last;
  free(ptr);
  free(local_split);
  free(split);
  return PS_OK;
}

/* Read major rows [begin, end) of a compressed matrix: pointer, indices, values. */
int ps_compressed_read_block(const ps_h5 *h, const char *group, int64_t begin, int64_t end,
                             int64_t nnz_total, ps_csr *out) {
  char name[512];
  int64_t n = end - begin;
  out->n_rows = n;
  PS_ALLOC(out->indptr, n + 1);
  snprintf(name, sizeof name, "%s/indptr", group);
  PS_CALL(ps_h5_read_range(h, name, H5T_NATIVE_INT64, begin, n + 1, out->indptr));
  if (n == 0) {
    /* keep collective calls matched: ranks without rows still take part */
    out->indptr[0] = 0;
  }
  int64_t first = n ? out->indptr[0] : 0, count = n ? out->indptr[n] - first : 0;
  int64_t data_len = 0, idx_len = 0;
  snprintf(name, sizeof name, "%s/data", group);
  PS_CALL(ps_h5_length(h, name, &data_len));
  snprintf(name, sizeof name, "%s/indices", group);
  PS_CALL(ps_h5_length(h, name, &idx_len));
  if (data_len != nnz_total || idx_len != nnz_total)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s has %lld values and %lld indices, but indptr ends at %lld", h->path, group,
            (long long)data_len, (long long)idx_len, (long long)nnz_total);
  /* huge pages: first touch of 4 KiB pages cost more than the read itself (~0.5 s of
   * 0.6 s for 136 MB here, tools/bench/stage_ratios.py); every value is written below */
  out->indices = ps_alloc_huge((size_t)count * sizeof *out->indices);
  out->data = ps_alloc_huge((size_t)count * sizeof *out->data);
  if (!out->indices || !out->data)
    PS_FAIL(PS_ERR_SYSTEM, "%s: out of memory for a block of %lld values", h->path, (long long)count);
  /* Straight into int32 (no int64 copy of the block's indices): HDF5 clips values
   * beyond int32 to its limits, which are outside [0, n_cols) as well. */
  snprintf(name, sizeof name, "%s/indices", group);
  PS_CALL(ps_h5_read_range(h, name, H5T_NATIVE_INT32, first, count, out->indices));
  snprintf(name, sizeof name, "%s/data", group);
  PS_CALL(ps_h5_read_range(h, name, H5T_NATIVE_DOUBLE, first, count, out->data));
  for (int64_t i = 0; i <= n; i++) out->indptr[i] -= first;
  for (int64_t i = 0; i < count; i++) {
    int32_t v = out->indices[i];
    if (v < 0 || v >= out->n_cols)
      PS_FAIL(PS_ERR_INPUT, "%s: /%s/indices holds %lld%s at position %lld, outside [0, %lld)", h->path, group,
              (long long)v, v == INT32_MAX || v == INT32_MIN ? " (or beyond the int32 range)" : "",
              (long long)(first + i), (long long)out->n_cols);
  }
  return PS_OK;
}

int ps_compressed_check_values(const ps_h5 *h, const char *element, const ps_csr *m, int64_t row0,
                               int sorted_check) {
  for (int64_t r = 0; r < m->n_rows; r++) {
    for (int64_t p = m->indptr[r]; p < m->indptr[r + 1]; p++) {
      double v = m->data[p];
      if (!isfinite(v))
        PS_FAIL(PS_ERR_INPUT, "%s: /%s has a non-finite value (%g) in row %lld; expected finite expression values",
                h->path, element, v, (long long)(row0 + r));
      if (v < 0)
        PS_FAIL(PS_ERR_INPUT, "%s: /%s has a negative value (%g) in row %lld; expected counts or log-normalized "
                "expression (scaled data is not supported)", h->path, element, v, (long long)(row0 + r));
      if (sorted_check && p > m->indptr[r] && m->indices[p] <= m->indices[p - 1])
        PS_FAIL(PS_ERR_INPUT, "%s: /%s/indices are not strictly increasing within row %lld (unsorted or duplicate "
                "entries; save with sort_indices() / sum_duplicates())", h->path, element, (long long)(row0 + r));
    }
  }
  return PS_OK;
}

static int read_csr(const ps_h5 *h, const char *group, int64_t n_cells, int64_t n_genes, ps_matrix *out) {
  int64_t *bounds, nnz;
  PS_ALLOC(bounds, h->size + 1);
  char name[512];
  snprintf(name, sizeof name, "%s/indptr", group);
  PS_CALL(ps_compressed_bounds(h, name, n_cells, bounds, &nnz));
  out->cell_begin = bounds[h->rank];
  out->x.n_cols = n_genes;
  PS_CALL(ps_error_sync(h->comm, ps_compressed_read_block(h, group, bounds[h->rank], bounds[h->rank + 1], nnz, &out->x)));
  free(bounds);
  return PS_OK;
}

typedef struct {
  int64_t cell;
  int32_t gene;
  double value;
} csc_entry;

static int compare_entries(const void *a, const void *b) {
  const csc_entry *x = a, *y = b;
  if (x->cell != y->cell) return x->cell < y->cell ? -1 : 1;
  return (x->gene > y->gene) - (x->gene < y->gene);
}

static int owner_of_cell(int64_t cell, int64_t n_cells, int size) {
  int64_t base = n_cells / size, extra = n_cells % size;
  int64_t cut = extra * (base + 1);
  if (cell < cut) return (int)(cell / (base + 1));
  return (int)(extra + (cell - cut) / base);
}

/* CSC is stored gene-major: read a gene block, then one Alltoallv moves every
 * entry to the rank owning its cell (uniform cell blocks). */
static int read_csc(const ps_h5 *h, const char *group, int64_t n_cells, int64_t n_genes, ps_matrix *out) {
  int64_t *bounds, nnz;
  PS_ALLOC(bounds, h->size + 1);
  char name[512];
  snprintf(name, sizeof name, "%s/indptr", group);
  PS_CALL(ps_compressed_bounds(h, name, n_genes, bounds, &nnz));
  ps_csr cols = {0};
  cols.n_cols = n_cells;
  PS_CALL(ps_error_sync(h->comm, ps_compressed_read_block(h, group, bounds[h->rank], bounds[h->rank + 1], nnz, &cols)));
  int64_t gene0 = bounds[h->rank];
  int64_t n_entries = cols.indptr[cols.n_rows];
  csc_entry *send;
  PS_ALLOC(send, n_entries);
  int *counts, *rcounts, *sdispl, *rdispl;
  PS_ALLOC(counts, h->size);
  PS_ALLOC(rcounts, h->size);
  PS_ALLOC(sdispl, h->size);
  PS_ALLOC(rdispl, h->size);
  int unsorted = PS_OK;
  for (int64_t g = 0; g < cols.n_rows; g++)
    for (int64_t p = cols.indptr[g]; p < cols.indptr[g + 1]; p++) {
      if (!unsorted && p > cols.indptr[g] && cols.indices[p] <= cols.indices[p - 1])
        unsorted = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                                "%s: /%s/indices are not strictly increasing within column %lld", h->path, group,
                                (long long)(gene0 + g));
      send[p] = (csc_entry){cols.indices[p], (int32_t)(gene0 + g), cols.data[p]};
    }
  ps_csr_free(&cols);
  PS_CALL(ps_error_sync(h->comm, unsorted)); /* before the all-to-all, so no rank waits alone */
  for (int64_t i = 0; i < n_entries; i++) counts[owner_of_cell(send[i].cell, n_cells, h->size)]++;
  qsort(send, (size_t)n_entries, sizeof *send, compare_entries); /* by cell, so by owner */
  PS_CHECK_MPI(MPI_Alltoall(counts, 1, MPI_INT, rcounts, 1, MPI_INT, h->comm));
  int64_t total = 0, sent = 0;
  for (int r = 0; r < h->size; r++) {
    sdispl[r] = (int)sent;
    rdispl[r] = (int)total;
    sent += counts[r];
    total += rcounts[r];
  }
  if (total > INT32_MAX / (int64_t)sizeof(csc_entry) || sent > INT32_MAX / (int64_t)sizeof(csc_entry))
    PS_FAIL(PS_ERR_SYSTEM, "%s: CSC block too large to exchange; use more ranks or store X as CSR", h->path);
  MPI_Datatype entry_type;
  PS_CHECK_MPI(MPI_Type_contiguous((int)sizeof(csc_entry), MPI_BYTE, &entry_type));
  PS_CHECK_MPI(MPI_Type_commit(&entry_type));
  csc_entry *recv;
  PS_ALLOC(recv, total);
  PS_CHECK_MPI(MPI_Alltoallv(send, counts, sdispl, entry_type, recv, rcounts, rdispl, entry_type, h->comm));
  MPI_Type_free(&entry_type);
  free(send);
  qsort(recv, (size_t)total, sizeof *recv, compare_entries);
  int64_t begin, end;
  ps_block_range(n_cells, h->rank, h->size, &begin, &end);
  out->cell_begin = begin;
  ps_csr *x = &out->x;
  x->n_rows = end - begin;
  x->n_cols = n_genes;
  PS_ALLOC(x->indptr, x->n_rows + 1);
  PS_ALLOC(x->indices, total);
  PS_ALLOC(x->data, total);
  for (int64_t i = 0; i < total; i++) {
    x->indptr[recv[i].cell - begin + 1]++;
    x->indices[i] = recv[i].gene;
    x->data[i] = recv[i].value;
  }
  for (int64_t r = 0; r < x->n_rows; r++) x->indptr[r + 1] += x->indptr[r];
  free(recv);
  free(bounds);
  free(counts);
  free(rcounts);
  free(sdispl);
  free(rdispl);
  return PS_OK;
}

/* Dense X: uniform row blocks read in chunks of rows, zeros dropped. */
static int read_dense(const ps_h5 *h, const char *element, int64_t n_cells, int64_t n_genes, ps_matrix *out) {
  int64_t begin, end;
  ps_block_range(n_cells, h->rank, h->size, &begin, &end);
  out->cell_begin = begin;
  ps_csr *x = &out->x;
  x->n_rows = end - begin;
  x->n_cols = n_genes;
  PS_ALLOC(x->indptr, x->n_rows + 1);
  int64_t chunk = (1 << 22) / (n_genes ? n_genes : 1);
  if (chunk < 1) chunk = 1;
  int64_t my_chunks = (x->n_rows + chunk - 1) / chunk, chunks = 0;
  PS_CHECK_MPI(MPI_Allreduce(&my_chunks, &chunks, 1, MPI_INT64_T, MPI_MAX, h->comm));
  double *buf;
  PS_ALLOC(buf, chunk * n_genes);
  int64_t cap = 1024, nnz = 0;
  PS_ALLOC(x->indices, cap);
  PS_ALLOC(x->data, cap);
  hid_t ds = H5Dopen2(h->file, element, H5P_DEFAULT);
  PS_CHECK_H5(ds);
  for (int64_t c = 0; c < chunks; c++) {
    int64_t r0 = c * chunk, rows = r0 < x->n_rows ? (x->n_rows - r0 < chunk ? x->n_rows - r0 : chunk) : 0;
    hid_t fspace = H5Dget_space(ds);
    hsize_t start[2] = {(hsize_t)(begin + r0), 0}, cnt[2] = {(hsize_t)rows, (hsize_t)n_genes};
    hid_t mspace = H5Screate_simple(2, cnt, NULL);
    int rc = rows ? H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, cnt, NULL)
                  : (H5Sselect_none(fspace) < 0 ? -1 : H5Sselect_none(mspace));
    if (rc >= 0) rc = H5Dread(ds, H5T_NATIVE_DOUBLE, mspace, fspace, h->xfer_collective, buf);
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (rc < 0) {
      H5Dclose(ds);
      PS_FAIL(PS_ERR_INPUT, "%s: cannot read dense /%s (not numeric?)", h->path, element);
    }
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t g = 0; g < n_genes; g++) {
        double v = buf[r * n_genes + g];
        if (v == 0.0) continue;
        if (nnz == cap) {
          cap *= 2;
          int32_t *ni = realloc(x->indices, (size_t)cap * sizeof *ni);
          double *nd = realloc(x->data, (size_t)cap * sizeof *nd);
          if (!ni || !nd) PS_FAIL(PS_ERR_SYSTEM, "out of memory reading dense /%s", element);
          x->indices = ni;
          x->data = nd;
        }
        x->indices[nnz] = (int32_t)g;
        x->data[nnz++] = v;
      }
      x->indptr[r0 + r + 1] = nnz;
    }
  }
  H5Dclose(ds);
  free(buf);
  return PS_OK;
}

static int read_index(const ps_h5 *h, const char *frame, int64_t begin, int64_t count, ps_strlist *out,
                      int64_t *n_total) {
  hid_t g = H5Gopen2(h->file, frame, H5P_DEFAULT);
  if (g < 0) PS_FAIL(PS_ERR_INPUT, "%s: missing group /%s (expected an AnnData .h5ad)", h->path, frame);
  char index_name[256], name[512];
  int found = 0;
  int err = ps_h5_attr_string(g, "_index", index_name, sizeof index_name, &found);
  H5Gclose(g);
  PS_CALL(err);
  if (!found)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s has no _index attribute (expected AnnData >= 0.7 layout)", h->path, frame);
  snprintf(name, sizeof name, "%s/%s", frame, index_name);
  PS_CALL(ps_h5_length(h, name, n_total));
  if (count < 0) count = *n_total - begin;
  PS_CALL(ps_h5_read_strings(h, name, begin, count, out));
  return PS_OK;
}

int ps_h5ad_read_matrix(MPI_Comm comm, const char *path, const char *layer, ps_matrix *out) {
  memset(out, 0, sizeof *out);
  ps_h5 h;
  PS_CALL(ps_h5_open_read(comm, path, &h));
  if (layer && *layer) snprintf(out->element, sizeof out->element, "layers/%s", layer);
  else snprintf(out->element, sizeof out->element, "X");
  if (!ps_h5_exists(h.file, out->element))
    PS_FAIL(PS_ERR_INPUT, "%s: no /%s in the file (expected the expression matrix%s)", path, out->element,
            layer ? "; check --layer" : "");
  H5O_info_t info;
  PS_CHECK_H5(H5Oget_info_by_name(h.file, out->element, &info, H5P_DEFAULT));
  int64_t n_cells = 0, n_genes = 0;
  if (info.type == H5O_TYPE_DATASET) {
    hid_t ds = H5Dopen2(h.file, out->element, H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(space);
    H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    H5Dclose(ds);
    if (nd != 2) PS_FAIL(PS_ERR_INPUT, "%s: /%s is a %d-dimensional dataset; expected cells x genes", path, out->element, nd);
    n_cells = (int64_t)dims[0];
    n_genes = (int64_t)dims[1];
    snprintf(out->layout, sizeof out->layout, "dense");
  } else {
    hid_t g = H5Gopen2(h.file, out->element, H5P_DEFAULT);
    char enc[64];
    int found = 0;
    PS_CALL(ps_h5_attr_string(g, "encoding-type", enc, sizeof enc, &found));
    if (!found) PS_CALL(ps_h5_attr_string(g, "h5sparse_format", enc, sizeof enc, &found));
    int64_t shape[2] = {0, 0};
    int has_shape = H5Aexists(g, "shape") > 0;
    if (has_shape) {
      hid_t a = H5Aopen(g, "shape", H5P_DEFAULT);
      hid_t space = H5Aget_space(a);
      int ok = H5Sget_simple_extent_npoints(space) == 2 && H5Aread(a, H5T_NATIVE_INT64, shape) >= 0;
      H5Sclose(space);
      H5Aclose(a);
      if (!ok) has_shape = 0;
    }
    H5Gclose(g);
    if (!has_shape) PS_FAIL(PS_ERR_INPUT, "%s: /%s has no valid 'shape' attribute (expected [cells, genes])", path, out->element);
    n_cells = shape[0];
    n_genes = shape[1];
    if (strncmp(enc, "csr", 3) == 0) snprintf(out->layout, sizeof out->layout, "csr");
    else if (strncmp(enc, "csc", 3) == 0) snprintf(out->layout, sizeof out->layout, "csc");
    else PS_FAIL(PS_ERR_INPUT, "%s: /%s has encoding '%s'; expected csr_matrix, csc_matrix or a dense array", path,
                 out->element, found ? enc : "(none)");
  }
  if (n_cells <= 0 || n_genes <= 0)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s is empty (%lld cells x %lld genes)", path, out->element, (long long)n_cells,
            (long long)n_genes);
  if (n_genes > INT32_MAX) PS_FAIL(PS_ERR_INPUT, "%s: too many genes (%lld)", path, (long long)n_genes);
  /* the shape must match obs and var before anything is allocated from it (found by fuzzing) */
  int64_t n_obs_early = 0, n_var_early = 0;
  ps_strlist none = {0};
  PS_CALL(read_index(&h, "obs", 0, 0, &none, &n_obs_early));
  PS_CALL(read_index(&h, "var", 0, 0, &none, &n_var_early));
  if (n_obs_early != n_cells || n_var_early != n_genes)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s is %lld x %lld but obs has %lld names and var %lld", path, out->element,
            (long long)n_cells, (long long)n_genes, (long long)n_obs_early, (long long)n_var_early);
  out->n_cells = n_cells;
  out->n_genes = n_genes;
  if (strcmp(out->layout, "csr") == 0) PS_CALL(read_csr(&h, out->element, n_cells, n_genes, out));
  else if (strcmp(out->layout, "csc") == 0) PS_CALL(read_csc(&h, out->element, n_cells, n_genes, out));
  else PS_CALL(read_dense(&h, out->element, n_cells, n_genes, out));
  /* a bad value sits in one rank's block: agree before the collective index reads */
  PS_CALL(ps_error_sync(comm, ps_compressed_check_values(&h, out->element, &out->x, out->cell_begin, 1)));
  int64_t n_obs = 0, n_var = 0;
  PS_CALL(read_index(&h, "obs", out->cell_begin, out->x.n_rows, &out->cells, &n_obs));
  PS_CALL(read_index(&h, "var", 0, -1, &out->genes, &n_var));
  if (n_obs != n_cells || n_var != n_genes)
    PS_FAIL(PS_ERR_INPUT, "%s: /%s is %lld x %lld but obs has %lld names and var %lld", path, out->element,
            (long long)n_cells, (long long)n_genes, (long long)n_obs, (long long)n_var);
  PS_CALL(ps_h5_close(&h));
  return PS_OK;
}

void ps_matrix_free(ps_matrix *m) {
  if (!m) return;
  ps_csr_free(&m->x);
  ps_strlist_free(&m->genes);
  ps_strlist_free(&m->cells);
}

int ps_h5ad_read_obs_column(MPI_Comm comm, const char *path, const char *column, int64_t begin, int64_t end,
                            ps_strlist *out) {
  return ps_h5ad_read_frame_column(comm, path, "obs", column, begin, end, out);
}

int ps_h5ad_read_frame_column(MPI_Comm comm, const char *path, const char *frame, const char *column, int64_t begin,
                              int64_t end, ps_strlist *out) {
  memset(out, 0, sizeof *out);
  ps_h5 h;
  PS_CALL(ps_h5_open_read(comm, path, &h));
  char name[512];
  if (strcmp(column, "_index") == 0) {
    char index_name[256];
    int found = 0;
    hid_t g = H5Gopen2(h.file, frame, H5P_DEFAULT);
    if (g < 0) PS_FAIL(PS_ERR_INPUT, "%s: no /%s data frame", path, frame);
    int err = ps_h5_attr_string(g, "_index", index_name, sizeof index_name, &found);
    H5Gclose(g);
    PS_CALL(err);
    snprintf(name, sizeof name, "%s/%s", frame, found ? index_name : "_index");
  } else {
    snprintf(name, sizeof name, "%s/%s", frame, column);
  }
  if (!ps_h5_exists(h.file, name)) PS_FAIL(PS_ERR_INPUT, "%s: no %s column '%s'", path, frame, column);
  H5O_info_t info;
  PS_CHECK_H5(H5Oget_info_by_name(h.file, name, &info, H5P_DEFAULT));
  if (end < 0) { /* the whole column */
    char codes[600];
    snprintf(codes, sizeof codes, "%s/codes", name);
    PS_CALL(ps_h5_length(&h, info.type == H5O_TYPE_GROUP ? codes : name, &end));
  }
  if (info.type != H5O_TYPE_GROUP) { /* one value per row (found by fuzzing: scalar and 2-D columns) */
    int64_t length = 0;
    PS_CALL(ps_h5_length(&h, name, &length));
    if (end > length) PS_FAIL(PS_ERR_INPUT, "%s: %s column '%s' has %lld values, fewer than the %lld rows", path, frame,
                              column, (long long)length, (long long)end);
  }
  int64_t n = end - begin;
  if (info.type == H5O_TYPE_GROUP) { /* categorical: codes + categories */
    char sub[600];
    ps_strlist categories;
    snprintf(sub, sizeof sub, "%s/categories", name);
    int64_t n_cat = 0;
    PS_CALL(ps_h5_length(&h, sub, &n_cat));
    PS_CALL(ps_h5_read_strings(&h, sub, 0, n_cat, &categories));
    int64_t *codes;
    PS_ALLOC(codes, n);
    snprintf(sub, sizeof sub, "%s/codes", name);
    PS_CALL(ps_h5_read_range(&h, sub, H5T_NATIVE_INT64, begin, n, codes));
    int bad_code = PS_OK;
    for (int64_t i = 0; i < n && !bad_code; i++)
      if (codes[i] >= n_cat)
        bad_code = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: obs column '%s' has code %lld but only %lld categories",
                                path, column, (long long)codes[i], (long long)n_cat);
    PS_CALL(ps_error_sync(comm, bad_code));
    for (int64_t i = 0; i < n; i++) PS_CALL(ps_strlist_push(out, codes[i] < 0 ? "" : categories.items[codes[i]]));
    free(codes);
    ps_strlist_free(&categories);
  } else {
    hid_t ds = H5Dopen2(h.file, name, H5P_DEFAULT);
    hid_t type = H5Dget_type(ds);
    int is_string = H5Tget_class(type) == H5T_STRING;
    H5Tclose(type);
    H5Dclose(ds);
    if (is_string) {
      PS_CALL(ps_h5_read_strings(&h, name, begin, n, out));
    } else {
      double *v;
      PS_ALLOC(v, n);
      PS_CALL(ps_h5_read_range(&h, name, H5T_NATIVE_DOUBLE, begin, n, v));
      char buf[64];
      for (int64_t i = 0; i < n; i++) {
        snprintf(buf, sizeof buf, "%.17g", v[i]);
        PS_CALL(ps_strlist_push(out, buf));
      }
      free(v);
    }
  }
  PS_CALL(ps_h5_close(&h));
  return PS_OK;
}

int ps_h5ad_read_scalar_string(const char *path, const char *name, char *buf, size_t size, int *found) {
  *found = 0;
  buf[0] = '\0';
  if (access(path, R_OK) != 0 || H5Fis_hdf5(path) <= 0) return PS_OK;
  ps_h5 h;
  if (ps_h5_open_read(MPI_COMM_SELF, path, &h) != PS_OK) {
    ps_error_clear();
    return PS_OK;
  }
  ps_strlist value = {0};
  if (ps_h5_exists(h.file, name) && ps_h5_read_strings(&h, name, 0, 1, &value) == PS_OK && value.n == 1) {
    snprintf(buf, size, "%s", value.items[0]);
    *found = 1;
  }
  ps_error_clear();
  ps_strlist_free(&value);
  return ps_h5_close(&h);
}
