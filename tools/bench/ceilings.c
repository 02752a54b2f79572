/* ceilings: what this machine can do, measured on the same ranks as a benchmark run
 * (tools/bench/bench.py runs it next to `pertscore run`, issue #8).
 *
 *   mpirun -n P env OPENBLAS_NUM_THREADS=1 build/tools/bench/ceilings [--dgemm-n 1000,2000]
 *       [--repeat 3] [--file INPUT.h5ad] [--mpi-mb 16]
 *
 * - dgemm: every rank at once runs cblas_dgemm C = A B (n x n) --repeat times per n;
 *   the best GFLOP/s per rank (the rate the ridge and permutation solves are held to).
 * - read: the ranks read disjoint contiguous 1/P shares of --file with 8 MiB pread
 *   calls at once; MB/s summed over ranks (the page cache may hold the file: this is
 *   the bandwidth the pipeline's read stage also sees).
 * - mpi: ranks exchange --mpi-mb MiB with their neighbour (MPI_Sendrecv), MB/s per rank.
 * Prints one JSON object on rank 0's stdout. */
#include <cblas.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_SIZES = 8 };

static int fail(const char *what) {
  fprintf(stderr, "ceilings: %s\n", what);
  MPI_Abort(MPI_COMM_WORLD, 2);
  return 2;
}

/* Best GFLOP/s of repeat dgemm calls of size n, all ranks in step. */
static double dgemm_gflops(int n, int repeat) {
  size_t count = (size_t)n * (size_t)n;
  double *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b), *c = malloc(count * sizeof *c);
  if (!a || !b || !c) fail("out of memory for the dgemm matrices");
  for (size_t i = 0; i < count; i++) {
    a[i] = 1.0 + (double)(i % 7) * 0.01;
    b[i] = 1.0 - (double)(i % 5) * 0.01;
    c[i] = 0;
  }
  double best = 0;
  for (int r = 0; r < repeat; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t = MPI_Wtime();
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
    t = MPI_Wtime() - t;
    double rate = 2.0 * n * (double)n * n / t / 1e9;
    if (rate > best) best = rate;
  }
  if (c[0] == 12345.678) printf("unlikely\n"); /* keep the product live */
  free(a);
  free(b);
  free(c);
  return best;
}

/* Seconds for this rank to read its share [begin, end) of path. */
static double read_share(const char *path, long long begin, long long end) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) fail("cannot open --file");
  size_t chunk = 8u << 20;
  char *buf = malloc(chunk);
  if (!buf) fail("out of memory for the read buffer");
  MPI_Barrier(MPI_COMM_WORLD);
  double t = MPI_Wtime();
  for (long long at = begin; at < end;) {
    size_t want = (size_t)(end - at < (long long)chunk ? end - at : (long long)chunk);
    ssize_t got = pread(fd, buf, want, at);
    if (got <= 0) fail("read error on --file");
    at += got;
  }
  t = MPI_Wtime() - t;
  free(buf);
  close(fd);
  return t;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int sizes[MAX_SIZES] = {1000, 2000}, n_sizes = 2, repeat = 3;
  double mpi_mb = 16;
  const char *file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return fail("every option takes a value: --dgemm-n LIST --repeat N --file PATH --mpi-mb MB");
    if (!strcmp(argv[i], "--dgemm-n")) {
      n_sizes = 0;
      char *copy = strdup(v), *save = NULL;
      for (char *t = strtok_r(copy, ",", &save); t && n_sizes < MAX_SIZES; t = strtok_r(NULL, ",", &save))
        sizes[n_sizes++] = atoi(t);
      free(copy);
    } else if (!strcmp(argv[i], "--repeat")) {
      repeat = atoi(v);
    } else if (!strcmp(argv[i], "--file")) {
      file = v;
    } else if (!strcmp(argv[i], "--mpi-mb")) {
      mpi_mb = atof(v);
    } else {
      return fail("unknown option (known: --dgemm-n --repeat --file --mpi-mb)");
    }
    i++;
  }
  if (repeat < 1) repeat = 1;
  if (rank == 0) printf("{\"ranks\": %d, \"dgemm\": [", size);
  for (int s = 0; s < n_sizes; s++) {
    if (sizes[s] < 1) return fail("--dgemm-n sizes must be positive");
    double mine = dgemm_gflops(sizes[s], repeat), lo, hi, sum;
    MPI_Allreduce(&mine, &lo, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &hi, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
      printf("%s{\"n\": %d, \"gflops_per_rank_min\": %.3f, \"gflops_per_rank_max\": %.3f, \"gflops_per_rank_mean\": %.3f}",
             s ? ", " : "", sizes[s], lo, hi, sum / size);
  }
  if (rank == 0) printf("]");
  if (file) {
    struct stat st;
    if (stat(file, &st) != 0) return fail("cannot stat --file");
    long long bytes = (long long)st.st_size, begin = bytes * rank / size, end = bytes * (rank + 1) / size;
    double t = read_share(file, begin, end), slowest;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
      printf(", \"read\": {\"file\": \"%s\", \"bytes\": %lld, \"seconds\": %.4f, \"mb_per_s\": %.1f}", file, bytes,
             slowest, (double)bytes / 1e6 / slowest);
  }
  if (size > 1 && mpi_mb > 0) {
    int count = (int)(mpi_mb * (1 << 20) / sizeof(double));
    double *out = calloc((size_t)count, sizeof *out), *in = calloc((size_t)count, sizeof *in);
    if (!out || !in) return fail("out of memory for the MPI buffers");
    int right = (rank + 1) % size, left = (rank + size - 1) % size;
    double best = 1e30;
    for (int r = 0; r < repeat; r++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t = MPI_Wtime();
      MPI_Sendrecv(out, count, MPI_DOUBLE, right, 7, in, count, MPI_DOUBLE, left, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      t = MPI_Wtime() - t;
      double slowest;
      MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (slowest < best) best = slowest;
    }
    if (rank == 0) printf(", \"mpi\": {\"bytes\": %.0f, \"mb_per_s_per_rank\": %.1f}", count * 8.0, count * 8.0 / 1e6 / best);
    free(out);
    free(in);
  }
  if (rank == 0) printf("}\n");
  MPI_Finalize();
  return 0;
}
