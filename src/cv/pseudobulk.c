/* Pseudobulk means per perturbation, of the controls, and of random halves of
 * each group (SPEC.md section 7, perturbations scheme and its split-half ceiling).
 *
 * Only control cells (empty design row) and cells carrying exactly one
 * perturbation count: a cell carrying a held-out and a training perturbation
 * would otherwise put held-out cells into a training mean (high MOI).
 * Every rank adds its own cells into dense (K + 1) x 2 x G sums,
 * then one allreduce (in pieces: MPI counts are int) replicates them. The
 * perturbations scheme needs every perturbation's mean on every rank anyway
 * (each fold group trains on all of its training perturbations), so the
 * replicated K x G table is the working set; docs/cv.md gives the memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"

#define SALT_HALVES UINT64_C(0x63762d68616c7665) /* "cv-halve" */

void ps_cv_bulk_free(ps_cv_bulk *b) {
  if (!b) return;
  free(b->n_cells);
  free(b->n_half);
  free(b->mean);
  free(b->half_mean);
  free(b->cell_half);
  free(b->test_delta);
  free(b->kappa);
  memset(b, 0, sizeof *b);
}

/* --control-by (docs/cv.md "Groups"): every counted cell j of basal group b(j)
 * counts as x_j - c_b(j) + c, c_b the mean of group b's control cells and c the
 * mean of all control cells, so that a perturbation's delta against the control
 * mean c is its cells' change against their own group's controls, and the pooled
 * control mean stays c. Added to the (K + 1) x 2 sums (already over all ranks):
 * row r gets sum_b n(r, b) (c - c_b). Memory: the groups' control sums, B x G. */
static int own_group_controls(MPI_Comm comm, const ps_design *design, const ps_csr *x, const int32_t *column_of,
                              int64_t G, const int32_t *item_group, const int32_t *item_half, double *sum) {
  int32_t K = design->n_perturbations, B = design->n_groups;
  int64_t rows = 2 * ((int64_t)K + 1);
  double *control = calloc((size_t)B * (size_t)G + 1, sizeof *control), *pooled = calloc((size_t)G + 1, sizeof *pooled);
  int64_t *count = calloc((size_t)(rows * B), sizeof *count), *n_control = calloc((size_t)B, sizeof *n_control);
  int err = cv_alloc_sync(comm, control && pooled && count && n_control, "the control means per --control-by group");
  for (int64_t j = 0, t = 0; j < design->n_cells && !err; j++) {
    if (design->ptr[j + 1] - design->ptr[j] > 1) continue;
    int32_t b = design->group[j];
    count[(2 * (int64_t)item_group[t] + item_half[t]) * B + b]++;
    if (item_group[t++] != K) continue;
    n_control[b]++;
    for (int64_t p = x->indptr[j]; p < x->indptr[j + 1]; p++) {
      int64_t g = column_of ? column_of[x->indices[p]] : x->indices[p];
      if (g >= 0) control[b * G + g] += x->data[p];
    }
  }
  if (!err) err = ps_allreduce_sum(comm, count, rows * B, MPI_INT64_T, sizeof *count);
  if (!err) err = ps_allreduce_sum(comm, n_control, B, MPI_INT64_T, sizeof *n_control);
  if (!err) err = ps_allreduce_sum(comm, control, (int64_t)B * G, MPI_DOUBLE, sizeof *control);
  int64_t total = 0;
  for (int32_t b = 0; b < B && !err; b++) {
    if (n_control[b] == 0)
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "cv: basal group %d has no control cells (--control-by)", b);
    total += n_control[b];
  }
  for (int32_t b = 0; b < B && !err; b++)
    for (int64_t g = 0; g < G; g++) pooled[g] += control[b * G + g];
  for (int64_t g = 0; g < G && !err; g++) pooled[g] /= (double)total;
  for (int32_t b = 0; b < B && !err; b++)
    for (int64_t g = 0; g < G; g++) control[b * G + g] = pooled[g] - control[b * G + g] / (double)n_control[b];
  for (int64_t r = 0; r < rows && !err; r++)
    for (int32_t b = 0; b < B; b++) {
      int64_t n = count[r * B + b];
      if (n)
        for (int64_t g = 0; g < G; g++) sum[r * G + g] += (double)n * control[b * G + g];
    }
  free(control);
  free(pooled);
  free(count);
  free(n_control);
  return err;
}

