/* The LL.4 (four-parameter log-logistic, R drc) least-squares fit with PETSc/TAO
 * (SPEC.md section 5).
 *
 *   Hill(x) = c + (d - c) / (1 + exp(b (ln x - ln e)))
 *
 * fitted to the (at most ten) bin means of one perturbation, in the parameters
 * theta = (b, c, d, ln e), so that e > 0 needs no constraint.
 *
 * The fit must not depend on luck. LL.4 has the sign symmetry
 * (b, c, d, e) == (-b, d, c, e) and flat valleys: b -> +-infinity (a step between
 * two bins), or e beyond the data with c or d running off to compensate. So:
 * 1. Start: a grid over (b, ln e), b > 0 only (the symmetry covers b < 0), where
 *    the best c, d for each grid point are a 2 x 2 linear least-squares solve.
 *    The three best local minima of the grid are refined and the lowest sum of
 *    squares is kept; then drc's canonical form d >= c.
 * 2. Refinement: TAOBRGN, TAO's bounded Gauss-Newton for least squares, with
 *    the analytic residual Jacobian. Near a well-determined optimum Gauss-Newton
 *    converges fast (quadratically on exact data). Its inner TAOBNLS is set up
 *    for a 4 x 4 system: exact CG steps (no preconditioner, rtol 1e-14), no
 *    active-set estimate (-tao_bnk_as_type none: BNK's default "bertsekas"
 *    estimate reuses its quasi-Newton matrix across solves, and on a reused
 *    solver it froze variables that were free, stalling later fits), no proximal
 *    term (BRGN's default 1e-4 ||theta - theta_k||^2 damps every step along the
 *    flat valleys to a crawl).
 * 3. Fallback: when that start ends without being stationary (a crawl along a
 *    valley), TAOBRGN again with a trust-region inner solver (TAOBNTL, Steihaug
 *    CG) from where the first stopped, which walks valleys far better.
 * Both stop on our own test: the residual orthogonal to every free Jacobian
 * column (|cos| <= 1e-10, nls's "relative offset" idea, scale-free), or the sum
 * of squares settled over 10 iterations (a valley heading for a bound, as
 * optim() under drc would stop; reported as "flat"). The box keeps every valley
 * finite: |b| <= 100 (a step even between bins 5% apart in x), ln e within ln 10
 * of the data's ln x range, c and d within ten data ranges of the data (R's nls
 * put c 2.4 ranges below the data in one committed noisy case).
 * Measured and rejected (288 noise-free fits of tests/dosage, 2000 noisy ones):
 * - BRGN as it comes (l2prox 1e-4, Bertsekas active set, STCG + LMVM): on one
 *   reused solver 220 of 288 noise-free fits wrong or unconverged, 26 with a fresh
 *   solver per fit (x <= 1.6 design); the active-set estimate is the reuse bug
 *   (with as_type none: 15 reused, 14 fresh, mostly e at or beyond the top x);
 * - the l2prox weight 1e-4 with all else as here: 26 of 288 wrong, 390 of 2000 noisy
 *   fits unconverged (here: 0 and ~20);
 * - BRGN's "lm" regularization: its unit step accepts uphill steps, its damping
 *   persists across solves unless reset, "Initial direction zero" errors; 3 of 288;
 * - one method alone: Gauss-Newton + line search 1 of 288, BNTL 3 of 288, both
 *   crawl in valleys (hence the pair).
 *
 * A solver owns the two Tao objects with their Vecs and dense Jacobians, sized
 * for max_points residuals; a fit with fewer points pads the residual with zeros
 * (zero rows of J change nothing), so one object serves every perturbation.
 * Options: -ps_hill_tao_max_it, -ps_hill_gn_tao_monitor, ... (first method, inner
 * solver -ps_hill_gn_), -ps_hill_fallback_... and -ps_hill_fallback_gn_... */
#include "pertscore/dosage.h"

