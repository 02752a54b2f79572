/* ps_ridge_fit_grid with basal groups (a negative first design id names the
 * cell's intercept column, ps_design_ridge_columns) and a keep mask, against a
 * dense normal-equations solve over the kept cells on rank 0; every solve
 * (PERTSCORE_RIDGE_SOLVE) and way of forming X^T Y (PERTSCORE_PERM_RHS), one
 * lambda and a grid, ranks without a kept cell or without any cell. The
 * callback keeps beta on rank 0 only, so the ranks' paths through the grid
 * differ (a collective taken on some ranks only would hang or fail here).
 * Also: the permutations pick X^T Y_r by row at MOI <= 1 with basal groups (a
 * group's marker replaces the intercept, it is no extra row; src/cost assumes
 * the by-row memory there) and by gene tile at high MOI. Any number of ranks. */
#include "pertscore/ridge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b,
            const int *ldb, int *info, size_t uplo_len);

typedef struct {
  const char *name;
  int32_t K, G; /* perturbations, basal groups */
  int64_t cells;
  int32_t genes;
  int high_moi;
} test_case;

/* The whole problem in the ridge's layout (n = K + G rows), the same on every rank. */
typedef struct {
  int32_t n;
  int64_t *ptr, *yptr;
  int32_t *ids, *ygene;
  double *yval;
  uint8_t *keep;
} problem;

/* Per cell (draws from its own stream, so rank-count independent): its group g
 * (g >= 1: first id -(K + g)), sorted distinct perturbations (MOI 0-1 with 90% perturbed, or
 * 1-7), expression with effects; kept unless among the first drop_first
 * cells or in a pseudo-random 20%. */
static void generate(const test_case *tc, int64_t drop_first, problem *p) {
  p->n = tc->K + tc->G;
  p->ptr = xcalloc((size_t)tc->cells + 1, sizeof *p->ptr);
  p->ids = xcalloc((size_t)tc->cells * 13, sizeof *p->ids);
  p->yptr = xcalloc((size_t)tc->cells + 1, sizeof *p->yptr);
  p->ygene = xcalloc((size_t)tc->cells * tc->genes, sizeof *p->ygene);
  p->yval = xcalloc((size_t)tc->cells * tc->genes, sizeof *p->yval);
  p->keep = xcalloc((size_t)tc->cells, sizeof *p->keep);
  for (int64_t c = 0; c < tc->cells; c++) {
    ps_rng r = ps_rng_make(0x67726964u /* "grid" */ + (uint64_t)tc->K, (uint64_t)c);
    int32_t *ids = p->ids + p->ptr[c], s = 0;
    int32_t g = (int32_t)(ps_rng_uniform(&r) * tc->G);
    if (g > 0) ids[s++] = -(tc->K + g);
    int32_t want = tc->high_moi ? 1 + (int32_t)(ps_rng_uniform(&r) * 7) : ps_rng_uniform(&r) < 0.1 ? 0 : 1;
    for (int32_t k = 0; k < tc->K && want > 0; k++) /* a sorted draw of `want` of K */
      if (ps_rng_uniform(&r) * (tc->K - k) < want) ids[s++] = k, want--;
    p->ptr[c + 1] = p->ptr[c] + s;
    int64_t nz = p->yptr[c];
    for (int32_t gene = 0; gene < tc->genes; gene++) {
      if (ps_rng_uniform(&r) < 0.4) continue;
      double v = log1p(10.0 * ps_rng_uniform(&r)) + 0.3 * g;
      for (int32_t q = 0; q < s; q++)
        if (ids[q] >= 0 && (ids[q] + gene) % 5 == 0) v += 0.7;
      p->ygene[nz] = gene;
      p->yval[nz++] = v;
    }
    p->yptr[c + 1] = nz;
    p->keep[c] = c >= drop_first && ps_rng_uniform(&r) >= 0.2;
  }
}

static void problem_free(problem *p) {
  free(p->ptr), free(p->ids), free(p->yptr), free(p->ygene), free(p->yval), free(p->keep);
}

static void take_block(const test_case *tc, const problem *p, int64_t begin, int64_t end, ps_design *d, ps_csr *y) {
  memset(d, 0, sizeof *d);
  memset(y, 0, sizeof *y);
  d->n_perturbations = p->n - 1;
  d->n_cells = end - begin;
  d->ptr = xcalloc((size_t)d->n_cells + 1, sizeof *d->ptr);
  d->ids = xcalloc((size_t)(p->ptr[end] - p->ptr[begin]), sizeof *d->ids);
  for (int64_t c = 0; c <= d->n_cells; c++) d->ptr[c] = p->ptr[begin + c] - p->ptr[begin];
  memcpy(d->ids, p->ids + p->ptr[begin], (size_t)d->ptr[d->n_cells] * sizeof *d->ids);
  y->n_rows = end - begin;
  y->n_cols = tc->genes;
  int64_t nnz = p->yptr[end] - p->yptr[begin];
  y->indptr = xcalloc((size_t)y->n_rows + 1, sizeof *y->indptr);
  y->indices = xcalloc((size_t)nnz, sizeof *y->indices);
  y->data = xcalloc((size_t)nnz, sizeof *y->data);
  for (int64_t c = 0; c <= y->n_rows; c++) y->indptr[c] = p->yptr[begin + c] - p->yptr[begin];
  memcpy(y->indices, p->ygene + p->yptr[begin], (size_t)nnz * sizeof *y->indices);
  memcpy(y->data, p->yval + p->yptr[begin], (size_t)nnz * sizeof *y->data);
}

