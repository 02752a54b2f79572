/* Per-group intercepts (--control-by / --group-by, SPEC.md sections 2, 3 and 6).
 *
 * 1. ps_ridge_fit of ps_design_ridge_columns(design with G basal groups) equals a
 *    dense normal-equations solve (LAPACK dposv) of X = [group indicators | D],
 *    the intercept of group 0 in row 0 and of group g >= 1 in row K + g, on any
 *    number of ranks (the problem is generated per cell from a fixed seed).
 * 2. The permutation p-values on the same design do not change the fit and equal
 *    a brute force: refit with every cell given the design row (group intercept
 *    included) of cell pi_r(cell), count |B_r| > |B|.
 * 3. ps_score_cells takes each cell's own group row as B_0: a cell built as
 *    y = B_0(g) + psi B_k scores psi (lambda 0) whichever group it is in.
 * Run under mpirun with any number of ranks. */
#include "pertscore/ridge.h"
#include "pertscore/score.h"

#include <petsc.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b,
            const int *ldb, int *info, size_t uplo_len);

enum { K = 12, G = 3, GENES = 40, CELLS = 2400 };

/* Cell c: its group, perturbation (-1: control) and expression, from (seed, c) only. */
static int32_t cell_group(int64_t c) { return (int32_t)(c % G); }

static int32_t cell_perturbation(int64_t c) {
  ps_rng r = ps_rng_make(99, (uint64_t)c);
  return ps_rng_uniform(&r) < 0.25 ? -1 : (int32_t)(ps_rng_uniform(&r) * K);
}

static double cell_value(int64_t c, int32_t gene) {
  ps_rng r = ps_rng_make(1234, (uint64_t)c * GENES + (uint64_t)gene);
  int32_t k = cell_perturbation(c);
  double v = 2.0 + 0.5 * cell_group(c) * ((gene % 3) - 1) + 0.3 * ps_rng_normal(&r);
  if (k >= 0 && (k + gene) % 5 == 0) v += 0.7;
  return v > 0 ? v : 0;
}

/* This rank's block as the pipeline holds it: design with groups, dense-stored CSR y. */
static void take_block(int64_t begin, int64_t end, ps_design *d, ps_csr *y) {
  memset(d, 0, sizeof *d);
  memset(y, 0, sizeof *y);
  int64_t n = end - begin;
  d->n_perturbations = K;
  d->n_cells = n;
  d->n_groups = G;
  d->ptr = xcalloc((size_t)n + 1, sizeof *d->ptr);
  d->ids = xcalloc((size_t)n, sizeof *d->ids);
  d->group = xcalloc((size_t)n, sizeof *d->group);
  y->n_rows = n;
  y->n_cols = GENES;
  y->indptr = xcalloc((size_t)n + 1, sizeof *y->indptr);
  y->indices = xcalloc((size_t)n * GENES, sizeof *y->indices);
  y->data = xcalloc((size_t)n * GENES, sizeof *y->data);
  for (int64_t j = 0; j < n; j++) {
    int32_t k = cell_perturbation(begin + j);
    if (k >= 0) d->ids[d->ptr[j]] = k;
    d->ptr[j + 1] = d->ptr[j] + (k >= 0);
    d->group[j] = cell_group(begin + j);
    for (int32_t g = 0; g < GENES; g++) {
      y->indices[j * GENES + g] = g;
      y->data[j * GENES + g] = cell_value(begin + j, g);
    }
    y->indptr[j + 1] = (j + 1) * GENES;
  }
}

/* This rank's block with cell j given the design row (and group) of cell pi[begin + j]. */
static void permuted_block(int64_t begin, int64_t end, const int64_t *pi, ps_design *d) {
  for (int64_t j = 0; j < end - begin; j++) {
    int64_t from = pi[begin + j];
    int32_t k = cell_perturbation(from);
    if (k >= 0) d->ids[d->ptr[j]] = k;
    d->ptr[j + 1] = d->ptr[j] + (k >= 0);
    d->group[j] = cell_group(from);
  }
}