#include <math.h>
#include <petsctao.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_THETA = 4, N_GRID_LE = 41, N_GRID_B = 14, N_STARTS = 3, SETTLE_ITS = 10 };
#define PS_HILL_B_MAX 100.0
#define PS_HILL_LE_MARGIN 2.302585092994046 /* ln 10 */
#define PS_HILL_CD_MARGIN 10.0
/* Stop when max |cos(J_j, r)| <= PS_HILL_STOP; a fit counts as stationary below PS_HILL_STATIONARY. */
#define PS_HILL_STOP 1e-10
#define PS_HILL_STATIONARY 1e-6
/* ... or when the sum of squares varied by less than this (relative) over SETTLE_ITS iterations */
#define PS_HILL_SETTLE 1e-8
#define PS_HILL_MAX_IT 50
#define PS_HILL_FALLBACK_MAX_IT 200

typedef struct {
  Tao tao;
  Vec residual;
  Mat jacobian; /* dense max_points x 4 */
} hill_method;

struct ps_hill_solver {
  int max_points;
  hill_method method[2]; /* Gauss-Newton with a line search; with a trust region */
  Vec theta, lower, upper;
  /* the problem being fitted */
  int n;
  const double *y;
  double *lnx;  /* max_points: ln x, -inf for x == 0 */
  double *h;    /* max_points scratch */
  double *grid; /* N_GRID_B x N_GRID_LE sums of squares */
  double lo[N_THETA], hi[N_THETA];
  /* the solve in progress */
  double f_hist[SETTLE_ITS + 1];
  int settled;
  int64_t n_fits, n_solves, n_fallback, n_iterations;
};

static double grid_b(int k) { return 0.25 * pow(2.0, 0.5 * k); } /* 0.25 .. 22.6 */

/* h = 1 / (1 + exp(b (ln x - le))) and w = h (1 - h), without overflow; x = 0 (lnx = -inf)
 * is the limit x -> 0: h = 1 if b > 0, 0 if b < 0, and w = 0. */
static void logistic(double b, double lnx, double le, double *h, double *w) {
  if (isinf(lnx)) {
    *h = b > 0 ? 1.0 : b < 0 ? 0.0 : 0.5;
    *w = 0.0;
    return;
  }
  double t = b * (lnx - le);
  if (t > 0) {
    double et = exp(-t);
    *h = et / (1.0 + et);
    *w = *h / (1.0 + et);
  } else {
    double et = exp(t);
    *h = 1.0 / (1.0 + et);
    *w = *h * et / (1.0 + et);
  }
}

double ps_hill_eval(const ps_hill_params *p, double x) {
  double h, w;
  logistic(p->b, x > 0 ? log(x) : -INFINITY, log(p->e), &h, &w);
  return p->c + (p->d - p->c) * h;
}

/* Residual i at theta = (b, c, d, le) and, if row != NULL, its gradient. */
static double residual_row(const ps_hill_solver *s, const double *t, int i, double *row) {
  double h, w;
  logistic(t[0], s->lnx[i], t[3], &h, &w);
  if (row) {
    double amp = (t[2] - t[1]) * w; /* (d - c) h (1 - h); 0 at x = 0 */
    row[0] = amp == 0.0 ? 0.0 : -amp * (s->lnx[i] - t[3]);
    row[1] = 1.0 - h;
    row[2] = h;
    row[3] = amp * t[0];
  }
  return t[1] + (t[2] - t[1]) * h - s->y[i];
}

static PetscErrorCode hill_residual(Tao tao, Vec theta, Vec r, void *ctx) {
  const ps_hill_solver *s = ctx;
  const PetscScalar *t;
  PetscScalar *ra;

  PetscFunctionBeginUser;
  PetscCall(VecGetArrayRead(theta, &t));
  PetscCall(VecGetArray(r, &ra));
  for (int i = 0; i < s->max_points; i++) ra[i] = i < s->n ? residual_row(s, t, i, NULL) : 0.0;
  PetscCall(VecRestoreArray(r, &ra));
  PetscCall(VecRestoreArrayRead(theta, &t));
  PetscFunctionReturn(0);
}

