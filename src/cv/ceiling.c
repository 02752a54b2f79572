/* The split-half ceiling corrected to full-data reliability (SPEC.md section 7;
 * the derivations are in docs/cv.md "Ceiling").
 *
 * Half h's delta is d_h = delta + e_h with independent noise of about twice the
 * full-data delta's noise variance V (half the cells of the perturbation and of the
 * controls). The models are scored against o = delta + e (variance V); the best a
 * model can do in expectation is the truth, delta. So the ceiling is the expected
 * score of (pred = delta, obs = o), estimated from (d_0, d_1):
 * (With --disjoint-controls the halves take their own control halves and the observed
 * delta's noise is kappa times a half's, kappa estimated per perturbation; the rules
 * below are those of kappa = 1/2, the general ones are in docs/cv.md.)
 *   - MSE: E (d_0 - d_1)^2 = 4 V = 4 E (delta - o)^2: raw / 4 (also mse_top);
 *   - MAE: d_0 - d_1 has the distribution of 2 e (e_0, e_1 i.i.d., symmetric): raw / 2;
 *   - correlations: the split-half r is the reliability of a half; Spearman-Brown
 *     gives the full data's rho = 2 r / (1 + r), and corr(delta, o) = sqrt(rho)
 *     (signed: -sqrt(-rho) when rho < 0; clamped to [-1, 1]);
 *   - r2_top_de: SSE / 4 over SST - SSE / 4 (the observed side's variance at the
 *     full data's noise);
 *   - sign_fraction, overlap_top: the value a pair of standard normal vectors with
 *     correlation c gives (sign: 1/2 + asin(c) / pi; overlap: P(|X| > t, |Y| > t) / q
 *     with P(|X| > t) = q), inverted at the split-half value and evaluated at the
 *     corrected correlation sqrt(rho(c));
 *   - retrieval (perturbations.c): each candidate's correlation disattenuated by
 *     ps_cv_ceiling_scale before the ranking. */
#include <math.h>

#include "pertscore/cv.h"

/* kappa: the observed delta's noise variance over a half's (1/2 with the shared control
 * mean; see ps_cv_ceiling_correct). */
static double kappa_now = 0.5;

/* corr(delta, o) from a split-half correlation r: signed square root of Spearman-Brown
 * (generalized: rho = r / (r + kappa (1 - r)), 2r / (1 + r) at kappa 1/2). */
static double full_correlation(double r) {
  if (isnan(r)) return NAN;
  double den = r + kappa_now * (1.0 - r);
  if (r <= -1.0 || den <= 0) return -1.0;
  double rho = r / den;
  double c = rho >= 0 ? sqrt(rho) : -sqrt(-rho);
  return c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c;
}

double ps_cv_ceiling_scale(double r, double kappa) {
  double den = r + kappa * (1.0 - r);
  if (isnan(r) || !(den > 0)) return 1.0;
  return sqrt(1.0 / den);
}

static double norm_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

/* t with P(|X| > t) = q for a standard normal X (bisection; q in (0, 1)). */
static double two_sided_quantile(double q) {
  double lo = 0.0, hi = 40.0;
  for (int i = 0; i < 200; i++) {
    double mid = 0.5 * (lo + hi);
    if (erfc(mid / sqrt(2.0)) > q) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/* Expected top-set overlap of a standard bivariate normal pair with correlation c >= 0:
 * P(|X| > t, |Y| > t) / q, Simpson's rule over x in [t, t + 12] (twice, by symmetry). */
static double normal_overlap(double c, double q, double t) {
  if (c >= 1.0) return 1.0;
  double s = sqrt(1.0 - c * c), a = t, b = t + 12.0, sum = 0.0;
  const int n = 600;
  double h = (b - a) / n;
  for (int i = 0; i <= n; i++) {
    double x = a + i * h;
    double f = exp(-0.5 * x * x) / sqrt(2.0 * M_PI) * (norm_cdf((c * x - t) / s) + norm_cdf((-t - c * x) / s));
    sum += f * (i == 0 || i == n ? 1.0 : i % 2 ? 4.0 : 2.0);
  }
  return 2.0 * sum * h / 3.0 / q;
}

/* The correlation c in [0, 1] whose expected overlap is v (0 when v <= q). */
static double overlap_correlation(double v, double q, double t) {
  if (v <= q) return 0.0;
  if (v >= 1.0) return 1.0;
  double lo = 0.0, hi = 1.0;
  for (int i = 0; i < 50; i++) {
    double mid = 0.5 * (lo + hi);
    if (normal_overlap(mid, q, t) < v) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

double ps_cv_ceiling_sign(double s, double kappa) {
  kappa_now = kappa;
  double c = sin(M_PI * ((s > 1.0 ? 1.0 : s < 0.0 ? 0.0 : s) - 0.5));
  return 0.5 + asin(full_correlation(c)) / M_PI;
}

void ps_cv_ceiling_correct(const double *raw, double q, double kappa, double *out) {
  kappa_now = kappa;
  for (int m = 0; m < PS_CV_N_METRICS; m++) out[m] = raw[m];
  out[PS_CV_MSE] = raw[PS_CV_MSE] * kappa / 2.0;
  out[PS_CV_MSE_TOP] = raw[PS_CV_MSE_TOP] * kappa / 2.0;
  out[PS_CV_MAE] = raw[PS_CV_MAE] * sqrt(kappa / 2.0);
  out[PS_CV_PEARSON] = full_correlation(raw[PS_CV_PEARSON]);
  out[PS_CV_SPEARMAN] = full_correlation(raw[PS_CV_SPEARMAN]);
  out[PS_CV_PEARSON_TOP] = full_correlation(raw[PS_CV_PEARSON_TOP]);
  /* R^2 = 1 - u, u = SSE / SST: corrected 1 - (kappa u / 2) / (1 - (1 - kappa) u / 2); 1 - (u/4) / (1 - u/4) at 1/2 */
  double u = 1.0 - raw[PS_CV_R2_DE], den = 1.0 - (1.0 - kappa) * u / 2.0;
  out[PS_CV_R2_DE] = isnan(u) || !(den > 0) ? NAN : 1.0 - kappa * u / 2.0 / den;
  if (!isnan(raw[PS_CV_SIGN])) out[PS_CV_SIGN] = ps_cv_ceiling_sign(raw[PS_CV_SIGN], kappa);
  kappa_now = kappa;
  double v = raw[PS_CV_OVERLAP_TOP];
  if (!isnan(v) && q > 0.0 && q < 1.0) {
    double t = two_sided_quantile(q);
    out[PS_CV_OVERLAP_TOP] = normal_overlap(full_correlation(overlap_correlation(v, q, t)), q, t);
  }
}
