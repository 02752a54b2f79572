/* ps_ridge_fit (SPEC.md section 2) against a dense normal-equations solve.
 *
 * Every rank generates the same global problem from a fixed seed (per cell, so
 * the draws do not depend on the rank count) and keeps its contiguous block of
 * cells; rank 0 builds dense X^T X + lambda I and X^T Y over all cells and
 * solves them with LAPACK dposv. Run under mpirun with any number of ranks.
 * ps_ridge_fit_grid the same way over a keep mask (by global cell index) and a
 * lambda grid, with both solves (PERTSCORE_RIDGE_SOLVE=potrs and inverse). */
#include "pertscore/ridge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ridge_problem.h"

/* LAPACK (Fortran; the size_t is gfortran's hidden CHARACTER length). */
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b,
            const int *ldb, int *info, size_t uplo_len);

enum { MOI_ONE_OR_NONE, MOI_LOW, MOI_HIGH, MOI_PAIRED };

typedef struct {
  const char *name;
  int32_t K;
  int64_t cells;
  int32_t genes;
  int moi;
  double lambda;
} test_case;

/* Perturbations of one cell, sorted and distinct. Perturbation K - 1 is never
 * drawn at low MOI, so one design column is empty (only lambda keeps it solvable). */
static int32_t draw_perturbations(const test_case *tc, ps_rng *r, int32_t *ids) {
  if (tc->moi == MOI_ONE_OR_NONE) {
    if (ps_rng_uniform(r) < 0.5) return 0;
    ids[0] = 0;
    return 1;
  }
  if (tc->moi == MOI_PAIRED) { /* perturbations 0 and 1 always carried together, the others alone */
    if (ps_rng_uniform(r) < 0.2) return 0;
    ids[0] = (int32_t)(ps_rng_uniform(r) * tc->K); /* every column drawn: only the pair is singular */
    if (ids[0] > 1) return 1;
    ids[0] = 0, ids[1] = 1;
    return 2;
  }
  if (tc->moi == MOI_LOW) {
    if (ps_rng_uniform(r) < 0.2) return 0; /* control cell */
    ids[0] = (int32_t)(ps_rng_uniform(r) * (tc->K - 1));
    return 1;
  }
  int64_t want = ps_rng_poisson(r, 5.0);
  if (want > 12) want = 12;
  if (want > tc->K) want = tc->K; /* distinct ids: no more than K */
  int32_t n = 0;
  while (n < want) {
    int32_t id = (int32_t)(ps_rng_uniform(r) * tc->K), dup = 0;
    for (int32_t q = 0; q < n; q++) dup |= ids[q] == id;
    if (!dup) ids[n++] = id;
  }
  qsort(ids, (size_t)n, sizeof *ids, cmp_int32);
  return n;
}

/* Log-normalized-like expression in [0, 5], about half zeros, with some
 * perturbation effects so beta is not just noise. */
static void generate(const test_case *tc, uint64_t seed, global_problem *g) {
  g->ptr = xcalloc((size_t)tc->cells + 1, sizeof *g->ptr);
  g->ids = xcalloc((size_t)tc->cells * 12, sizeof *g->ids);
  g->yptr = xcalloc((size_t)tc->cells + 1, sizeof *g->yptr);
  g->ygene = xcalloc((size_t)tc->cells * tc->genes, sizeof *g->ygene);
  g->yval = xcalloc((size_t)tc->cells * tc->genes, sizeof *g->yval);
  for (int64_t c = 0; c < tc->cells; c++) {
    ps_rng r = ps_rng_make(seed, (uint64_t)c);
    int32_t *ids = g->ids + g->ptr[c];
    int32_t s = draw_perturbations(tc, &r, ids);
    g->ptr[c + 1] = g->ptr[c] + s;
    int64_t nz = g->yptr[c];
    for (int32_t gene = 0; gene < tc->genes; gene++) {
      if (ps_rng_uniform(&r) < 0.5) continue;
      double v = log1p(20.0 * ps_rng_uniform(&r));
      for (int32_t q = 0; q < s; q++)
        if ((ids[q] + gene) % 7 == 0) v += 0.8;
      g->ygene[nz] = gene;
      g->yval[nz++] = v > 5.0 ? 5.0 : v;
    }
    g->yptr[c + 1] = nz;
  }
}

/* Dense X^T X + lambda I (n x n) and X^T Y (column-major n x N) over the cells
 * with keep[c] != 0 (global cell index; keep NULL: all cells). */
