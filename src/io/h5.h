/* Internal HDF5 helpers of the io module (not a public header). */
#ifndef PS_IO_H5_H
#define PS_IO_H5_H

#include <hdf5.h>

#include "pertscore/util.h"

/* An open HDF5 file with its communicator and transfer properties. */
typedef struct {
  hid_t file;
  hid_t xfer_collective; /* collective MPI-IO transfers */
  hid_t xfer_independent;
  MPI_Comm comm;
  int rank, size;
  const char *path;
} ps_h5;

int ps_h5_open_read(MPI_Comm comm, const char *path, ps_h5 *h);
int ps_h5_create(MPI_Comm comm, const char *path, ps_h5 *h);
/* Open an existing file for reading and writing (updating a results file in place). */
int ps_h5_open_update(MPI_Comm comm, const char *path, ps_h5 *h);
int ps_h5_close(ps_h5 *h);

int ps_h5_exists(hid_t loc, const char *name);
/* Read a string attribute (variable or fixed length) into buf; 0 if absent. */
int ps_h5_attr_string(hid_t obj, const char *name, char *buf, size_t size, int *found);
int ps_h5_attr_write_string(hid_t obj, const char *name, const char *value);
int ps_h5_attr_write_i64s(hid_t obj, const char *name, const int64_t *values, int n);
int ps_h5_attr_write_strings(hid_t obj, const char *name, char *const *values, int n);
int ps_h5_attr_write_bool(hid_t obj, const char *name, int value);
/* Mark an element with AnnData's encoding-type / encoding-version. */
int ps_h5_encoding(hid_t obj, const char *type, const char *version);

/* Length of a 1-D dataset. */
int ps_h5_length(const ps_h5 *h, const char *name, int64_t *n);
/* Read [begin, begin + count) of a 1-D dataset, converting to mem_type. count may be 0. */
int ps_h5_read_range(const ps_h5 *h, const char *name, hid_t mem_type, int64_t begin, int64_t count,
                     void *buf);
/* Read [begin, begin + count) of a 1-D string dataset (fixed or variable length). */
int ps_h5_read_strings(const ps_h5 *h, const char *name, int64_t begin, int64_t count, ps_strlist *out);

/* Create a 1-D dataset of n_global elements and write this rank's count elements at offset. */
int ps_h5_write_range(const ps_h5 *h, const char *name, hid_t file_type, hid_t mem_type,
                      int64_t n_global, int64_t offset, int64_t count, const void *buf);
/* Same for strings, stored fixed-length (the longest over all ranks), UTF-8. */
int ps_h5_write_strings(const ps_h5 *h, const char *name, int64_t n_global, int64_t offset,
                        int64_t count, char *const *values);
/* Dataset creation properties: no timestamps, no fill (same bytes on any number of ranks). */
hid_t ps_h5_dataset_plist(void);
/* Create the group and any missing parents, each marked as an AnnData dict. */
int ps_h5_group_path(const ps_h5 *h, const char *path, hid_t *group);

#endif
