/* Unit test of the scoring options of SPEC.md section 9 in ps_score_cells:
 * --gene-weights residual (the weighted QP), --qp-genes own (each cell's QP over its
 * perturbations' targets) and perturbations left unscored. Everything the test
 * expects is recomputed here from the dense data, not from pertscore:
 *   - the weights: v_g = mean over cells of (y_jg - x_j^T B_g)^2, floored at 0.1 median,
 *     w = (1/v) / mean(1/v);
 *   - per cell, the KKT conditions of min 1/2 sum_{g in G_j} w_g (r_g - sum psi_k B_kg)^2
 *     + lambda sum psi, 0 <= psi <= U, at the returned psi (projected gradient of the
 *     weighted problem below 1e-6 of max |c| + lambda);
 *   - one perturbation: the closed form psi = clip((sum w r B - lambda) / sum w B^2, 0, U);
 *   - unscored perturbations: NaN entries, counted, not variables of the others' QPs.
 * Every rank generates all cells and keeps its block (the weights are sums over ranks). */
#include <string.h>

#include "../common/ps_test.h"
#include "pertscore/score.h"

#include <petscsys.h>

enum { K = 4, N = 30, CELLS = 90 };

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1;
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  test_rng_seed(20261207);
  static const char *names[K] = {"A", "B", "C", "D"};
  ps_ridge ridge = {.n_rows = K + 1, .n_genes = N, .lambda = 0.01};
  ridge.beta = xcalloc((size_t)(K + 1) * N, sizeof *ridge.beta);
  for (int n = 0; n < N; n++) {
    ridge.beta[n] = 1.0 + unif();
    for (int k = 0; k < K; k++) ridge.beta[(k + 1) * N + n] = 0.4 * normal();
  }
  /* own targets: A genes 0..9, B 5..14, C 12..24, D 20..29 (overlapping); D is left unscored */
  static const int lo[K] = {0, 5, 12, 20}, hi[K] = {10, 15, 25, 30};
  int64_t own_ptr[K + 1] = {0};
  int32_t own_cols[N * K];
  for (int k = 0; k < K; k++) {
    own_ptr[k + 1] = own_ptr[k];
    for (int g = lo[k]; g < hi[k]; g++) own_cols[own_ptr[k + 1]++] = g;
  }
  const uint8_t unscored[K] = {0, 0, 0, 1};
  static const int sets[6][3] = {{0}, {1}, {2}, {3}, {0, 1}, {1, 2, 3}};
  static const int sizes[6] = {1, 1, 1, 1, 2, 3};
  static double dense[CELLS][N], noise_sd[N];
  int cell_set[CELLS];
  for (int n = 0; n < N; n++) noise_sd[n] = 0.05 + 0.5 * unif(); /* genes of very different noise */
  for (int j = 0; j < CELLS; j++) {
    int s = j % 7 == 0 ? -1 : j % 6;
    cell_set[j] = s;
    int d = s < 0 ? 0 : sizes[s];
    double e[3];
    for (int a = 0; a < d; a++) e[a] = 3.5 * unif(); /* some above U = 3: hits the bound */
    for (int n = 0; n < N; n++) {
      double v = ridge.beta[n] + noise_sd[n] * normal();
      for (int a = 0; a < d; a++) v += e[a] * ridge.beta[(sets[s][a] + 1) * N + n];
      dense[j][n] = n % 11 == 4 ? 0.0 : v; /* some zeros: left out of the CSR */
    }
  }
  int64_t begin, end;
  ps_block_range(CELLS, rank, size, &begin, &end);
  const int64_t local = end - begin;
  ps_design design = {0};
  design.n_perturbations = K;
  for (int k = 0; k < K; k++) CHECK_PS(ps_strlist_push(&design.names, names[k]));
  design.n_cells = local;
  design.ptr = xcalloc((size_t)local + 1, sizeof *design.ptr);
  design.ids = xcalloc((size_t)local * 3 + 1, sizeof *design.ids);
  ps_csr y = {.n_rows = local, .n_cols = N};
  y.indptr = xcalloc((size_t)local + 1, sizeof *y.indptr);
  y.indices = xcalloc((size_t)local * N + 1, sizeof *y.indices);
  y.data = xcalloc((size_t)local * N + 1, sizeof *y.data);
  for (int64_t jl = 0; jl < local; jl++) {
    int s = cell_set[begin + jl], d = s < 0 ? 0 : sizes[s];
    design.ptr[jl + 1] = design.ptr[jl] + d;
    for (int a = 0; a < d; a++) design.ids[design.ptr[jl] + a] = sets[s][a];
    y.indptr[jl + 1] = y.indptr[jl];
    for (int n = 0; n < N; n++)
      if (dense[begin + jl][n] != 0.0) {
        y.indices[y.indptr[jl + 1]] = n;
        y.data[y.indptr[jl + 1]++] = dense[begin + jl][n];
      }
  }

  /* the expected weights, from every cell */
  double v[N] = {0}, w[N], sorted[N];
  for (int j = 0; j < CELLS; j++) {
    int s = cell_set[j], d = s < 0 ? 0 : sizes[s];
    for (int n = 0; n < N; n++) {
      double fit = ridge.beta[n];
      for (int a = 0; a < d; a++) fit += ridge.beta[(sets[s][a] + 1) * N + n];
      v[n] += (dense[j][n] - fit) * (dense[j][n] - fit) / CELLS;
    }
  }
  memcpy(sorted, v, sizeof v);
  for (int a = 0; a < N; a++) /* insertion sort for the median */
    for (int b = a; b > 0 && sorted[b] < sorted[b - 1]; b--) {
      double t = sorted[b];
      sorted[b] = sorted[b - 1];
      sorted[b - 1] = t;
    }
  double median = 0.5 * (sorted[N / 2 - 1] + sorted[N / 2]), mean_inv = 0;
  for (int n = 0; n < N; n++) mean_inv += 1.0 / fmax(v[n], 0.1 * median) / N;
  int floored = 0;
  for (int n = 0; n < N; n++) {
    w[n] = 1.0 / fmax(v[n], 0.1 * median) / mean_inv;
    floored += v[n] < 0.1 * median;
  }

  for (int own = 0; own <= 1; own++) {
    ps_score_options opt;
    ps_score_options_default(&opt);
    opt.rescale = 0;
    opt.gene_weights = 1;
    opt.unscored = unscored;
    if (own) {
      opt.own_ptr = own_ptr;
      opt.own_cols = own_cols;
    }
    ps_scores out;
    CHECK_PS(ps_score_cells(MPI_COMM_WORLD, &design, &y, &ridge, &opt, NULL, &out));
    double worst_w = 0;
    for (int n = 0; n < N; n++) worst_w = fmax(worst_w, fabs(out.weights[n] - w[n]) / w[n]);
    EXPECT(worst_w <= 1e-12, "own %d: weights differ by %.3g (relative)", own, worst_w);
    double worst_kkt = 0, worst_closed = 0;
    int64_t nan_entries = 0, at_bound = 0, interior = 0;
    for (int64_t jl = 0; jl < local; jl++) {
      int s = cell_set[begin + jl];
      if (s < 0) continue;
      int var[3], d = 0;
      for (int a = 0; a < sizes[s]; a++) {
        double ps = out.ps[design.ptr[jl] + a];
        if (unscored[sets[s][a]]) {
          EXPECT(isnan(ps), "cell %lld: unscored perturbation has PS %g", (long long)(begin + jl), ps);
          nan_entries++;
        } else {
          EXPECT(!isnan(ps), "cell %lld: PS NaN", (long long)(begin + jl));
          var[d++] = a;
        }
      }
      if (d == 0) continue;
      int in_g[N] = {0};
      for (int a = 0; a < d; a++)
        for (int n = 0; n < N; n++) {
          int k = sets[s][var[a]];
          in_g[n] |= !own || (n >= lo[k] && n < hi[k]);
        }
      double psi[3], h[3][3] = {{0}}, c[3] = {0}, scale = opt.lambda;
      for (int a = 0; a < d; a++) psi[a] = out.ps[design.ptr[jl] + var[a]] * opt.upper;
      for (int a = 0; a < d; a++) {
        const double *ba = ridge.beta + (sets[s][var[a]] + 1) * N;
        for (int n = 0; n < N; n++)
          if (in_g[n]) {
            c[a] += w[n] * ba[n] * (dense[begin + jl][n] - ridge.beta[n]);
            for (int b = 0; b < d; b++) h[a][b] += w[n] * ba[n] * ridge.beta[(sets[s][var[b]] + 1) * N + n];
          }
      }
      for (int a = 0; a < d; a++) scale = fmax(scale, fabs(c[a]) + opt.lambda);
      for (int a = 0; a < d; a++) {
        double g = opt.lambda - c[a];
        for (int b = 0; b < d; b++) g += h[a][b] * psi[b];
        double viol = psi[a] <= 0 ? fmax(0, -g) : psi[a] >= opt.upper ? fmax(0, g) : fabs(g);
        worst_kkt = fmax(worst_kkt, viol / scale);
        EXPECT(psi[a] >= 0 && psi[a] <= opt.upper, "psi %g outside the box", psi[a]);
        at_bound += psi[a] <= 0 || psi[a] >= opt.upper;
        interior += psi[a] > 0 && psi[a] < opt.upper;
      }
      if (d == 1) {
        double closed = fmin(opt.upper, fmax(0, (c[0] - opt.lambda) / h[0][0]));
        worst_closed = fmax(worst_closed, fabs(closed - psi[0]));
      }
    }
    MPI_Allreduce(MPI_IN_PLACE, &worst_kkt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &worst_closed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &nan_entries, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &at_bound, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &interior, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    EXPECT(worst_kkt <= 1e-6, "own %d: weighted KKT residual %.3g", own, worst_kkt);
    EXPECT(worst_closed <= 1e-10, "own %d: one-perturbation closed form differs by %.3g", own, worst_closed);
    EXPECT(nan_entries == out.n_unscored_entries && nan_entries > 0, "own %d: %lld NaN entries, counted %lld", own,
           (long long)nan_entries, (long long)out.n_unscored_entries);
    EXPECT(isnan(out.max_raw[3]) && !out.rescaled[3], "own %d: unscored D has max raw %g", own, out.max_raw[3]);
    EXPECT(at_bound > 0 && interior > 0, "own %d: the cases should hit both bounds and interior (%lld, %lld)", own,
           (long long)at_bound, (long long)interior);
    if (rank == 0)
      printf("own genes %d: weights within %.2g (%d floored), weighted KKT %.2g, closed form %.2g, %lld NaN entries, "
             "%lld at a bound, %lld interior\n", own, worst_w, floored, worst_kkt, worst_closed, (long long)nan_entries,
             (long long)at_bound, (long long)interior);
    ps_scores_free(&out);
  }
  free(ridge.beta);
  ps_design_free(&design);
  ps_csr_free(&y);
  PetscFinalize();
  if (rank == 0) printf("%s (%d failure%s of %d checks)\n", failures ? "FAILED" : "passed", failures, failures == 1 ? "" : "s", checks);
  MPI_Finalize();
  return failures ? 1 : 0;
}
