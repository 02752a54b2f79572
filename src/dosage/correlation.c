/* Pearson and Spearman correlation tests as R's cor.test computes them (SPEC.md section 5).
 *
 * The reference reports cor.test(PS, own-gene expression) per perturbation, so the
 * arithmetic follows R closely enough that p agrees to ~1e-12 relative:
 * - cor(): means in long double with R's second correction pass, co-moments
 *   summed in long double, r = cov / (sd_x sd_y) clamped to [-1, 1] (R's cov.c);
 * - Spearman: Pearson of the average ranks, then R's round trip through
 *   S = (n^3 - n)(1 - r) / 6 and back, and the t approximation (exact = FALSE);
 * - pt() as R's pt.c: through pbeta, with the same choice of argument form.
 * pbeta is the classical continued fraction (modified Lentz) on whichever side
 * converges, with x^a (1 - x)^b / B(a, b) computed in logs and ln B(a, b) from
 * Stirling corrections when a or b is large: lgamma(a) - lgamma(a + 1/2) would
 * lose ~1e-10 to cancellation at a = n / 2 = 50000. */
#include "pertscore/dosage.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

static const double LN_SQRT_2PI = 0.918938533204672741780329736406;

/* ln Gamma(x) - Stirling's approximation, for x >= 10 (error < 1e-16). */
static double lgamma_correction(double x) {
  static const double c[] = {1.0 / 12, -1.0 / 360, 1.0 / 1260, -1.0 / 1680, 1.0 / 1188, -691.0 / 360360,
                             1.0 / 156, -3617.0 / 122400};
  double x2 = 1.0 / (x * x), s = 0.0, p = 1.0 / x;
  for (int k = 0; k < 8; k++) {
    s += c[k] * p;
    p *= x2;
  }
  return s;
}

/* ln B(a, b) for a, b > 0, as R's lbeta. */
static double lbeta(double a, double b) {
  double p = a < b ? a : b, q = a < b ? b : a;
  if (p >= 10.0) {
    double corr = lgamma_correction(p) + lgamma_correction(q) - lgamma_correction(p + q);
    return -0.5 * log(q) + LN_SQRT_2PI + corr + (p - 0.5) * log(p / (p + q)) + q * log1p(-p / (p + q));
  }
  if (q >= 10.0) {
    double corr = lgamma_correction(q) - lgamma_correction(p + q);
    return lgamma(p) + corr + p - p * log(p + q) + (q - 0.5) * log1p(-p / (p + q));
  }
  return lgamma(p) + lgamma(q) - lgamma(p + q);
}

/* I_x(a, b) by the continued fraction; accurate when x < (a + 1) / (a + b + 2). */
static double beta_cf(double x, double a, double b) {
  const double tiny = 1e-300, eps = 1e-16;
  double qab = a + b, qap = a + 1.0, qam = a - 1.0;
  double c = 1.0, d = 1.0 - qab * x / qap;
  if (fabs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 100000; m++) {
    int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1.0 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    double del = d * c;
    h *= del;
    if (fabs(del - 1.0) < eps) break;
  }
  double lfront = a * log(x) + b * log1p(-x) - lbeta(a, b);
  return exp(lfront) * h / a;
}

double ps_pbeta(double x, double a, double b, int lower_tail) {
  if (isnan(x) || isnan(a) || isnan(b) || !(a > 0.0) || !(b > 0.0)) return NAN;
  if (x <= 0.0) return lower_tail ? 0.0 : 1.0;
  if (x >= 1.0) return lower_tail ? 1.0 : 0.0;
  if (x < (a + 1.0) / (a + b + 2.0)) {
    double v = beta_cf(x, a, b);
    return lower_tail ? v : 1.0 - v;
  }
  double v = beta_cf(1.0 - x, b, a); /* upper tail of I_x(a, b) */
  return lower_tail ? 1.0 - v : v;
}

double ps_pt(double t, double df, int lower_tail) {
  if (isnan(t) || isnan(df) || !(df > 0.0)) return NAN;
  if (isinf(t)) return (t < 0) == !lower_tail ? 1.0 : 0.0;
  double nx = 1.0 + (t / df) * t, val;
  if (nx > 1e100) { /* t^2 > 1e100 df: the leading term of the tail */
    double lval = -0.5 * df * (2.0 * log(fabs(t)) - log(df)) - lbeta(0.5 * df, 0.5) - log(0.5 * df);
    val = exp(lval);
  } else {
    val = df > t * t ? ps_pbeta(t * t / (df + t * t), 0.5, df / 2.0, 0) : ps_pbeta(1.0 / nx, df / 2.0, 0.5, 1);
  }
  if (t <= 0.0) lower_tail = !lower_tail;
  val /= 2.0;
  return lower_tail ? 0.5 - val + 0.5 : val;
}

