/* ps_cv_cells when one rank runs out of memory: every allocation of src/cv/cells.c
 * fails in turn ("fail the k-th allocation", SQLite-style), on each rank in turn.
 * Every rank must then return an error (the same on all ranks), and none may be
 * left waiting in a collective of its fold group or of all ranks: a hang is the
 * ctest timeout. cells.c is compiled into this test with its calloc/malloc routed
 * through a counter; the library's other modules allocate as usual. Run on 2 and 3
 * ranks (3 ranks, 2 folds: a group of two ranks, so the group syncs matter). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petscsys.h>

#include "../../src/cv/cv_internal.h"

static long fail_at = 0, n_allocs = 0; /* fail_at 0: never */

static void *counted_calloc(size_t n, size_t size) {
  return fail_at > 0 && ++n_allocs == fail_at ? NULL : calloc(n, size);
}
static void *counted_malloc(size_t size) { return fail_at > 0 && ++n_allocs == fail_at ? NULL : malloc(size); }

#define calloc counted_calloc
#define malloc counted_malloc
#include "../../src/cv/cells.c"
#undef calloc
#undef malloc

enum { M = 240, K = 4, G = 6 };

/* Local cells [begin, end): every 5th a control, the others one perturbation, G dense genes. */
static void build(int64_t begin, int64_t end, ps_design *d, ps_csr *y) {
  int64_t n = end - begin;
  memset(d, 0, sizeof *d);
  d->n_perturbations = K;
  char name[16];
  for (int k = 0; k < K; k++) {
    snprintf(name, sizeof name, "P%d", k);
    if (ps_strlist_push(&d->names, name) != PS_OK) MPI_Abort(MPI_COMM_WORLD, 1);
  }
  d->n_cells = n;
  d->ptr = calloc((size_t)n + 1, sizeof *d->ptr);
  d->ids = calloc((size_t)n + 1, sizeof *d->ids);
  y->n_rows = n;
  y->n_cols = G;
  y->indptr = calloc((size_t)n + 1, sizeof *y->indptr);
  y->indices = calloc((size_t)(n * G) + 1, sizeof *y->indices);
  y->data = calloc((size_t)(n * G) + 1, sizeof *y->data);
  if (!d->ptr || !d->ids || !y->indptr || !y->indices || !y->data) MPI_Abort(MPI_COMM_WORLD, 1);
  for (int64_t j = 0; j < n; j++) {
    int64_t i = begin + j;
    int32_t k = (int32_t)(i % (K + 1)) - 1; /* -1: control */
    d->ptr[j + 1] = d->ptr[j] + (k >= 0);
    if (k >= 0) d->ids[d->ptr[j]] = k;
    ps_rng noise = ps_rng_make(7, (uint64_t)i);
    for (int g = 0; g < G; g++) {
      y->indices[j * G + g] = g;
      y->data[j * G + g] = 1.0 + 0.1 * g + (k >= 0 && g % K == k ? 0.8 : 0.0) + 0.2 * ps_rng_normal(&noise);
    }
    y->indptr[j + 1] = (j + 1) * G;
  }
}

int main(int argc, char **argv) {
  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1; /* the QP solver of the held-out scores is TAO */
  int rank, size, failures = 0, runs = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int64_t begin, end;
  ps_block_range(M, rank, size, &begin, &end);
  ps_design d;
  ps_csr y;
  build(begin, end, &d, &y);
  ps_cv_options opt;
  ps_cv_options_default(&opt);
  opt.n_folds = 2;
  opt.n_ridge_lambdas = 2;
  opt.ridge_lambdas[0] = 0.1;
  opt.ridge_lambdas[1] = 10;
  opt.seed = 4;

  /* without faults: a success, and the number of allocations to sweep */
  ps_cv_cells_result r;
  fail_at = LONG_MAX;
  n_allocs = 0;
  if (ps_cv_cells(MPI_COMM_WORLD, &d, NULL, &y, &opt, NULL, &r) != PS_OK) {
    fprintf(stderr, "FAIL rank %d: ps_cv_cells without faults: %s\n", rank, ps_error_message());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  ps_cv_cells_result_free(&r);
  long most = n_allocs;
  MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  if (most < 10) {
    fprintf(stderr, "FAIL: only %ld counted allocations in cells.c: is the counter wired?\n", most);
    failures++;
  }

  for (int victim = 0; victim < size; victim++)
    for (long k = 1; k <= most; k++) {
      fail_at = rank == victim ? k : 0;
      n_allocs = 0;
      int err = ps_cv_cells(MPI_COMM_WORLD, &d, NULL, &y, &opt, NULL, &r);
      int failed_here = fail_at > 0 && n_allocs >= k; /* the k-th allocation happened and failed */
      fail_at = 0;
      ps_cv_cells_result_free(&r);
      int flags[3] = {failed_here, err != PS_OK, err == PS_OK}, any[3];
      MPI_Allreduce(flags, any, 3, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
      runs++;
      /* any[1] && any[2]: some ranks failed, others not; any[0] && any[2]: an allocation failed unnoticed */
      if ((any[1] && any[2]) || (any[0] && any[2])) {
        if (rank == 0)
          fprintf(stderr, "FAIL: allocation %ld failing on rank %d: %s\n", k, victim,
                  any[1] ? "some ranks returned an error, others success" : "every rank returned success");
        failures++;
      }
      if (err != PS_OK && !strstr(ps_error_message(), "out of memory")) {
        fprintf(stderr, "FAIL rank %d: allocation %ld failing on rank %d: message '%s' does not say out of memory\n",
                rank, k, victim, ps_error_message());
        failures++;
      }
    }
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    printf("%s: %d runs of ps_cv_cells (up to %ld allocations of cells.c failing on each of %d ranks)\n",
           failures ? "FAIL" : "PASS", runs, most, size);
  ps_design_free(&d);
  ps_csr_free(&y);
  PetscFinalize();
  return failures ? 1 : 0;
}