/* Dense X^T X (no lambda) and X^T Y over the kept cells, written out from the
 * definition: a cell's columns are its intercept (0, or K + g) and k + 1 per perturbation k. */
static void dense_sums(const test_case *tc, const problem *p, double *a, double *xty) {
  int32_t n = p->n;
  int32_t cols[16];
  for (int64_t c = 0; c < tc->cells; c++) {
    if (!p->keep[c]) continue;
    int nc = 0;
    int64_t q = p->ptr[c];
    cols[nc++] = q < p->ptr[c + 1] && p->ids[q] < 0 ? -p->ids[q++] : 0;
    for (; q < p->ptr[c + 1]; q++) cols[nc++] = p->ids[q] + 1;
    for (int i = 0; i < nc; i++) {
      for (int j = 0; j < nc; j++) a[(int64_t)cols[j] * n + cols[i]] += 1.0;
      for (int64_t e = p->yptr[c]; e < p->yptr[c + 1]; e++) xty[(int64_t)p->ygene[e] * n + cols[i]] += p->yval[e];
    }
  }
}

typedef struct {
  int rank, calls, bad_calls, n_lambdas;
  const double *lambdas;
  double *beta[4]; /* per lambda: kept (rank 0) or a copy (other ranks) */
  int32_t n_rows, n_genes;
} record;

/* Rank 0 keeps every beta, the other ranks copy it: their grids reuse one buffer, rank 0's allocates anew. */
static int record_fit(void *ctx, int l, ps_ridge *B) {
  record *r = ctx;
  if (l != r->calls++ || B->lambda != r->lambdas[l] || B->n_rows != r->n_rows || B->n_genes != r->n_genes ||
      !B->beta) {
    r->bad_calls++;
    return PS_OK;
  }
  size_t entries = (size_t)B->n_rows * (size_t)B->n_genes;
  if (r->rank == 0) {
    r->beta[l] = B->beta;
    B->beta = NULL;
  } else {
    r->beta[l] = xcalloc(entries, sizeof *r->beta[l]);
    memcpy(r->beta[l], B->beta, entries * sizeof *r->beta[l]);
  }
  return PS_OK;
}

static int run_case(const test_case *tc, int64_t drop_first, int n_lambdas, MPI_Comm comm) {
  static const double lambdas[] = {0.5, 0.01, 7.0};
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  problem p;
  generate(tc, drop_first, &p);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc, &p, begin, end, &d, &y);
  int32_t n = p.n, N = tc->genes;
  int64_t entries = (int64_t)n * N;
  record rec = {.rank = rank, .n_lambdas = n_lambdas, .lambdas = lambdas, .n_rows = n, .n_genes = N};
  int err = ps_ridge_fit_grid(comm, &d, &y, p.keep + begin, n_lambdas, lambdas, record_fit, &rec);
  int bad = err != PS_OK || rec.calls != n_lambdas || rec.bad_calls;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  double worst = 0;
  int differs = 0;
  double *a0 = xcalloc((size_t)n * n, sizeof *a0), *xty0 = xcalloc((size_t)entries, sizeof *xty0);
  double *a = xcalloc((size_t)n * n, sizeof *a), *ref = xcalloc((size_t)entries, sizeof *ref);
  if (!bad) dense_sums(tc, &p, a0, xty0);
  for (int l = 0; l < n_lambdas && !bad; l++) {
    memcpy(a, a0, (size_t)n * n * sizeof *a);
    memcpy(ref, xty0, (size_t)entries * sizeof *ref);
    for (int32_t i = 0; i < n; i++) a[(int64_t)i * n + i] += lambdas[l];
    int info = 0;
    dposv_("L", &n, &N, a, &n, ref, &n, &info, 1);
    if (info != 0) bad = 1;
    double scale = 0, diff = 0;
    for (int32_t k = 0; k < n; k++)
      for (int32_t g = 0; g < N; g++) { /* ref is column-major n x N, beta row-major */
        scale = fmax(scale, fabs(ref[(int64_t)g * n + k]));
        diff = fmax(diff, fabs(ref[(int64_t)g * n + k] - rec.beta[l][(int64_t)k * N + g]));
      }
    worst = fmax(worst, diff / scale);
    /* Every rank holds the same beta (rank 0's kept one against the others' copies). */
    double *rank0 = xcalloc((size_t)entries, sizeof *rank0);
    if (rank == 0) memcpy(rank0, rec.beta[l], (size_t)entries * sizeof *rank0);
    MPI_Bcast(rank0, (int)entries, MPI_DOUBLE, 0, comm);
    differs |= memcmp(rank0, rec.beta[l], (size_t)entries * sizeof *rank0) != 0;
    free(rank0);
  }
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &differs, 1, MPI_INT, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  int64_t kept_here = 0, fewest;
  for (int64_t c = begin; c < end; c++) kept_here += p.keep[c];
  MPI_Allreduce(&kept_here, &fewest, 1, MPI_INT64_T, MPI_MIN, comm);
  int fail = bad || differs || !(worst <= 1e-9);
  if (rank == 0)
    printf("%s %s, %d lambda(s), np %d (fewest kept cells on a rank %lld): max rel error %.2e%s%s\n",
           fail ? "FAIL" : "ok  ", tc->name, n_lambdas, size, (long long)fewest, worst,
           bad ? (err ? ", the grid failed" : ", callback calls wrong") : "", differs ? ", beta differs across ranks" : "");
  if (err && rank == 0) printf("  error: %s\n", ps_error_message());
  ps_error_clear();
  for (int l = 0; l < 4; l++) free(rec.beta[l]);
  free(a0), free(xty0), free(a), free(ref);
  ps_design_free(&d);
  ps_csr_free(&y);
  problem_free(&p);
  return fail;
}

