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
 * - h5 (--h5 INPUT.h5ad): the ranks H5Dread disjoint 1/P shares of X/data and X/indices
 *   in their stored types (no conversion) into huge-page memory as the reader does, what
 *   the read stage must at least do (issue 17).
 * - sort (--sort-values V --sort-chunk C): V values shaped like log-normalized counts,
 *   sorted in chunks of C (the target stage's one sort per gene: V = de.sorted_values,
 *   C = V / de.sorts) by qsort and by the stage's radix sort with positions
 *   (ps_de_sort_values); seconds per rank, all ranks at once. Sorting is the stage's
 *   floor: it sorts those values and then walks them once (issue 17).
 * Prints one JSON object on rank 0's stdout. */
#include <cblas.h>
#include <hdf5.h>
#include <math.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pertscore/util.h"
#include "../../src/de/de_internal.h" /* ps_de_sort_values: the stage's own sort */

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

/* Seconds for this rank to H5Dread its share of X/data and X/indices; *bytes: their
 * stored bytes over all ranks. */
static double h5_share(const char *path, int rank, int size, double *bytes) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) fail("cannot open --h5 with HDF5");
  hid_t d = H5Dopen2(f, "X/data", H5P_DEFAULT), x = H5Dopen2(f, "X/indices", H5P_DEFAULT);
  if (d < 0 || x < 0) fail("--h5 has no X/data and X/indices (a CSR X)");
  hid_t space = H5Dget_space(d);
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, NULL);
  H5Sclose(space);
  *bytes = (double)H5Dget_storage_size(d) + (double)H5Dget_storage_size(x);
  hsize_t begin = n * (hsize_t)rank / (hsize_t)size, count = n * (hsize_t)(rank + 1) / (hsize_t)size - begin;
  double *data = ps_alloc_huge((count ? count : 1) * sizeof *data); /* 8-byte room; huge pages as the reader */
  int64_t *indices = ps_alloc_huge((count ? count : 1) * sizeof *indices);
  if (!data || !indices) fail("out of memory for the --h5 share");
  MPI_Barrier(MPI_COMM_WORLD);
  double t = MPI_Wtime();
  /* in the stored types: the bytes, without HDF5's type conversion */
  hid_t ds[2] = {d, x}, stored[2] = {H5Dget_type(d), H5Dget_type(x)};
  hid_t types[2] = {H5Tget_native_type(stored[0], H5T_DIR_ASCEND), H5Tget_native_type(stored[1], H5T_DIR_ASCEND)};
  void *bufs[2] = {data, indices};
  for (int i = 0; i < 2; i++) {
    hid_t fs = H5Dget_space(ds[i]), ms = H5Screate_simple(1, &count, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &begin, NULL, &count, NULL);
    if (H5Dread(ds[i], types[i], ms, fs, H5P_DEFAULT, bufs[i]) < 0) fail("H5Dread failed on --h5");
    H5Sclose(fs), H5Sclose(ms);
  }
  t = MPI_Wtime() - t;
  for (int i = 0; i < 2; i++) H5Tclose(types[i]), H5Tclose(stored[i]);
  if (count && data[0] == -12345.5 && indices[0] == -7) printf("unlikely\n");
  free(data), free(indices);
  H5Dclose(d), H5Dclose(x), H5Fclose(f);
  return t;
}

/* Seconds to sort n values in chunks of chunk: qsort (values only) and ps_de_sort_values
 * with positions (what the target stage calls). Values: ln(1 + 1e4 k / total), k a small
 * geometric count, total varying by value (log-normalized counts: many ties at small k). */
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void sort_seconds(long long n, long long chunk, int rank, double *t_qsort, double *t_radix) {
  if (chunk < 1) chunk = 1;
  double *v = malloc((size_t)chunk * sizeof *v), *w = malloc((size_t)chunk * sizeof *w);
  int64_t *index = malloc((size_t)chunk * sizeof *index);
  if (!v || !w || !index) fail("out of memory for the sort");
  uint64_t state = 0x9e3779b97f4a7c15ull + (uint64_t)rank;
  *t_qsort = *t_radix = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  for (long long done = 0; done < n; done += chunk) {
    long long m = n - done < chunk ? n - done : chunk;
    for (long long i = 0; i < m; i++) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      double u = ((state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
      int k = 1 + (int)floor(log(u) / log(0.6));                      /* geometric, mostly 1-3 */
      double total = 2000 + (double)((state >> 3) % 3000);           /* per-cell totals */
      v[i] = log1p(1e4 * k / total);
    }
    memcpy(w, v, (size_t)m * sizeof *w);
    double t = MPI_Wtime();
    qsort(w, (size_t)m, sizeof *w, cmp_double);
    *t_qsort += MPI_Wtime() - t;
    t = MPI_Wtime();
    if (ps_de_sort_values(v, m, index)) fail("out of memory in ps_de_sort_values");
    *t_radix += MPI_Wtime() - t;
    if (v[0] != w[0]) fail("the two sorts disagree");
  }
  free(v), free(w), free(index);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int sizes[MAX_SIZES] = {1000, 2000}, n_sizes = 2, repeat = 3;
  double mpi_mb = 16;
  const char *file = NULL, *h5 = NULL;
  long long sort_values = 0, sort_chunk = 0;
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
    } else if (!strcmp(argv[i], "--h5")) {
      h5 = v;
    } else if (!strcmp(argv[i], "--sort-values")) {
      sort_values = atoll(v);
    } else if (!strcmp(argv[i], "--sort-chunk")) {
      sort_chunk = atoll(v);
    } else if (!strcmp(argv[i], "--mpi-mb")) {
      mpi_mb = atof(v);
    } else {
      return fail("unknown option (known: --dgemm-n --repeat --file --h5 --sort-values --sort-chunk --mpi-mb)");
    }
    i++;
  }
  if (repeat < 1) repeat = 1;
  if (sort_values < 0 || sort_chunk < 0) return fail("--sort-values and --sort-chunk must be >= 0");
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
  if (h5) {
    double bytes = 0, t = h5_share(h5, rank, size, &bytes), slowest;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
      printf(", \"h5\": {\"file\": \"%s\", \"bytes\": %.0f, \"seconds\": %.4f, \"mb_per_s\": %.1f}", h5, bytes,
             slowest, bytes / 1e6 / slowest);
  }
  if (sort_values > 0) {
    double tq, tr, q_max, r_max;
    sort_seconds(sort_values, sort_chunk > 0 ? sort_chunk : sort_values, rank, &tq, &tr);
    MPI_Allreduce(&tq, &q_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&tr, &r_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
      printf(", \"sort\": {\"values_per_rank\": %lld, \"chunk\": %lld, \"qsort_seconds\": %.4f, "
             "\"radix_index_seconds\": %.4f}", sort_values, sort_chunk > 0 ? sort_chunk : sort_values, q_max, r_max);
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
