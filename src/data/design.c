/* The sparse design D (SPEC.md section 2): per-cell perturbation lists. */
#include "pertscore/data.h"

#include <stdlib.h>
#include <string.h>

void ps_design_free(ps_design *d) {
  if (!d) return;
  ps_strlist_free(&d->names);
  free(d->ptr);
  free(d->ids);
  free(d->group);
  memset(d, 0, sizeof *d);
}

static int copy_groups(const ps_design *d, ps_design *out) {
  out->n_groups = d->n_groups;
  if (!d->group) return PS_OK;
  PS_ALLOC(out->group, d->n_cells);
  memcpy(out->group, d->group, (size_t)d->n_cells * sizeof *out->group);
  return PS_OK;
}

int ps_design_ridge_columns(const ps_design *d, ps_design *out) {
  memset(out, 0, sizeof *out);
  int64_t n = d->n_cells, K = d->n_perturbations, G = ps_design_n_basal(d), markers = 0;
  if (K + G - 1 > INT32_MAX) PS_FAIL(PS_ERR_INPUT, "ridge: %lld perturbations and %lld groups are too many", (long long)K, (long long)G);
  for (int64_t j = 0; j < n && d->group; j++) markers += d->group[j] > 0;
  out->n_perturbations = (int32_t)(K + G - 1);
  out->n_cells = n;
  for (int64_t k = 0; k < d->names.n; k++) PS_CALL(ps_strlist_push(&out->names, d->names.items[k]));
  PS_ALLOC(out->ptr, n + 1);
  PS_ALLOC(out->ids, d->ptr[n] + markers);
  int64_t w = 0;
  for (int64_t j = 0; j < n; j++) {
    if (d->group && d->group[j] > 0) out->ids[w++] = -(int32_t)(K + d->group[j]); /* first: ids are sorted */
    for (int64_t p = d->ptr[j]; p < d->ptr[j + 1]; p++) out->ids[w++] = d->ids[p];
    out->ptr[j + 1] = w;
  }
  return PS_OK;
}

int32_t ps_design_max_per_cell(const ps_design *d) {
  int64_t most = 0;
  for (int64_t j = 0; j < d->n_cells; j++)
    if (d->ptr[j + 1] - d->ptr[j] > most) most = d->ptr[j + 1] - d->ptr[j];
  return (int32_t)most;
}

int ps_design_all(MPI_Comm comm, const ps_design *d, int64_t max_entries, ps_design *all) {
  memset(all, 0, sizeof *all);
  int64_t n = d->n_cells, K = d->n_perturbations, perturbed = 0, total = 0;
  for (int64_t j = 0; j < n; j++) perturbed += d->ptr[j + 1] > d->ptr[j];
  PS_CHECK_MPI(MPI_Allreduce(&perturbed, &total, 1, MPI_INT64_T, MPI_SUM, comm));
  if (total * K > max_entries)
    PS_FAIL(PS_ERR_INPUT, "--score-all-cells would solve %lld cells x %lld perturbations = %lld variables, above the "
            "limit of %lld; it is a reference-compatible mode for a few perturbations: restrict them with "
            "--perturbations or drop --score-all-cells", (long long)total, (long long)K, (long long)(total * K),
            (long long)max_entries);
  all->n_perturbations = d->n_perturbations;
  for (int64_t k = 0; k < d->names.n; k++) PS_CALL(ps_strlist_push(&all->names, d->names.items[k]));
  all->n_cells = n;
  PS_CALL(copy_groups(d, all));
  PS_ALLOC(all->ptr, n + 1);
  PS_ALLOC(all->ids, perturbed * K);
  int64_t w = 0;
  for (int64_t j = 0; j < n; j++) {
    if (d->ptr[j + 1] > d->ptr[j]) /* control cells keep PS = 0, as in the reference's output */
      for (int64_t k = 0; k < K; k++) all->ids[w++] = (int32_t)k;
    all->ptr[j + 1] = w;
  }
  return PS_OK;
}