/* R cor(x, y) (cov.c, complete observations): NaN if a standard deviation is 0. */
static double pearson_r(const double *x, const double *y, int64_t n) {
  long double sx = 0, sy = 0;
  for (int64_t i = 0; i < n; i++) {
    sx += x[i];
    sy += y[i];
  }
  long double mx = sx / n, my = sy / n;
  if (isfinite((double)mx)) {
    sx = 0;
    for (int64_t i = 0; i < n; i++) sx += x[i] - mx; /* in long double, as R */
    mx += sx / n;
  }
  if (isfinite((double)my)) {
    sy = 0;
    for (int64_t i = 0; i < n; i++) sy += y[i] - my;
    my += sy / n;
  }
  const double xm = (double)mx, ym = (double)my;
  long double sxy = 0, sxx = 0, syy = 0;
  for (int64_t i = 0; i < n; i++) {
    double dx = x[i] - xm, dy = y[i] - ym;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  const long double n1 = n - 1;
  double cov = (double)(sxy / n1);
  double sdx = (double)sqrtl(sxx / n1), sdy = (double)sqrtl(syy / n1);
  if (sdx == 0.0 || sdy == 0.0) return NAN;
  double r = cov / (sdx * sdy);
  return r > 1.0 ? 1.0 : r < -1.0 ? -1.0 : r;
}

static int check_finite(const double *v, int64_t n, const char *what) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i])) PS_FAIL(PS_ERR_INPUT, "correlation: %s[%lld] is not finite (%g)", what, (long long)i, v[i]);
  return PS_OK;
}

int ps_cor_pearson(const double *x, const double *y, int64_t n, ps_cor_test *out) {
  PS_CALL(check_finite(x, n, "x"));
  PS_CALL(check_finite(y, n, "y"));
  out->r = out->p = NAN;
  if (n < 2) return PS_OK;
  out->r = pearson_r(x, y, n);
  if (n < 3 || isnan(out->r)) return PS_OK;
  double df = (double)(n - 2);
  double t = sqrt(df) * out->r / sqrt(1.0 - out->r * out->r);
  double lo = ps_pt(t, df, 1), hi = ps_pt(t, df, 0);
  out->p = 2.0 * (lo < hi ? lo : hi);
  return PS_OK;
}

typedef struct {
  double v;
  int64_t i;
} value_index;

static int cmp_value(const void *a, const void *b) {
  const value_index *p = a, *q = b;
  if (p->v < q->v) return -1;
  if (p->v > q->v) return 1;
  return p->i < q->i ? -1 : p->i > q->i;
}

/* Average ranks (1-based) of v into rank; vi is scratch of n entries. */
static void average_ranks(const double *v, int64_t n, value_index *vi, double *rank) {
  for (int64_t i = 0; i < n; i++) vi[i] = (value_index){v[i], i};
  qsort(vi, (size_t)n, sizeof *vi, cmp_value);
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j + 1 < n && vi[j + 1].v == vi[i].v) j++;
    double r = 0.5 * (double)(i + j) + 1.0; /* mean of ranks i+1 .. j+1 */
    for (int64_t k = i; k <= j; k++) rank[vi[k].i] = r;
    i = j + 1;
  }
}

int ps_cor_spearman(const double *x, const double *y, int64_t n, ps_cor_test *out) {
  PS_CALL(check_finite(x, n, "x"));
  PS_CALL(check_finite(y, n, "y"));
  out->r = out->p = NAN;
  if (n < 2) return PS_OK;
  value_index *vi;
  double *rx, *ry;
  PS_ALLOC(vi, n);
  rx = malloc((size_t)n * 2 * sizeof *rx);
  if (!rx) {
    free(vi);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory for %lld ranks", (long long)n);
  }
  ry = rx + n;
  average_ranks(x, n, vi, rx);
  average_ranks(y, n, vi, ry);
  double r = pearson_r(rx, ry, n);
  free(vi);
  free(rx);
  out->r = r;
  if (isnan(r) || n < 3) return PS_OK; /* R needs n > 2 for the t approximation */
  /* R's pspearman(q, n, lower.tail) with exact = FALSE, two-sided. */
  const double dn = (double)n;
  double q = (dn * dn * dn - dn) * (1.0 - r) / 6.0;
  int lower = !(q > (dn * dn * dn - dn) / 6.0);
  double den = (dn * (dn * dn - 1.0)) / 6.0;
  double rr = 1.0 - q / den;
  double p = ps_pt(rr / sqrt((1.0 - rr * rr) / (dn - 2.0)), dn - 2.0, !lower);
  out->p = 2.0 * p < 1.0 ? 2.0 * p : 1.0;
  return PS_OK;
}
