/* One bound-constrained QP per cell (SPEC.md section 3): a direct active-set
 * method, with PETSc/TAO as the fallback.
 *
 *   minimize f(psi) = 1/2 psi^T H psi - c^T psi + lambda 1^T psi,  0 <= psi <= U.
 *
 * Cells are scored one after another, millions of them, with |S_j| from 1 to ~40
 * (13 on average in a high-MOI genome-wide screen).
 *
 * 0. Direct method (default; -ps_qp_direct false turns it off): the primal
 *    active-set method of qp_polish.c from the clamped diagonal guess below, on
 *    the dense H, then the KKT check. The dimension is tiny, so an exact face
 *    solve costs less than one TAO iteration's overhead; on the jurkat-genome shape
 *    the whole stage (H and c included) runs ~16x faster than with steps 1-2 alone
 *    (107,000-115,000 vs 6,300-6,900 cells per CPU-second and rank, 2 ranks) and no
 *    cell of the benchmark needed TAO (tools/bench/qp_bench.c; 1.5 faces visited per
 *    cell on average). A cell whose answer misses the tolerance (or that hits the
 *    iteration cap, e.g. by cycling on a degenerate face) is solved again by TAO
 *    below and counted (ps_qp_solver_tao_solves, stat qp.fallback_cells).
 *
 * TAO (the fallback): the solver keeps one TAO object (with its Vecs and a dense
 * Hessian Mat) per dimension, created the first time a cell of that dimension
 * needs it and reused for every later one; a solve only copies H, c and lambda in.
 * Method, chosen by measurement (tests/unit/test_qp.c):
 * 1. TAOBLMVM (projected limited-memory BFGS) from the clamped diagonal guess,
 *    stopped at a projected gradient of 1e-8 (relative) or 50 iterations. It is
 *    the fastest TAO method here at finding the optimal face (which coordinates
 *    sit at 0, at U, in between); it needs no Hessian factorization, so a
 *    singular H cannot break it.
 * 2. The exact finish (qp_polish.c): primal active-set Newton steps from the
 *    face TAO found, plain C on the dense H. Kept only if its KKT residual is no
 *    worse (or far inside the tolerance) and its objective no higher.
 * 3. If the relative KKT residual still exceeds the tolerance, TAOTRON from
 *    psi = 0 (a different method and start), its CG preconditioned with PCSVD:
 *    the pseudo-inverse, pivot-free, so it survives a singular reduced Hessian
 *    where ILU/LU/Cholesky stop with "zero pivot". Then the finish again; then
 *    an error, never a silent bad answer.
 * Rejected (same test): BNLS and BQNKTR fail in PETSc 3.18 ("Cannot change
 * local size of Amat after use") when the free set changes size; BNTR/BNTL
 * produce NaN on singular H; TRON/GPCG/BQPIP with their default ILU hit zero
 * pivots; BQPIP (interior point) never lands exactly on a bound and is 100x
 * slower; TRON+SVD alone is exact on well-conditioned H but 4x slower and, like
 * every TAO method alone, stalls at a projected gradient near 1e-7 when two
 * beta rows are nearly parallel.
 * Options: -ps_qp_tao_type, -ps_qp_tao_gatol, -ps_qp_tao_max_it, ... for the
 * first method, -ps_qp_fallback_tao_type, -ps_qp_fallback_pc_type, ... for the
 * second, -ps_qp_direct false -ps_qp_polish false to see TAO alone.
 *
 * Numerical traps:
 * - H = B_S B_S^T is singular or nearly so when two perturbations have almost
 *   the same beta row. The optimum is then unique in f but not in psi, and an
 *   iterative method stops with a small gradient while still short of the
 *   optimum along the flat direction: the finish exists for this case.
 * - The callbacks scale the problem by 1 / (max_i |c_i| + lambda), the size of
 *   the gradient at psi = 0, so one absolute gradient tolerance set at creation
 *   means the same relative accuracy for every cell, whatever the units of the
 *   expression data. */
#include "pertscore/score.h"

#include "qp_internal.h"

#include <math.h>
#include <petsctao.h>
#include <stdlib.h>
#include <string.h>

/* The QP being solved right now; the TAO callbacks read it. */
typedef struct {
  int dim;
  const double *hessian; /* row-major dim x dim, symmetric */
  const double *linear;
  double lambda;
  double inv_scale; /* 1 / (max_i |c_i| + lambda) */
} qp_problem;

