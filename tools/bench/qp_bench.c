/* qp_bench: the per-cell QP stage (ps_score_cells, SPEC.md section 3) on a synthetic
 * screen of a given shape, without reading or fitting anything. Not a test.
 *
 *   mpirun -n P qp_bench [--cells M] [--perturbations K] [--genes N] [--moi MEAN]
 *                        [--lambda L] [--seed S] [PETSc options]
 *
 * Defaults are the jurkat-genome shape (SPEC section 8 simulator, issue #8):
 * K = 18,595, N = 374, Poisson MOI 13 (at least 1 per cell). M defaults to
 * 100,000 cells over all ranks. Beta rows are random (most perturbations affect
 * a few genes strongly, every gene weakly, as a ridge fit gives); each cell's
 * expression is basal + sum of its perturbations' rows times a random efficiency
 * in {0, .25, .5, .75, 1} + noise, clamped at 0 (about a third of the entries are
 * zeros, left out of the CSR). Prints cells/s/rank and the stage statistics; with
 * PERTSCORE_STATS=PREFIX also writes them like pertscore does. */
#include "pertscore/score.h"

#include <math.h>
#include <petscsys.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double uniform(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return ((*s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double normal(uint64_t *s) { return sqrt(-2.0 * log(uniform(s))) * cos(6.283185307179586 * uniform(s)); }
static int poisson(uint64_t *s, double mean) {
  double limit = exp(-mean), prod = uniform(s);
  int n = 0;
  while (prod > limit) prod *= uniform(s), n++;
  return n;
}

