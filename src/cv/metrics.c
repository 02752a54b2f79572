/* Metrics of a predicted expression change against the observed one (SPEC.md
 * section 7; exact definitions in docs/cv.md "Metrics"). Serial C over flat
 * arrays: the schemes call these once per held-out perturbation and model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/cv.h"

const char *const ps_cv_metric_names[PS_CV_N_METRICS] = {
    "mse", "mae", "pearson", "spearman", "sign_fraction", "mse_top", "pearson_top", "overlap_top", "r2_top_de",
    "retrieval"};

static int skipped(int64_t g, const int64_t *skip, int n_skip) {
  for (int i = 0; i < n_skip; i++)
    if (skip[i] == g) return 1;
  return 0;
}

/* Pearson of x[idx[i]], y[idx[i]] over n indices (idx NULL: 0..n-1); two passes
 * (means, then centred sums) so that large offsets do not cancel. */
static double pearson_indexed(int64_t n, const int64_t *idx, const double *x, const double *y) {
  if (n < 2) return NAN;
  double mx = 0, my = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t g = idx ? idx[i] : i;
    mx += x[g];
    my += y[g];
  }
  mx /= (double)n;
  my /= (double)n;
  double sxx = 0, syy = 0, sxy = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t g = idx ? idx[i] : i;
    double dx = x[g] - mx, dy = y[g] - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
  }
  if (!(sxx > 0) || !(syy > 0)) return NAN;
  double r = sxy / sqrt(sxx * syy);
  return r > 1 ? 1 : (r < -1 ? -1 : r);
}

double ps_cv_pearson(int64_t n_genes, const double *x, const double *y, const int64_t *skip, int n_skip) {
  int64_t *idx = malloc((size_t)(n_genes > 0 ? n_genes : 1) * sizeof *idx);
  if (!idx) return NAN;
  int64_t n = 0;
  for (int64_t g = 0; g < n_genes; g++)
    if (!skipped(g, skip, n_skip)) idx[n++] = g;
  double r = pearson_indexed(n, idx, x, y);
  free(idx);
  return r;
}

/* qsort comparators need the values: a file-scope pointer, set just before each sort. */
static const double *sort_key;

/* |key| descending, ties by gene index ascending: the "top" order. */
static int by_abs_desc(const void *a, const void *b) {
  int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
  double x = fabs(sort_key[i]), y = fabs(sort_key[j]);
  if (x != y) return x > y ? -1 : 1;
  return (i > j) - (i < j);
}

static int by_value(const void *a, const void *b) {
  int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
  double x = sort_key[i], y = sort_key[j];
  if (x != y) return x < y ? -1 : 1;
  return (i > j) - (i < j);
}

/* Average ranks (1-based, ties share their mean rank) of v over the n genes of idx, into rank[g]. */
static void average_ranks(int64_t n, const int64_t *idx, const double *v, int64_t *order, double *rank) {
  memcpy(order, idx, (size_t)n * sizeof *order);
  sort_key = v;
  qsort(order, (size_t)n, sizeof *order, by_value);
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && v[order[j + 1]] == v[order[i]]) j++;
    double r = 0.5 * (double)(i + j) + 1.0;
    for (int64_t t = i; t <= j; t++) rank[order[t]] = r;
    i = j + 1;
  }
}