static void dense_normal_equations(const test_case *tc, const global_problem *g, const uint8_t *keep, double lambda,
                                   double *a, double *xty) {
  int n = tc->K + 1;
  for (int64_t c = 0; c < tc->cells; c++) {
    if (keep && !keep[c]) continue;
    int32_t cols[13] = {0};
    int s = 1;
    for (int64_t q = g->ptr[c]; q < g->ptr[c + 1]; q++) cols[s++] = g->ids[q] + 1;
    for (int p = 0; p < s; p++)
      for (int q = 0; q < s; q++) a[(int64_t)cols[q] * n + cols[p]] += 1.0;
    for (int64_t e = g->yptr[c]; e < g->yptr[c + 1]; e++)
      for (int p = 0; p < s; p++) xty[(int64_t)g->ygene[e] * n + cols[p]] += g->yval[e];
  }
  for (int i = 0; i < n; i++) a[(int64_t)i * n + i] += lambda;
}

/* ref (row-major n x N) = a^-1 xty by LAPACK dposv; returns its info. */
static int dense_solve(int n, int N, const double *a, const double *xty, double *ref) {
  double *chol = xcalloc((size_t)n * n, sizeof *chol), *sol = xcalloc((size_t)n * N, sizeof *sol);
  memcpy(chol, a, (size_t)n * n * sizeof *chol);
  memcpy(sol, xty, (size_t)n * N * sizeof *sol);
  int info = 0;
  dposv_("L", &n, &N, chol, &n, sol, &n, &info, 1);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < N; j++) ref[(int64_t)i * N + j] = sol[(int64_t)j * n + i];
  free(chol), free(sol);
  return info;
}

/* max |a B - xty| / max |xty|, B row-major n x N. */
static double relative_residual(int n, int N, const double *a, const double *xty, const double *beta) {
  double residual = 0;
  for (int j = 0; j < N; j++)
    for (int i = 0; i < n; i++) {
      double r = -xty[(int64_t)j * n + i];
      for (int k = 0; k < n; k++) r += a[(int64_t)k * n + i] * beta[(int64_t)k * N + j];
      residual = fmax(residual, fabs(r));
    }
  return residual / max_abs(xty, (int64_t)n * N);
}

/* Fit on all ranks, compare with the dense solve; returns the number of failures. */
static int run_case(const test_case *tc, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int n = tc->K + 1, N = tc->genes;
  global_problem g;
  generate(tc, 20250101u + (uint64_t)tc->K, &g);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc->K, tc->genes, &g, begin, end, &d, &y);

  ps_ridge fit;
  double t0 = MPI_Wtime();
  int err = ps_ridge_fit(comm, &d, &y, tc->lambda, &fit);
  double seconds = MPI_Wtime() - t0;
  int failures = 0;
  if (err) {
    if (rank == 0) printf("FAIL %s: ps_ridge_fit returned %d: %s\n", tc->name, err, ps_error_message());
    failures = 1;
  } else if (fit.n_rows != n || fit.n_genes != N || fit.lambda != tc->lambda) {
    printf("FAIL %s rank %d: result is %d x %d (lambda %g), want %d x %d\n", tc->name, rank, fit.n_rows,
           fit.n_genes, fit.lambda, n, N);
    failures = 1;
  }

  /* Reference on rank 0, sent to all so each rank checks its own replicated beta. */
  double *a = xcalloc((size_t)n * n, sizeof *a), *xty = xcalloc((size_t)n * N, sizeof *xty);
  double *ref = xcalloc((size_t)n * N, sizeof *ref);
  double residual = 0;
  if (rank == 0) {
    dense_normal_equations(tc, &g, NULL, tc->lambda, a, xty);
    int info = dense_solve(n, N, a, xty, ref);
    if (info != 0) {
      printf("FAIL %s: reference dposv info %d\n", tc->name, info);
      failures++;
    }
    /* ||(X^T X + lambda I) B - X^T Y|| relative to ||X^T Y|| */
    if (!err) residual = relative_residual(n, N, a, xty, fit.beta);
  }
  MPI_Bcast(ref, n * N, MPI_DOUBLE, 0, comm);
  double err_rel = 0, worst = 0;
  if (!err) {
    for (int64_t e = 0; e < (int64_t)n * N; e++) err_rel = fmax(err_rel, fabs(fit.beta[e] - ref[e]));
    err_rel /= max_abs(ref, (int64_t)n * N);
  }
  MPI_Allreduce(&err_rel, &worst, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0) {
    int ok = !failures && worst <= 1e-8 && residual <= 1e-10;
    printf("%s %s (np %d, K %d, %lld cells, %d genes, lambda %g): max rel error %.3e, "
           "rel residual %.3e, max|B| %.3f, %.3f s\n",
           ok ? "ok  " : "FAIL", tc->name, size, tc->K, (long long)tc->cells, N, tc->lambda, worst, residual,
           max_abs(ref, (int64_t)n * N), seconds);
    failures = !ok;
  }
  MPI_Bcast(&failures, 1, MPI_INT, 0, comm);
  free(a), free(xty), free(ref);
  ps_ridge_free(&fit);
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return failures;
}

