/* Permutation p-values of the ridge beta (SPEC.md section 2, --permutations).
 *
 * Every rank generates the same global problem from a fixed seed (per cell, so
 * the draws do not depend on the rank count) and keeps its contiguous block of
 * cells. Checked:
 *  - the permutation generator matches its documented definition (ridge.h),
 *    re-implemented here from the text, and is a uniform shuffle;
 *  - p-values equal a brute-force reference computed on rank 0 alone (dense
 *    normal equations per permutation, pi_r from the re-implementation). The
 *    reference does not depend on the number of ranks, so agreeing with it on
 *    np = 1, 2, 3 proves the p-values do not either;
 *  - a perturbation with no effect gets uniform p-values (one-sample KS) and a
 *    strong one gets p = 0 on the genes it moves;
 *  - batching (a small memory budget, a short last batch) changes nothing;
 *    ps_ridge_fit_pvalues agrees with ps_ridge_fit and the reference;
 *    R = 0 and bad arguments; X^T Y_r by row and by gene tile agree bit for bit. */
#include "pertscore/ridge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ridge_problem.h"

/* LAPACK (Fortran; the size_t is gfortran's hidden CHARACTER length). */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda, double *b,
             const int *ldb, int *info, size_t uplo_len);

enum { MOI_LOW, MOI_HIGH };

typedef struct {
  const char *name;
  int32_t K;
  int64_t cells;
  int32_t genes;
  int moi;
  double lambda;
  int R;
  uint64_t seed;
} test_case;

/* Effects: perturbation 0 adds STRONG to genes [0, N_STRONG); perturbation 1
 * has no effect at all; perturbation k >= 2 adds 0.5 to genes g in
 * [N_STRONG, N_MODERATE) with g % 7 == k % 7. Genes from N_MODERATE on are
 * noise only. */
enum { N_STRONG = 20, N_MODERATE = 100 };
#define STRONG 3.0

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int32_t draw_perturbations(const test_case *tc, ps_rng *r, int32_t *ids) {
  if (tc->moi == MOI_LOW) {
    if (ps_rng_uniform(r) < 0.2) return 0; /* control cell */
    ids[0] = (int32_t)(ps_rng_uniform(r) * tc->K);
    return 1;
  }
  int64_t want = ps_rng_poisson(r, 3.0);
  if (want > 8) want = 8;
  if (want > tc->K) want = tc->K;
  int32_t n = 0;
  while (n < want) {
    int32_t id = (int32_t)(ps_rng_uniform(r) * tc->K), dup = 0;
    for (int32_t q = 0; q < n; q++) dup |= ids[q] == id;
    if (!dup) ids[n++] = id;
  }
  qsort(ids, (size_t)n, sizeof *ids, cmp_int32);
  return n;
}

static double effect(int32_t k, int32_t gene) {
  if (k == 0) return gene < N_STRONG ? STRONG : 0.0;
  if (k == 1) return 0.0;
  return gene >= N_STRONG && gene < N_MODERATE && gene % 7 == k % 7 ? 0.5 : 0.0;
}

/* Log-normalized-like expression, 40% zeros, plus the effects above. */
static void generate(const test_case *tc, uint64_t seed, global_problem *g) {
  g->ptr = xcalloc((size_t)tc->cells + 1, sizeof *g->ptr);
  g->ids = xcalloc((size_t)tc->cells * 8, sizeof *g->ids);
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
      double v = ps_rng_uniform(&r) < 0.4 ? 0.0 : log1p(20.0 * ps_rng_uniform(&r));
      for (int32_t q = 0; q < s; q++) v += effect(ids[q], gene);
      if (v == 0.0) continue;
      g->ygene[nz] = gene;
      g->yval[nz++] = v;
    }
    g->yptr[c + 1] = nz;
  }
}

/* ---- the permutation, re-implemented from its definition in ridge.h ---- */

