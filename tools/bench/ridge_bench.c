/* ridge_bench: the ridge stage alone (SPEC.md section 2) at a chosen screen
 * shape, for issue #8. Not a test: it prints per-step seconds and rates.
 *
 * Every rank generates its block of M cells in memory (per-cell random streams,
 * so the problem does not depend on the rank count): a Poisson(MOI) set of
 * distinct perturbations out of K per cell, and a sparse Y of N genes (a
 * fraction --density nonzero, log-normal-like values). Then ps_ridge_fit_pvalues
 * runs with R permutations and the ridge.* / perm.* statistics the library
 * records are reported (max over ranks), next to a per-rank cblas_dgemm
 * measured in the same process on all ranks at once, before and after.
 *
 *   mpirun -n 2 env OPENBLAS_NUM_THREADS=1 build/tools/bench/ridge_bench \
 *       --cells 586000 --perturbations 18595 --genes 374 --moi 13 --permutations 100
 */
#include "pertscore/ridge.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int64_t cells;
  int32_t perturbations, genes;
  double moi, density, lambda;
  int permutations;
  int64_t batch_mb;
  uint64_t seed;
  int dgemm_size;
  int adaptive;     /* also time --permutations-adaptive H against the fixed permutations */
  int compare_fuse; /* also time X^T Y_r one pass per permutation vs one pass per batch (issue 17) */
} bench_options;

static void usage(void) {
  fprintf(stderr, "usage: ridge_bench [--cells M] [--perturbations K] [--genes N] [--moi MEAN] [--density F]\n"
                  "                   [--lambda L] [--permutations R] [--batch-mb MB] [--seed S] [--dgemm-size S]\n"
                  "                   [--compare-fuse 1] [--adaptive H]\n");
}

static int parse(int argc, char **argv, bench_options *o) {
  *o = (bench_options){.cells = 586000, .perturbations = 2000, .genes = 374, .moi = 13, .density = 0.6,
                       .lambda = 0.01, .permutations = 100, .batch_mb = 256, .seed = 1, .dgemm_size = 2000};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return 1;
    if (!strcmp(a, "--cells")) o->cells = atoll(v);
    else if (!strcmp(a, "--perturbations")) o->perturbations = atoi(v);
    else if (!strcmp(a, "--genes")) o->genes = atoi(v);
    else if (!strcmp(a, "--moi")) o->moi = atof(v);
    else if (!strcmp(a, "--density")) o->density = atof(v);
    else if (!strcmp(a, "--lambda")) o->lambda = atof(v);
    else if (!strcmp(a, "--permutations")) o->permutations = atoi(v);
    else if (!strcmp(a, "--batch-mb")) o->batch_mb = atoll(v);
    else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--dgemm-size")) o->dgemm_size = atoi(v);
    else if (!strcmp(a, "--compare-fuse")) o->compare_fuse = atoi(v);
    else if (!strcmp(a, "--adaptive")) o->adaptive = atoi(v);
    else return 1;
    i++;
  }
  return o->cells < 1 || o->perturbations < 1 || o->genes < 1 || o->moi < 0 || o->density <= 0 ||
         o->density > 1 || o->permutations < 0 || o->batch_mb < 1 || o->dgemm_size < 1;
}

static int cmp_int32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fprintf(stderr, "ridge_bench: out of memory (%zu x %zu bytes)\n", n, size);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return p;
}

