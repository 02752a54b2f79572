/* Baselines and the linear gene-embedding model of the perturbations scheme
 * (SPEC.md section 7; docs/cv.md gives the exact definitions).
 *
 * Training deltas are pseudobulk changes vs the control mean; the entry of a
 * perturbation's own (perturbed) gene is missing everywhere: it is not averaged
 * into the baselines and is imputed with the training mean in the embedding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int ps_cv_baselines(int64_t n_genes, int32_t n_train, const double *const *delta, const int64_t *own, double *mean,
                    double *median) {
  double *column;
  PS_ALLOC(column, n_train);
  for (int64_t g = 0; g < n_genes; g++) {
    double sum = 0;
    int32_t n = 0;
    for (int32_t t = 0; t < n_train; t++) {
      if (own[t] == g) continue;
      sum += delta[t][g];
      column[n++] = delta[t][g];
    }
    mean[g] = n ? sum / (double)n : NAN;
    if (!median) continue;
    if (n == 0) {
      median[g] = NAN;
      continue;
    }
    qsort(column, (size_t)n, sizeof *column, compare_doubles);
    median[g] = n % 2 ? column[n / 2] : 0.5 * (column[n / 2 - 1] + column[n / 2]);
  }
  free(column);
  return PS_OK;
}

void ps_cv_embedding_free(ps_cv_embedding *e) {
  if (!e) return;
  free(e->scores);
  free(e->sigma);
  free(e->w);
  memset(e, 0, sizeof *e);
}

/* Solve A X = B in place for SPD k x k A (row-major, overwritten by its Cholesky
 * factor) and k x c B (row-major). k is the number of PCs: small. */
static int cholesky_solve(int k, double *a, int c, double *b) {
  for (int j = 0; j < k; j++) {
    double d = a[j * k + j];
    for (int t = 0; t < j; t++) d -= a[j * k + t] * a[j * k + t];
    if (!(d > 0)) PS_FAIL(PS_ERR_SYSTEM, "cv: the embedding's ridge system is not positive definite");
    a[j * k + j] = sqrt(d);
    for (int i = j + 1; i < k; i++) {
      double s = a[i * k + j];
      for (int t = 0; t < j; t++) s -= a[i * k + t] * a[j * k + t];
      a[i * k + j] = s / a[j * k + j];
    }
  }
  for (int col = 0; col < c; col++) {
    for (int i = 0; i < k; i++) { /* L z = b */
      double s = b[i * c + col];
      for (int t = 0; t < i; t++) s -= a[i * k + t] * b[t * c + col];
      b[i * c + col] = s / a[i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) { /* L^T x = z */
      double s = b[i * c + col];
      for (int t = i + 1; t < k; t++) s -= a[t * k + i] * b[t * c + col];
      b[i * c + col] = s / a[i * k + i];
    }
  }
  return PS_OK;
}

int ps_cv_embedding_fit(MPI_Comm comm, int64_t n_genes, int32_t n_train, const double *const *delta,
                        const int64_t *own, const double *center, int n_pcs, double lambda, ps_cv_embedding *out) {
  memset(out, 0, sizeof *out);
  out->n_genes = n_genes;
  out->lambda = lambda;
  int64_t G = n_genes;
  int k = n_pcs;
  if (k > n_train - 1) k = n_train - 1;
  if (k > G) k = (int)G;
  if (k < 1) return PS_OK; /* fewer than two training perturbations: no embedding */
  if (G > INT32_MAX / 2 || n_train > INT32_MAX / 2) PS_FAIL(PS_ERR_INPUT, "cv: too many genes for the SVD");
  /* Y: genes x T column-major, centred by the training mean; own entries -> 0 */
  double *y;
  PS_ALLOC(y, G * n_train);
  for (int32_t t = 0; t < n_train; t++)
    for (int64_t g = 0; g < G; g++) {
      double v = g == own[t] || !isfinite(center[g]) ? 0.0 : delta[t][g] - center[g];
      y[(int64_t)t * G + g] = v;
    }
  PS_ALLOC(out->scores, G * k);
  PS_ALLOC(out->sigma, k);
  PS_CALL(cv_svd_scores(comm, (int)G, (int)n_train, y, k, out->scores, out->sigma));
  out->k = k;
  /* P (k x T') and G^T Y' (k x T') over the training perturbations with a measured gene */
  int32_t used = 0;
  for (int32_t t = 0; t < n_train; t++) used += own[t] >= 0;
  double *p, *gty, *m2, *a;
  PS_ALLOC(p, (int64_t)k * (used ? used : 1));
  PS_ALLOC(gty, (int64_t)k * (used ? used : 1));
  PS_ALLOC(m2, (int64_t)k * k);
  PS_ALLOC(a, (int64_t)k * k);
  PS_ALLOC(out->w, (int64_t)k * k);
  int32_t c = 0;
  for (int32_t t = 0; t < n_train; t++) {
    if (own[t] < 0) continue;
    const double *col = y + (int64_t)t * G;
    for (int i = 0; i < k; i++) {
      p[(int64_t)i * used + c] = out->scores[own[t] * k + i];
      double s = 0;
      for (int64_t g = 0; g < G; g++) s += out->scores[g * k + i] * col[g];
      gty[(int64_t)i * used + c] = s;
    }
    c++;
  }
  /* M2 = D (G^T Y') P^T with D = (G^T G + lambda I)^-1 = diag 1 / (sigma^2 + lambda); A = P P^T + lambda I */
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      double s = 0, q = 0;
      for (int32_t t = 0; t < used; t++) {
        s += gty[(int64_t)i * used + t] * p[(int64_t)j * used + t];
        q += p[(int64_t)i * used + t] * p[(int64_t)j * used + t];
      }
      m2[i * k + j] = s / (out->sigma[i] * out->sigma[i] + lambda);
      a[i * k + j] = q + (i == j ? lambda : 0.0);
    }
  /* W = M2 A^-1  <=>  A W^T = M2^T (A symmetric) */
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) out->w[j * k + i] = m2[i * k + j];
  PS_CALL(cholesky_solve(k, a, k, out->w)); /* out->w now holds W^T */
  for (int i = 0; i < k; i++)
    for (int j = i + 1; j < k; j++) {
      double t = out->w[i * k + j];
      out->w[i * k + j] = out->w[j * k + i];
      out->w[j * k + i] = t;
    }
  free(y);
  free(p);
  free(gty);
  free(m2);
  free(a);
  return PS_OK;
}

void ps_cv_embedding_predict(const ps_cv_embedding *e, const double *center, int64_t own, double *pred) {
  int64_t G = e->n_genes;
  int k = e->k;
  if (k < 1 || own < 0 || own >= G) {
    for (int64_t g = 0; g < G; g++) pred[g] = NAN;
    return;
  }
  double v[64 * 8], *wp = k <= (int)(sizeof v / sizeof *v) ? v : malloc((size_t)k * sizeof *wp);
  if (!wp) {
    for (int64_t g = 0; g < G; g++) pred[g] = NAN;
    return;
  }
  const double *p = e->scores + own * k;
  for (int i = 0; i < k; i++) {
    double s = 0;
    for (int j = 0; j < k; j++) s += e->w[i * k + j] * p[j];
    wp[i] = s;
  }
  for (int64_t g = 0; g < G; g++) {
    double s = 0;
    for (int i = 0; i < k; i++) s += e->scores[g * k + i] * wp[i];
    pred[g] = center[g] + s;
  }
  if (wp != v) free(wp);
}
