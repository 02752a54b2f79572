/* `pertscore inspect`: what an .h5ad (input or results) holds. Serial, rank 0. */
#include <stdio.h>
#include <string.h>

#include "h5.h"
#include "pertscore/io.h"

static herr_t print_object(hid_t loc, const char *name, const H5O_info_t *info, void *data) {
  (void)data;
  if (strcmp(name, ".") == 0) return 0;
  int depth = 0;
  for (const char *p = name; *p; p++) depth += *p == '/';
  if (depth > 2) return 0; /* keep it to a summary */
  char enc[64] = "";
  int found = 0;
  hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
  if (obj < 0) return 0;
  ps_h5_attr_string(obj, "encoding-type", enc, sizeof enc, &found);
  if (info->type == H5O_TYPE_DATASET) {
    hid_t space = H5Dget_space(obj), type = H5Dget_type(obj);
    hsize_t dims[4] = {0};
    int nd = H5Sget_simple_extent_ndims(space);
    H5Sget_simple_extent_dims(space, dims, NULL);
    const char *kind = H5Tget_class(type) == H5T_STRING ? "string" : H5Tget_class(type) == H5T_FLOAT ? "float" : "int";
    if (H5Tget_class(type) == H5T_STRING) printf("  %-44s %s", name, kind);
    else printf("  %-44s %s%zu", name, kind, 8 * H5Tget_size(type));
    for (int i = 0; i < nd; i++) printf("%s%llu", i ? " x " : " [", (unsigned long long)dims[i]);
    printf("%s%s%s\n", nd ? "]" : " scalar", found ? "  " : "", enc);
    H5Tclose(type);
    H5Sclose(space);
  } else if (info->type == H5O_TYPE_GROUP) {
    printf("  %-44s group%s%s\n", name, found ? "  " : "", enc);
  }
  H5Oclose(obj);
  return 0;
}

int ps_h5ad_inspect(const char *path) {
  ps_h5 h;
  PS_CALL(ps_h5_open_read(MPI_COMM_SELF, path, &h));
  char enc[64];
  int found = 0;
  hid_t root = H5Gopen2(h.file, "/", H5P_DEFAULT);
  PS_CALL(ps_h5_attr_string(root, "encoding-type", enc, sizeof enc, &found));
  H5Gclose(root);
  int is_results = ps_h5_exists(h.file, "uns/pertscore/version");
  printf("%s: %s%s\n", path, found ? enc : "HDF5 (no AnnData encoding)", is_results ? " (pertscore results)" : "");
  if (ps_h5_exists(h.file, "X")) {
    hid_t x = H5Oopen(h.file, "X", H5P_DEFAULT);
    int64_t shape[2] = {0, 0};
    if (H5Aexists(x, "shape") > 0) {
      hid_t a = H5Aopen(x, "shape", H5P_DEFAULT);
      H5Aread(a, H5T_NATIVE_INT64, shape);
      H5Aclose(a);
      int64_t nnz = 0;
      if (ps_h5_exists(h.file, "X/data")) ps_h5_length(&h, "X/data", &nnz);
      printf("X: %lld x %lld %s, %lld stored values\n", (long long)shape[0], (long long)shape[1],
             is_results ? "(cells x perturbations, PS)" : "(cells x genes)", (long long)nnz);
    }
    H5Oclose(x);
  }
  if (is_results) {
    ps_strlist v;
    if (ps_h5_read_strings(&h, "uns/pertscore/version", 0, 1, &v) == PS_OK) {
      printf("written by pertscore %s\n", v.n ? v.items[0] : "?");
      ps_strlist_free(&v);
    }
  }
  printf("contents:\n");
  H5Ovisit(h.file, H5_INDEX_NAME, H5_ITER_INC, print_object, NULL);
  PS_CALL(ps_h5_close(&h));
  return PS_OK;
}