static void reference_permutation(uint64_t seed, int64_t r, int64_t m, int64_t *pi) {
  for (int64_t i = 0; i < m; i++) pi[i] = i;
  ps_rng g = ps_rng_make(seed ^ 0x7065726d75746521ULL, (uint64_t)r);
  for (int64_t i = m - 1; i >= 1; i--) {
    uint64_t bound = (uint64_t)i + 1, two64_mod = (UINT64_MAX % bound + 1) % bound, x;
    do x = ps_rng_next(&g);
    while (x < two64_mod);
    int64_t k = (int64_t)(x % bound), t = pi[i];
    pi[i] = pi[k];
    pi[k] = t;
  }
}

/* Within strata: one stratum listed in order is exactly the plain generator; with
 * three interleaved strata every cell is paired with a cell of its own stratum,
 * each stratum's cells are a permutation of themselves, and each stratum is
 * uniform: the first cell of a 3-cell stratum goes to each of its cells 1/3 of
 * the time (chi-square, 2 d.f., 0.1% critical value 13.8). */
static int check_generator_within(int rank) {
  int failures = 0;
  enum { M = 11, STRATA = 3 };
  int64_t order[M], ptr[STRATA + 1], pi[M], plain[M];
  for (int64_t i = 0; i < M; i++) order[i] = i;
  ptr[0] = 0, ptr[1] = M;
  for (int r = 0; r < 50; r++) {
    ps_ridge_permutation_within(5u, r, M, order, ptr, 1, pi);
    ps_ridge_permutation(5u, r, M, plain);
    failures += memcmp(pi, plain, sizeof pi) != 0;
  }
  /* strata: cell c in stratum c % 3 except cells 9 and 10 in stratum 0 (sizes 6, 3, 2) */
  int32_t stratum_of[M];
  for (int64_t c = 0; c < M; c++) stratum_of[c] = c >= 9 ? 0 : (int32_t)(c % 3);
  int64_t at = 0;
  for (int32_t h = 0; h < STRATA; h++) {
    ptr[h] = at;
    for (int64_t c = 0; c < M; c++)
      if (stratum_of[c] == h) order[at++] = c;
  }
  ptr[STRATA] = at;
  int64_t tally[3] = {0};
  const int n_draws = 30000;
  int kept = 1, bijective = 1;
  for (int r = 0; r < n_draws; r++) {
    ps_ridge_permutation_within(9u, r, M, order, ptr, STRATA, pi);
    uint8_t seen[M] = {0};
    for (int64_t c = 0; c < M; c++) {
      kept &= pi[c] >= 0 && pi[c] < M && stratum_of[pi[c]] == stratum_of[c];
      if (pi[c] >= 0 && pi[c] < M) bijective &= !seen[pi[c]]++;
    }
    tally[pi[1] == 1 ? 0 : pi[1] == 4 ? 1 : 2]++; /* stratum 1 is cells 1, 4, 7 */
  }
  double chi2 = 0, expect = n_draws / 3.0;
  for (int i = 0; i < 3; i++) chi2 += (tally[i] - expect) * (tally[i] - expect) / expect;
  failures += !kept + !bijective + (chi2 > 13.8);
  if (rank == 0)
    printf("%s permutation within strata: one stratum = the plain generator, cells stay in their stratum, "
           "uniform (chi2 %.2f, 2 df)\n", failures ? "FAIL" : "ok  ", chi2);
  return failures;
}

/* Library generator == documented definition; a permutation; uniform over the
 * 3! orders of 3 cells (chi-square, 5 d.f., 0.1% critical value 20.5). */
static int check_generator(int rank) {
  int failures = 0;
  const int64_t sizes[] = {0, 1, 2, 3, 17, 1000};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (int64_t r = 0; r < 20; r++) {
      int64_t m = sizes[s], *a = xcalloc((size_t)m, sizeof *a), *b = xcalloc((size_t)m, sizeof *b);
      uint8_t *seen = xcalloc((size_t)m, 1);
      ps_ridge_permutation(42u + (uint64_t)s, r, m, a);
      reference_permutation(42u + (uint64_t)s, r, m, b);
      int same = m == 0 || !memcmp(a, b, (size_t)m * sizeof *a), perm = 1;
      for (int64_t i = 0; i < m; i++) {
        if (a[i] < 0 || a[i] >= m || seen[a[i]]) perm = 0;
        else seen[a[i]] = 1;
      }
      failures += !same || !perm;
      free(a), free(b), free(seen);
    }
  int64_t tally[6] = {0}, pi[3];
  const int n_draws = 60000;
  for (int r = 0; r < n_draws; r++) {
    ps_ridge_permutation(7u, r, 3, pi);
    tally[pi[0] * 2 + (pi[1] > pi[2])]++;
  }
  double chi2 = 0, expect = n_draws / 6.0;
  for (int i = 0; i < 6; i++) chi2 += (tally[i] - expect) * (tally[i] - expect) / expect;
  failures += chi2 > 20.5;
  if (rank == 0)
    printf("%s permutation generator: matches its definition in ridge.h, uniform over 3! orders (chi2 %.2f, 5 df)\n",
           failures ? "FAIL" : "ok  ", chi2);
  return failures + check_generator_within(rank);
}