/* p-values by refitting every permutation within the groups; counts like ps_ridge_permutation_pvalues. */
static int brute_force_pvalues(MPI_Comm comm, const ps_csr *y, double lambda, const ps_ridge_perm_options *perm,
                               const double *beta, double *p) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t begin, end, *pi = xcalloc(CELLS, sizeof *pi), *order = xcalloc(CELLS, sizeof *order), ptr[G + 1];
  ps_block_range(CELLS, rank, size, &begin, &end);
  /* permutations stay within each group: the cells by group, in order within each */
  int64_t at = 0;
  for (int32_t g = 0; g < G; g++) {
    ptr[g] = at;
    for (int64_t c = 0; c < CELLS; c++)
      if (cell_group(c) == g) order[at++] = c;
  }
  ptr[G] = at;
  ps_design d, columns;
  ps_csr unused;
  take_block(begin, end, &d, &unused);
  ps_csr_free(&unused);
  for (int r = 0; r < perm->n_permutations; r++) {
    ps_ridge_permutation_within(perm->seed, r, CELLS, order, ptr, G, pi);
    permuted_block(begin, end, pi, &d);
    ps_ridge fit;
    if (ps_design_ridge_columns(&d, &columns) || ps_ridge_fit(comm, &columns, y, lambda, &fit)) return 1;
    for (int64_t e = 0; e < (int64_t)(K + G) * GENES; e++) p[e] += fabs(fit.beta[e]) > fabs(beta[e]);
    ps_ridge_free(&fit);
    ps_design_free(&columns);
  }
  for (int64_t e = 0; e < (int64_t)(K + G) * GENES; e++) p[e] /= perm->n_permutations;
  ps_design_free(&d);
  free(pi);
  free(order);
  return 0;
}

/* Dense solve over all cells on every rank; beta row-major (K + G) x GENES. */
static int dense_reference(double lambda, double *beta) {
  int n = K + G, N = GENES, info = 0;
  double *a = xcalloc((size_t)n * n, sizeof *a), *b = xcalloc((size_t)n * N, sizeof *b);
  for (int64_t c = 0; c < CELLS; c++) {
    int cols[2], s = 0;
    int32_t g = cell_group(c), k = cell_perturbation(c);
    cols[s++] = g == 0 ? 0 : K + g;
    if (k >= 0) cols[s++] = k + 1;
    for (int p = 0; p < s; p++) {
      for (int q = 0; q < s; q++) a[cols[q] * n + cols[p]] += 1.0;
      for (int32_t gene = 0; gene < N; gene++) b[gene * n + cols[p]] += cell_value(c, gene);
    }
  }
  for (int i = 0; i < n; i++) a[i * n + i] += lambda;
  dposv_("L", &n, &N, a, &n, b, &n, &info, 1);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < N; j++) beta[i * N + j] = b[j * n + i];
  free(a);
  free(b);
  return info;
}

static int check_fit(MPI_Comm comm, const ps_design *d, const ps_csr *y) {
  int rank, size, failures = 0;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const double lambda = 0.01;
  ps_design columns;
  ps_ridge fit, fit2;
  double *pvalues = NULL, *ref = xcalloc((size_t)(K + G) * GENES, sizeof *ref);
  ps_ridge_perm_options perm;
  ps_ridge_perm_options_default(&perm);
  perm.n_permutations = 20;
  if (ps_design_ridge_columns(d, &columns) || ps_ridge_fit(comm, &columns, y, lambda, &fit) ||
      ps_ridge_fit_pvalues(comm, &columns, y, lambda, &perm, &fit2, &pvalues)) {
    printf("FAIL rank %d: %s\n", rank, ps_error_message());
    MPI_Abort(comm, 1);
  }
  int info = dense_reference(lambda, ref);
  double *brute = xcalloc((size_t)(K + G) * GENES, sizeof *brute);
  if (brute_force_pvalues(comm, y, lambda, &perm, fit.beta, brute)) {
    printf("FAIL rank %d: brute force: %s\n", rank, ps_error_message());
    MPI_Abort(comm, 1);
  }
  double worst = 0, scale = 0, fit_vs_fit2 = 0, p_diff = 0;
  for (int64_t e = 0; e < (int64_t)(K + G) * GENES; e++) {
    worst = fmax(worst, fabs(fit.beta[e] - ref[e]));
    scale = fmax(scale, fabs(ref[e]));
    fit_vs_fit2 = fmax(fit_vs_fit2, fabs(fit.beta[e] - fit2.beta[e]));
    p_diff = fmax(p_diff, fabs(pvalues[e] - brute[e]));
  }
  int p_ok = p_diff == 0;
  free(brute);
  worst /= scale;
  int ok = info == 0 && fit.n_rows == K + G && worst <= 1e-10 && fit_vs_fit2 <= 1e-12 * scale && p_ok;
  if (rank == 0)
    printf("%s per-group intercepts vs dense solve (np %d, K %d, G %d, %d cells): rows %d, max rel error %.3e; "
           "with permutations: beta differs by %.1e, max |p - brute force p| = %g\n",
           ok ? "ok  " : "FAIL", size, K, G, CELLS, fit.n_rows, worst, fit_vs_fit2, p_diff);
  /* the basal rows differ by group as generated: gene 0 is shifted by -0.5 g, gene 2 by +0.5 g */
  double shift0 = fit.beta[(K + 2) * GENES + 0] - fit.beta[0], shift2 = fit.beta[(K + 2) * GENES + 2] - fit.beta[2];
  int shift_ok = fabs(shift0 + 1.0) < 0.1 && fabs(shift2 - 1.0) < 0.1;
  if (rank == 0)
    printf("%s group 2 basal shift: gene 0 %.3f (want -1), gene 2 %.3f (want +1)\n", shift_ok ? "ok  " : "FAIL",
           shift0, shift2);
  failures += !ok + !shift_ok;
  free(ref);
  free(pvalues);
  ps_ridge_free(&fit);
  ps_ridge_free(&fit2);
  ps_design_free(&columns);
  return failures;
}

