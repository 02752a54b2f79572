/* Exact finish of the box QP from TAO's answer (SPEC.md section 3).
 *
 * Why: when two perturbations have almost the same beta row, H has an
 * eigenvalue near 0 (down to 1e-20 of the largest). TAO's Krylov steps cannot
 * see that direction, so it stops with a small projected gradient (1e-9) while
 * the optimum lies a long way off along the flat direction and the objective is
 * still measurably above the minimum. A few primal active-set iterations, each
 * an exact Newton step on the current face, land on the optimum of the face TAO
 * identified (usually in one step) and walk to the neighbouring face when the
 * flat direction runs into a bound.
 *
 * The algorithm (Nocedal & Wright, 16.5, specialised to bounds): keep a working
 * set W of coordinates fixed at 0 or U; solve H_FF p = -g_F on the free ones;
 * step until the first bound is hit (it joins W) or take the full step; at a
 * face minimizer release the coordinate of W whose multiplier has the wrong
 * sign, or stop. The face solve is a diagonally pivoted Cholesky whose pivots
 * are floored at 1e-14 of the largest diagonal: in a (numerically) null
 * direction the step becomes a long move that is cut at the box, which is the
 * right thing to do on a flat face. */
#include "qp_internal.h"

#include <math.h>
#include <stddef.h>

/* Gradient H x - c + lambda. */
static void gradient(int d, const double *h, const double *c, double lambda, const double *x, double *g) {
  for (int i = 0; i < d; i++) {
    const double *row = h + (size_t)i * d;
    double s = lambda - c[i];
    for (int j = 0; j < d; j++) s += row[j] * x[j];
    g[i] = s;
  }
}

/* Solve L L^T z = b in place, L the lower triangle of the n x n a: forward, then
 * backward substitution. */
static void cholesky_solve(int n, const double *a, double *b) {
  for (int i = 0; i < n; i++) {
    double v = b[i];
    for (int j = 0; j < i; j++) v -= a[i * n + j] * b[j];
    b[i] = v / a[i * n + i];
  }
  for (int i = n - 1; i >= 0; i--) {
    double v = b[i];
    for (int j = i + 1; j < n; j++) v -= a[j * n + i] * b[j];
    b[i] = v / a[i * n + i];
  }
}

/* Plain Cholesky of H_FF into the lower triangle of a, and p_F = -(H_FF)^-1 g_F.
 * Returns 0 (nothing written to p) if a pivot falls to floor_pivot or below: then
 * face_step's pivoted, floored version is needed. Most faces are well conditioned,
 * and this half of the work is most of a high-MOI cell's QP time. */
static int face_step_plain(int d, const double *h, const int *free_idx, int n, const double *g, double floor_pivot,
                           double *a, double *b, double *p) {
  for (int i = 0; i < n; i++) {
    const double *row = h + (size_t)free_idx[i] * d;
    for (int j = 0; j <= i; j++) a[i * n + j] = row[free_idx[j]];
  }
  for (int k = 0; k < n; k++) {
    double piv = a[k * n + k];
    for (int t = 0; t < k; t++) piv -= a[k * n + t] * a[k * n + t];
    if (!(piv > floor_pivot)) return 0;
    double s = sqrt(piv);
    a[k * n + k] = s;
    for (int i = k + 1; i < n; i++) {
      double v = a[i * n + k];
      for (int t = 0; t < k; t++) v -= a[i * n + t] * a[k * n + t];
      a[i * n + k] = v / s;
    }
  }
  for (int i = 0; i < n; i++) b[i] = -g[free_idx[i]];
  cholesky_solve(n, a, b);
  for (int i = 0; i < n; i++) p[free_idx[i]] = b[i];
  return 1;
}