/* The permutations' choice of how to form X^T Y_r (perm.rhs_by_tiles), with no override. */
static int run_choice_case(const test_case *tc, int want_tiles, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  problem p;
  generate(tc, 0, &p);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc, &p, begin, end, &d, &y);
  ps_ridge_perm_options opt;
  ps_ridge_perm_options_default(&opt);
  opt.n_permutations = 3;
  ps_ridge fit;
  double *pvalues = NULL;
  ps_stats_set("perm.rhs_by_tiles", -1);
  int err = ps_ridge_fit_pvalues(comm, &d, &y, 0.1, &opt, &fit, &pvalues);
  double got = ps_stats_get("perm.rhs_by_tiles");
  int bad = err || got != want_tiles;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0)
    printf("%s %s (np %d): the permutations form X^T Y_r %s (want %s)\n", bad ? "FAIL" : "ok  ", tc->name, size,
           got == 1 ? "by gene tile" : got == 0 ? "by row" : "(not run)", want_tiles ? "by gene tile" : "by row");
  ps_error_clear();
  if (!err) ps_ridge_free(&fit);
  free(pvalues);
  ps_design_free(&d);
  ps_csr_free(&y);
  problem_free(&p);
  return bad;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank;
  MPI_Comm_rank(comm, &rank);
  /* MOI <= 1 with 3 groups: 1.9 rows per cell (an intercept or group row, 0.9 perturbations), 2.6 design ids */
  const test_case low = {"groups, MOI <= 1", 12, 3, 900, 30, 0}, high = {"groups, high MOI", 40, 3, 900, 25, 1};
  const test_case tiny = {"groups, 2 cells (a rank without cells)", 3, 2, 2, 4, 1};
  const test_case one_group = {"one group (shared intercept), MOI <= 1", 12, 1, 900, 30, 0};
  const test_case wide = {"groups, more rows than genes", 60, 3, 500, 6, 1}; /* K + G > 4 N: pdpotrs by default */
  const char *saved_solve = getenv("PERTSCORE_RIDGE_SOLVE"), *saved_rhs = getenv("PERTSCORE_PERM_RHS");
  char solve_env[64] = "", rhs_env[64] = "";
  if (saved_solve) snprintf(solve_env, sizeof solve_env, "%s", saved_solve);
  if (saved_rhs) snprintf(rhs_env, sizeof rhs_env, "%s", saved_rhs);

  int failures = 0;
  const char *solves[] = {"potrs", "inverse"}, *rhs[] = {"rows", "tiles"};
  for (int v = 0; v < 2; v++)
    for (int w = 0; w < 2; w++) {
      setenv("PERTSCORE_RIDGE_SOLVE", solves[v], 1);
      setenv("PERTSCORE_PERM_RHS", rhs[w], 1);
      if (rank == 0) printf("-- solve %s, X^T Y %s\n", solves[v], rhs[w]);
      for (int nl = 1; nl <= 3; nl += 2) {
        failures += run_case(&low, 0, nl, comm);
        failures += run_case(&low, low.cells * 6 / 10, nl, comm); /* no kept cell on rank 0 with 2 or more ranks */
        failures += run_case(&high, 0, nl, comm);
        failures += run_case(&tiny, 0, nl, comm);
      }
      failures += run_case(&one_group, 100, 3, comm);
    }
  unsetenv("PERTSCORE_RIDGE_SOLVE");
  unsetenv("PERTSCORE_PERM_RHS");
  if (rank == 0) printf("-- default choices\n");
  failures += run_case(&wide, 50, 3, comm);
  failures += run_choice_case(&low, 0, comm);
  failures += run_choice_case(&one_group, 0, comm);
  failures += run_choice_case(&high, 1, comm);
  if (saved_solve) setenv("PERTSCORE_RIDGE_SOLVE", solve_env, 1);
  if (saved_rhs) setenv("PERTSCORE_PERM_RHS", rhs_env, 1);

  if (rank == 0) printf("test_ridge_grid: %d failure(s)\n", failures);
  MPI_Finalize();
  return failures ? 1 : 0;
}
