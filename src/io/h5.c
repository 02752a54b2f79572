/* HDF5 plumbing shared by the readers and writers of the io module. */
#include "h5.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int init_transfers(ps_h5 *h) {
  h->xfer_collective = H5Pcreate(H5P_DATASET_XFER);
  h->xfer_independent = H5Pcreate(H5P_DATASET_XFER);
  PS_CHECK_H5(h->xfer_collective);
  PS_CHECK_H5(h->xfer_independent);
  PS_CHECK_H5(H5Pset_dxpl_mpio(h->xfer_collective, H5FD_MPIO_COLLECTIVE));
  PS_CHECK_H5(H5Pset_dxpl_mpio(h->xfer_independent, H5FD_MPIO_INDEPENDENT));
  return PS_OK;
}

static hid_t mpio_fapl(MPI_Comm comm) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) return -1;
  return fapl;
}

/* Common start of every open: our own messages replace HDF5's error stack. */
static void h5_begin(MPI_Comm comm, const char *path, ps_h5 *h) {
  memset(h, 0, sizeof *h);
  h->comm = comm;
  h->path = path;
  MPI_Comm_rank(comm, &h->rank);
  MPI_Comm_size(comm, &h->size);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

int ps_h5_open_read(MPI_Comm comm, const char *path, ps_h5 *h) {
  h5_begin(comm, path, h);
  if (access(path, R_OK) != 0) PS_FAIL(PS_ERR_INPUT, "%s: cannot open: no such file or not readable", path);
  htri_t is_h5 = H5Fis_hdf5(path);
  if (is_h5 <= 0) PS_FAIL(PS_ERR_INPUT, "%s: not an HDF5 file (expected an AnnData .h5ad or 10x .h5)", path);
  hid_t fapl = mpio_fapl(comm);
  PS_CHECK_H5(fapl);
  h->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (h->file < 0) PS_FAIL(PS_ERR_INPUT, "%s: HDF5 file cannot be opened (truncated or damaged?)", path);
  return init_transfers(h);
}

int ps_h5_open_update(MPI_Comm comm, const char *path, ps_h5 *h) {
  h5_begin(comm, path, h);
  if (access(path, R_OK | W_OK) != 0) PS_FAIL(PS_ERR_INPUT, "%s: cannot open for writing", path);
  hid_t fapl = mpio_fapl(comm);
  PS_CHECK_H5(fapl);
  h->file = H5Fopen(path, H5F_ACC_RDWR, fapl);
  H5Pclose(fapl);
  if (h->file < 0) PS_FAIL(PS_ERR_INPUT, "%s: HDF5 file cannot be opened for writing (truncated or damaged?)", path);
  return init_transfers(h);
}

int ps_h5_create(MPI_Comm comm, const char *path, ps_h5 *h) {
  h5_begin(comm, path, h);
  hid_t fapl = mpio_fapl(comm);
  PS_CHECK_H5(fapl);
  /* Same bytes for the same content on any number of ranks: no timestamps. */
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  PS_CHECK_H5(fcpl);
  h->file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
  H5Pclose(fapl);
  H5Pclose(fcpl);
  if (h->file < 0) PS_FAIL(PS_ERR_INPUT, "%s: cannot create the output file (folder missing or not writable?)", path);
  return init_transfers(h);
}

int ps_h5_close(ps_h5 *h) {
  int bad = 0;
  if (h->xfer_collective > 0) H5Pclose(h->xfer_collective);
  if (h->xfer_independent > 0) H5Pclose(h->xfer_independent);
  if (h->file > 0 && H5Fclose(h->file) < 0) bad = 1;
  h->file = h->xfer_collective = h->xfer_independent = 0;
  if (bad) PS_FAIL(PS_ERR_SYSTEM, "%s: closing the HDF5 file failed", h->path);
  return PS_OK;
}

int ps_h5_exists(hid_t loc, const char *name) {
  /* H5Lexists fails on a missing intermediate group; walk the path. */
  char part[1024];
  const char *p = name;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - name) : strlen(name);
    if (len >= sizeof part) return 0;
    memcpy(part, name, len);
    part[len] = '\0';
    if (H5Lexists(loc, part, H5P_DEFAULT) <= 0) return 0;
    if (!slash) break;
    p = slash + 1;
  }
  return 1;
}