/* What TAO needs for one dimension, created once. */
typedef struct {
  Tao tao;
  Vec x, lower, upper;
  Mat hessian;
  double upper_value; /* value currently in the upper-bound Vec */
} qp_slot;

struct ps_qp_solver {
  int n_dims;          /* slots exist for dim 1..n_dims (entries may still be empty) */
  qp_slot *primary;    /* n_dims; tao == NULL until first used */
  qp_slot *fallback;   /* second method, created only if the first one ever fails */
  double *work;        /* polish scratch n_dims^2 + 3 n_dims, then the candidate point */
  int *iwork;          /* polish scratch: 3 n_dims */
  qp_problem problem;
  double tolerance;
  PetscBool polish;    /* -ps_qp_polish (default true) */
  PetscBool direct;    /* -ps_qp_direct (default true): step 0 before TAO */
  PetscInt direct_max_it; /* -ps_qp_direct_max_it: its iteration cap (0: 4 dim + 10; tests lower it) */
  int64_t n_solves, n_fallback, n_iterations, n_polished, n_tao;
};

/* Default methods (override with -ps_qp_tao_type / -ps_qp_fallback_tao_type). */
#define PS_QP_PRIMARY_TYPE TAOBLMVM
#define PS_QP_FALLBACK_TYPE TAOTRON
/* Absolute tolerance on the 2-norm of the projected gradient of the scaled problem. */
#define PS_QP_GATOL 1e-8
#define PS_QP_MAX_IT 50

static PetscErrorCode qp_objective(Tao tao, Vec x, PetscReal *f, Vec g, void *ctx) {
  const qp_problem *p = ctx;
  const PetscScalar *xa;
  PetscScalar *ga;
  const int d = p->dim;
  const double s = p->inv_scale;
  double value = 0.0;

  PetscFunctionBeginUser;
  PetscCall(VecGetArrayRead(x, &xa));
  PetscCall(VecGetArray(g, &ga));
  for (int i = 0; i < d; i++) {
    const double *row = p->hessian + (size_t)i * d;
    double hx = 0.0;
    for (int j = 0; j < d; j++) hx += row[j] * xa[j];
    double lin = p->lambda - p->linear[i];
    ga[i] = s * (hx + lin);
    value += xa[i] * (0.5 * hx + lin);
  }
  *f = s * value;
  PetscCall(VecRestoreArray(g, &ga));
  PetscCall(VecRestoreArrayRead(x, &xa));
  PetscFunctionReturn(0);
}

static PetscErrorCode qp_hessian(Tao tao, Vec x, Mat h, Mat pre, void *ctx) {
  const qp_problem *p = ctx;
  const int d = p->dim;
  PetscScalar *a;
  PetscInt lda;

  PetscFunctionBeginUser;
  PetscCall(MatDenseGetLDA(h, &lda));
  PetscCall(MatDenseGetArrayWrite(h, &a));
  for (int i = 0; i < d; i++)
    for (int j = 0; j < d; j++) a[i + (size_t)j * lda] = p->inv_scale * p->hessian[(size_t)i * d + j];
  PetscCall(MatDenseRestoreArrayWrite(h, &a));
  PetscCall(MatAssemblyBegin(h, MAT_FINAL_ASSEMBLY));
  PetscCall(MatAssemblyEnd(h, MAT_FINAL_ASSEMBLY));
  PetscFunctionReturn(0);
}

