/* Typed one-dimensional datasets for modules that keep their own sections in an
 * HDF5 file (the --resume checkpoint in OUTPUT.partial): the public face of the
 * private HDF5 layer in h5.h, so no module outside src/io calls HDF5. */
#include <stdlib.h>

#include "h5.h"
#include "pertscore/io.h"

struct ps_h5file {
  ps_h5 h;
};

/* Stored little-endian whatever the machine; read back into native values. */
static hid_t file_type(ps_h5_type type) {
  return type == PS_H5_I32 ? H5T_STD_I32LE : type == PS_H5_I64 ? H5T_STD_I64LE : H5T_IEEE_F64LE;
}

static hid_t memory_type(ps_h5_type type) {
  return type == PS_H5_I32 ? H5T_NATIVE_INT32 : type == PS_H5_I64 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
}

typedef int (*open_fn)(MPI_Comm, const char *, ps_h5 *);

static int open_with(open_fn open, MPI_Comm comm, const char *path, ps_h5file **out) {
  *out = NULL;
  ps_h5file *f;
  PS_ALLOC(f, 1);
  int err = open(comm, path, &f->h);
  if (err) { /* release what the open got before it failed; keep its message */
    if (f->h.file > 0) H5Fclose(f->h.file);
    if (f->h.xfer_collective > 0) H5Pclose(f->h.xfer_collective);
    if (f->h.xfer_independent > 0) H5Pclose(f->h.xfer_independent);
    free(f);
    return err;
  }
  *out = f;
  return PS_OK;
}

int ps_h5file_create(MPI_Comm comm, const char *path, ps_h5file **out) {
  return open_with(ps_h5_create, comm, path, out);
}

int ps_h5file_open_update(MPI_Comm comm, const char *path, ps_h5file **out) {
  return open_with(ps_h5_open_update, comm, path, out);
}

int ps_h5file_open_read(MPI_Comm comm, const char *path, ps_h5file **out) {
  return open_with(ps_h5_open_read, comm, path, out);
}

int ps_h5file_close(ps_h5file **f) {
  if (!f || !*f) return PS_OK;
  int err = ps_h5_close(&(*f)->h);
  free(*f);
  *f = NULL;
  return err;
}

int ps_h5file_exists(const ps_h5file *f, const char *name) { return ps_h5_exists(f->h.file, name); }

int ps_h5file_length(const ps_h5file *f, const char *name, int64_t *n) { return ps_h5_length(&f->h, name, n); }

int ps_h5file_make_group(ps_h5file *f, const char *name) {
  hid_t group;
  PS_CALL(ps_h5_group_path(&f->h, name, &group));
  PS_CHECK_H5(H5Gclose(group));
  return PS_OK;
}

int ps_h5file_write(ps_h5file *f, const char *name, ps_h5_type type, int64_t n_global, int64_t offset,
                    int64_t count, const void *values) {
  return ps_h5_write_range(&f->h, name, file_type(type), memory_type(type), n_global, offset, count, values);
}

int ps_h5file_write_replicated(ps_h5file *f, const char *name, ps_h5_type type, int64_t n, const void *values) {
  return ps_h5file_write(f, name, type, n, 0, f->h.rank == 0 ? n : 0, values);
}

int ps_h5file_write_strings(ps_h5file *f, const char *name, int64_t n_global, int64_t offset, int64_t count,
                            char *const *values) {
  return ps_h5_write_strings(&f->h, name, n_global, offset, count, values);
}

int ps_h5file_write_strings_replicated(ps_h5file *f, const char *name, int64_t n, char *const *values) {
  return ps_h5_write_strings(&f->h, name, n, 0, f->h.rank == 0 ? n : 0, values);
}

int ps_h5file_read(const ps_h5file *f, const char *name, ps_h5_type type, int64_t begin, int64_t count,
                   void *values) {
  return ps_h5_read_range(&f->h, name, memory_type(type), begin, count, values);
}

int ps_h5file_read_strings(const ps_h5file *f, const char *name, int64_t begin, int64_t count, ps_strlist *out) {
  return ps_h5_read_strings(&f->h, name, begin, count, out);
}