int ps_h5_attr_string(hid_t obj, const char *name, char *buf, size_t size, int *found) {
  *found = 0;
  buf[0] = '\0';
  if (H5Aexists(obj, name) <= 0) return PS_OK;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  PS_CHECK_H5(attr);
  hid_t space = H5Aget_space(attr);
  hssize_t points = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
  if (space >= 0) H5Sclose(space);
  hid_t type = H5Aget_type(attr);
  /* one string only: an array of strings would not fit the buffers below (found by fuzzing) */
  if (points != 1 || H5Tget_class(type) != H5T_STRING) {
    H5Tclose(type);
    H5Aclose(attr);
    return PS_OK;
  }
  int rc = 0;
  if (H5Tis_variable_str(type) > 0) {
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type));
    char *value = NULL;
    rc = H5Aread(attr, mem, &value);
    if (rc >= 0 && value) snprintf(buf, size, "%s", value);
    if (value) H5free_memory(value);
    H5Tclose(mem);
  } else {
    size_t len = H5Tget_size(type);
    char *tmp = calloc(len + 1, 1);
    if (!tmp) rc = -1;
    else {
      hid_t mem = H5Tcopy(H5T_C_S1);
      H5Tset_size(mem, len + 1);
      H5Tset_cset(mem, H5Tget_cset(type));
      rc = H5Aread(attr, mem, tmp);
      snprintf(buf, size, "%s", tmp);
      H5Tclose(mem);
      free(tmp);
    }
  }
  H5Tclose(type);
  H5Aclose(attr);
  PS_CHECK_H5(rc);
  *found = 1;
  return PS_OK;
}

static hid_t vl_string_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

int ps_h5_attr_write_string(hid_t obj, const char *name, const char *value) {
  hid_t type = vl_string_type(), space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = attr < 0 ? -1 : H5Awrite(attr, type, &value);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "cannot write attribute %s", name);
  return PS_OK;
}

int ps_h5_attr_write_i64s(hid_t obj, const char *name, const int64_t *values, int n) {
  hsize_t dim = (hsize_t)n;
  hid_t space = H5Screate_simple(1, &dim, NULL);
  hid_t attr = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = attr < 0 ? -1 : H5Awrite(attr, H5T_NATIVE_INT64, values);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "cannot write attribute %s", name);
  return PS_OK;
}

int ps_h5_attr_write_strings(hid_t obj, const char *name, char *const *values, int n) {
  hsize_t dim = (hsize_t)n;
  hid_t space = H5Screate_simple(1, &dim, NULL);
  /* AnnData writes an empty column-order as an empty float array. */
  hid_t type = n ? vl_string_type() : H5Tcopy(H5T_IEEE_F64LE);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = attr < 0 ? -1 : (n ? H5Awrite(attr, type, values) : 0);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "cannot write attribute %s", name);
  return PS_OK;
}

int ps_h5_attr_write_bool(hid_t obj, const char *name, int value) {
  /* h5py's bool: an int8 enum FALSE/TRUE; pandas insists on a real bool. */
  hid_t type = H5Tenum_create(H5T_NATIVE_INT8);
  int8_t f = 0, t = 1, v = value ? 1 : 0;
  H5Tenum_insert(type, "FALSE", &f);
  H5Tenum_insert(type, "TRUE", &t);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = attr < 0 ? -1 : H5Awrite(attr, type, &v);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "cannot write attribute %s", name);
  return PS_OK;
}

int ps_h5_encoding(hid_t obj, const char *type, const char *version) {
  PS_CALL(ps_h5_attr_write_string(obj, "encoding-type", type));
  PS_CALL(ps_h5_attr_write_string(obj, "encoding-version", version));
  return PS_OK;
}

int ps_h5_length(const ps_h5 *h, const char *name, int64_t *n) {
  hid_t ds = H5Dopen2(h->file, name, H5P_DEFAULT);
  if (ds < 0) PS_FAIL(PS_ERR_INPUT, "%s: missing dataset /%s", h->path, name);
  hid_t space = H5Dget_space(ds);
  int rank = H5Sget_simple_extent_ndims(space);
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space, dims, NULL);
  H5Sclose(space);
  H5Dclose(ds);
  if (rank != 1) PS_FAIL(PS_ERR_INPUT, "%s: /%s should be one-dimensional, has %d dimensions", h->path, name, rank);
  *n = (int64_t)dims[0];
  return PS_OK;
}