int ps_cv_pseudobulk(MPI_Comm comm, const ps_design *design, const ps_csr *x, const int32_t *column_of,
                     int64_t n_genes, uint64_t seed, ps_cv_bulk *out) {
  memset(out, 0, sizeof *out);
  int32_t K = design->n_perturbations;
  int64_t G = n_genes, n_local = design->n_cells;
  if (x->n_rows != n_local) PS_FAIL(PS_ERR_SYSTEM, "cv: %lld expression rows for %lld cells", (long long)x->n_rows,
                                    (long long)n_local);
  /* the counted cells' groups, in cell order; halves are drawn per group */
  int64_t n_items = 0;
  for (int64_t j = 0; j < n_local; j++) {
    int64_t n_ids = design->ptr[j + 1] - design->ptr[j];
    n_items += n_ids <= 1;
    out->n_multiple += n_ids > 1;
  }
  int32_t *group, *half;
  PS_ALLOC(group, n_items);
  PS_ALLOC(half, n_items);
  int64_t t = 0;
  for (int64_t j = 0; j < n_local; j++) {
    int64_t n_ids = design->ptr[j + 1] - design->ptr[j];
    if (n_ids <= 1) group[t++] = n_ids ? design->ids[design->ptr[j]] : K;
  }
  PS_CALL(ps_cv_stratified_slots(comm, n_items, group, K + 1, 2, seed, SALT_HALVES, half));
  PS_ALLOC(out->cell_half, n_local > 0 ? n_local : 1);
  for (int64_t j = 0, i = 0; j < n_local; j++)
    out->cell_half[j] = design->ptr[j + 1] - design->ptr[j] > 1 ? -1 : half[i++];
  PS_ALLOC(out->n_cells, K + 1);
  PS_ALLOC(out->n_half, 2 * ((int64_t)K + 1));
  double *sum;
  PS_ALLOC(sum, 2 * ((int64_t)K + 1) * G);
  t = 0;
  for (int64_t j = 0; j < n_local; j++) {
    if (design->ptr[j + 1] - design->ptr[j] > 1) continue;
    int64_t row = 2 * (int64_t)group[t] + half[t];
    t++;
    out->n_half[row]++;
    double *s = sum + row * G;
    for (int64_t p = x->indptr[j]; p < x->indptr[j + 1]; p++) {
      int64_t g = column_of ? column_of[x->indices[p]] : x->indices[p];
      if (g >= 0) s[g] += x->data[p];
    }
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &out->n_multiple, 1, MPI_INT64_T, MPI_SUM, comm));
  PS_CALL(ps_allreduce_sum(comm, out->n_half, 2 * ((int64_t)K + 1), MPI_INT64_T, sizeof(int64_t)));
  PS_CALL(ps_allreduce_sum(comm, sum, 2 * ((int64_t)K + 1) * G, MPI_DOUBLE, sizeof(double)));
  if (design->n_groups > 1) PS_CALL(own_group_controls(comm, design, x, column_of, G, group, half, sum));
  free(group);
  free(half);
  PS_ALLOC(out->mean, ((int64_t)K + 1) * G);
  for (int32_t k = 0; k <= K; k++) {
    int64_t n0 = out->n_half[2 * k], n1 = out->n_half[2 * k + 1];
    out->n_cells[k] = n0 + n1;
    double *m = out->mean + (int64_t)k * G, *s0 = sum + 2 * (int64_t)k * G, *s1 = s0 + G;
    for (int64_t g = 0; g < G; g++) {
      m[g] = n0 + n1 ? (s0[g] + s1[g]) / (double)(n0 + n1) : NAN;
      s0[g] = n0 ? s0[g] / (double)n0 : NAN;
      s1[g] = n1 ? s1[g] / (double)n1 : NAN;
    }
  }
  out->half_mean = sum;
  out->n_perturbations = K;
  out->n_genes = G;
  return PS_OK;
}
