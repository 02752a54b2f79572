/* The lambda curve of `pertscore lambda` (docs/results-format.md, uns/pertscore/lambda)
 * written with the full run at the scored lambda. */
#include <math.h>
#include <stdlib.h>

#include "results_internal.h"

int ps_results_write_lambda(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_ridge *ridge,
                            const double *pvalues, const ps_scores *scores, const ps_run_info *info,
                            const ps_lambda_curve *c, int chosen, int scored, double target_fpr,
                            const char *pseudo_label) {
  double chosen_value = chosen >= 0 ? c->lambda[chosen] : NAN, target = target_fpr;
  double n_pseudo = (double)c->n_pseudo, scored_lambda = c->lambda[scored], *n_positive, *rescaled;
  PS_ALLOC_SYNC(comm, n_positive, c->n);
  PS_ALLOC_SYNC(comm, rescaled, c->n);
  for (int i = 0; i < c->n; i++) {
    n_positive[i] = (double)c->n_positive[i];
    rescaled[i] = c->rescaled[i];
  }
  const ps_results_extra extra[] = {
      {.name = "uns/pertscore/lambda/grid", .kind = PS_EXTRA_ARRAY, .values = c->lambda, .n = c->n},
      {.name = "uns/pertscore/lambda/fpr", .kind = PS_EXTRA_ARRAY, .values = c->fpr, .n = c->n},
      {.name = "uns/pertscore/lambda/n_positive", .kind = PS_EXTRA_ARRAY, .values = n_positive, .n = c->n},
      {.name = "uns/pertscore/lambda/max_raw_ps", .kind = PS_EXTRA_ARRAY, .values = c->max_raw, .n = c->n},
      {.name = "uns/pertscore/lambda/rescaled", .kind = PS_EXTRA_ARRAY, .values = rescaled, .n = c->n},
      {.name = "uns/pertscore/lambda/chosen", .kind = PS_EXTRA_SCALAR, .values = &chosen_value, .n = 1},
      {.name = "uns/pertscore/lambda/scored_lambda", .kind = PS_EXTRA_SCALAR, .values = &scored_lambda, .n = 1},
      {.name = "uns/pertscore/lambda/target_fpr", .kind = PS_EXTRA_SCALAR, .values = &target, .n = 1},
      {.name = "uns/pertscore/lambda/pseudo_cells", .kind = PS_EXTRA_SCALAR, .values = &n_pseudo, .n = 1},
      {.name = "uns/pertscore/lambda/pseudo_label", .kind = PS_EXTRA_STRING, .text = pseudo_label},
  };
  int err = ps_results_write_extra(comm, path, d, &d->design, ridge, pvalues, scores, info, extra,
                               (int)(sizeof extra / sizeof *extra));
  free(n_positive);
  free(rescaled);
  return err;
}
