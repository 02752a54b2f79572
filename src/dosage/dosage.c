/* The dosage analysis of one perturbation (SPEC.md section 5): normalize the
 * own-gene expression, bin it by deciles, fit LL.4 to the bin means (hill.c),
 * classify, and the correlations (correlation.c).
 *
 * Reference quirks kept on purpose:
 * - quantiles are R type 7 computed as R computes them, and equal quantiles
 *   merge bins exactly as unique() + cut(include.lowest = TRUE) do, because which
 *   cells share a bin decides the bin means;
 * - the fit is on the bin means, unweighted (bins of merged deciles hold more
 *   cells but count once), as drc's drm on the summarized table. */
#include "pertscore/dosage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ps_dosage_options_default(ps_dosage_options *o) {
  o->min_cells = 100;
  o->n_bins = 10;
  o->min_bins = 5;
  o->min_drop = 0.2;
  o->ed50_split = 0.5;
  o->crispri_r = -0.1;
  o->crispri_p = 0.05;
}

int ps_dosage_options_check(const ps_dosage_options *o) {
  if (o->n_bins < 1 || o->n_bins > PS_DOSAGE_MAX_BINS)
    PS_FAIL(PS_ERR_INPUT, "dosage: n_bins must be 1 .. %d, got %d", PS_DOSAGE_MAX_BINS, o->n_bins);
  if (o->min_bins < 4 || o->min_bins > o->n_bins)
    PS_FAIL(PS_ERR_INPUT, "dosage: min_bins must be 4 (the LL.4 parameters) .. n_bins (%d), got %d", o->n_bins,
            o->min_bins);
  if (o->min_cells < 1) PS_FAIL(PS_ERR_INPUT, "dosage: min_cells must be >= 1, got %lld", (long long)o->min_cells);
  if (!isfinite(o->min_drop) || !isfinite(o->ed50_split) || !isfinite(o->crispri_r) || !isfinite(o->crispri_p))
    PS_FAIL(PS_ERR_INPUT, "dosage: min_drop, ed50_split, crispri_r and crispri_p must be finite");
  return PS_OK;
}

const char *ps_dosage_status_name(ps_dosage_status s) {
  switch (s) {
  case PS_DOSAGE_FITTED: return "fitted";
  case PS_DOSAGE_TOO_FEW_CELLS: return "too few cells";
  case PS_DOSAGE_NOT_EXPRESSED: return "own gene not expressed in controls";
  case PS_DOSAGE_TOO_FEW_BINS: return "too few bins";
  case PS_DOSAGE_FILTER_FAILED: return "filter failed";
  case PS_DOSAGE_FIT_FAILED: return "fit failed";
  }
  return "unknown";
}

const char *ps_dosage_class_name(ps_dosage_class c) {
  return c == PS_DOSAGE_BUFFERED ? "buffered" : c == PS_DOSAGE_SENSITIVE ? "sensitive" : "";
}

static int cmp_double(const void *a, const void *b) {
  double p = *(const double *)a, q = *(const double *)b;
  return p < q ? -1 : p > q;
}

static int check_finite(const double *v, int64_t n, const char *what) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i])) PS_FAIL(PS_ERR_INPUT, "dosage: %s of cell %lld is not finite (%g)", what, (long long)i, v[i]);
  return PS_OK;
}

double ps_quantile7(const double *sorted, int64_t n, double prob) {
  /* R: index <- 1 + max(n - 1, 0) * probs; lo <- floor(index); hi <- ceiling(index) (1-based) */
  double index = 1.0 + (double)(n - 1) * prob;
  int64_t lo = (int64_t)floor(index), hi = (int64_t)ceil(index);
  double q = sorted[lo - 1];
  if (index > (double)lo && sorted[hi - 1] != q) {
    double h = index - (double)lo;
    q = (1.0 - h) * q + h * sorted[hi - 1];
  }
  return q;
}

int ps_dosage_normalize(const double *own, int64_t n, const double *control, int64_t n_control, double *x,
                        double *min_out, double *median_out, ps_dosage_status *status) {
  if (n < 1 || n_control < 1)
    PS_FAIL(PS_ERR_INPUT, "dosage: normalization needs cells (%lld) and control cells (%lld)", (long long)n,
            (long long)n_control);
  PS_CALL(check_finite(own, n, "own-gene expression"));
  PS_CALL(check_finite(control, n_control, "control own-gene expression"));
  double *sorted;
  PS_ALLOC(sorted, n_control);
  memcpy(sorted, control, (size_t)n_control * sizeof *sorted);
  qsort(sorted, (size_t)n_control, sizeof *sorted, cmp_double);
  /* R median(): the middle value, or the mean of the two middle values */
  int64_t half = (n_control + 1) / 2;
  double median = n_control % 2 ? sorted[half - 1] : (sorted[half - 1] + sorted[half]) / 2.0;
  double min = sorted[0];
  free(sorted);
  for (int64_t i = 0; i < n; i++)
    if (own[i] < min) min = own[i];
  *min_out = min;
  *median_out = median;
  if (!(median > min)) { /* median == min: 0 / 0 */
    *status = PS_DOSAGE_NOT_EXPRESSED;
    return PS_OK;
  }
  const double scale = median - min;
  for (int64_t i = 0; i < n; i++) x[i] = (own[i] - min) / scale;
  *status = PS_DOSAGE_FITTED;
  return PS_OK;
}