/* ---- brute-force reference on rank 0 ---- */

typedef struct {
  double *beta;     /* row-major (K + 1) x N */
  int32_t *lo, *hi; /* per entry: counts that must / may exceed |B| (hi - lo near-ties) */
  int64_t ties;
} reference;

static void reference_free(reference *ref) { free(ref->beta), free(ref->lo), free(ref->hi); }

/* Dense X_pi^T Y (column-major n x N): cell j's expression against the design row of cell pi[j]. */
static void dense_xty(const test_case *tc, const global_problem *g, const int64_t *pi, double *xty) {
  int n = tc->K + 1;
  memset(xty, 0, (size_t)n * tc->genes * sizeof *xty);
  for (int64_t c = 0; c < tc->cells; c++) {
    int64_t d = pi ? pi[c] : c;
    for (int64_t e = g->yptr[c]; e < g->yptr[c + 1]; e++) {
      double *col = xty + (int64_t)g->ygene[e] * n;
      col[0] += g->yval[e];
      for (int64_t q = g->ptr[d]; q < g->ptr[d + 1]; q++) col[g->ids[q] + 1] += g->yval[e];
    }
  }
}

/* Factor X^T X + lambda I once (dpotrf), then one dense solve per permutation.
 * |B_r| and |B| closer than 1e-10 max|B| are near-ties: the library's B_r
 * differs from this one by rounding (~1e-14 relative: another summation order,
 * ScaLAPACK blocking), so such a comparison may go either way and only bounds
 * the count. With continuous data they are rare (expected ~1e-5 per case). */
static void build_reference(const test_case *tc, const global_problem *g, reference *ref) {
  int n = tc->K + 1, N = tc->genes, info = 0;
  int64_t entries = (int64_t)n * N;
  double *a = xcalloc((size_t)n * n, sizeof *a), *x = xcalloc((size_t)entries, sizeof *x);
  int64_t *pi = xcalloc((size_t)tc->cells, sizeof *pi);
  ref->beta = xcalloc((size_t)entries, sizeof *ref->beta);
  ref->lo = xcalloc((size_t)entries, sizeof *ref->lo);
  ref->hi = xcalloc((size_t)entries, sizeof *ref->hi);
  ref->ties = 0;
  for (int64_t c = 0; c < tc->cells; c++) {
    int32_t cols[9] = {0};
    int s = 1;
    for (int64_t q = g->ptr[c]; q < g->ptr[c + 1]; q++) cols[s++] = g->ids[q] + 1;
    for (int p = 0; p < s; p++)
      for (int q = 0; q < s; q++) a[(int64_t)cols[q] * n + cols[p]] += 1.0;
  }
  for (int i = 0; i < n; i++) a[(int64_t)i * n + i] += tc->lambda;
  dpotrf_("L", &n, a, &n, &info, 1);
  if (info != 0) {
    printf("reference dpotrf info %d\n", info);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  dense_xty(tc, g, NULL, x);
  dpotrs_("L", &n, &N, a, &n, x, &n, &info, 1);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < N; j++) ref->beta[(int64_t)i * N + j] = x[(int64_t)j * n + i];
  double tie = 1e-10 * max_abs(ref->beta, entries);
  for (int r = 0; r < tc->R; r++) {
    reference_permutation(tc->seed, r, tc->cells, pi);
    dense_xty(tc, g, pi, x);
    dpotrs_("L", &n, &N, a, &n, x, &n, &info, 1);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < N; j++) {
        int64_t e = (int64_t)i * N + j;
        double diff = fabs(x[(int64_t)j * n + i]) - fabs(ref->beta[e]);
        if (diff > tie) ref->lo[e]++, ref->hi[e]++;
        else if (diff >= -tie) ref->hi[e]++, ref->ties++;
      }
  }
  free(a), free(x), free(pi);
}