/* p_F = -(H_FF)^-1 g_F by pivoted, floored Cholesky; free_idx[0..n) lists F; a is n x n scratch. */
static void face_step(int d, const double *h, const int *free_idx, int n, const double *g, double *a, double *b,
                      int *perm, double *p) {
  double floor_pivot = 0.0;
  for (int i = 0; i < n; i++) {
    double diag = h[(size_t)free_idx[i] * d + free_idx[i]];
    if (diag > floor_pivot) floor_pivot = diag;
  }
  floor_pivot = floor_pivot > 0.0 ? 1e-14 * floor_pivot : 1e-300;
  /* well above the floor the plain factorization gives the same step */
  if (face_step_plain(d, h, free_idx, n, g, 1e3 * floor_pivot, a, b, p)) return;
  for (int i = 0; i < n; i++) {
    perm[i] = i;
    for (int j = 0; j < n; j++) a[i * n + j] = h[(size_t)free_idx[i] * d + free_idx[j]];
  }
  for (int k = 0; k < n; k++) {
    int q = k;
    for (int i = k + 1; i < n; i++)
      if (a[i * n + i] > a[q * n + q]) q = i;
    if (q != k) { /* symmetric swap of rows and columns k, q */
      for (int j = 0; j < n; j++) {
        double t = a[k * n + j];
        a[k * n + j] = a[q * n + j];
        a[q * n + j] = t;
      }
      for (int i = 0; i < n; i++) {
        double t = a[i * n + k];
        a[i * n + k] = a[i * n + q];
        a[i * n + q] = t;
      }
      int t = perm[k];
      perm[k] = perm[q];
      perm[q] = t;
    }
    double piv = a[k * n + k];
    if (!(piv > floor_pivot)) piv = floor_pivot;
    double s = sqrt(piv);
    a[k * n + k] = s;
    for (int i = k + 1; i < n; i++) a[i * n + k] /= s;
    for (int i = k + 1; i < n; i++)
      for (int j = k + 1; j <= i; j++) {
        a[i * n + j] -= a[i * n + k] * a[j * n + k];
        a[j * n + i] = a[i * n + j];
      }
  }
  for (int i = 0; i < n; i++) b[i] = -g[free_idx[perm[i]]]; /* L L^T z = -g_F(perm) */
  cholesky_solve(n, a, b);
  for (int i = 0; i < n; i++) p[free_idx[perm[i]]] = b[i];
}

int ps_qp_polish(int d, const double *h, const double *c, double lambda, double upper, double *x,
                 double *work, int *iwork, int max_iterations) {
  double *g = work, *p = work + d, *b = work + 2 * d, *a = work + 3 * d;
  int *state = iwork, *free_idx = iwork + d, *perm = iwork + 2 * d; /* state: 0 free_idx, 1 at 0, 2 at U */
  double scale = lambda, hmax = 0.0;
  for (int i = 0; i < d; i++) {
    if (fabs(c[i]) + lambda > scale) scale = fabs(c[i]) + lambda;
    for (int j = 0; j < d; j++)
      if (fabs(h[(size_t)i * d + j]) > hmax) hmax = fabs(h[(size_t)i * d + j]);
    x[i] = x[i] <= 0.0 ? 0.0 : x[i] >= upper ? upper : x[i];
    state[i] = x[i] == 0.0 ? 1 : x[i] == upper ? 2 : 0;
  }
  /* A multiplier this close to 0 is rounding noise in g, not a reason to leave the bound. */
  const double noise = 1e-13 * (scale + hmax * upper * d);
  if (max_iterations <= 0) max_iterations = 4 * d + 10;
  for (int it = 0; it < max_iterations; it++) {
    gradient(d, h, c, lambda, x, g);
    int n = 0;
    for (int i = 0; i < d; i++)
      if (state[i] == 0) free_idx[n++] = i;
    int full_step = 1;
    if (n > 0) {
      face_step(d, h, free_idx, n, g, a, b, perm, p);
      double alpha = 1.0;
      int blocking = -1;
      for (int t = 0; t < n; t++) {
        int i = free_idx[t];
        double limit = p[i] < 0.0 ? -x[i] / p[i] : p[i] > 0.0 ? (upper - x[i]) / p[i] : INFINITY;
        if (limit < alpha) {
          alpha = limit;
          blocking = i;
        }
      }
      for (int t = 0; t < n; t++) {
        int i = free_idx[t];
        double v = x[i] + alpha * p[i];
        x[i] = v < 0.0 ? 0.0 : v > upper ? upper : v;
      }
      if (blocking >= 0) {
        x[blocking] = p[blocking] < 0.0 ? 0.0 : upper;
        state[blocking] = p[blocking] < 0.0 ? 1 : 2;
        full_step = 0;
      }
    }
    if (!full_step) continue;
    /* On the face minimizer: release the worst wrong-signed multiplier, if any. */
    gradient(d, h, c, lambda, x, g);
    int worst = -1;
    double worst_v = noise;
    for (int i = 0; i < d; i++) {
      double v = state[i] == 1 ? -g[i] : state[i] == 2 ? g[i] : 0.0;
      if (v > worst_v) {
        worst_v = v;
        worst = i;
      }
    }
    if (worst < 0) return it + 1;
    state[worst] = 0;
  }
  return -1;
}