static PetscErrorCode hill_jacobian(Tao tao, Vec theta, Mat jac, Mat pre, void *ctx) {
  const ps_hill_solver *s = ctx;
  const PetscScalar *t;
  PetscScalar *a;
  PetscInt lda;

  PetscFunctionBeginUser;
  PetscCall(VecGetArrayRead(theta, &t));
  PetscCall(MatDenseGetLDA(jac, &lda));
  PetscCall(MatDenseGetArrayWrite(jac, &a));
  for (int i = 0; i < s->max_points; i++) {
    double row[N_THETA] = {0, 0, 0, 0};
    if (i < s->n) residual_row(s, t, i, row);
    for (int j = 0; j < N_THETA; j++) a[i + (size_t)j * lda] = row[j];
  }
  PetscCall(MatDenseRestoreArrayWrite(jac, &a));
  PetscCall(VecRestoreArrayRead(theta, &t));
  PetscCall(MatAssemblyBegin(jac, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(jac, MAT_FINAL_ASSEMBLY));
  PetscFunctionReturn(0);
}

/* Largest |cos| between the residual and a Jacobian column whose move is not
 * blocked by a bound: 0 at an exact stationary point, whatever the data scale. */
static double stationarity(const ps_hill_solver *s, const double *theta) {
  double g[N_THETA] = {0}, jj[N_THETA] = {0}, rr = 0, ymin = INFINITY, ymax = -INFINITY;
  for (int i = 0; i < s->n; i++) {
    double row[N_THETA];
    double r = residual_row(s, theta, i, row);
    rr += r * r;
    for (int j = 0; j < N_THETA; j++) {
      g[j] += row[j] * r;
      jj[j] += row[j] * row[j];
    }
    ymin = fmin(ymin, s->y[i]);
    ymax = fmax(ymax, s->y[i]);
  }
  /* an exact fit (residuals at the rounding level of the data) is stationary whatever the cosines say */
  if (sqrt(rr / s->n) <= 1e-13 * (ymax - ymin + fmax(fabs(ymin), fabs(ymax)))) return 0.0;
  double worst = 0;
  for (int j = 0; j < N_THETA; j++) {
    if ((theta[j] <= s->lo[j] && g[j] > 0) || (theta[j] >= s->hi[j] && g[j] < 0)) continue; /* pushes outward */
    double den = sqrt(jj[j] * rr);
    double v = den > 0 ? fabs(g[j]) / den : 0.0;
    if (!(v <= worst)) worst = v;
  }
  return worst;
}

/* TAO's own tests (NaN, iteration limits), then ours (see the header comment). */
static PetscErrorCode hill_converged(Tao tao, void *ctx) {
  ps_hill_solver *s = ctx;
  TaoConvergedReason reason;
  PetscInt it;
  PetscReal f;
  Vec x;
  const PetscScalar *t;

  PetscFunctionBeginUser;
  PetscCall(TaoDefaultConvergenceTest(tao, NULL));
  PetscCall(TaoGetSolutionStatus(tao, &it, &f, NULL, NULL, NULL, &reason));
  if (reason != TAO_CONTINUE_ITERATING) PetscFunctionReturn(0);
  PetscCall(TaoGetSolution(tao, &x));
  PetscCall(VecGetArrayRead(x, &t));
  double theta[N_THETA] = {t[0], t[1], t[2], t[3]};
  PetscCall(VecRestoreArrayRead(x, &t));
  if (stationarity(s, theta) <= PS_HILL_STOP) {
    PetscCall(TaoSetConvergedReason(tao, TAO_CONVERGED_USER));
    PetscFunctionReturn(0);
  }
  /* The sum of squares settled: its spread over the last SETTLE_ITS iterations. */
  if (it <= SETTLE_ITS) {
    s->f_hist[it] = f;
    if (it < SETTLE_ITS) PetscFunctionReturn(0);
  } else {
    memmove(s->f_hist, s->f_hist + 1, SETTLE_ITS * sizeof *s->f_hist);
    s->f_hist[SETTLE_ITS] = f;
  }
  double lo = s->f_hist[0], hi = s->f_hist[0];
  for (int k = 1; k <= SETTLE_ITS; k++) {
    lo = fmin(lo, s->f_hist[k]);
    hi = fmax(hi, s->f_hist[k]);
  }
  if (hi - lo <= PS_HILL_SETTLE * lo) {
    s->settled = 1;
    PetscCall(TaoSetConvergedReason(tao, TAO_CONVERGED_USER));
  }
  PetscFunctionReturn(0);
}

static int method_create(ps_hill_solver *s, hill_method *m, const char *prefix, const char *inner_prefix,
                         const char *inner_type, const char *ksp_type, int max_it) {
  PS_CHECK_PETSC(VecCreateSeq(PETSC_COMM_SELF, s->max_points, &m->residual));
  PS_CHECK_PETSC(MatCreateSeqDense(PETSC_COMM_SELF, s->max_points, N_THETA, NULL, &m->jacobian));
  PS_CHECK_PETSC(TaoCreate(PETSC_COMM_SELF, &m->tao));
  PS_CHECK_PETSC(TaoSetType(m->tao, TAOBRGN));
  PS_CHECK_PETSC(TaoSetOptionsPrefix(m->tao, prefix));
  PS_CHECK_PETSC(TaoSetSolution(m->tao, s->theta));
  PS_CHECK_PETSC(TaoSetResidualRoutine(m->tao, m->residual, hill_residual, s));
  PS_CHECK_PETSC(TaoSetJacobianResidualRoutine(m->tao, m->jacobian, m->jacobian, hill_jacobian, s));
  PS_CHECK_PETSC(TaoSetVariableBounds(m->tao, s->lower, s->upper));
  PS_CHECK_PETSC(TaoSetTolerances(m->tao, 0.0, 0.0, 0.0)); /* hill_converged decides */
  PS_CHECK_PETSC(TaoSetMaximumIterations(m->tao, max_it));
  PS_CHECK_PETSC(TaoSetMaximumFunctionEvaluations(m->tao, 20 * max_it));
  PS_CHECK_PETSC(TaoBRGNSetRegularizerWeight(m->tao, 0.0));

  Tao inner;
  KSP ksp;
  PC pc;
  PS_CHECK_PETSC(TaoBRGNGetSubsolver(m->tao, &inner));
  PS_CHECK_PETSC(TaoSetType(inner, inner_type));
  PS_CHECK_PETSC(TaoSetOptionsPrefix(inner, inner_prefix));
  PS_CHECK_PETSC(TaoSetConvergenceTest(inner, hill_converged, s));
  PS_CHECK_PETSC(TaoGetKSP(inner, &ksp));
  PS_CHECK_PETSC(KSPSetType(ksp, ksp_type));
  PS_CHECK_PETSC(KSPSetTolerances(ksp, 1e-14, 1e-300, 1e10, 8 * N_THETA));
  PS_CHECK_PETSC(KSPGetPC(ksp, &pc));
  PS_CHECK_PETSC(PCSetType(pc, PCNONE));
  /* BNK's active-set estimate has no API setter: a default in the options database,
   * under our own prefix, unless the user set one. */
  char name[64];
  PetscBool set = PETSC_FALSE;
  snprintf(name, sizeof name, "-%stao_bnk_as_type", inner_prefix);
  PS_CHECK_PETSC(PetscOptionsHasName(NULL, NULL, name, &set));
  if (!set) PS_CHECK_PETSC(PetscOptionsSetValue(NULL, name, "none"));
  PS_CHECK_PETSC(TaoSetFromOptions(m->tao));
  return PS_OK;
}

static int solver_build(ps_hill_solver *s) {
  PS_ALLOC(s->lnx, s->max_points);
  PS_ALLOC(s->h, s->max_points);
  PS_ALLOC(s->grid, N_GRID_B * N_GRID_LE);
  PS_CHECK_PETSC(VecCreateSeq(PETSC_COMM_SELF, N_THETA, &s->theta));
  PS_CHECK_PETSC(VecDuplicate(s->theta, &s->lower));
  PS_CHECK_PETSC(VecDuplicate(s->theta, &s->upper));
  PS_CALL(method_create(s, &s->method[0], "ps_hill_", "ps_hill_gn_", TAOBNLS, KSPCG, PS_HILL_MAX_IT));
  PS_CALL(method_create(s, &s->method[1], "ps_hill_fallback_", "ps_hill_fallback_gn_", TAOBNTL, KSPSTCG,
                        PS_HILL_FALLBACK_MAX_IT));
  return PS_OK;
}

int ps_hill_solver_create(int max_points, ps_hill_solver **out) {
  *out = NULL;
  if (max_points < N_THETA) PS_FAIL(PS_ERR_INPUT, "Hill solver: max_points %d < 4", max_points);
  ps_hill_solver *s;
  PS_ALLOC(s, 1);
  s->max_points = max_points;
  int err = solver_build(s);
  if (err != PS_OK) {
    ps_hill_solver_destroy(&s);
    return ps_error_trace(err, __FILE__, __LINE__);
  }
  *out = s;
  return PS_OK;
}

void ps_hill_solver_destroy(ps_hill_solver **solver) {
  ps_hill_solver *s = solver ? *solver : NULL;
  if (!s) return;
  for (int k = 0; k < 2; k++) {
    if (s->method[k].tao) TaoDestroy(&s->method[k].tao);
    if (s->method[k].jacobian) MatDestroy(&s->method[k].jacobian);
    if (s->method[k].residual) VecDestroy(&s->method[k].residual);
  }
  if (s->theta) VecDestroy(&s->theta);
  if (s->lower) VecDestroy(&s->lower);
  if (s->upper) VecDestroy(&s->upper);
  free(s->lnx);
  free(s->h);
  free(s->grid);
  free(s);
  *solver = NULL;
}

void ps_hill_solver_counts(const ps_hill_solver *s, int64_t *n_fits, int64_t *n_solves, int64_t *n_fallback,
                           int64_t *n_iterations) {
  if (n_fits) *n_fits = s->n_fits;
  if (n_solves) *n_solves = s->n_solves;
  if (n_fallback) *n_fallback = s->n_fallback;
  if (n_iterations) *n_iterations = s->n_iterations;
}

/* Sum of squares at theta; when linear != 0, c and d (theta[1], theta[2]) are first
 * replaced by their least-squares values for this (b, le). Returns +inf when that
 * 2 x 2 system is singular (the curve is flat over the data: h constant). */
static double sum_squares(const ps_hill_solver *s, double *theta, int linear) {
  const int n = s->n;
  double *h = s->h, w;
  for (int i = 0; i < n; i++) logistic(theta[0], s->lnx[i], theta[3], &h[i], &w);
  if (linear) {
    double a11 = 0, a12 = 0, a22 = 0, r1 = 0, r2 = 0;
    for (int i = 0; i < n; i++) {
      double g = 1.0 - h[i];
      a11 += g * g;
      a12 += g * h[i];
      a22 += h[i] * h[i];
      r1 += g * s->y[i];
      r2 += h[i] * s->y[i];
    }
    double det = a11 * a22 - a12 * a12;
    if (!(det > 1e-12 * (a11 + a22) * (a11 + a22))) return INFINITY;
    theta[1] = (a22 * r1 - a12 * r2) / det;
    theta[2] = (a11 * r2 - a12 * r1) / det;
  }
  double sse = 0;
  for (int i = 0; i < n; i++) {
    double r = theta[1] + (theta[2] - theta[1]) * h[i] - s->y[i];
    sse += r * r;
  }
  return sse;
}

typedef struct {
  double sse;
  int ib, il;
} grid_min;

static int cmp_grid_min(const void *a, const void *b) {
  const grid_min *p = a, *q = b;
  return p->sse < q->sse ? -1 : p->sse > q->sse;
}

/* Local minima of the grid (against all 8 neighbours; ties broken by position so
 * a plateau yields one), best first. Returns their number. */
static int grid_minima(const double *grid, grid_min *mins) {
  int n_mins = 0;
  for (int ib = 0; ib < N_GRID_B; ib++)
    for (int il = 0; il < N_GRID_LE; il++) {
      const int at = ib * N_GRID_LE + il;
      const double v = grid[at];
      if (!isfinite(v)) continue;
      int is_min = 1;
      for (int db = -1; db <= 1 && is_min; db++)
        for (int dl = -1; dl <= 1 && is_min; dl++) {
          int jb = ib + db, jl = il + dl, other = jb * N_GRID_LE + jl;
          if ((db == 0 && dl == 0) || jb < 0 || jb >= N_GRID_B || jl < 0 || jl >= N_GRID_LE) continue;
          if (grid[other] < v || (grid[other] == v && other < at)) is_min = 0;
        }
      if (is_min) mins[n_mins++] = (grid_min){v, ib, il};
    }
  qsort(mins, (size_t)n_mins, sizeof *mins, cmp_grid_min);
  return n_mins;
}

/* One TAO method from theta (projected into the box); the end point back in theta. */
static int method_solve(ps_hill_solver *s, hill_method *m, double *theta, int *iterations) {
  PetscScalar *a;
  PS_CHECK_PETSC(VecGetArray(s->theta, &a));
  for (int j = 0; j < N_THETA; j++) a[j] = fmin(fmax(theta[j], s->lo[j]), s->hi[j]);
  PS_CHECK_PETSC(VecRestoreArray(s->theta, &a));
  s->settled = 0;
  PS_CHECK_PETSC(TaoSolve(m->tao));
  PetscInt it = 0;
  PS_CHECK_PETSC(TaoGetIterationNumber(m->tao, &it));
  s->n_solves++;
  s->n_iterations += it;
  *iterations += (int)it;
  const PetscScalar *t;
  PS_CHECK_PETSC(VecGetArrayRead(s->theta, &t));
  for (int j = 0; j < N_THETA; j++) theta[j] = t[j];
  PS_CHECK_PETSC(VecRestoreArrayRead(s->theta, &t));
  return PS_OK;
}

static int all_finite(const double *v) { return isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]) && isfinite(v[3]); }

