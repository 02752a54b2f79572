/* Per-fold, per-model means of the perturbations scheme's metrics (pertscore/cv.h
 * ps_cv_summarize): the summary table and TSV (src/results/cv_tables.c) and
 * `pertscore cv --json` report them. Serial. */
#include <math.h>

#include "pertscore/cv.h"

int ps_cv_summarize(const ps_cv_perturbation_result *r, double *mean, int64_t *count) {
  int F = r->n_folds;
  int64_t rows = ((int64_t)F + 1) * PS_CV_N_MODELS * PS_CV_N_METRICS;
  for (int64_t i = 0; i < rows; i++) {
    mean[i] = 0;
    count[i] = 0;
  }
  for (int32_t k = 0; k < r->n_perturbations; k++) {
    if (r->fold[k] < 0 || (r->compared && !r->compared[k])) continue;
    for (int model = 0; model < PS_CV_N_MODELS; model++)
      for (int m = 0; m < PS_CV_N_METRICS; m++) {
        double v = r->metrics[((int64_t)k * PS_CV_N_MODELS + model) * PS_CV_N_METRICS + m];
        if (isnan(v)) continue;
        int64_t a = ((int64_t)r->fold[k] * PS_CV_N_MODELS + model) * PS_CV_N_METRICS + m;
        int64_t b = ((int64_t)F * PS_CV_N_MODELS + model) * PS_CV_N_METRICS + m;
        mean[a] += v;
        count[a]++;
        mean[b] += v;
        count[b]++;
      }
  }
  for (int64_t i = 0; i < rows; i++) mean[i] = count[i] ? mean[i] / (double)count[i] : NAN;
  return PS_OK;
}
