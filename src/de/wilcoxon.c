/* One gene, P vs C: pct, log2FC and the Wilcoxon rank-sum p-value (SPEC.md section 1).
 *
 * The reference (Seurat FindMarkers, test.use = "wilcox") calls R's
 * wilcox.test(x, y, exact = FALSE) per gene. Single-cell data are mostly zeros,
 * so the zeros of both groups are ranked as one tie block without being
 * expanded: a merge of the two sorted nonzero lists visits each distinct value
 * once, and the zero block enters the merge as the value 0 with its count. */
#include "pertscore/de.h"

#include <math.h>
#include <stdlib.h>

static const double SQRT2 = 1.41421356237309504880;

double ps_de_round3(double x) {
  /* R >= 4.0.0 fround(x, 3): pick the nearer of the two 3-decimal neighbours,
   * compared in double, ties to the even last digit. Not floor(1000 x + 0.5) / 1000:
   * that differs for 2246 of the k / n with n <= 3000, e.g. 1/16 and 1/2000. */
  if (!isfinite(x) || x == 0.0) return x;
  double sgn = 1.0;
  if (x < 0) {
    sgn = -1.0;
    x = -x;
  }
  double l10x = 0.30102999566398119521 * (0.5 + logb(x)); /* ~ log10(x) */
  if (l10x + 3 > 15) return sgn * x;                       /* DBL_DIG: nothing to round */
  double x10 = x * 1000.0, i10 = floor(x10);
  double xd = i10 / 1000.0, xu = ceil(x10) / 1000.0;
  double du = xu - x, dd = x - xd;
  return sgn * ((du < dd || (fmod(i10, 2.0) == 1.0 && du == dd)) ? xu : xd);
}

/* Values must be finite and ascending for the merge. */
static int check_sorted(const double *v, int64_t nnz, const char *group) {
  for (int64_t i = 0; i < nnz; i++) {
    if (!isfinite(v[i]))
      PS_FAIL(PS_ERR_INPUT, "DE test: non-finite value %g in group %s", v[i], group);
    if (i > 0 && v[i] < v[i - 1])
      PS_FAIL(PS_ERR_INPUT, "DE test: values of group %s are not sorted ascending (position %lld)",
              group, (long long)i);
  }
  return PS_OK;
}

/* Sum of group 1's average ranks and sum(t^3 - t) over tie blocks, for sorted
 * nonzero lists a (group 1) and b (group 2) plus za, zb implicit zeros. */
static void rank_sums(const double *a, int64_t na, int64_t za, const double *b, int64_t nb, int64_t zb,
                      double *rank_sum_1, double *tie_sum) {
  int64_t i = 0, j = 0;
  int zeros_pending = (za + zb) > 0;
  double pos = 0, r1 = 0; /* pos: ranks handed out so far */
  long double ties = 0;   /* t^3 of the zero block exceeds 2^53; R's sum() adds in long double too */
  while (i < na || j < nb || zeros_pending) {
    /* The next distinct value: the smallest head, the zero block counting as 0. */
    double v = HUGE_VAL;
    if (i < na) v = a[i];
    if (j < nb && b[j] < v) v = b[j];
    if (zeros_pending && 0.0 < v) v = 0.0;
    int64_t ca = 0, cb = 0;
    while (i < na && a[i] == v) i++, ca++;
    while (j < nb && b[j] == v) j++, cb++;
    if (zeros_pending && v == 0.0) { /* explicit zeros join the implicit ones */
      ca += za;
      cb += zb;
      zeros_pending = 0;
    }
    double t = (double)(ca + cb);
    r1 += (double)ca * (pos + (t + 1) / 2); /* average rank of the block */
    ties += (long double)t * t * t - t;
    pos += t;
  }
  *rank_sum_1 = r1;
  *tie_sum = (double)ties;
}

/* Mean of expm1(y) over n cells, given the nonzero values; long double sum as R's mean(). */
static double mean_expm1(const double *v, int64_t nnz, int64_t n) {
  long double s = 0;
  for (int64_t i = 0; i < nnz; i++) s += expm1(v[i]);
  return (double)(s / (long double)n);
}

static int64_t count_positive(const double *v, int64_t nnz) {
  int64_t k = 0;
  for (int64_t i = 0; i < nnz; i++) k += v[i] > 0;
  return k;
}

