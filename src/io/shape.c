/* The shape of an input matrix without reading it (pertscore/io.h
 * ps_input_shape): cells, genes and stored values, from the metadata and the last
 * pointer entry only, so that the memory guard (src/cost) can refuse a run before
 * the matrix is loaded. Irregular files give "unknown": the reader itself then
 * reports what is wrong with them, with its own messages. */
#include <string.h>

#include "h5.h"
#include "pertscore/io.h"

/* Rows and columns of a 2-D dataset, or 0. */
static void dense_shape(hid_t file, const char *name, int64_t *rows, int64_t *cols) {
  hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
  if (ds < 0) return;
  hid_t space = H5Dget_space(ds);
  hsize_t dims[2] = {0, 0};
  if (space >= 0 && H5Sget_simple_extent_ndims(space) == 2 && H5Sget_simple_extent_dims(space, dims, NULL) >= 0) {
    *rows = (int64_t)dims[0];
    *cols = (int64_t)dims[1];
  }
  if (space >= 0) H5Sclose(space);
  H5Dclose(ds);
}

/* The 2-element integer attribute or dataset NAME of LOC (h5ad "shape" attribute,
 * 10x /matrix/shape dataset), or 0. */
static int read_pair(hid_t loc, const char *name, int attribute, int64_t pair[2]) {
  hid_t obj = attribute ? H5Aopen(loc, name, H5P_DEFAULT) : H5Dopen2(loc, name, H5P_DEFAULT);
  if (obj < 0) return 0;
  hid_t space = attribute ? H5Aget_space(obj) : H5Dget_space(obj);
  int ok = space >= 0 && H5Sget_simple_extent_npoints(space) == 2;
  if (ok) ok = (attribute ? H5Aread(obj, H5T_NATIVE_INT64, pair) : H5Dread(obj, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL,
                                                                           H5P_DEFAULT, pair)) >= 0;
  if (space >= 0) H5Sclose(space);
  if (attribute) H5Aclose(obj);
  else H5Dclose(obj);
  return ok;
}

/* The last entry of GROUP/indptr (= the stored values), or -1. */
static int64_t last_pointer(const ps_h5 *h, const char *group) {
  char name[512];
  int64_t n = 0, last = -1;
  snprintf(name, sizeof name, "%s/indptr", group);
  if (!ps_h5_exists(h->file, name) || ps_h5_length(h, name, &n) || n < 1 ||
      ps_h5_read_range(h, name, H5T_NATIVE_INT64, n - 1, 1, &last))
    last = -1;
  return last;
}

static void shape_local(const char *path, const char *layer, int64_t shape[3]) {
  ps_h5 h;
  memset(&h, 0, sizeof h);
  if (ps_h5_open_read(MPI_COMM_SELF, path, &h)) return;
  char element[300];
  if (ps_h5_exists(h.file, "matrix") && !ps_h5_exists(h.file, "X")) { /* 10x: features x barcodes, CSC */
    int64_t pair[2];
    int64_t last = last_pointer(&h, "matrix");
    if (read_pair(h.file, "matrix/shape", 0, pair) && last >= 0) {
      shape[0] = pair[1];
      shape[1] = pair[0]; /* every feature, guides included: an upper bound of the genes */
      shape[2] = last;
    }
  } else {
    if (layer && *layer) snprintf(element, sizeof element, "layers/%s", layer);
    else snprintf(element, sizeof element, "X");
    H5O_info_t info;
    if (ps_h5_exists(h.file, element) && H5Oget_info_by_name(h.file, element, &info, H5P_DEFAULT) >= 0) {
      if (info.type == H5O_TYPE_DATASET) {
        dense_shape(h.file, element, &shape[0], &shape[1]);
        shape[2] = shape[0] * shape[1];
      } else {
        hid_t g = H5Gopen2(h.file, element, H5P_DEFAULT);
        int64_t pair[2];
        if (g >= 0 && read_pair(g, "shape", 1, pair)) {
          int64_t last = last_pointer(&h, element);
          if (last >= 0) {
            shape[0] = pair[0];
            shape[1] = pair[1];
            shape[2] = last;
          }
        }
        if (g >= 0) H5Gclose(g);
      }
    }
  }
  ps_h5_close(&h);
}

int ps_input_shape(MPI_Comm comm, const char *path, const char *layer, int64_t shape[3]) {
  int rank;
  PS_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  shape[0] = shape[1] = shape[2] = 0;
  if (rank == 0) {
    shape_local(path, layer, shape);
    if (shape[0] <= 0 || shape[1] <= 0 || shape[2] < 0) shape[0] = shape[1] = shape[2] = 0;
    ps_error_clear(); /* an irregular file is the reader's to report */
  }
  PS_CHECK_MPI(MPI_Bcast(shape, 3, MPI_INT64_T, 0, comm));
  return PS_OK;
}