/* ---- ps_ridge_fit_grid: a lambda grid on the cells of a keep mask ---- */

enum { MAX_LAMBDAS = 8 };

/* What the grid's callback saw. */
typedef struct {
  int n_lambdas;
  const double *lambdas;
  int32_t n_rows, n_genes;
  int calls;          /* times each ran */
  int bad_calls;      /* calls out of order, with the wrong lambda or shape, or without beta */
  int stop_at;        /* return an error at this l (-1: never) */
  double *beta[MAX_LAMBDAS]; /* B->beta of lambda l: kept (even l) or a copy (odd l) */
} grid_record;

static int record_fit(void *ctx, int l, ps_ridge *B) {
  grid_record *r = ctx;
  int expected_l = r->calls++;
  if (l != expected_l || l < 0 || l >= r->n_lambdas || B->lambda != r->lambdas[l] || B->n_rows != r->n_rows ||
      B->n_genes != r->n_genes || !B->beta) {
    r->bad_calls++;
    return PS_OK;
  }
  if (l == r->stop_at) return ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "test: stop the grid at %d", l);
  size_t entries = (size_t)B->n_rows * (size_t)B->n_genes;
  if (l % 2 == 0) { /* keep it: the next lambda must get a fresh beta, this one must stay intact */
    r->beta[l] = B->beta;
    B->beta = NULL;
  } else { /* copy it: the grid frees or reuses B->beta */
    r->beta[l] = xcalloc(entries, sizeof *r->beta[l]);
    memcpy(r->beta[l], B->beta, entries * sizeof *r->beta[l]);
  }
  return PS_OK;
}

static void grid_record_free(grid_record *r) {
  for (int l = 0; l < MAX_LAMBDAS; l++) free(r->beta[l]);
  memset(r->beta, 0, sizeof r->beta);
}

/* Cells the fit keeps, by global cell index (so the same on any rank count):
 * about 80% pseudo-randomly, none of the first drop_first cells. */
static uint8_t *global_keep_mask(int64_t cells, int64_t drop_first) {
  uint8_t *keep = xcalloc((size_t)cells, sizeof *keep);
  for (int64_t c = 0; c < cells; c++) {
    ps_rng r = ps_rng_make(0x6b656570u /* "keep" */, (uint64_t)c);
    keep[c] = c >= drop_first && ps_rng_uniform(&r) >= 0.2;
  }
  return keep;
}

/* The grid of lambdas on the kept cells against dense solves over the kept
 * cells only; each called n_lambdas times in order; betas the same on every
 * rank. Returns the number of failures. */