/* ---- one-sample Kolmogorov-Smirnov against U(0, 1) ---- */

/* Kolmogorov's limit Q(t) = P(sqrt(n) D > t) = 2 sum_k (-1)^(k-1) exp(-2 k^2 t^2). */
static double kolmogorov_q(double t) {
  if (t < 0.2) return 1.0; /* the series needs many terms near 0, where Q is 1 to 1e-20 */
  double q = 0;
  for (int k = 1; k <= 100; k++) q += (k % 2 ? 2.0 : -2.0) * exp(-2.0 * k * k * t * t);
  return fmin(fmax(q, 0.0), 1.0);
}

/* Asymptotic p-value with Stephens' small-sample correction
 * t = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) D. Sorts u. */
static double ks_uniform_pvalue(double *u, int n, double *d_out) {
  qsort(u, (size_t)n, sizeof *u, cmp_double);
  double d = 0;
  for (int i = 0; i < n; i++) d = fmax(d, fmax((i + 1.0) / n - u[i], u[i] - (double)i / n));
  *d_out = d;
  return kolmogorov_q((sqrt((double)n) + 0.12 + 0.11 / sqrt((double)n)) * d);
}

/* The KS code itself: the tabulated 5% and 1% points of Kolmogorov's
 * distribution, a perfectly even sample, and a clearly skewed one. */
static int check_ks(int rank) {
  enum { n = 200 };
  double u[n], d_even, d_skew;
  for (int i = 0; i < n; i++) u[i] = (i + 0.5) / n;
  double p_even = ks_uniform_pvalue(u, n, &d_even);
  for (int i = 0; i < n; i++) u[i] = ((i + 0.5) / n) * ((i + 0.5) / n);
  double p_skew = ks_uniform_pvalue(u, n, &d_skew);
  double q05 = kolmogorov_q(1.3581), q01 = kolmogorov_q(1.6276);
  int bad = fabs(q05 - 0.05) > 1e-4 || fabs(q01 - 0.01) > 1e-4 || p_even < 0.999 || p_skew > 1e-6;
  if (rank == 0)
    printf("%s KS: Q(1.3581) = %.4f, Q(1.6276) = %.4f; even sample p %.3f; u^2 sample D %.3f, p %.1e\n",
           bad ? "FAIL" : "ok  ", q05, q01, p_even, d_skew, p_skew);
  return bad;
}

/* Permutation p-values are c / R with c in {0, ..., R}, uniform on those R + 1
 * values under the null (|B| ranks uniformly among the R + 1 values), not
 * continuous: a KS test on c / R itself would reject for the atoms alone. So
 * each count is spread over its cell, u = (c + h) / (R + 1) with h in (0, 1) a
 * fixed pseudo-random jitter per gene, which is exactly U(0, 1) under the null. */
static double ks_of_row(const double *pvalues, int row, int N, int R, int g0, int g1, double *d) {
  double *u = xcalloc((size_t)(g1 - g0), sizeof *u);
  for (int j = g0; j < g1; j++) {
    ps_rng r = ps_rng_make(99u, (uint64_t)j);
    u[j - g0] = (round(pvalues[(int64_t)row * N + j] * R) + ps_rng_uniform(&r)) / (R + 1.0);
  }
  double p = ks_uniform_pvalue(u, g1 - g0, d);
  free(u);
  return p;
}

/* ---- cases ---- */