static int slot_create(ps_qp_solver *s, int dim, const char *type, const char *prefix, qp_slot *slot) {
  PS_CHECK_PETSC(VecCreateSeq(PETSC_COMM_SELF, dim, &slot->x));
  PS_CHECK_PETSC(VecDuplicate(slot->x, &slot->lower));
  PS_CHECK_PETSC(VecDuplicate(slot->x, &slot->upper));
  PS_CHECK_PETSC(VecSet(slot->lower, 0.0));
  PS_CHECK_PETSC(VecSet(slot->upper, 1.0));
  slot->upper_value = 1.0;
  PS_CHECK_PETSC(MatCreateSeqDense(PETSC_COMM_SELF, dim, dim, NULL, &slot->hessian));
  PS_CHECK_PETSC(MatAssemblyBegin(slot->hessian, MAT_FINAL_ASSEMBLY));
  PS_CHECK_PETSC(MatAssemblyEnd(slot->hessian, MAT_FINAL_ASSEMBLY));
  PS_CHECK_PETSC(MatSetOption(slot->hessian, MAT_SYMMETRIC, PETSC_TRUE));

  PS_CHECK_PETSC(TaoCreate(PETSC_COMM_SELF, &slot->tao));
  PS_CHECK_PETSC(TaoSetType(slot->tao, type));
  PS_CHECK_PETSC(TaoSetOptionsPrefix(slot->tao, prefix));
  PS_CHECK_PETSC(TaoSetSolution(slot->tao, slot->x));
  PS_CHECK_PETSC(TaoSetObjectiveAndGradient(slot->tao, NULL, qp_objective, &s->problem));
  PS_CHECK_PETSC(TaoSetHessian(slot->tao, slot->hessian, slot->hessian, qp_hessian, &s->problem));
  PS_CHECK_PETSC(TaoSetVariableBounds(slot->tao, slot->lower, slot->upper));
  PS_CHECK_PETSC(TaoSetTolerances(slot->tao, PS_QP_GATOL, 0.0, 0.0));
  PS_CHECK_PETSC(TaoSetMaximumIterations(slot->tao, PS_QP_MAX_IT));
  PS_CHECK_PETSC(TaoSetMaximumFunctionEvaluations(slot->tao, 20 * PS_QP_MAX_IT));
  KSP ksp = NULL;
  PS_CHECK_PETSC(TaoGetKSP(slot->tao, &ksp));
  if (ksp) { /* see the header comment: exact and singular-safe on tiny dense systems */
    PC pc;
    PS_CHECK_PETSC(KSPGetPC(ksp, &pc));
    PS_CHECK_PETSC(PCSetType(pc, PCSVD));
  }
  PS_CHECK_PETSC(TaoSetFromOptions(slot->tao));
  return PS_OK;
}

static void slot_destroy(qp_slot *slot) {
  if (slot->tao) TaoDestroy(&slot->tao);
  if (slot->hessian) MatDestroy(&slot->hessian);
  if (slot->x) VecDestroy(&slot->x);
  if (slot->lower) VecDestroy(&slot->lower);
  if (slot->upper) VecDestroy(&slot->upper);
  memset(slot, 0, sizeof *slot);
}

int ps_qp_solver_create(ps_qp_solver **out) {
  ps_qp_solver *s;
  PetscBool polish = PETSC_TRUE, direct = PETSC_TRUE;
  PS_CHECK_PETSC(PetscOptionsGetBool(NULL, NULL, "-ps_qp_polish", &polish, NULL));
  PetscInt direct_max_it = 0;
  PS_CHECK_PETSC(PetscOptionsGetBool(NULL, NULL, "-ps_qp_direct", &direct, NULL));
  PS_CHECK_PETSC(PetscOptionsGetInt(NULL, NULL, "-ps_qp_direct_max_it", &direct_max_it, NULL));
  PS_ALLOC(s, 1);
  s->tolerance = 1e-6;
  s->polish = polish;
  s->direct = direct;
  s->direct_max_it = direct_max_it;
  *out = s;
  return PS_OK;
}

void ps_qp_solver_set_tolerance(ps_qp_solver *solver, double tolerance) { solver->tolerance = tolerance; }

void ps_qp_solver_counts(const ps_qp_solver *solver, int64_t *n_solves, int64_t *n_fallback, int64_t *n_iterations,
                         int64_t *n_polished) {
  if (n_solves) *n_solves = solver->n_solves;
  if (n_fallback) *n_fallback = solver->n_fallback;
  if (n_iterations) *n_iterations = solver->n_iterations;
  if (n_polished) *n_polished = solver->n_polished;
}

int64_t ps_qp_solver_tao_solves(const ps_qp_solver *solver) { return solver->n_tao; }

void ps_qp_solver_destroy(ps_qp_solver **solver) {
  ps_qp_solver *s = solver ? *solver : NULL;
  if (!s) return;
  for (int d = 0; d < s->n_dims; d++) {
    slot_destroy(&s->primary[d]);
    slot_destroy(&s->fallback[d]);
  }
  free(s->primary);
  free(s->fallback);
  free(s->work);
  free(s->iwork);
  free(s);
  *solver = NULL;
}