static int set_box(ps_hill_solver *s, double lnx_min, double lnx_max) {
  double ymin = INFINITY, ymax = -INFINITY;
  for (int i = 0; i < s->n; i++) {
    ymin = fmin(ymin, s->y[i]);
    ymax = fmax(ymax, s->y[i]);
  }
  const double yr = PS_HILL_CD_MARGIN * (ymax > ymin ? ymax - ymin : fmax(fabs(ymax), 1.0));
  const double lo[N_THETA] = {-PS_HILL_B_MAX, ymin - yr, ymin - yr, lnx_min - PS_HILL_LE_MARGIN};
  const double hi[N_THETA] = {PS_HILL_B_MAX, ymax + yr, ymax + yr, lnx_max + PS_HILL_LE_MARGIN};
  memcpy(s->lo, lo, sizeof lo);
  memcpy(s->hi, hi, sizeof hi);
  PetscScalar *a;
  PS_CHECK_PETSC(VecGetArray(s->lower, &a));
  for (int j = 0; j < N_THETA; j++) a[j] = lo[j];
  PS_CHECK_PETSC(VecRestoreArray(s->lower, &a));
  PS_CHECK_PETSC(VecGetArray(s->upper, &a));
  for (int j = 0; j < N_THETA; j++) a[j] = hi[j];
  PS_CHECK_PETSC(VecRestoreArray(s->upper, &a));
  return PS_OK;
}