/* Every rank checks its replicated p-values against rank 0's reference. */
static int compare(const test_case *tc, const reference *ref, const double *beta, const double *pvalues,
                   MPI_Comm comm, double *beta_err, int64_t *mismatches) {
  int n = tc->K + 1, N = tc->genes;
  int64_t entries = (int64_t)n * N, bad = 0;
  double err = 0;
  for (int64_t e = 0; e < entries; e++) {
    err = fmax(err, fabs(beta[e] - ref->beta[e]));
    /* p must be exactly count / R for an integer count within the reference's bounds. */
    double c = round(pvalues[e] * tc->R);
    if (pvalues[e] != c / tc->R || c < ref->lo[e] || c > ref->hi[e]) bad++;
  }
  *beta_err = err / max_abs(ref->beta, entries);
  MPI_Allreduce(MPI_IN_PLACE, beta_err, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(&bad, mismatches, 1, MPI_INT64_T, MPI_SUM, comm);
  return *beta_err > 1e-10 || *mismatches > 0;
}

static void bcast_reference(const test_case *tc, reference *ref, MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int64_t entries = (int64_t)(tc->K + 1) * tc->genes;
  if (rank != 0) {
    ref->beta = xcalloc((size_t)entries, sizeof *ref->beta);
    ref->lo = xcalloc((size_t)entries, sizeof *ref->lo);
    ref->hi = xcalloc((size_t)entries, sizeof *ref->hi);
  }
  MPI_Bcast(ref->beta, (int)entries, MPI_DOUBLE, 0, comm);
  MPI_Bcast(ref->lo, (int)entries, MPI_INT32_T, 0, comm);
  MPI_Bcast(ref->hi, (int)entries, MPI_INT32_T, 0, comm);
  MPI_Bcast(&ref->ties, 1, MPI_INT64_T, 0, comm);
}

static uint64_t checksum(const double *p, int64_t n) { /* FNV-1a over the counts, to compare runs by eye */
  uint64_t h = 1469598103934665603ULL;
  for (int64_t e = 0; e < n; e++) {
    h ^= (uint64_t)llround(p[e] * 1e6);
    h *= 1099511628211ULL;
  }
  return h;
}

typedef struct {
  int check_effects; /* the null / strong perturbation checks (K >= 2, N > N_MODERATE) */
  int check_batched; /* also run with a budget that makes batches of 7 */
  int check_combined;
} case_checks;

static int run_case(const test_case *tc, case_checks checks, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int n = tc->K + 1, N = tc->genes, failures = 0;
  int64_t entries = (int64_t)n * N;
  global_problem g;
  generate(tc, 20250301u + (uint64_t)tc->K, &g);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc->K, tc->genes, &g, begin, end, &d, &y);

  ps_ridge fit;
  double *pvalues = NULL;
  ps_ridge_perm_options opt;
  ps_ridge_perm_options_default(&opt);
  opt.n_permutations = tc->R;
  opt.seed = tc->seed;
  int err = ps_ridge_fit(comm, &d, &y, tc->lambda, &fit);
  MPI_Barrier(comm);
  double t0 = MPI_Wtime();
  if (!err) err = ps_ridge_permutation_pvalues(comm, &d, &y, tc->lambda, &opt, &fit, &pvalues);
  double seconds = MPI_Wtime() - t0;
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  if (err || !pvalues) {
    if (rank == 0) printf("FAIL %s: returned %d: %s\n", tc->name, err, ps_error_message());
    failures = 1;
    goto done;
  }

  reference ref = {0};
  if (rank == 0) build_reference(tc, &g, &ref);
  bcast_reference(tc, &ref, comm);
  double beta_err;
  int64_t mismatches;
  int bad = compare(tc, &ref, fit.beta, pvalues, comm, &beta_err, &mismatches);
  failures += bad;
  if (rank == 0)
    printf("%s %s (np %d, K %d, %lld cells, %d genes, R %d): p == brute-force reference on %lld entries "
           "(%lld mismatches, %lld near-ties skipped), beta rel err %.1e; %.3f s, %.0f permutations/s, "
           "batch %d, checksum %016llx\n",
           bad ? "FAIL" : "ok  ", tc->name, size, tc->K, (long long)tc->cells, N, tc->R, (long long)entries,
           (long long)mismatches, (long long)ref.ties, beta_err, seconds, tc->R / seconds,
           ps_ridge_perm_batch(n, N, tc->R, opt.batch_bytes), (unsigned long long)checksum(pvalues, entries));

  if (checks.check_effects && rank == 0) {
    /* Row 2 is perturbation 1, which moves nothing. Its KS runs over the
     * noise-only genes: on genes another perturbation moves, shuffling whole
     * design rows also scrambles that effect into every B_r, which widens the
     * permutation distribution and makes p conservative (larger) there. That
     * is the method, not a bug; the all-genes KS is printed for information. */
    double d_null, d_all, d_strong;
    double ks_null = ks_of_row(pvalues, 2, N, tc->R, N_MODERATE, N, &d_null);
    double ks_all = ks_of_row(pvalues, 2, N, tc->R, 0, N, &d_all);
    double ks_strong = ks_of_row(pvalues, 1, N, tc->R, 0, N, &d_strong);
    double strong_max = 0, strong_rest = 0;
    for (int j = 0; j < N_STRONG; j++) strong_max = fmax(strong_max, pvalues[(int64_t)N + j]);
    for (int j = N_STRONG; j < N; j++) strong_rest += pvalues[(int64_t)N + j] / (N - N_STRONG);
    int ok_null = ks_null > 0.01, ok_strong = strong_max == 0.0;
    printf("%s   no-effect perturbation, %d noise-only genes: KS D %.4f, p %.4f (all %d genes: D %.4f, p %.4f)\n",
           ok_null ? "ok  " : "FAIL", N - N_MODERATE, d_null, ks_null, N, d_all, ks_all);
    printf("%s   strong perturbation (+%.1f): max p over its %d genes %.4f; mean p on its other genes %.3f; "
           "KS of its row, all genes, D %.4f p %.2e\n",
           ok_strong ? "ok  " : "FAIL", STRONG, N_STRONG, strong_max, strong_rest, d_strong, ks_strong);
    failures += !ok_null + !ok_strong;
  }

  if (checks.check_batched) { /* batches of 7: 200 = 28 x 7 + 4 exercises a short last batch */
    ps_ridge_perm_options small = opt;
    small.batch_bytes = 7 * 2 * (int64_t)sizeof(double) * n * N;
    double *p2 = NULL;
    t0 = MPI_Wtime();
    int e2 = ps_ridge_permutation_pvalues(comm, &d, &y, tc->lambda, &small, &fit, &p2);
    double s2 = MPI_Wtime() - t0;
    int64_t differ = 0, mm = 0;
    if (!e2)
      for (int64_t e = 0; e < entries; e++) differ += p2[e] != pvalues[e];
    int bad2 = e2 || compare(tc, &ref, fit.beta, p2, comm, &beta_err, &mm);
    failures += bad2;
    if (rank == 0)
      printf("%s   batched (batch %d of %d): p == reference (%lld mismatches), %lld entries differ from one batch; "
             "%.0f permutations/s\n",
             bad2 ? "FAIL" : "ok  ", ps_ridge_perm_batch(n, N, tc->R, small.batch_bytes), tc->R, (long long)mm,
             (long long)differ, tc->R / s2);
    free(p2);
  }

  if (checks.check_combined) {
    /* One factorization for both: the fit then comes from the inverse factor
     * (ridge_perm.c), not pdpotrs, so beta agrees with ps_ridge_fit to rounding
     * and the p-values with the brute force within its near-tie bounds. */
    ps_ridge fit2;
    double *p3 = NULL, err3 = 0;
    int64_t mm3 = 0;
    int e3 = ps_ridge_fit_pvalues(comm, &d, &y, tc->lambda, &opt, &fit2, &p3);
    int bad3 = e3 || compare(tc, &ref, fit2.beta, p3, comm, &err3, &mm3);
    double scale = e3 ? 1 : max_abs(fit.beta, entries), diff = 0;
    for (int64_t e = 0; !e3 && e < entries; e++) diff = fmax(diff, fabs(fit2.beta[e] - fit.beta[e]) / scale);
    MPI_Allreduce(MPI_IN_PLACE, &diff, 1, MPI_DOUBLE, MPI_MAX, comm);
    bad3 |= !(diff <= 1e-12);
    MPI_Allreduce(MPI_IN_PLACE, &bad3, 1, MPI_INT, MPI_MAX, comm);
    failures += bad3;
    if (rank == 0)
      printf("%s   ps_ridge_fit_pvalues: p == reference (%lld mismatches), beta rel err %.1e vs reference, "
             "%.1e vs ps_ridge_fit\n",
             bad3 ? "FAIL" : "ok  ", (long long)mm3, err3, diff);
    if (!e3) ps_ridge_free(&fit2);
    free(p3);
  }
  reference_free(&ref);

done:
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_MAX, comm);
  free(pvalues);
  ps_ridge_free(&fit);
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return failures;
}