/* Make room for slots up to dim (grows lazily; the slots themselves are created on first use). */
static int solver_reserve(ps_qp_solver *s, int dim) {
  if (dim <= s->n_dims) return PS_OK;
  int n = dim > 2 * s->n_dims ? dim : 2 * s->n_dims;
  qp_slot *p = realloc(s->primary, (size_t)n * sizeof *p);
  if (!p) PS_FAIL(PS_ERR_SYSTEM, "out of memory for QP solver slots");
  s->primary = p;
  qp_slot *f = realloc(s->fallback, (size_t)n * sizeof *f);
  if (!f) PS_FAIL(PS_ERR_SYSTEM, "out of memory for QP solver slots");
  s->fallback = f;
  double *w = realloc(s->work, ((size_t)n * n + 4 * (size_t)n) * sizeof *w);
  if (!w) PS_FAIL(PS_ERR_SYSTEM, "out of memory for QP solver scratch");
  s->work = w;
  int *iw = realloc(s->iwork, 3 * (size_t)n * sizeof *iw);
  if (!iw) PS_FAIL(PS_ERR_SYSTEM, "out of memory for QP solver scratch");
  s->iwork = iw;
  memset(s->primary + s->n_dims, 0, (size_t)(n - s->n_dims) * sizeof *p);
  memset(s->fallback + s->n_dims, 0, (size_t)(n - s->n_dims) * sizeof *f);
  s->n_dims = n;
  return PS_OK;
}

double ps_qp_kkt_residual(int dim, const double *hessian, const double *linear, double lambda, double upper,
                          const double *psi) {
  double worst = 0.0, scale = 0.0;
  for (int i = 0; i < dim; i++) {
    const double *row = hessian + (size_t)i * dim;
    double g = lambda - linear[i];
    for (int j = 0; j < dim; j++) g += row[j] * psi[j];
    double v;
    if (psi[i] <= 0.0) v = g < 0.0 ? -g : 0.0;
    else if (psi[i] >= upper) v = g > 0.0 ? g : 0.0;
    else v = fabs(g);
    if (!(v <= worst)) worst = v; /* a NaN sticks */
    if (fabs(linear[i]) > scale) scale = fabs(linear[i]);
  }
  scale += fabs(lambda);
  return worst / (scale > 1e-300 ? scale : 1e-300);
}

/* Run one TAO method from the start point in *start (length dim); result in psi. */
static int slot_solve(ps_qp_solver *s, qp_slot *slot, double upper, const double *start, double *psi) {
  const int d = s->problem.dim;
  PetscScalar *xa;
  if (slot->upper_value != upper) {
    PS_CHECK_PETSC(VecSet(slot->upper, upper));
    slot->upper_value = upper;
  }
  PS_CHECK_PETSC(VecGetArray(slot->x, &xa));
  for (int i = 0; i < d; i++) xa[i] = start[i];
  PS_CHECK_PETSC(VecRestoreArray(slot->x, &xa));
  PS_CHECK_PETSC(TaoSolve(slot->tao));
  PetscInt it = 0;
  PS_CHECK_PETSC(TaoGetIterationNumber(slot->tao, &it));
  s->n_iterations += it;
  const PetscScalar *xr;
  PS_CHECK_PETSC(VecGetArrayRead(slot->x, &xr));
  for (int i = 0; i < d; i++) psi[i] = xr[i] < 0.0 ? 0.0 : xr[i] > upper ? upper : xr[i];
  PS_CHECK_PETSC(VecRestoreArrayRead(slot->x, &xr));
  return PS_OK;
}

static double qp_objective_value(int d, const double *h, const double *c, double lambda, const double *x) {
  double f = 0.0;
  for (int i = 0; i < d; i++) {
    double hx = 0.0;
    for (int j = 0; j < d; j++) hx += h[(size_t)i * d + j] * x[j];
    f += x[i] * (0.5 * hx - c[i] + lambda);
  }
  return f;
}

/* After TAO: try the exact active-set finish (qp_polish.c) on a copy and keep it if its
 * KKT residual is no worse than TAO's, or in any case far inside the tolerance, and its
 * objective no higher. Returns the KKT residual of the point left in psi. */
static double solve_finish(ps_qp_solver *s, int dim, const double *h, const double *c, double lambda,
                           double upper, double *psi) {
  double kkt = ps_qp_kkt_residual(dim, h, c, lambda, upper, psi);
  if (!s->polish) return kkt;
  double *x = s->work + (size_t)s->n_dims * s->n_dims + 3 * (size_t)s->n_dims;
  for (int i = 0; i < dim; i++) x[i] = psi[i];
  ps_qp_polish(dim, h, c, lambda, upper, x, s->work, s->iwork, 0);
  double kkt_x = ps_qp_kkt_residual(dim, h, c, lambda, upper, x);
  if (!(kkt_x <= kkt || kkt_x <= 1e-3 * s->tolerance)) return kkt;
  /* The finish never raises f in exact arithmetic; allow for rounding in evaluating it. */
  double f_psi = qp_objective_value(dim, h, c, lambda, psi), scale = lambda;
  for (int i = 0; i < dim; i++)
    if (fabs(c[i]) + lambda > scale) scale = fabs(c[i]) + lambda;
  if (!(qp_objective_value(dim, h, c, lambda, x) <= f_psi + 1e-12 * (fabs(f_psi) + scale * upper))) return kkt;
  int changed = 0;
  for (int i = 0; i < dim; i++) {
    changed |= x[i] != psi[i];
    psi[i] = x[i];
  }
  s->n_polished += changed;
  return kkt_x;
}