int ps_cv_delta_metrics(int64_t n_genes, const double *pred, const double *obs, const int64_t *skip, int n_skip,
                        int top_n, int top_de, double *metrics) {
  for (int m = 0; m < PS_CV_N_METRICS; m++) metrics[m] = NAN;
  int64_t *idx, *order_o, *order_p, *scratch;
  double *rank_p, *rank_o;
  PS_ALLOC(idx, n_genes);
  PS_ALLOC(order_o, n_genes);
  PS_ALLOC(order_p, n_genes);
  PS_ALLOC(scratch, n_genes);
  PS_ALLOC(rank_p, n_genes);
  PS_ALLOC(rank_o, n_genes);
  int64_t n = 0;
  int finite = 1;
  for (int64_t g = 0; g < n_genes; g++) {
    if (skipped(g, skip, n_skip)) continue;
    finite &= isfinite(pred[g]) && isfinite(obs[g]);
    idx[n++] = g;
  }
  if (finite && n > 0) {
    double se = 0, ae = 0;
    int64_t signed_n = 0, right = 0;
    for (int64_t i = 0; i < n; i++) {
      int64_t g = idx[i];
      double e = pred[g] - obs[g];
      se += e * e;
      ae += fabs(e);
      if (obs[g] != 0) {
        signed_n++;
        right += (pred[g] > 0 && obs[g] > 0) || (pred[g] < 0 && obs[g] < 0);
      }
    }
    metrics[PS_CV_MSE] = se / (double)n;
    metrics[PS_CV_MAE] = ae / (double)n;
    metrics[PS_CV_PEARSON] = pearson_indexed(n, idx, pred, obs);
    average_ranks(n, idx, pred, scratch, rank_p);
    average_ranks(n, idx, obs, scratch, rank_o);
    metrics[PS_CV_SPEARMAN] = pearson_indexed(n, idx, rank_p, rank_o);
    metrics[PS_CV_SIGN] = signed_n ? (double)right / (double)signed_n : NAN;

    /* top sets: genes ordered by |observed| and by |predicted| */
    memcpy(order_o, idx, (size_t)n * sizeof *idx);
    memcpy(order_p, idx, (size_t)n * sizeof *idx);
    sort_key = obs;
    qsort(order_o, (size_t)n, sizeof *order_o, by_abs_desc);
    sort_key = pred;
    qsort(order_p, (size_t)n, sizeof *order_p, by_abs_desc);
    int64_t nt = top_n < n ? top_n : n;
    if (nt > 0) {
      double top_se = 0;
      for (int64_t i = 0; i < nt; i++) {
        double e = pred[order_o[i]] - obs[order_o[i]];
        top_se += e * e;
      }
      metrics[PS_CV_MSE_TOP] = top_se / (double)nt;
      metrics[PS_CV_PEARSON_TOP] = pearson_indexed(nt, order_o, pred, obs);
      /* overlap: mark the observed top set in rank_p (reused as a flag array) */
      for (int64_t i = 0; i < nt; i++) rank_p[order_o[i]] = -1.0;
      int64_t both = 0;
      for (int64_t i = 0; i < nt; i++) both += rank_p[order_p[i]] == -1.0;
      metrics[PS_CV_OVERLAP_TOP] = (double)both / (double)nt;
    }
    int64_t nd = top_de < n ? top_de : n;
    if (nd > 0) {
      double mean = 0, ss_res = 0, ss_tot = 0;
      for (int64_t i = 0; i < nd; i++) mean += obs[order_o[i]];
      mean /= (double)nd;
      for (int64_t i = 0; i < nd; i++) {
        double o = obs[order_o[i]], e = o - pred[order_o[i]];
        ss_res += e * e;
        ss_tot += (o - mean) * (o - mean);
      }
      metrics[PS_CV_R2_DE] = ss_tot > 0 ? 1.0 - ss_res / ss_tot : NAN;
    }
  }
  free(idx);
  free(order_o);
  free(order_p);
  free(scratch);
  free(rank_p);
  free(rank_o);
  return PS_OK;
}

double ps_cv_retrieval(int64_t n_genes, const double *pred, int64_t pred_own, const double *const *obs,
                       const int64_t *obs_own, int n, int truth) {
  return ps_cv_retrieval_scaled(n_genes, pred, pred_own, obs, obs_own, n, truth, NULL);
}

double ps_cv_retrieval_scaled(int64_t n_genes, const double *pred, int64_t pred_own, const double *const *obs,
                              const int64_t *obs_own, int n, int truth, const double *scale) {
  if (n < 2 || truth < 0 || truth >= n) return NAN;
  double *r = malloc((size_t)n * sizeof *r);
  if (!r) return NAN;
  for (int i = 0; i < n; i++) {
    int64_t skip[2] = {pred_own, obs_own ? obs_own[i] : -1};
    r[i] = ps_cv_pearson(n_genes, pred, obs[i], skip, 2);
    if (scale) r[i] *= scale[i];
  }
  double result = NAN;
  if (!isnan(r[truth])) {
    double below = 0;
    for (int i = 0; i < n; i++) {
      if (i == truth) continue;
      if (isnan(r[i]) || r[i] == r[truth]) below += 0.5;
      else if (r[i] < r[truth]) below += 1.0;
    }
    result = below / (double)(n - 1);
  }
  free(r);
  return result;
}