int ps_hill_fit(ps_hill_solver *s, int n, const double *x, const double *y, ps_hill_params *out) {
  memset(out, 0, sizeof *out);
  out->b = out->c = out->d = out->e = out->sse = NAN;
  if (n < N_THETA || n > s->max_points) PS_FAIL(PS_ERR_INPUT, "Hill fit: %d points, need 4 .. %d", n, s->max_points);
  double lnx_min = INFINITY, lnx_max = -INFINITY;
  int n_distinct = 0;
  for (int i = 0; i < n; i++) {
    if (!(x[i] >= 0.0) || !isfinite(x[i]) || !isfinite(y[i]))
      PS_FAIL(PS_ERR_INPUT, "Hill fit: point %d (x %g, y %g) is not finite with x >= 0", i, x[i], y[i]);
    s->lnx[i] = x[i] > 0 ? log(x[i]) : -INFINITY;
    if (x[i] > 0) {
      lnx_min = fmin(lnx_min, s->lnx[i]);
      lnx_max = fmax(lnx_max, s->lnx[i]);
    }
    int seen = 0;
    for (int j = 0; j < i; j++) seen |= x[j] == x[i];
    n_distinct += !seen;
  }
  if (n_distinct < 2 || !isfinite(lnx_min)) PS_FAIL(PS_ERR_INPUT, "Hill fit: need two distinct x, one of them > 0");
  s->n = n;
  s->y = y;
  s->n_fits++;
  PS_CALL(set_box(s, lnx_min, lnx_max));

  /* The grid: ln e over the data's positive ln x range widened by 1 on each side. */
  const double le_lo = lnx_min - 1.0, le_step = (lnx_max - lnx_min + 2.0) / (N_GRID_LE - 1);
  for (int ib = 0; ib < N_GRID_B; ib++)
    for (int il = 0; il < N_GRID_LE; il++) {
      double theta[N_THETA] = {grid_b(ib), 0, 0, le_lo + il * le_step};
      s->grid[ib * N_GRID_LE + il] = sum_squares(s, theta, 1);
    }
  grid_min mins[N_GRID_B * N_GRID_LE];
  const int n_mins = grid_minima(s->grid, mins);

  double best[N_THETA] = {NAN, NAN, NAN, NAN}, best_sse = INFINITY, best_stat = INFINITY;
  int best_it = 0, best_settled = 0;
  for (int k = 0; k < n_mins && k < N_STARTS; k++) {
    double theta[N_THETA] = {grid_b(mins[k].ib), 0, 0, le_lo + mins[k].il * le_step};
    sum_squares(s, theta, 1);
    int it = 0;
    PS_CALL(method_solve(s, &s->method[0], theta, &it));
    double stat = all_finite(theta) ? stationarity(s, theta) : INFINITY;
    int settled = s->settled;
    if (!(stat <= PS_HILL_STATIONARY)) { /* a crawl (or a failure): the trust-region method from there */
      double again[N_THETA];
      memcpy(again, theta, sizeof again);
      if (!all_finite(again)) {
        again[0] = grid_b(mins[k].ib), again[3] = le_lo + mins[k].il * le_step;
        sum_squares(s, again, 1);
      }
      s->n_fallback++;
      PS_CALL(method_solve(s, &s->method[1], again, &it));
      double stat2 = all_finite(again) ? stationarity(s, again) : INFINITY;
      if (all_finite(again) && (!all_finite(theta) || sum_squares(s, again, 0) <= sum_squares(s, theta, 0))) {
        memcpy(theta, again, sizeof again);
        stat = stat2;
        settled = s->settled;
      }
    }
    if (!all_finite(theta)) continue;
    double sse = sum_squares(s, theta, 0);
    if (sse < best_sse) { /* the lowest sum of squares */
      memcpy(best, theta, sizeof best);
      best_sse = sse;
      best_stat = stat;
      best_it = it;
      best_settled = settled;
    }
  }
  if (!isfinite(best_sse)) return PS_OK; /* converged = 0 */

  if (best[2] < best[1]) { /* drc's canonical form: d is the upper limit */
    double c = best[1];
    best[1] = best[2];
    best[2] = c;
    best[0] = -best[0];
  }
  out->b = best[0];
  out->c = best[1];
  out->d = best[2];
  out->e = exp(best[3]);
  out->sse = best_sse;
  out->iterations = best_it;
  out->flat = best_stat > PS_HILL_STATIONARY && best_settled;
  out->converged = best_stat <= PS_HILL_STATIONARY || best_settled;
  for (int j = 0; j < N_THETA; j++) {
    /* c and d swap places in the canonical form; their box is the same */
    out->at_bound |= best[j] <= s->lo[j] || best[j] >= s->hi[j];
  }
  return PS_OK;
}