static int run_grid_case(const test_case *tc, int64_t drop_first, int n_lambdas, const double *lambdas,
                         MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int n = tc->K + 1, N = tc->genes;
  int64_t entries = (int64_t)n * N;
  global_problem g;
  generate(tc, 20250101u + (uint64_t)tc->K, &g);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc->K, tc->genes, &g, begin, end, &d, &y);
  uint8_t *keep = global_keep_mask(tc->cells, drop_first);
  int64_t kept = 0, kept_here = 0;
  for (int64_t c = 0; c < tc->cells; c++) kept += keep[c];
  for (int64_t c = begin; c < end; c++) kept_here += keep[c];

  grid_record rec = {.n_lambdas = n_lambdas, .lambdas = lambdas, .n_rows = n, .n_genes = N, .stop_at = -1};
  int err = ps_ridge_fit_grid(comm, &d, &y, keep + begin, n_lambdas, lambdas, record_fit, &rec);
  int failures = 0;
  if (err) {
    if (rank == 0) printf("FAIL %s grid: returned %d: %s\n", tc->name, err, ps_error_message());
    failures = 1;
  } else if (rec.calls != n_lambdas || rec.bad_calls) {
    printf("FAIL %s grid rank %d: each called %d times (%d wrong), want %d in order\n", tc->name, rank, rec.calls,
           rec.bad_calls, n_lambdas);
    failures = 1;
  }
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_MAX, comm);

  double *a = xcalloc((size_t)n * n, sizeof *a), *xty = xcalloc((size_t)entries, sizeof *xty);
  double *ref = xcalloc((size_t)entries, sizeof *ref), *rank0_beta = xcalloc((size_t)entries, sizeof *rank0_beta);
  double worst = 0, worst_residual = 0;
  int differs_across_ranks = 0;
  for (int l = 0; l < n_lambdas && !failures; l++) {
    double residual = 0;
    if (rank == 0) {
      memset(a, 0, (size_t)n * n * sizeof *a);
      memset(xty, 0, (size_t)entries * sizeof *xty);
      dense_normal_equations(tc, &g, keep, lambdas[l], a, xty);
      int info = dense_solve(n, N, a, xty, ref);
      if (info != 0) printf("FAIL %s: reference dposv info %d at lambda %g\n", tc->name, info, lambdas[l]);
      residual = info != 0 ? INFINITY : relative_residual(n, N, a, xty, rec.beta[l]);
      memcpy(rank0_beta, rec.beta[l], (size_t)entries * sizeof *rank0_beta);
    }
    MPI_Bcast(ref, (int)entries, MPI_DOUBLE, 0, comm);
    MPI_Bcast(rank0_beta, (int)entries, MPI_DOUBLE, 0, comm);
    double err_rel = 0;
    for (int64_t e = 0; e < entries; e++) err_rel = fmax(err_rel, fabs(rec.beta[l][e] - ref[e]));
    err_rel /= max_abs(ref, entries);
    worst = fmax(worst, err_rel);
    worst_residual = fmax(worst_residual, residual);
    differs_across_ranks |= memcmp(rec.beta[l], rank0_beta, (size_t)entries * sizeof *rank0_beta) != 0;
  }
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &differs_across_ranks, 1, MPI_INT, MPI_MAX, comm);
  int64_t kept_min = kept_here;
  MPI_Allreduce(MPI_IN_PLACE, &kept_min, 1, MPI_INT64_T, MPI_MIN, comm);
  if (rank == 0) {
    int ok = !failures && !differs_across_ranks && worst <= 1e-8 && worst_residual <= 1e-10;
    printf("%s %s grid of %d lambdas (np %d, %lld of %lld cells kept, fewest on a rank %lld): max rel error %.3e, "
           "rel residual %.3e%s\n",
           ok ? "ok  " : "FAIL", tc->name, n_lambdas, size, (long long)kept, (long long)tc->cells,
           (long long)kept_min, worst, worst_residual, differs_across_ranks ? ", beta differs across ranks" : "");
    failures = !ok;
  }
  MPI_Bcast(&failures, 1, MPI_INT, 0, comm);
  free(a), free(xty), free(ref), free(rank0_beta), free(keep);
  grid_record_free(&rec);
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return failures;
}

/* keep NULL and one lambda is how ps_ridge_fit runs: the same beta bitwise. */
static int run_grid_bitwise_case(const test_case *tc, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  global_problem g;
  generate(tc, 20250101u + (uint64_t)tc->K, &g);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc->K, tc->genes, &g, begin, end, &d, &y);
  ps_ridge fit;
  int fit_err = ps_ridge_fit(comm, &d, &y, tc->lambda, &fit);
  grid_record rec = {.n_lambdas = 1, .lambdas = &tc->lambda, .n_rows = tc->K + 1, .n_genes = tc->genes, .stop_at = -1};
  int grid_err = ps_ridge_fit_grid(comm, &d, &y, NULL, 1, &tc->lambda, record_fit, &rec);
  int bad = fit_err || grid_err || rec.calls != 1 || rec.bad_calls || fit.lambda != tc->lambda ||
            memcmp(fit.beta, rec.beta[0], (size_t)(tc->K + 1) * (size_t)tc->genes * sizeof *fit.beta) != 0;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0)
    printf("%s %s: grid (keep NULL, one lambda) %s ps_ridge_fit bitwise (np %d)\n", bad ? "FAIL" : "ok  ", tc->name,
           bad ? "differs from" : "equals", size);
  ps_error_clear();
  ps_ridge_free(&fit);
  grid_record_free(&rec);
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return bad;
}

/* A callback's error stops the grid: returned as is, no later lambda fitted. */
static int run_grid_stop_case(const test_case *tc, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  global_problem g;
  generate(tc, 11u, &g);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc->K, tc->genes, &g, begin, end, &d, &y);
  const double lambdas[] = {0.1, 1.0, 10.0};
  grid_record rec = {.n_lambdas = 3, .lambdas = lambdas, .n_rows = tc->K + 1, .n_genes = tc->genes, .stop_at = 1};
  int err = ps_ridge_fit_grid(comm, &d, &y, NULL, 3, lambdas, record_fit, &rec);
  int bad = err != PS_ERR_INPUT || !strstr(ps_error_message(), "stop the grid") || rec.calls != 2 || rec.bad_calls;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0)
    printf("%s callback error stops the grid (np %d): code %d, %d call(s), \"%s\"\n", bad ? "FAIL" : "ok  ", size,
           err, rec.calls, ps_error_message());
  ps_error_clear();
  grid_record_free(&rec);
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return bad;
}

