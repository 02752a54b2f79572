/* libFuzzer harness: raw bytes of an .h5ad file (src/io/h5.c, h5ad_read.c).
 *
 * The input is written to a scratch file and read exactly as `pertscore run`
 * reads its input, on one rank (MPI_COMM_SELF, the MPI-IO driver):
 * ps_read_expression (format sniffer, then the .h5ad or 10x reader), then the obs
 * column "guide" for the cells read.
 *
 * Mutating HDF5 bytes mostly exercises libhdf5's own decoder, which is not
 * hardened against hostile files (docs/reliability.md lists what it does); the
 * structure-aware harness fuzz_h5ad_meta.c is the one aimed at our decoding of
 * AnnData metadata. Seeds are small valid files (tests/fuzz/corpus/h5ad_bytes).
 *
 * Our readers return on the first error without closing their HDF5 handles (the
 * program exits right after), so the harness closes every id still open after
 * each input; otherwise the file and its descriptors would pile up. */
#include <hdf5.h>

#include "fuzz_common.h"
#include "pertscore/io.h"

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

/* Close every HDF5 object our reader left open (error paths). */
static void close_leftovers(void) {
  ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (n <= 0) return;
  hid_t *ids = malloc((size_t)n * sizeof *ids);
  if (!ids) abort();
  n = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_ALL, (size_t)n, ids);
  for (ssize_t i = 0; i < n; i++) { /* objects first, files last */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write(".h5ad", data, size);
  ps_matrix m;
  int err = ps_read_expression(MPI_COMM_SELF, path, NULL, &m);
  if (err == PS_OK) {
    FUZZ_CHECK(m.n_cells > 0 && m.n_genes > 0);
    FUZZ_CHECK(m.x.n_rows == m.n_cells && m.cells.n == m.n_cells && m.genes.n == m.n_genes);
    int64_t nnz = m.x.indptr[m.x.n_rows];
    for (int64_t r = 0; r < m.x.n_rows; r++) FUZZ_CHECK(m.x.indptr[r] <= m.x.indptr[r + 1]);
    for (int64_t p = 0; p < nnz; p++) FUZZ_CHECK(m.x.indices[p] >= 0 && m.x.indices[p] < m.n_genes);
    ps_strlist labels;
    if (ps_h5ad_read_obs_column(MPI_COMM_SELF, path, "guide", 0, m.n_cells, &labels) == PS_OK)
      FUZZ_CHECK(labels.n == m.n_cells);
    ps_strlist_free(&labels); /* partial after an error */
  }
  ps_matrix_free(&m);
  close_leftovers();
  ps_error_clear();
  return 0;
}