int ps_dosage_bin(const double *x, const double *ps, int64_t n, int n_quantiles, ps_dosage_bins *out) {
  memset(out, 0, sizeof *out);
  if (n < 1) PS_FAIL(PS_ERR_INPUT, "dosage: no cells to bin");
  if (n_quantiles < 1 || n_quantiles > PS_DOSAGE_MAX_BINS)
    PS_FAIL(PS_ERR_INPUT, "dosage: %d quantile bins, need 1 .. %d", n_quantiles, PS_DOSAGE_MAX_BINS);
  PS_CALL(check_finite(x, n, "normalized expression"));
  double *sorted;
  PS_ALLOC(sorted, n);
  memcpy(sorted, x, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
  int nb = 0;
  for (int k = 0; k <= n_quantiles; k++) {
    double q = ps_quantile7(sorted, n, (double)k / (double)n_quantiles);
    if (nb == 0 || q != out->breaks[nb - 1]) out->breaks[nb++] = q; /* ascending: unique() == drop repeats */
  }
  free(sorted);
  out->n_breaks = nb;

  /* cut(..., right = TRUE, include.lowest = TRUE): interval k is (breaks[k], breaks[k+1]],
   * interval 0 is [breaks[0], breaks[1]]. One break only (all x equal): R's cut
   * refuses; here every cell goes to one bin, which is below any min_bins anyway. */
  const int n_int = nb > 1 ? nb - 1 : 1;
  long double sum_x[PS_DOSAGE_MAX_BINS] = {0}, sum_ps[PS_DOSAGE_MAX_BINS] = {0};
  int64_t count[PS_DOSAGE_MAX_BINS] = {0};
  for (int64_t i = 0; i < n; i++) {
    int lo = 0, hi = n_int - 1; /* first interval whose upper break is >= x */
    while (lo < hi) {
      int mid = (lo + hi) / 2;
      if (x[i] <= out->breaks[mid + 1]) hi = mid;
      else lo = mid + 1;
    }
    sum_x[lo] += x[i];
    if (ps) sum_ps[lo] += ps[i];
    count[lo]++;
  }
  for (int k = 0; k < n_int; k++) {
    if (!count[k]) continue;
    int b = out->n_bins++;
    out->interval[b] = k;
    out->count[b] = count[k];
    out->mean_x[b] = (double)(sum_x[k] / count[k]);
    out->mean_ps[b] = ps ? (double)(sum_ps[k] / count[k]) : NAN;
  }
  return PS_OK;
}

int ps_dosage_fit_one(const double *own, const double *ps, int64_t n, const double *control, int64_t n_control,
                      const ps_dosage_options *opt, ps_hill_solver *solver, ps_dosage_result *out) {
  memset(out, 0, sizeof *out);
  out->ed50 = out->hill0 = out->hill1 = NAN;
  out->hill.b = out->hill.c = out->hill.d = out->hill.e = out->hill.sse = NAN;
  out->expr_min = out->control_median = NAN;
  out->pearson.r = out->pearson.p = out->spearman.r = out->spearman.p = NAN;
  PS_CALL(ps_dosage_options_check(opt));
  PS_CALL(check_finite(own, n, "own-gene expression"));
  PS_CALL(check_finite(ps, n, "PS"));
  out->n_cells = n;

  long double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += ps[i];
  out->cumulative_ps = (double)sum;
  PS_CALL(ps_cor_pearson(ps, own, n, &out->pearson));
  PS_CALL(ps_cor_spearman(ps, own, n, &out->spearman));
  out->crispri_efficient = out->pearson.r < opt->crispri_r && out->pearson.p <= opt->crispri_p;

  if (n < opt->min_cells) {
    out->status = PS_DOSAGE_TOO_FEW_CELLS;
    return PS_OK;
  }
  double *x;
  PS_ALLOC(x, n);
  int err = ps_dosage_normalize(own, n, control, n_control, x, &out->expr_min, &out->control_median, &out->status);
  if (err == PS_OK && out->status == PS_DOSAGE_FITTED) err = ps_dosage_bin(x, ps, n, opt->n_bins, &out->bins);
  free(x);
  PS_CALL(err);
  if (out->status != PS_DOSAGE_FITTED) return PS_OK; /* not expressed in controls */
  if (out->bins.n_bins < opt->min_bins) {
    out->status = PS_DOSAGE_TOO_FEW_BINS;
    return PS_OK;
  }

  PS_CALL(ps_hill_fit(solver, out->bins.n_bins, out->bins.mean_x, out->bins.mean_ps, &out->hill));
  if (!out->hill.converged) {
    out->status = PS_DOSAGE_FIT_FAILED;
    return PS_OK;
  }
  out->hill0 = ps_hill_eval(&out->hill, 0.0);
  out->hill1 = ps_hill_eval(&out->hill, 1.0);
  if (!(out->hill0 - out->hill1 >= opt->min_drop)) {
    out->status = PS_DOSAGE_FILTER_FAILED;
    return PS_OK;
  }
  out->status = PS_DOSAGE_FITTED;
  out->ed50 = out->hill.e;
  out->cls = out->ed50 <= opt->ed50_split ? PS_DOSAGE_BUFFERED : PS_DOSAGE_SENSITIVE;
  return PS_OK;
}