/* This rank's cells [begin, end): design rows and Y, from per-cell streams. */
static void generate(const bench_options *o, int64_t begin, int64_t end, ps_design *d, ps_csr *y) {
  int64_t n = end - begin, cap_ids = (int64_t)(n * (o->moi + 6 * sqrt(o->moi + 1) + 2)) + 64;
  int64_t cap_y = (int64_t)((double)n * o->genes * o->density * 1.1) + 64 * (int64_t)o->genes;
  memset(d, 0, sizeof *d);
  memset(y, 0, sizeof *y);
  d->n_perturbations = o->perturbations;
  d->n_cells = n;
  d->ptr = xcalloc((size_t)n + 1, sizeof *d->ptr);
  d->ids = xcalloc((size_t)cap_ids, sizeof *d->ids);
  y->n_rows = n;
  y->n_cols = o->genes;
  y->indptr = xcalloc((size_t)n + 1, sizeof *y->indptr);
  y->indices = xcalloc((size_t)cap_y, sizeof *y->indices);
  y->data = xcalloc((size_t)cap_y, sizeof *y->data);
  for (int64_t c = 0; c < n; c++) {
    ps_rng r = ps_rng_make(o->seed, (uint64_t)(begin + c));
    int64_t want = ps_rng_poisson(&r, o->moi);
    if (want > o->perturbations) want = o->perturbations;
    int32_t *ids = d->ids + d->ptr[c];
    int64_t s = 0;
    if (d->ptr[c] + want > cap_ids) want = cap_ids - d->ptr[c]; /* a far tail: never at these moments */
    while (s < want) {
      int32_t id = (int32_t)(ps_rng_uniform(&r) * o->perturbations), dup = 0;
      for (int64_t q = 0; q < s; q++) dup |= ids[q] == id;
      if (!dup) ids[s++] = id;
    }
    qsort(ids, (size_t)s, sizeof *ids, cmp_int32);
    d->ptr[c + 1] = d->ptr[c] + s;
    int64_t nz = y->indptr[c];
    for (int32_t g = 0; g < o->genes && nz < cap_y; g++) {
      if (ps_rng_uniform(&r) >= o->density) continue;
      double v = log1p(20.0 * ps_rng_uniform(&r));
      for (int64_t q = 0; q < s; q++) v += ids[q] % 97 == g % 97 ? 0.3 : 0.0; /* a few real effects */
      y->indices[nz] = g;
      y->data[nz++] = v;
    }
    y->indptr[c + 1] = nz;
  }
}

/* Per-rank dgemm GFLOP/s, every rank at once (the ranks share the machine as in the ridge run). */
static double dgemm_rate(MPI_Comm comm, int size) {
  double *a = xcalloc((size_t)size * size, sizeof *a), *b = xcalloc((size_t)size * size, sizeof *b),
         *c = xcalloc((size_t)size * size, sizeof *c);
  for (int64_t i = 0; i < (int64_t)size * size; i++) a[i] = b[i] = 1.0 / (double)(1 + i % 7);
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    MPI_Barrier(comm);
    double t = MPI_Wtime();
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, size, size, size, 1.0, a, size, b, size, 0.0, c, size);
    t = MPI_Wtime() - t;
    double rate = 2.0 * size * (double)size * size / t / 1e9;
    if (rate > best) best = rate;
  }
  free(a), free(b), free(c);
  return best;
}

/* Streaming read bandwidth per rank, every rank at once (GB/s): the ceiling of
 * the X^T Y_r kernel, whose floor is its bytes (rhs_bytes) over this. */
static double stream_rate(MPI_Comm comm) {
  size_t n = (size_t)32 << 20; /* 256 MB of doubles, far past the caches */
  double *a = xcalloc(n, sizeof *a), best = 0, sink = 0;
  for (size_t i = 0; i < n; i++) a[i] = (double)(i & 7);
  for (int rep = 0; rep < 3; rep++) {
    MPI_Barrier(comm);
    double t = MPI_Wtime(), s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < n; i += 4) s0 += a[i], s1 += a[i + 1], s2 += a[i + 2], s3 += a[i + 3];
    t = MPI_Wtime() - t;
    sink += s0 + s1 + s2 + s3;
    if (n * sizeof *a / t / 1e9 > best) best = n * sizeof *a / t / 1e9;
  }
  free(a);
  return sink < 0 ? 0 : best;
}

/* Bytes X^T Y_r has to move on this rank for R permutations in passes of Q:
 * the gene-tiled y once per pass (a byte slot and a double per entry, a cell
 * index and an offset per run of a cell in a 16-gene tile), per permutation its
 * permuted row lists (written, read) and its (K + 1) x N sums (tile, then rhs). */
static double rhs_bytes(const ps_design *d, const ps_csr *y, int n_genes, int R, int Q) {
  int64_t runs = 0, tiles = (n_genes + 15) / 16;
  int64_t *mark = xcalloc((size_t)tiles, sizeof *mark);
  for (int64_t c = 0; c < y->n_rows; c++)
    for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++) {
      int64_t t = y->indices[p] / 16;
      if (mark[t] != c + 1) mark[t] = c + 1, runs++;
    }
  free(mark);
  double ybytes = 9.0 * (double)y->indptr[y->n_rows] + 12.0 * (double)runs;
  double per = 2.0 * (8.0 * (y->n_rows + 1) + 4.0 * (double)(y->n_rows + d->ptr[d->n_cells])) +
               2.0 * 8.0 * (d->n_perturbations + 1.0) * n_genes;
  int passes = (R + Q - 1) / Q;
  return passes * ybytes + (double)R * per;
}