int ps_h5_read_range(const ps_h5 *h, const char *name, hid_t mem_type, int64_t begin, int64_t count,
                     void *buf) {
  hid_t ds = H5Dopen2(h->file, name, H5P_DEFAULT);
  if (ds < 0) PS_FAIL(PS_ERR_INPUT, "%s: missing dataset /%s", h->path, name);
  hid_t fspace = H5Dget_space(ds);
  hsize_t start = (hsize_t)begin, cnt = (hsize_t)count, extent = 0;
  hid_t mspace = H5Screate_simple(1, &cnt, NULL);
  /* A range outside the dataset (offsets from a damaged file) would make H5Dread fail
   * on this rank alone, before the collective read the other ranks wait in: check it
   * here and take part with an empty selection instead. */
  int one_dim = H5Sget_simple_extent_ndims(fspace) == 1 && H5Sget_simple_extent_dims(fspace, &extent, NULL) == 1;
  int outside = count > 0 && (!one_dim || begin < 0 || start + cnt > extent);
  int rc;
  if (count > 0 && !outside) {
    rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
  } else {
    rc = H5Sselect_none(fspace);
    if (rc >= 0) rc = H5Sselect_none(mspace);
  }
  if (rc >= 0) rc = H5Dread(ds, mem_type, mspace, fspace, h->xfer_collective, buf);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Dclose(ds);
  if (outside && !one_dim) PS_FAIL(PS_ERR_INPUT, "%s: /%s is not a one-dimensional dataset", h->path, name);
  if (outside)
    PS_FAIL(PS_ERR_INPUT, "%s: cannot read /%s [%lld, %lld): it holds %llu values (damaged file?)", h->path, name,
            (long long)begin, (long long)(begin + count), (unsigned long long)extent);
  if (rc < 0)
    PS_FAIL(PS_ERR_INPUT, "%s: cannot read /%s [%lld, %lld) (wrong type or damaged file?)", h->path, name,
            (long long)begin, (long long)(begin + count));
  return PS_OK;
}

int ps_h5_read_strings(const ps_h5 *h, const char *name, int64_t begin, int64_t count, ps_strlist *out) {
  memset(out, 0, sizeof *out);
  hid_t ds = H5Dopen2(h->file, name, H5P_DEFAULT);
  if (ds < 0) PS_FAIL(PS_ERR_INPUT, "%s: missing dataset /%s", h->path, name);
  hid_t ftype = H5Dget_type(ds);
  if (H5Tget_class(ftype) != H5T_STRING) {
    H5Tclose(ftype);
    H5Dclose(ds);
    PS_FAIL(PS_ERR_INPUT, "%s: /%s should hold strings", h->path, name);
  }
  int variable = H5Tis_variable_str(ftype) > 0;
  size_t width = variable ? sizeof(char *) : H5Tget_size(ftype) + 1;
  hid_t mtype = H5Tcopy(H5T_C_S1);
  H5Tset_size(mtype, variable ? H5T_VARIABLE : width);
  H5Tset_cset(mtype, H5Tget_cset(ftype));
  char *buf = calloc((size_t)(count ? count : 1), width);
  if (!buf) PS_FAIL(PS_ERR_SYSTEM, "out of memory reading /%s", name);
  hid_t fspace = H5Dget_space(ds);
  hsize_t start = (hsize_t)begin, cnt = (hsize_t)count;
  int scalar = H5Sget_simple_extent_ndims(fspace) == 0;
  if (scalar && (begin != 0 || count != 1)) count = cnt = 0;
  hid_t mspace = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &cnt, NULL);
  int rc = scalar ? (count ? 0 : (H5Sselect_none(fspace) < 0 ? -1 : H5Sselect_none(mspace)))
           : count > 0 ? H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &cnt, NULL)
                       : (H5Sselect_none(fspace) < 0 ? -1 : H5Sselect_none(mspace));
  /* Variable-length data cannot use collective MPI-IO transfers. */
  if (rc >= 0) rc = H5Dread(ds, mtype, mspace, fspace, variable ? h->xfer_independent : h->xfer_collective, buf);
  int err = PS_OK;
  if (rc < 0) {
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: cannot read strings /%s", h->path, name);
  } else {
    for (int64_t i = 0; i < count && !err; i++) {
      const char *s = variable ? ((char **)buf)[i] : buf + i * width;
      err = ps_strlist_push(out, s ? s : "");
    }
    if (variable && count > 0) H5Dvlen_reclaim(mtype, mspace, H5P_DEFAULT, buf);
  }
  free(buf);
  H5Sclose(mspace);
  H5Sclose(fspace);
  H5Tclose(mtype);
  H5Tclose(ftype);
  H5Dclose(ds);
  return err;
}

