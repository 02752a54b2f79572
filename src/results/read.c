/* Reading a results file back (DESIGN.md "Results file"): the run's recorded
 * parameters (resume, pertscore dosage), and for pertscore dosage the PS matrix
 * X by blocks of cells, exactly as an input matrix is read (CSR, blocks balanced
 * by nonzeros, collective hyperslab reads), the perturbations each cell carries
 * from the obs column "perturbations", and the run's unit and scale. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/io.h"
#include "pertscore/results.h"

int ps_results_read_parameter(const char *path, const char *key, char *buf, size_t size, int *found) {
  char name[512];
  snprintf(name, sizeof name, "uns/pertscore/parameters/%s", key);
  return ps_h5ad_read_scalar_string(path, name, buf, size, found);
}

int ps_results_read_perturbations(MPI_Comm comm, const char *path, ps_strlist *out) {
  return ps_h5ad_read_frame_column(comm, path, "var", "_index", 0, -1, out);
}

static int compare_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* "A,B,C" -> sorted perturbation ids; a label that is not in var is an error. */
static int parse_carried(const char *path, const char *labels, const ps_strmap *var, ps_dosage_results *b,
                         int64_t row, int64_t *n) {
  char *copy = strdup(labels), *save = NULL;
  if (!copy) PS_FAIL(PS_ERR_SYSTEM, "out of memory");
  int64_t first = *n;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (!*tok) continue;
    int64_t k = ps_strmap_get(var, tok);
    if (k < 0) {
      int err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                             "%s: cell %lld carries '%s' (obs column perturbations), which is not a perturbation of var",
                             path, (long long)row, tok);
      free(copy);
      return err;
    }
    b->carried[(*n)++] = (int32_t)k;
  }
  free(copy);
  qsort(b->carried + first, (size_t)(*n - first), sizeof *b->carried, compare_i32);
  return PS_OK;
}

static int read_block(MPI_Comm comm, const char *path, ps_dosage_results *out) {
  memset(out, 0, sizeof *out);
  PS_CALL(ps_error_sync(comm, ps_h5ad_read_matrix(comm, path, NULL, &out->x)));
  const ps_matrix *x = &out->x;
  ps_strlist labels;
  PS_CALL(ps_error_sync(comm, ps_h5ad_read_obs_column(comm, path, "perturbations", x->cell_begin,
                                                      x->cell_begin + x->x.n_rows, &labels)));
  ps_strmap var;
  PS_CALL(ps_strmap_init(&var, x->genes.n));
  for (int64_t k = 0; k < x->genes.n; k++) PS_CALL(ps_strmap_put(&var, x->genes.items[k], k));
  int64_t n_labels = 0;
  for (int64_t j = 0; j < labels.n; j++) {
    n_labels += labels.items[j][0] != '\0';
    for (const char *c = labels.items[j]; *c; c++) n_labels += *c == ',';
  }
  PS_ALLOC(out->carried_ptr, x->x.n_rows + 1);
  PS_ALLOC(out->carried, n_labels);
  int64_t n = 0;
  int err = PS_OK;
  for (int64_t j = 0; j < x->x.n_rows && !err; j++) {
    err = parse_carried(path, labels.items[j], &var, out, x->cell_begin + j, &n);
    out->carried_ptr[j + 1] = n;
  }
  ps_strmap_free(&var);
  ps_strlist_free(&labels);
  return ps_error_sync(comm, err);
}

int ps_results_read_dosage_input(MPI_Comm comm, const char *path, ps_dosage_results *out) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  PS_CALL(read_block(comm, path, out));
  int unit_guide = 0, read_err = PS_OK;
  if (rank == 0) {
    char unit[64];
    int found = 0;
    read_err = ps_results_read_parameter(path, "unit", unit, sizeof unit, &found);
    unit_guide = !read_err && found && strcmp(unit, "guide") == 0;
  }
  read_err = ps_error_sync(comm, read_err); /* rank 0 read alone: all ranks leave together */
  if (read_err) {
    ps_dosage_results_free(out);
    return read_err;
  }
  PS_CHECK_MPI(MPI_Bcast(&unit_guide, 1, MPI_INT, 0, comm));
  double scale = 1e4; /* --scale median (SPEC section 9): the s the run normalized with */
  if (rank == 0) {
    char text[64];
    int found = 0;
    ps_results_read_parameter(path, "scale_value", text, sizeof text, &found);
    if (found && strtod(text, NULL) > 0) scale = strtod(text, NULL);
  }
  PS_CHECK_MPI(MPI_Bcast(&scale, 1, MPI_DOUBLE, 0, comm));
  out->unit_guide = unit_guide;
  out->scale = scale;
  return PS_OK;
}
