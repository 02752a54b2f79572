/* The calibration stage into the results file (pertscore/calibrate.h,
 * docs/results-format.md "Calibrated calls"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/calibrate.h"
#include "pertscore/io.h"
#include "pertscore/results.h"

int ps_results_add_calibration(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                               const ps_scores *s, const ps_calibration *c) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int32_t K = c->n_perturbations;
  int64_t *cells;
  double *z0, *z1;
  PS_ALLOC(cells, K);
  PS_ALLOC(z0, K);
  PS_ALLOC(z1, K);
  for (int32_t k = 0; k < K; k++) {
    cells[k] = c->n_heldout[k] + c->n_heldout[K + k];
    z0[k] = c->n_heldout[k] ? c->fit_z[k] : NAN;
    z1[k] = c->n_heldout[K + k] ? c->fit_z[K + k] : NAN;
  }
  ps_h5ad_writer *w;
  PS_CALL(ps_h5ad_open_update(comm, path, &w));
  ps_column var[] = {
      {.name = "effect_pvalue", .kind = PS_COL_F64, .f64 = c->effect_pvalue},
      {.name = "effect_fdr", .kind = PS_COL_F64, .f64 = c->effect_fdr},
      {.name = "effect_z", .kind = PS_COL_F64, .f64 = c->effect_z},
      {.name = "effect_z_fit0", .kind = PS_COL_F64, .f64 = z0},
      {.name = "effect_z_fit1", .kind = PS_COL_F64, .f64 = z1},
      {.name = "calibration_cells", .kind = PS_COL_I64, .i64 = cells},
  };
  PS_CALL(ps_h5ad_frame_set_columns(w, "var", NULL, rank == 0 ? K : 0, 0, K, var, (int)(sizeof var / sizeof *var)));
  int64_t *role;
  double *cell_pvalue; /* of the cell's largest PS (obs "ps"), as the cells table's rows */
  PS_ALLOC(role, d->design.n_cells);
  PS_ALLOC(cell_pvalue, d->design.n_cells);
  for (int64_t j = 0; j < d->design.n_cells; j++) {
    role[j] = c->role[j];
    int64_t top = ps_cell_top_entry(d, scored, s, j);
    cell_pvalue[j] = top >= 0 ? c->ps_pvalue[top] : NAN;
  }
  ps_column obs[] = {{.name = "calibration_role", .kind = PS_COL_I64, .i64 = role},
                     {.name = "ps_pvalue", .kind = PS_COL_F64, .f64 = cell_pvalue}};
  PS_CALL(ps_h5ad_frame_set_columns(w, "obs", NULL, d->design.n_cells, d->analysed_offset, d->n_analysed, obs, 2));
  free(role);
  free(cell_pvalue);
  ps_csr x = {.n_rows = scored->n_cells, .n_cols = scored->n_perturbations, .indptr = scored->ptr,
              .indices = scored->ids, .data = c->ps_pvalue};
  PS_CALL(ps_h5ad_remove(w, "layers/ps_pvalue"));
  PS_CALL(ps_h5ad_write_csr(w, "layers/ps_pvalue", &x, d->analysed_offset, d->n_analysed, 0));
  PS_CALL(ps_h5ad_remove(w, "uns/pertscore/calibration"));
  double n_null[2] = {(double)c->n_null[0], (double)c->n_null[1]};
  double nreg[2] = {(double)c->n_regression[0], (double)c->n_regression[1]};
  PS_CALL(ps_h5ad_write_dense(w, "uns/pertscore/calibration/n_null", n_null, 1, 2));
  PS_CALL(ps_h5ad_write_dense(w, "uns/pertscore/calibration/n_regression", nreg, 1, 2));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/calibration/fdr", c->fdr));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/calibration/n_called", (double)c->n_called));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/calibration/n_entries", (double)c->n_entries));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/calibration/n_entries_significant", (double)c->n_entries_significant));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/calibration/seconds", c->seconds));
  if (c->heldout_score) {
    x.data = c->heldout_score;
    PS_CALL(ps_h5ad_remove(w, "layers/calibration_score"));
    PS_CALL(ps_h5ad_write_csr(w, "layers/calibration_score", &x, d->analysed_offset, d->n_analysed, 0));
    for (int f = 0; f < 2; f++) {
      char name[64];
      snprintf(name, sizeof name, "uns/pertscore/calibration/null_score_%d", f);
      PS_CALL(ps_h5ad_write_dense(w, name, c->null_score[f], c->n_null[f], K));
    }
  }
  PS_CALL(ps_h5ad_close(&w));
  free(cells), free(z0), free(z1);
  return PS_OK;
}