hid_t ps_h5_dataset_plist(void) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_obj_track_times(dcpl, 0);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  return dcpl;
}

static int write_selection(const ps_h5 *h, hid_t ds, hid_t mem_type, int64_t offset, int64_t count,
                           const void *buf, const char *name) {
  hid_t fspace = H5Dget_space(ds);
  hsize_t start = (hsize_t)offset, cnt = (hsize_t)count;
  hid_t mspace = H5Screate_simple(1, &cnt, NULL);
  int rc = count > 0 ? H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &cnt, NULL)
                     : (H5Sselect_none(fspace) < 0 ? -1 : H5Sselect_none(mspace));
  if (rc >= 0) rc = H5Dwrite(ds, mem_type, mspace, fspace, h->xfer_collective, buf);
  H5Sclose(mspace);
  H5Sclose(fspace);
  if (rc < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: writing /%s failed (disk full?)", h->path, name);
  return PS_OK;
}

int ps_h5_write_range(const ps_h5 *h, const char *name, hid_t file_type, hid_t mem_type,
                      int64_t n_global, int64_t offset, int64_t count, const void *buf) {
  hsize_t dim = (hsize_t)n_global;
  hid_t space = H5Screate_simple(1, &dim, NULL);
  hid_t dcpl = ps_h5_dataset_plist();
  hid_t ds = H5Dcreate2(h->file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(space);
  if (ds < 0) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot create dataset /%s", h->path, name);
  int err = write_selection(h, ds, mem_type, offset, count, buf, name);
  H5Dclose(ds);
  return err;
}

int ps_h5_write_strings(const ps_h5 *h, const char *name, int64_t n_global, int64_t offset,
                        int64_t count, char *const *values) {
  int64_t width = 1, global_width = 1;
  for (int64_t i = 0; i < count; i++) {
    int64_t len = (int64_t)strlen(values[i]);
    if (len > width) width = len;
  }
  PS_CHECK_MPI(MPI_Allreduce(&width, &global_width, 1, MPI_INT64_T, MPI_MAX, h->comm));
  char *packed;
  PS_ALLOC_SYNC(h->comm, packed, (count ? count : 1) * global_width);
  for (int64_t i = 0; i < count; i++) memcpy(packed + i * global_width, values[i], strlen(values[i]));
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, (size_t)global_width);
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  H5Tset_cset(type, H5T_CSET_UTF8);
  int err = ps_h5_write_range(h, name, type, type, n_global, offset, count, packed);
  H5Tclose(type);
  free(packed);
  return err;
}

int ps_h5_group_path(const ps_h5 *h, const char *path, hid_t *group) {
  char part[1024];
  size_t len = strlen(path);
  if (len >= sizeof part) PS_FAIL(PS_ERR_SYSTEM, "HDF5 path too long: %s", path);
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_obj_track_times(gcpl, 0);
  for (size_t i = 1; i <= len; i++) {
    if (i < len && path[i] != '/') continue;
    memcpy(part, path, i);
    part[i] = '\0';
    if (H5Lexists(h->file, part, H5P_DEFAULT) > 0) continue;
    hid_t g = H5Gcreate2(h->file, part, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (g < 0) {
      H5Pclose(gcpl);
      PS_FAIL(PS_ERR_SYSTEM, "%s: cannot create group /%s", h->path, part);
    }
    int err = ps_h5_encoding(g, "dict", "0.1.0");
    H5Gclose(g);
    if (err) {
      H5Pclose(gcpl);
      return err;
    }
  }
  H5Pclose(gcpl);
  *group = H5Gopen2(h->file, path, H5P_DEFAULT);
  PS_CHECK_H5(*group);
  return PS_OK;
}