static int check_sizes(int64_t nnz1, int64_t n1, int64_t nnz2, int64_t n2) {
  if (n1 < 1 || n2 < 1)
    PS_FAIL(PS_ERR_INPUT, "DE test needs at least one cell in each group (have %lld and %lld)",
            (long long)n1, (long long)n2);
  if (nnz1 < 0 || nnz1 > n1 || nnz2 < 0 || nnz2 > n2)
    PS_FAIL(PS_ERR_INPUT, "DE test: %lld / %lld stored values for groups of %lld / %lld cells",
            (long long)nnz1, (long long)nnz2, (long long)n1, (long long)n2);
  return PS_OK;
}

int ps_de_test_gene_sorted(const double *v1, int64_t nnz1, int64_t n1, const double *v2,
                           int64_t nnz2, int64_t n2, ps_de_gene *out) {
  PS_CALL(check_sizes(nnz1, n1, nnz2, n2));
  PS_CALL(check_sorted(v1, nnz1, "P"));
  PS_CALL(check_sorted(v2, nnz2, "C"));

  out->pct1 = ps_de_round3((double)count_positive(v1, nnz1) / (double)n1);
  out->pct2 = ps_de_round3((double)count_positive(v2, nnz2) / (double)n2);
  /* log2(m + 1) rather than log1p(m) / ln 2: the reference's rounding (Seurat FoldChange). */
  out->log2fc = log2(mean_expm1(v1, nnz1, n1) + 1.0) - log2(mean_expm1(v2, nnz2, n2) + 1.0);

  double r1, ties;
  rank_sums(v1, nnz1, n1 - nnz1, v2, nnz2, n2 - nnz2, &r1, &ties);
  double nx = (double)n1;
  out->p = ps_de_wilcoxon_p(n1, n2, r1 - nx * (nx + 1) / 2, ties);
  return PS_OK;
}

double ps_de_wilcoxon_p(int64_t n1, int64_t n2, double w, double tie_sum) {
  /* Term by term as stats:::wilcox.test.default (exact = FALSE, correct = TRUE). */
  double nx = (double)n1, ny = (double)n2;
  double zn = w - nx * ny / 2; /* a multiple of 0.5, exact in double */
  double var = (nx * ny / 12) * ((nx + ny + 1) - tie_sum / ((nx + ny) * (nx + ny - 1)));
  if (!(var > 0)) return NAN; /* every value tied: R divides 0 by 0 */
  double correction = zn > 0 ? 0.5 : (zn < 0 ? -0.5 : 0.0); /* sign(z) * 0.5, two-sided */
  double z = (zn - correction) / sqrt(var);
  /* 2 min(pnorm(z), pnorm(-z)) = erfc(|z| / sqrt 2); erfc keeps relative accuracy
   * in the tail where 1 - pnorm(|z|) would cancel to 0 near p = 1e-16. */
  return erfc(fabs(z) / SQRT2);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int ps_de_test_gene(const double *v1, int64_t nnz1, int64_t n1, const double *v2, int64_t nnz2,
                    int64_t n2, ps_de_work *work, ps_de_gene *out) {
  PS_CALL(check_sizes(nnz1, n1, nnz2, n2));
  int64_t need = nnz1 + nnz2;
  PS_CALL(ps_de_work_reserve(work, need));
  double *s1 = work->buf, *s2 = work->buf + nnz1;
  for (int64_t i = 0; i < nnz1; i++) s1[i] = v1[i];
  for (int64_t i = 0; i < nnz2; i++) s2[i] = v2[i];
  /* NaN would make qsort's order undefined: reject before sorting. */
  for (int64_t i = 0; i < need; i++)
    if (!isfinite(work->buf[i]))
      PS_FAIL(PS_ERR_INPUT, "DE test: non-finite value %g in group %s", work->buf[i], i < nnz1 ? "P" : "C");
  qsort(s1, (size_t)nnz1, sizeof *s1, cmp_double);
  qsort(s2, (size_t)nnz2, sizeof *s2, cmp_double);
  PS_CALL(ps_de_test_gene_sorted(s1, nnz1, n1, s2, nnz2, n2, out));
  return PS_OK;
}

int ps_de_work_reserve(ps_de_work *w, int64_t n) {
  if (n < 1) n = 1; /* buf is never NULL after a reserve, even for empty groups */
  if (n <= w->cap) return PS_OK;
  double *buf = realloc(w->buf, (size_t)n * sizeof *buf);
  if (!buf) PS_FAIL(PS_ERR_SYSTEM, "out of memory: DE scratch of %lld values", (long long)n);
  w->buf = buf;
  w->cap = n;
  return PS_OK;
}

void ps_de_work_free(ps_de_work *w) {
  if (!w) return;
  free(w->buf);
  w->buf = NULL;
  w->cap = 0;
}
