/* PEREGGRN's conventions beside ours (docs/cv.md "PEREGGRN's conventions"): the
 * evaluator of ekernf01/pereggrn (pereggrn/evaluator.py, METRICS) sums squared errors
 * (np.linalg.norm(.)**2) over all genes and over the top 20 / 100 / 200 genes by
 * |observed change| (scipy rankdata(-|o|) <= n: average ranks, so genes tied across
 * the cut-off are all out), and counts the direction over all genes with
 * sign(o) == sign(p) (0 == 0 is right). Computed here over the same genes as our
 * metrics (the perturbed gene left out), on the same deltas. Serial C. */
#include <math.h>
#include <stdlib.h>

#include "pertscore/cv.h"

const char *const ps_cv_pereggrn_names[PS_CV_N_PEREGGRN] = {
    "mse_sum", "mse_top_20", "mse_top_100", "mse_top_200", "mse_top_20_sum", "mse_top_100_sum", "mse_top_200_sum",
    "proportion_correct_direction"};

static const double *abs_key;
static int by_abs_desc(const void *a, const void *b) {
  double x = abs_key[*(const int64_t *)a], y = abs_key[*(const int64_t *)b];
  return x > y ? -1 : x < y ? 1 : 0;
}

static int is_skipped(int64_t g, const int64_t *skip, int n_skip) {
  for (int i = 0; i < n_skip; i++)
    if (skip[i] == g) return 1;
  return 0;
}

int ps_cv_pereggrn_metrics(int64_t n_genes, const double *pred, const double *obs, const int64_t *skip, int n_skip,
                           double *out) {
  for (int m = 0; m < PS_CV_N_PEREGGRN; m++) out[m] = NAN;
  int64_t n = 0;
  int64_t *idx = malloc((size_t)(n_genes > 0 ? n_genes : 1) * sizeof *idx);
  double *a = malloc((size_t)(n_genes > 0 ? n_genes : 1) * sizeof *a);
  if (!idx || !a) {
    free(idx);
    free(a);
    return ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (cv: PEREGGRN metrics of %lld genes)",
                        (long long)n_genes);
  }
  for (int64_t g = 0; g < n_genes; g++) {
    if (is_skipped(g, skip, n_skip)) continue;
    if (isnan(pred[g]) || isnan(obs[g])) {
      free(idx);
      free(a);
      return PS_OK; /* a NaN makes every metric NaN, as for ours */
    }
    idx[n++] = g;
  }
  double sse = 0, right = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t g = idx[i];
    double d = pred[g] - obs[g];
    sse += d * d;
    int so = (obs[g] > 0) - (obs[g] < 0), sp = (pred[g] > 0) - (pred[g] < 0);
    right += so == sp;
    a[g] = fabs(obs[g]);
  }
  out[PS_CV_PG_MSE_SUM] = sse;
  out[PS_CV_PG_SIGN_ALL] = n ? right / (double)n : NAN;
  /* top n by |o| with average ranks: a tie group of 1-based positions [i + 1, j] has rank (i + 1 + j) / 2 */
  abs_key = a;
  qsort(idx, (size_t)n, sizeof *idx, by_abs_desc);
  const int tops[3] = {20, 100, 200};
  for (int t = 0; t < 3; t++) {
    double sum = 0;
    int64_t in = 0;
    for (int64_t i = 0; i < n;) {
      int64_t j = i + 1;
      while (j < n && a[idx[j]] == a[idx[i]]) j++;
      if ((double)(i + 1 + j) / 2.0 > tops[t]) break;
      for (int64_t q = i; q < j; q++) {
        double d = pred[idx[q]] - obs[idx[q]];
        sum += d * d;
        in++;
      }
      i = j;
    }
    out[PS_CV_PG_TOP20_SUM + t] = sum;
    out[PS_CV_PG_TOP20 + t] = in ? sum / (double)in : NAN;
  }
  free(idx);
  free(a);
  return PS_OK;
}

void ps_cv_pereggrn_correct(const double *raw, double kappa, double *out) {
  for (int m = 0; m < PS_CV_N_PEREGGRN; m++) out[m] = raw[m] * kappa / 2.0; /* squared errors: E (d0 - d1)^2 = 2 v / kappa */
  double s = raw[PS_CV_PG_SIGN_ALL];
  out[PS_CV_PG_SIGN_ALL] = isnan(s) ? NAN : ps_cv_ceiling_sign(s, kappa);
}