/* Larger problem, timing only (the brute force would dominate the test's time). */
static int run_timing(const test_case *tc, MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  global_problem g;
  generate(tc, 5u, &g);
  int64_t begin, end;
  ps_block_range(tc->cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc->K, tc->genes, &g, begin, end, &d, &y);
  ps_ridge_perm_options opt;
  ps_ridge_perm_options_default(&opt);
  opt.n_permutations = tc->R;
  opt.seed = tc->seed;
  ps_ridge fit;
  double *pvalues = NULL;
  MPI_Barrier(comm);
  double t0 = MPI_Wtime();
  int err = ps_ridge_fit(comm, &d, &y, tc->lambda, &fit);
  double t1 = MPI_Wtime();
  if (!err) err = ps_ridge_permutation_pvalues(comm, &d, &y, tc->lambda, &opt, &fit, &pvalues);
  double t2 = MPI_Wtime(), fit_s = t1 - t0, perm_s = t2 - t1;
  MPI_Allreduce(MPI_IN_PLACE, &fit_s, 1, MPI_DOUBLE, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &perm_s, 1, MPI_DOUBLE, MPI_MAX, comm);
  int64_t entries = (int64_t)(tc->K + 1) * tc->genes, out = 0;
  for (int64_t e = 0; !err && e < entries; e++) out += !(pvalues[e] >= 0 && pvalues[e] <= 1);
  int bad = err || out;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0)
    printf("%s timing %s (np %d, K %d, %lld cells, %d genes, R %d): fit %.3f s, permutations %.3f s = "
           "%.1f permutations/s (%.2f fits' time each), batch %d\n",
           bad ? "FAIL" : "ok  ", tc->name, size, tc->K, (long long)tc->cells, tc->genes, tc->R, fit_s, perm_s,
           tc->R / perm_s, perm_s / tc->R / fit_s, ps_ridge_perm_batch(tc->K + 1, tc->genes, tc->R, opt.batch_bytes));
  free(pvalues);
  if (!err) ps_ridge_free(&fit);
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return bad;
}