static void die(const char *what) {
  fprintf(stderr, "qp_bench: %s: %s (%s)\n", what, ps_error_message(), ps_error_where());
  MPI_Abort(MPI_COMM_WORLD, 1);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int64_t cells = 100000;
  int32_t K = 18595, N = 374;
  double moi = 13.0, lambda = 0.01;
  uint64_t seed = 12345;
  int petsc_argc = 1;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && !strcmp(argv[i], "--cells")) cells = atoll(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--perturbations")) K = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--genes")) N = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--moi")) moi = atof(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--lambda")) lambda = atof(argv[++i]);
    else if (i + 1 < argc && !strcmp(argv[i], "--seed")) seed = strtoull(argv[++i], NULL, 10);
    else argv[petsc_argc++] = argv[i]; /* PETSc options pass through */
  }
  argc = petsc_argc;
  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1;

  /* Beta: the same on every rank (seeded identically). */
  ps_ridge ridge = {.n_rows = K + 1, .n_genes = N, .lambda = 0.01};
  ridge.beta = malloc((size_t)(K + 1) * N * sizeof *ridge.beta);
  uint64_t s = seed | 1;
  for (int n = 0; n < N; n++) ridge.beta[n] = 0.5 + 2.0 * uniform(&s);
  for (int32_t k = 0; k < K; k++) {
    double *row = ridge.beta + (size_t)(k + 1) * N;
    for (int n = 0; n < N; n++) row[n] = 0.01 * normal(&s);
    for (int t = 0; t < 5; t++) row[(int)(uniform(&s) * N)] += 0.5 * normal(&s); /* a few real targets */
  }

  int64_t begin, end;
  ps_block_range(cells, rank, size, &begin, &end);
  const int64_t local = end - begin;
  ps_design design = {.n_perturbations = K, .n_cells = local};
  for (int32_t k = 0; k < K; k++) {
    char name[32];
    snprintf(name, sizeof name, "P%06d", (int)k);
    if (ps_strlist_push(&design.names, name)) die("names");
  }
  int64_t cap = (int64_t)(local * (moi + 4)) + 64;
  design.ptr = calloc((size_t)local + 1, sizeof *design.ptr);
  design.ids = malloc((size_t)cap * sizeof *design.ids);
  ps_csr y = {.n_rows = local, .n_cols = N};
  y.indptr = calloc((size_t)local + 1, sizeof *y.indptr);
  y.indices = malloc((size_t)local * N * sizeof *y.indices);
  y.data = malloc((size_t)local * N * sizeof *y.data);
  double *dense = malloc((size_t)N * sizeof *dense);
  for (int64_t j = 0; j < local; j++) {
    uint64_t cs = (seed * 0x9e3779b97f4a7c15ull) ^ (uint64_t)(begin + j + 1) * 0xbf58476d1ce4e5b9ull;
    for (int w = 0; w < 4; w++) uniform(&cs);
    int d = poisson(&cs, moi);
    if (d < 1) d = 1;
    int64_t at = design.ptr[j];
    if (at + d > cap) {
      cap = 2 * (at + d);
      design.ids = realloc(design.ids, (size_t)cap * sizeof *design.ids);
    }
    for (int a = 0; a < d; a++) { /* distinct, sorted ids */
      int32_t k;
      int dup;
      do {
        k = (int32_t)(uniform(&cs) * K);
        dup = 0;
        for (int b = 0; b < a; b++) dup |= design.ids[at + b] == k;
      } while (dup);
      int b = a;
      while (b > 0 && design.ids[at + b - 1] > k) design.ids[at + b] = design.ids[at + b - 1], b--;
      design.ids[at + b] = k;
    }
    design.ptr[j + 1] = at + d;
    for (int n = 0; n < N; n++) dense[n] = ridge.beta[n] + 0.3 * normal(&cs);
    for (int a = 0; a < d; a++) {
      double e = 0.25 * (int)(uniform(&cs) * 5);
      const double *row = ridge.beta + (size_t)(design.ids[at + a] + 1) * N;
      for (int n = 0; n < N; n++) dense[n] += e * row[n];
    }
    int64_t q = y.indptr[j];
    for (int n = 0; n < N; n++)
      if (dense[n] > 0.6) y.indices[q] = n, y.data[q++] = dense[n];
    y.indptr[j + 1] = q;
  }
  free(dense);
  int64_t entries = design.ptr[local], nnz = y.indptr[local];

  ps_score_options opt;
  ps_score_options_default(&opt);
  opt.lambda = lambda;
  ps_scores out;
  ps_stats_clear();
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  clock_t c0 = clock();
  if (ps_score_cells(MPI_COMM_WORLD, &design, &y, &ridge, &opt, NULL, &out)) die("ps_score_cells");
  /* CPU time too: on a shared machine the wall clock also counts other people's work */
  double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC, slowest_cpu = cpu;
  double secs = MPI_Wtime() - t0, slowest = secs;
  MPI_Allreduce(MPI_IN_PLACE, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &slowest_cpu, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  double fallback = ps_stats_get("qp.fallback_cells");
  MPI_Allreduce(MPI_IN_PLACE, &fallback, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    printf("qp_bench: %lld cells x %d perturbations (mean %.2f per cell), %d genes (%.0f%% stored), %d rank%s\n",
           (long long)cells, (int)K, (double)entries / (double)local, (int)N, 100.0 * (double)nnz / ((double)local * N),
           size, size == 1 ? "" : "s");
    printf("qp_bench: wall %.3f s (slowest rank) = %.0f cells/s/rank; CPU %.3f s = %.0f cells/CPU-s/rank\n", slowest,
           (double)cells / size / slowest, slowest_cpu, (double)cells / size / slowest_cpu);
    printf("qp_bench: QPs %lld, max KKT %.3g, TAO fallback cells %.0f (%lld over all ranks)\n", (long long)out.n_qp,
           out.max_kkt, fallback, (long long)out.n_tao);
  }
  if (ps_stats_write_env(rank)) die("stats");
  ps_scores_free(&out);
  ps_design_free(&design);
  ps_csr_free(&y);
  free(ridge.beta);
  PetscFinalize();
  MPI_Finalize();
  return 0;
}