/* A fit that must fail the same way on every rank, with a message naming the cause. */
static int run_error_case(const char *name, const test_case *tc, uint64_t seed, const char *expect, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  global_problem g;
  generate(tc, seed, &g);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc->K, tc->genes, &g, begin, end, &d, &y);
  ps_ridge fit;
  int err = ps_ridge_fit(comm, &d, &y, tc->lambda, &fit);
  int bad = err != PS_ERR_INPUT || !strstr(ps_error_message(), expect) || fit.beta != NULL;
  int any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0)
    printf("%s %s (np %d): code %d, \"%s\"\n", any_bad ? "FAIL" : "ok  ", name, size, err, ps_error_message());
  ps_error_clear();
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return any_bad;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  const test_case cases[] = {
      {"K=1", 1, 3000, 40, MOI_ONE_OR_NONE, 0.01},
      {"K=50 MOI 1 with controls", 50, 4000, 120, MOI_LOW, 0.01},
      {"K=200 high MOI", 200, 4000, 150, MOI_HIGH, 0.01},
      {"K=200 high MOI, larger lambda", 200, 2500, 60, MOI_HIGH, 5.0},
      {"2 cells (a rank without cells)", 3, 2, 5, MOI_HIGH, 0.01},
  };
  int failures = 0, rank0;
  MPI_Comm_rank(comm, &rank0);
  /* Both ways to solve: pdpotrs, and the inverse factor W = L^-1 (the default
   * when K + 1 <= 4 N, which every case here is). */
  const char *solvers[] = {"potrs", "inverse"};
  for (int v = 0; v < 2; v++) {
    setenv("PERTSCORE_RIDGE_SOLVE", solvers[v], 1);
    if (rank0 == 0) printf("-- solve: %s\n", solvers[v]);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) failures += run_case(&cases[i], comm);
  }

  /* The lambda grid on ~80% of the cells (plus, once, none of the first 55%:
   * ranks without a kept cell on 2 and 3 ranks), not in increasing order. */
  const double lambdas[] = {0.3, 0.01, 10.0, 1.0};
  const int n_lambdas = (int)(sizeof lambdas / sizeof lambdas[0]);
  for (int v = 0; v < 2; v++) {
    setenv("PERTSCORE_RIDGE_SOLVE", solvers[v], 1);
    if (rank0 == 0) printf("-- lambda grid, solve: %s\n", solvers[v]);
    for (int i = 0; i < 3; i++) failures += run_grid_case(&cases[i], 0, n_lambdas, lambdas, comm);
    failures += run_grid_case(&cases[1], cases[1].cells * 55 / 100, n_lambdas, lambdas, comm);
    for (int i = 0; i < 3; i++) failures += run_grid_bitwise_case(&cases[i], comm);
    failures += run_grid_stop_case(&cases[4], comm);
  }
  unsetenv("PERTSCORE_RIDGE_SOLVE");

  /* lambda = 0 with an empty design column: X^T X is singular. */
  test_case singular = {"", 20, 500, 10, MOI_LOW, 0.0};
  failures += run_error_case("singular X^T X rejected", &singular, 7u, "not positive definite", comm);
  test_case negative = {"", 5, 100, 4, MOI_HIGH, -1.0};
  failures += run_error_case("negative lambda rejected", &negative, 7u, "lambda", comm);
  /* lambda = 0 with two perturbations always carried together: X^T X is singular, but
   * Cholesky in floating point often finishes with a pivot at rounding level; the
   * relative pivot test refuses it on every seed (issue 14: ~1 seed in 4 passed before). */
  test_case paired = {"", 12, 600, 8, MOI_PAIRED, 0.0};
  for (uint64_t seed = 1; seed <= 16; seed++) {
    char name[64];
    snprintf(name, sizeof name, "co-carried pair at lambda 0 rejected (seed %llu)", (unsigned long long)seed);
    failures += run_error_case(name, &paired, seed, "singular", comm);
  }
  /* ... and with the default lambda the same design is fine */
  test_case paired_ridge = {"co-carried pair at lambda 0.01", 12, 600, 8, MOI_PAIRED, 0.01};
  failures += run_case(&paired_ridge, comm);

  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) printf("test_ridge: %d failure(s)\n", failures);
  MPI_Finalize();
  return failures ? 1 : 0;
}