/* The two ways of forming X^T Y_r (ridge_perm.c: by row, by gene tile; forced with
 * PERTSCORE_PERM_RHS) add the same values in the same order: beta and the
 * p-values must agree bit for bit, on low and high MOI. */
static int run_paths_equal(const test_case *tc, MPI_Comm comm) {
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
  ps_ridge_perm_options opt;
  ps_ridge_perm_options_default(&opt);
  opt.n_permutations = tc->R;
  opt.seed = tc->seed;
  const char *paths[2] = {"rows", "tiles"};
  ps_ridge fit[2];
  double *pvalues[2] = {NULL, NULL};
  int err = 0;
  for (int i = 0; i < 2; i++) {
    setenv("PERTSCORE_PERM_RHS", paths[i], 1);
    err |= ps_ridge_fit_pvalues(comm, &d, &y, tc->lambda, &opt, &fit[i], &pvalues[i]);
  }
  unsetenv("PERTSCORE_PERM_RHS");
  int64_t entries = (int64_t)(tc->K + 1) * tc->genes;
  int same_beta = !err && !memcmp(fit[0].beta, fit[1].beta, (size_t)entries * sizeof(double));
  int same_p = !err && !memcmp(pvalues[0], pvalues[1], (size_t)entries * sizeof(double));
  int bad = !same_beta || !same_p;
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0)
    printf("%s %s (np %d): X^T Y_r by row and by gene tile: beta %s, p-values %s\n", bad ? "FAIL" : "ok  ", tc->name,
           size, same_beta ? "bitwise equal" : "DIFFER", same_p ? "bitwise equal" : "DIFFER");
  for (int i = 0; i < 2; i++) {
    free(pvalues[i]);
    if (!err) ps_ridge_free(&fit[i]);
  }
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return bad;
}