/* Start: each coordinate's own optimum with the others at 0, clamped (exact for dim 1). */
static void diagonal_start(int dim, const double *hessian, const double *linear, double lambda, double upper,
                           double *psi) {
  for (int i = 0; i < dim; i++) {
    double h = hessian[(size_t)i * dim + i], g = linear[i] - lambda;
    double v = h > 0.0 ? g / h : (g > 0.0 ? upper : 0.0);
    psi[i] = v < 0.0 ? 0.0 : v > upper ? upper : v;
  }
}

int ps_qp_solve(ps_qp_solver *s, int dim, const double *hessian, const double *linear, double lambda,
                double upper, double *psi) {
  if (dim <= 0) return PS_OK;
  if (!(upper > 0.0) || !isfinite(upper)) PS_FAIL(PS_ERR_INPUT, "QP upper bound must be positive, got %g", upper);
  if (!(lambda >= 0.0) || !isfinite(lambda)) PS_FAIL(PS_ERR_INPUT, "QP lambda must be >= 0, got %g", lambda);
  double scale = lambda;
  for (int i = 0; i < dim; i++) {
    if (!isfinite(linear[i])) PS_FAIL(PS_ERR_INPUT, "QP linear term %d is not finite (%g)", i, linear[i]);
    if (fabs(linear[i]) + lambda > scale) scale = fabs(linear[i]) + lambda;
  }
  for (int i = 0; i < dim * dim; i++)
    if (!isfinite(hessian[i])) PS_FAIL(PS_ERR_INPUT, "QP hessian entry %d is not finite (%g)", i, hessian[i]);
  s->n_solves++;
  if (scale <= 1e-300) { /* c = 0 and lambda = 0: psi = 0 is optimal (f >= 0 = f(0)) */
    for (int i = 0; i < dim; i++) psi[i] = 0.0;
    return PS_OK;
  }
  s->problem = (qp_problem){dim, hessian, linear, lambda, 1.0 / scale};
  PS_CALL(solver_reserve(s, dim));

  diagonal_start(dim, hessian, linear, lambda, upper, psi);
  if (s->direct) {
    int iterations = ps_qp_polish(dim, hessian, linear, lambda, upper, psi, s->work, s->iwork, s->direct_max_it);
    if (iterations >= 0 && ps_qp_kkt_residual(dim, hessian, linear, lambda, upper, psi) <= s->tolerance)
      return PS_OK;
    s->n_tao++;
    diagonal_start(dim, hessian, linear, lambda, upper, psi);
  }
  qp_slot *slot = &s->primary[dim - 1];
  if (!slot->tao) PS_CALL(slot_create(s, dim, PS_QP_PRIMARY_TYPE, "ps_qp_", slot));
  PS_CALL(slot_solve(s, slot, upper, psi, psi));
  double kkt = solve_finish(s, dim, hessian, linear, lambda, upper, psi);
  if (kkt <= s->tolerance) return PS_OK;

  /* Safeguard: another method, from psi = 0. */
  s->n_fallback++;
  double first = kkt;
  qp_slot *back = &s->fallback[dim - 1];
  if (!back->tao) PS_CALL(slot_create(s, dim, PS_QP_FALLBACK_TYPE, "ps_qp_fallback_", back));
  for (int i = 0; i < dim; i++) psi[i] = 0.0;
  PS_CALL(slot_solve(s, back, upper, psi, psi));
  kkt = solve_finish(s, dim, hessian, linear, lambda, upper, psi);
  if (kkt <= s->tolerance) return PS_OK;
  PS_FAIL(PS_ERR_SYSTEM,
          "QP of dimension %d did not converge: relative projected gradient %.3g (first method), %.3g (fallback), "
          "tolerance %.3g; try -ps_qp_tao_type with another bound-constrained TAO method",
          dim, first, kkt, s->tolerance);
}
