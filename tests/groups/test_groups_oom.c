/* ps_groups_assign (--group-by, --control-by) when one rank runs out of memory:
 * every allocation of src/data/groups.c (calloc, strdup, ps_strlist_push)
 * fails in turn, on each rank in turn. Every rank must then return an error, and
 * none may be left waiting in the collective label unions or sums (a hang is the
 * ctest timeout). groups.c is compiled into this test with those calls routed
 * through a counter and the obs column read from memory instead of a file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/data.h"
#include "pertscore/io.h"

static long fail_at = 0, n_allocs = 0; /* fail_at 0: not counted; -1: counted, never failing */
static int counted_fails(void) { return fail_at != 0 && ++n_allocs == fail_at; }

static void *counted_calloc(size_t n, size_t size) { return counted_fails() ? NULL : calloc(n, size); }
static char *counted_strdup(const char *s) { return counted_fails() ? NULL : strdup(s); }
static int counted_strlist_push(ps_strlist *l, const char *s) {
  if (counted_fails()) PS_FAIL(PS_ERR_SYSTEM, "out of memory (test: push '%s')", s);
  return ps_strlist_push(l, s);
}

/* Obs column "type" of global cell i: type0 .. type2; "guide" is not asked for. */
static int fake_read_obs_column(MPI_Comm comm, const char *path, const char *column, int64_t begin, int64_t end,
                                ps_strlist *out) {
  memset(out, 0, sizeof *out);
  char label[16];
  for (int64_t i = begin; i < end; i++) {
    snprintf(label, sizeof label, "type%d", (int)(i % 3));
    PS_CALL(ps_strlist_push(out, label));
  }
  return PS_OK;
}

#define calloc counted_calloc
#define strdup counted_strdup
#define ps_strlist_push counted_strlist_push
#define ps_h5ad_read_obs_column fake_read_obs_column
#include "../../src/data/groups.c"
#undef calloc
#undef strdup
#undef ps_strlist_push
#undef ps_h5ad_read_obs_column

enum { M = 90, K = 4 };

/* Local cells [begin, end): every 5th a control, the others perturbation i mod K. */
static void build(int64_t begin, int64_t end, ps_matrix *m, int64_t *keep, ps_dataset *d) {
  int64_t n = end - begin;
  memset(m, 0, sizeof *m);
  memset(d, 0, sizeof *d);
  m->cell_begin = begin;
  m->x.n_rows = n;
  ps_design *D = &d->design;
  D->n_perturbations = K;
  char name[16];
  int err = PS_OK;
  for (int k = 0; k < K; k++) {
    snprintf(name, sizeof name, "P%d", k);
    err |= ps_strlist_push(&D->names, name);
  }
  D->n_cells = n;
  D->ptr = calloc((size_t)n + 1, sizeof *D->ptr);
  D->ids = calloc((size_t)n + 1, sizeof *D->ids);
  if (err || !D->ptr || !D->ids) MPI_Abort(MPI_COMM_WORLD, 1);
  for (int64_t j = 0; j < n; j++) {
    int64_t i = begin + j;
    snprintf(name, sizeof name, "cell%lld", (long long)i);
    if (ps_strlist_push(&m->cells, name) != PS_OK) MPI_Abort(MPI_COMM_WORLD, 1);
    keep[j] = j;
    int perturbed = i % 5 != 0;
    D->ptr[j + 1] = D->ptr[j] + perturbed;
    if (perturbed) D->ids[D->ptr[j]] = (int32_t)(i % K);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size, failures = 0, runs = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int64_t begin, end;
  ps_block_range(M, rank, size, &begin, &end);
  int64_t keep[M];
  for (int by_group = 0; by_group < 2; by_group++) {
    ps_dataset_options opt;
    memset(&opt, 0, sizeof opt);
    opt.input = "memory.h5ad";
    if (by_group) opt.group_by = "type";
    else opt.control_by = "type";
    ps_matrix m;
    ps_dataset d;

    /* without faults: a success (3 groups; --group-by: K x 3 pairs), and the allocations to sweep */
    build(begin, end, &m, keep, &d);
    n_allocs = 0;
    fail_at = -1;
    int err = ps_groups_assign(MPI_COMM_WORLD, &opt, &m, keep, &d);
    long most = n_allocs;
    fail_at = 0;
    if (err != PS_OK || d.groups.n != 3 || (by_group && d.design.n_perturbations != 3 * K)) {
      fprintf(stderr, "FAIL rank %d: %s without faults: err %d (%s), %lld groups, K %d\n", rank, opt.group_by ?
              "--group-by" : "--control-by", err, err ? ps_error_message() : "", (long long)d.groups.n,
              d.design.n_perturbations);
      failures++;
    }
    ps_dataset_free(&d);
    ps_strlist_free(&m.cells);
    MPI_Allreduce(MPI_IN_PLACE, &most, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (most < 5) {
      fprintf(stderr, "FAIL: only %ld counted allocations in groups.c: is the counter wired?\n", most);
      failures++;
    }

    for (int victim = 0; victim < size; victim++)
      for (long k = 1; k <= most; k++) {
        build(begin, end, &m, keep, &d);
        fail_at = rank == victim ? k : 0;
        n_allocs = 0;
        err = ps_groups_assign(MPI_COMM_WORLD, &opt, &m, keep, &d);
        int failed_here = fail_at > 0 && n_allocs >= k;
        fail_at = 0;
        ps_dataset_free(&d);
        ps_strlist_free(&m.cells);
        int flags[3] = {failed_here, err != PS_OK, err == PS_OK}, any[3];
        MPI_Allreduce(flags, any, 3, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        runs++;
        if ((any[1] && any[2]) || (any[0] && any[2])) {
          if (rank == 0)
            fprintf(stderr, "FAIL: %s, allocation %ld failing on rank %d: %s\n", opt.group_by ? "--group-by" :
                    "--control-by", k, victim, any[1] ? "some ranks returned an error, others success" :
                    "every rank returned success");
          failures++;
        }
        if (err != PS_OK && !strstr(ps_error_message(), "out of memory")) {
          fprintf(stderr, "FAIL rank %d: allocation %ld failing on rank %d: message '%s' does not say out of memory\n",
                  rank, k, victim, ps_error_message());
          failures++;
        }
      }
  }
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0)
    printf("%s: %d runs of ps_groups_assign (--control-by and --group-by, each allocation of groups.c failing on "
           "each of %d ranks)\n", failures ? "FAIL" : "PASS", runs, size);
  MPI_Finalize();
  return failures ? 1 : 0;
}