/* R = 0 gives no p-values; bad arguments fail the same way on every rank. */
static int run_argument_checks(MPI_Comm comm) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  test_case tc = {"", 3, 60, 5, MOI_LOW, 0.01, 10, 1};
  global_problem g;
  generate(&tc, 3u, &g);
  int64_t begin, end;
  ps_block_range(tc.cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  take_block(tc.K, tc.genes, &g, begin, end, &d, &y);
  ps_ridge fit;
  int failures = ps_ridge_fit(comm, &d, &y, tc.lambda, &fit) != PS_OK;
  ps_ridge_perm_options opt;
  ps_ridge_perm_options_default(&opt);
  double *p = (double *)&opt; /* must come back NULL */
  opt.n_permutations = 0;
  int e0 = ps_ridge_permutation_pvalues(comm, &d, &y, tc.lambda, &opt, &fit, &p);
  int ok_zero = e0 == PS_OK && p == NULL;
  opt.n_permutations = -1;
  int e1 = ps_ridge_permutation_pvalues(comm, &d, &y, tc.lambda, &opt, &fit, &p);
  int ok_neg = e1 == PS_ERR_INPUT && p == NULL && strstr(ps_error_message(), "permutations");
  ps_error_clear();
  opt.n_permutations = 5;
  int e2 = ps_ridge_permutation_pvalues(comm, &d, &y, 1.0, &opt, &fit, &p); /* fit has lambda 0.01 */
  int ok_fit = e2 == PS_ERR_INPUT && p == NULL && strstr(ps_error_message(), "not of this problem");
  ps_error_clear();
  failures += !ok_zero + !ok_neg + !ok_fit;
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_MAX, comm);
  if (rank == 0)
    printf("%s arguments (np %d): R = 0 -> no p-values %s; R < 0 -> %s; fit of another lambda -> %s\n",
           failures ? "FAIL" : "ok  ", size, ok_zero ? "ok" : "BAD", ok_neg ? "input error" : "BAD",
           ok_fit ? "input error" : "BAD");
  ps_ridge_free(&fit);
  ps_design_free(&d);
  ps_csr_free(&y);
  global_problem_free(&g);
  return failures;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank;
  MPI_Comm_rank(comm, &rank);
  int failures = check_generator(rank) + check_ks(rank);

  /* The brief's check: N = 300 (200 noise-only genes for the KS), R = 200. */
  const test_case main_case = {"null and strong effects", 5, 2000, 300, MOI_LOW, 0.01, 200, 12345};
  failures += run_case(&main_case, (case_checks){1, 1, 1}, comm);
  const test_case high_moi = {"high MOI", 30, 1500, 60, MOI_HIGH, 0.01, 60, 777};
  failures += run_case(&high_moi, (case_checks){0, 0, 1}, comm);
  const test_case large_lambda = {"high MOI, lambda 5", 12, 800, 40, MOI_HIGH, 5.0, 40, 3};
  failures += run_case(&large_lambda, (case_checks){0, 0, 0}, comm);
  const test_case tiny = {"2 cells (a rank without cells)", 3, 2, 5, MOI_HIGH, 0.01, 10, 9};
  failures += run_case(&tiny, (case_checks){0, 0, 0}, comm);
  failures += run_argument_checks(comm);
  const test_case paths_low = {"paths, low MOI", 40, 3000, 70, MOI_LOW, 0.01, 30, 21};
  failures += run_paths_equal(&paths_low, comm);
  const test_case paths_high = {"paths, high MOI", 25, 1200, 45, MOI_HIGH, 0.3, 20, 22};
  failures += run_paths_equal(&paths_high, comm);

  const test_case timing = {"K 200, 10000 cells", 200, 10000, 500, MOI_LOW, 0.01, 100, 1};
  failures += run_timing(&timing, comm);

  if (rank == 0) printf("test_ridge_perm: %d failure(s)\n", failures);
  MPI_Finalize();
  return failures ? 1 : 0;
}