/* Cells y = B_0(g) + psi B_k with known psi: the QP must return psi / U whatever g. */
static int check_score(MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  const int32_t k_n = 2, g_n = 3, N = 6;
  ps_ridge r = {.n_rows = k_n + g_n, .n_genes = N, .lambda = 0.01};
  r.beta = xcalloc((size_t)(k_n + g_n) * N, sizeof *r.beta);
  for (int i = 0; i < k_n + g_n; i++)
    for (int j = 0; j < N; j++) r.beta[i * N + j] = (i >= 1 && i <= k_n) ? ((i + j) % 3 == 0 ? 1.0 : 0.2) : 1.0 + i * j;
  ps_design d = {.n_perturbations = k_n, .n_cells = 3, .n_groups = g_n};
  d.ptr = xcalloc(4, sizeof *d.ptr);
  d.ids = xcalloc(3, sizeof *d.ids);
  d.group = xcalloc(3, sizeof *d.group);
  ps_csr y = {.n_rows = 3, .n_cols = N};
  y.indptr = xcalloc(4, sizeof *y.indptr);
  y.indices = xcalloc(3 * (size_t)N, sizeof *y.indices);
  y.data = xcalloc(3 * (size_t)N, sizeof *y.data);
  const double psi[3] = {0.9, 1.8, 2.4};
  for (int j = 0; j < 3; j++) {
    d.ids[j] = j % k_n;
    d.ptr[j + 1] = j + 1;
    d.group[j] = j; /* groups 0, 1, 2 */
    const double *b0 = r.beta + ps_design_basal_row(&d, j) * N, *bk = r.beta + (d.ids[j] + 1) * N;
    for (int g = 0; g < N; g++) {
      y.indices[j * N + g] = g;
      y.data[j * N + g] = b0[g] + psi[j] * bk[g];
    }
    y.indptr[j + 1] = (j + 1) * N;
  }
  ps_score_options opt;
  ps_score_options_default(&opt);
  opt.lambda = 0;
  opt.rescale = 0;
  ps_scores s;
  int failures = 0;
  if (ps_score_cells(MPI_COMM_SELF, &d, &y, &r, &opt, NULL, &s)) {
    printf("FAIL score: %s\n", ps_error_message());
    failures = 1;
  } else {
    double worst = 0;
    for (int j = 0; j < 3; j++) worst = fmax(worst, fabs(s.ps[j] - psi[j] / opt.upper));
    failures = worst > 1e-6;
    if (rank == 0)
      printf("%s QP uses the cell's group basal row: max |PS - psi/U| = %.2e\n", failures ? "FAIL" : "ok  ", worst);
    ps_scores_free(&s);
  }
  ps_ridge_free(&r);
  ps_design_free(&d);
  ps_csr_free(&y);
  return failures;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1; /* the QP solver is TAO */
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t begin, end;
  ps_block_range(CELLS, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(begin, end, &d, &y);
  int failures = check_fit(comm, &d, &y) + check_score(comm);
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0) printf("test_ridge_groups: %d failure(s)\n", failures);
  ps_design_free(&d);
  ps_csr_free(&y);
  PetscFinalize();
  MPI_Finalize();
  return failures ? 1 : 0;
}