static const char *stat_names[] = {"ridge.gram_seconds",  "ridge.factor_seconds", "ridge.factor_flops",
                                   "ridge.rhs_seconds",   "ridge.solve_seconds",  "ridge.solve_flops",
                                   "ridge.bytes_matrix",  "perm.rows_seconds",    "perm.rhs_seconds",
                                   "perm.reduce_seconds", "perm.solve_seconds",   "perm.solve_flops",
                                   "perm.count_seconds",  "perm.batch_width",     "perm.bytes_batch",
                                   "ridge.invert_seconds", "ridge.invert_flops"};
enum { N_STATS = sizeof stat_names / sizeof *stat_names };

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  bench_options o;
  if (parse(argc, argv, &o)) {
    if (rank == 0) usage();
    MPI_Finalize();
    return 2;
  }
  int64_t begin, end;
  ps_block_range(o.cells, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  double t = MPI_Wtime();
  generate(&o, begin, end, &d, &y);
  MPI_Barrier(comm);
  double t_generate = MPI_Wtime() - t;
  double rate_before = dgemm_rate(comm, o.dgemm_size);

  ps_ridge_perm_options perm;
  ps_ridge_perm_options_default(&perm);
  perm.n_permutations = o.permutations;
  perm.seed = o.seed;
  perm.batch_bytes = o.batch_mb << 20;
  ps_ridge fit;
  double *pvalues = NULL;
  MPI_Barrier(comm);
  t = MPI_Wtime();
  int err = ps_ridge_fit_pvalues(comm, &d, &y, o.lambda, &perm, &fit, &pvalues);
  double t_ridge = MPI_Wtime() - t;
  if (err) {
    fprintf(stderr, "ridge_bench rank %d: %s\n", rank, ps_error_message());
    MPI_Abort(comm, 1);
  }
  double rate_after = dgemm_rate(comm, o.dgemm_size);

  /* A checksum so runs on different rank counts can be compared. */
  double beta_sum = 0, p_sum = 0;
  for (int64_t e = 0; e < (int64_t)fit.n_rows * fit.n_genes; e++) {
    beta_sum += fabs(fit.beta[e]);
    if (pvalues) p_sum += pvalues[e];
  }
  double mine[N_STATS], most[N_STATS];
  for (int s = 0; s < N_STATS; s++) mine[s] = ps_stats_get(stat_names[s]);
  MPI_Reduce(mine, most, N_STATS, MPI_DOUBLE, MPI_MAX, 0, comm);
  double rates[2] = {rate_before, rate_after}, rate_sum[2];
  MPI_Reduce(rates, rate_sum, 2, MPI_DOUBLE, MPI_SUM, 0, comm);
  if (rank == 0) {
    int64_t nnz = d.ptr[d.n_cells];
    printf("ridge_bench: M %lld K %d N %d MOI %g R %d on %d ranks (rank 0: %lld cells, %lld design entries)\n",
           (long long)o.cells, o.perturbations, o.genes, o.moi, o.permutations, size, (long long)d.n_cells,
           (long long)nnz);
    printf("generate %.2f s, ridge stage %.2f s, sum|beta| %.12g, sum p %.6f\n", t_generate, t_ridge, beta_sum,
           p_sum);
    for (int s = 0; s < N_STATS; s++) printf("  %-22s %.6g\n", stat_names[s], most[s]);
    double dgemm = 0.5 * (rate_sum[0] + rate_sum[1]);
    printf("dgemm %d^3 summed over ranks: %.1f GFLOP/s before, %.1f after\n", o.dgemm_size, rate_sum[0],
           rate_sum[1]);
    /* The flop counts are of the whole operation (all ranks), the seconds the slowest rank's. */
    double f = most[2] / most[1] / 1e9, p = most[10] > 0 ? most[11] / most[10] / 1e9 : 0;
    double v = most[15] > 0 ? most[16] / most[15] / 1e9 : 0;
    printf("factor %.1f GFLOP/s (%.0f%% of dgemm), inverse %.1f GFLOP/s (%.0f%%), permutation solves %.1f GFLOP/s "
           "(%.0f%% of dgemm)\n", f, 100 * f / dgemm, v, 100 * v / dgemm, p, 100 * p / dgemm);
  }
  if (o.compare_fuse && o.permutations > 0) {
    /* The same p-values through X^T Y_r one pass over y per permutation, then one per batch, in this process. */
    double sec[2], bytes[2], gbs = stream_rate(comm), gbs_sum = 0;
    int64_t differ[2] = {0, 0};
    int fused = (int)ps_stats_get("perm.rhs_fused");
    for (int mode = 0; mode < 2; mode++) {
      if (mode == 0) setenv("PERTSCORE_PERM_FUSE", "1", 1);
      else unsetenv("PERTSCORE_PERM_FUSE");
      double before = ps_stats_get("perm.rhs_seconds"), *p2 = NULL;
      MPI_Barrier(comm);
      if (ps_ridge_permutation_pvalues(comm, &d, &y, o.lambda, &perm, &fit, &p2)) {
        fprintf(stderr, "ridge_bench rank %d: %s\n", rank, ps_error_message());
        MPI_Abort(comm, 1);
      }
      sec[mode] = ps_stats_get("perm.rhs_seconds") - before;
      for (int64_t e = 0; e < (int64_t)fit.n_rows * fit.n_genes; e++) differ[mode] += p2[e] != pvalues[e];
      bytes[mode] = rhs_bytes(&d, &y, o.genes, o.permutations, mode == 0 ? 1 : fused);
      free(p2);
    }
    MPI_Allreduce(MPI_IN_PLACE, sec, 2, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(MPI_IN_PLACE, differ, 2, MPI_INT64_T, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, bytes, 2, MPI_DOUBLE, MPI_MAX, comm);
    MPI_Allreduce(&gbs, &gbs_sum, 1, MPI_DOUBLE, MPI_SUM, comm);
    if (rank == 0) {
      printf("X^T Y_r, %d permutations: one pass per permutation %.3f s, one pass per %d (fused) %.3f s: "
             "%.2fx; p-values differing from the first run: %lld and %lld entries\n",
             o.permutations, sec[0], fused, sec[1], sec[0] / sec[1], (long long)differ[0], (long long)differ[1]);
      printf("  stream read %.2f GB/s per rank (%.2f summed); bandwidth floor per rank %.3f s and %.3f s: "
             "kernel at %.0f%% and %.0f%% of it\n", gbs, gbs_sum, bytes[0] / 1e9 / gbs, bytes[1] / 1e9 / gbs,
             100 * bytes[0] / 1e9 / gbs / sec[0], 100 * bytes[1] / 1e9 / gbs / sec[1]);
    }
  }
  if (o.adaptive > 0 && o.permutations > 0) {
    /* Fixed and adaptive permutation p-values of the same fit, one after the other in this process. */
    double sec[2], cols[2];
    double *p2[2] = {NULL, NULL};
    for (int mode = 0; mode < 2; mode++) {
      ps_ridge_perm_options a = perm;
      a.adaptive_h = mode ? o.adaptive : 0;
      double before = ps_stats_get("perm.columns_done");
      MPI_Barrier(comm);
      double t0 = MPI_Wtime();
      if (ps_ridge_permutation_pvalues(comm, &d, &y, o.lambda, &a, &fit, &p2[mode])) {
        fprintf(stderr, "ridge_bench rank %d: %s\n", rank, ps_error_message());
        MPI_Abort(comm, 1);
      }
      sec[mode] = MPI_Wtime() - t0;
      cols[mode] = ps_stats_get("perm.columns_done") - before;
    }
    MPI_Allreduce(MPI_IN_PLACE, sec, 2, MPI_DOUBLE, MPI_MAX, comm);
    int64_t entries = (int64_t)fit.n_rows * fit.n_genes, differ[2] = {0, 0}, closed = 0;
    for (int64_t e = 0; e < entries; e++) {
      differ[0] += (p2[0][e] <= 0.01) != (p2[1][e] <= 0.01);
      differ[1] += (p2[0][e] <= 0.05) != (p2[1][e] <= 0.05);
      closed += p2[0][e] != p2[1][e];
    }
    if (rank == 0)
      printf("adaptive h %d vs fixed, %d permutations: %.3f s vs %.3f s fixed (%.2fx), columns of B_r %.0f vs %.0f "
             "(%.0f%%), p changed on %lld of %lld pairs, decisions differ at 0.01: %lld, at 0.05: %lld\n",
             o.adaptive, o.permutations, sec[1], sec[0], sec[0] / sec[1], cols[1], cols[0], 100 * cols[1] / cols[0],
             (long long)closed, (long long)entries, (long long)differ[0], (long long)differ[1]);
    free(p2[0]), free(p2[1]);
  }
  ps_stats_write_env(rank);
  free(pvalues);
  ps_ridge_free(&fit);
  free(d.ptr), free(d.ids);
  ps_csr_free(&y);
  MPI_Finalize();
  return 0;
}
