/* Permutation p-values for the ridge beta (SPEC.md section 2, --permutations):
 * p[k, n] = (1/R) #{r : |B_r[k, n]| > |B[k, n]|}, B_r refitted with the cells'
 * design rows shuffled against Y.
 *
 * X^T X sums over cells whatever their order, so it is the same for every
 * permutation: it is factored once (ridge_system) and a batch of permutations
 * is one multi-right-hand-side solve, X^T Y_r of the batch side by side as one
 * (K + 1) x (N * batch) block-cyclic matrix.
 *
 * Which design row meets which cell: permutation r is a global permutation pi_r
 * of the M analysed cells (rank blocks concatenated), and X^T Y_r =
 * sum_j x_{pi_r(j)} y_j^T. Every rank generates pi_r identically and holds
 * every cell's design row (allgathered once: O(M x MOI) integers), so it adds
 * its own cells' y_j against any row without further communication; the only
 * traffic per batch is the reduce-scatter of X^T Y_r that the fit has anyway.
 * Routing y rows to the ranks holding the design rows instead would move
 * O(nnz(Y)) per permutation.
 *
 * The counts are taken where B_r lands: each block-cyclic owner compares its
 * entries of B_r with the replicated B, so B_r is never gathered; one sum of
 * the (K + 1) x N counts at the end replicates them. */
#include "ridge_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Other stages draw from ps_rng_make(seed, cell) (the simulator does, with the
 * same --seed); the salt keeps permutation r from replaying cell r's stream. */
#define PERM_SEED_SALT 0x7065726d75746521ULL /* "permute!" */

void ps_ridge_perm_options_default(ps_ridge_perm_options *o) {
  o->n_permutations = 100;
  o->seed = 1;
  o->batch_bytes = (int64_t)256 << 20;
}

/* O(M) on every rank for every permutation (~7 ms per million cells): fine for
 * M up to a few million and R in the hundreds. Past that, a random-access
 * bijection (e.g. a Feistel network with cycle walking) would let each rank
 * compute pi_r on its own cells only; that is another definition, so it would
 * change every p-value for a given seed. */
void ps_ridge_permutation(uint64_t seed, int64_t r, int64_t n_cells, int64_t *pi) {
  for (int64_t i = 0; i < n_cells; i++) pi[i] = i;
  ps_rng g = ps_rng_make(seed ^ PERM_SEED_SALT, (uint64_t)r);
  for (int64_t i = n_cells - 1; i > 0; i--) {
    /* Reject the 2^64 mod (i + 1) lowest draws so x mod (i + 1) is exactly uniform. */
    uint64_t bound = (uint64_t)i + 1, reject = (uint64_t)(0 - bound) % bound, x;
    do x = ps_rng_next(&g);
    while (x < reject);
    int64_t k = (int64_t)(x % bound), t = pi[i];
    pi[i] = pi[k];
    pi[k] = t;
  }
}

int ps_ridge_perm_batch(int32_t n_rows, int32_t n_genes, int n_permutations, int64_t batch_bytes) {
  if (n_permutations <= 0) return 0;
  /* Per permutation: its (K + 1) x N block of the dense sum every rank
   * accumulates, and at most as much again for this rank's share (all of it on
   * one rank). */
  double per = 2.0 * (double)sizeof(double) * n_rows * (double)n_genes;
  double room = per > 0 ? (double)batch_bytes / per : (double)n_permutations;
  int64_t b = room < (double)n_permutations ? (int64_t)room : n_permutations;
  if (n_genes > 0 && b > INT_MAX / n_genes) b = INT_MAX / n_genes; /* ScaLAPACK column counts are int */
  return b < 1 ? 1 : (int)b;
}

/* ---- every cell's design row, in global cell order ---- */

typedef struct {
  int64_t n_cells, offset; /* M, and this rank's first global cell */
  int64_t *ptr;            /* M + 1 */
  int32_t *ids;
} all_rows;

static void all_rows_free(all_rows *a) {
  free(a->ptr);
  free(a->ids);
  memset(a, 0, sizeof *a);
}

/* Buffers of the exchange, freed together whatever fails. */
typedef struct {
  int64_t *sizes;     /* per rank: cells, design entries */
  int *len, *lens;    /* ids per local cell; per global cell */
  int *count, *displ; /* per rank, for the Allgathervs */
} rows_work;

static void rows_work_free(rows_work *w) {
  free(w->sizes), free(w->len), free(w->lens), free(w->count), free(w->displ);
}

/* Rank-local: per-cell lengths as int for the exchange (a cell carries at most K ids). */
static int rows_local(const ps_design *d, int size, rows_work *w) {
  PS_ALLOC(w->sizes, 2 * (int64_t)size);
  PS_ALLOC(w->count, size);
  PS_ALLOC(w->displ, size);
  PS_ALLOC(w->len, d->n_cells);
  for (int64_t c = 0; c < d->n_cells; c++) w->len[c] = (int)(d->ptr[c + 1] - d->ptr[c]);
  return PS_OK;
}

static int rows_alloc(all_rows *a, int64_t nnz, rows_work *w) {
  PS_ALLOC(a->ptr, a->n_cells + 1);
  PS_ALLOC(a->ids, nnz);
  PS_ALLOC(w->lens, a->n_cells);
  return PS_OK;
}

static void set_displ(rows_work *w, int size) {
  for (int r = 0; r < size; r++) w->displ[r] = r ? w->displ[r - 1] + w->count[r - 1] : 0;
}

static int rows_exchange(MPI_Comm comm, const ps_design *d, all_rows *a, rows_work *w) {
  int rank, size;
  PS_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  PS_CHECK_MPI(MPI_Comm_size(comm, &size));
  PS_CALL(ps_error_sync(comm, rows_local(d, size, w)));
  int64_t local_nnz = d->n_cells > 0 ? d->ptr[d->n_cells] : 0, mine[2] = {d->n_cells, local_nnz};
  PS_CHECK_MPI(MPI_Allgather(mine, 2, MPI_INT64_T, w->sizes, 2, MPI_INT64_T, comm));
  int64_t cells = 0, nnz = 0;
  for (int r = 0; r < size; r++) {
    if (r == rank) a->offset = cells;
    cells += w->sizes[2 * r];
    nnz += w->sizes[2 * r + 1];
  }
  /* Allgatherv displacements are int; every rank sees the same totals, so the same verdict. */
  if (cells > INT_MAX || nnz > INT_MAX)
    PS_FAIL(PS_ERR_INPUT, "permutation p-values: %lld cells with %lld design entries exceed one MPI exchange",
            (long long)cells, (long long)nnz);
  a->n_cells = cells;
  PS_CALL(ps_error_sync(comm, rows_alloc(a, nnz, w)));
  for (int r = 0; r < size; r++) w->count[r] = (int)w->sizes[2 * r];
  set_displ(w, size);
  PS_CHECK_MPI(MPI_Allgatherv(w->len, (int)d->n_cells, MPI_INT, w->lens, w->count, w->displ, MPI_INT, comm));
  for (int64_t c = 0; c < cells; c++) a->ptr[c + 1] = a->ptr[c] + w->lens[c];
  for (int r = 0; r < size; r++) w->count[r] = (int)w->sizes[2 * r + 1];
  set_displ(w, size);
  PS_CHECK_MPI(MPI_Allgatherv(d->ids, (int)local_nnz, MPI_INT32_T, a->ids, w->count, w->displ, MPI_INT32_T, comm));
  return PS_OK;
}

/* Collective: a holds every rank's design rows afterwards. */
static int rows_gather(MPI_Comm comm, const ps_design *d, all_rows *a) {
  rows_work w;
  memset(&w, 0, sizeof w);
  int err = rows_exchange(comm, d, a, &w);
  rows_work_free(&w);
  return err;
}

/* ---- the permutations ---- */

typedef struct {
  all_rows rows;
  int64_t *pi;     /* the current permutation of all M cells */
  int32_t *count;  /* (K + 1) x N: permutations with |B_r| > |B|, this rank's entries of B_r only */
  ridge_rhs rhs;   /* one batch */
  int rhs_width;   /* permutations the current rhs holds; 0 before the first batch */
} perm_work;

static void perm_work_free(perm_work *w) {
  all_rows_free(&w->rows);
  free(w->pi);
  free(w->count);
  ridge_rhs_free(&w->rhs);
}

static int perm_alloc(perm_work *w, int64_t entries) {
  PS_ALLOC(w->pi, w->rows.n_cells);
  PS_ALLOC(w->count, entries);
  return PS_OK;
}

/* Rank-local: X^T Y_r of permutations r0 .. r0 + width - 1 in column blocks of N. */
static int batch_fill(const ridge_system *s, perm_work *w, const ps_csr *y, uint64_t seed, int r0, int width) {
  if (w->rhs_width != width) { /* the first batch, or the shorter last one */
    ridge_rhs_free(&w->rhs);
    w->rhs_width = 0;
    PS_CALL(ridge_rhs_init(s, s->n_genes * width, &w->rhs));
    w->rhs_width = width;
  } else {
    memset(w->rhs.packed, 0, (size_t)s->n * (size_t)w->rhs.ncols * sizeof *w->rhs.packed);
  }
  for (int q = 0; q < width; q++) {
    ps_ridge_permutation(seed, r0 + q, w->rows.n_cells, w->pi);
    /* This rank's cell c is global cell offset + c: it meets the design row of cell pi[offset + c]. */
    PS_CALL(ridge_rhs_add(&w->rhs, w->rows.ptr, w->rows.ids, w->pi + w->rows.offset, y, q * s->n_genes));
  }
  return PS_OK;
}

/* On the block-cyclic owners of B_r: column jc of the batch is gene jc mod N. */
static void count_exceeding(const ridge_system *s, const ridge_rhs *r, const double *beta, int32_t *count) {
  const ridge_grid *g = &s->grid;
  int lld = s->a_rows > 1 ? s->a_rows : 1, n_genes = s->n_genes;
  for (int lj = 0; lj < r->b_cols; lj++) {
    int64_t gene = ridge_global_of(lj, g->nb, g->mycol, g->npcol) % n_genes;
    const double *col = r->b + (int64_t)lj * lld;
    for (int li = 0; li < s->a_rows; li++) {
      int64_t at = ridge_global_of(li, g->nb, g->myrow, g->nprow) * n_genes + gene;
      if (fabs(col[li]) > fabs(beta[at])) count[at]++;
    }
  }
}

static int pvalues_fill(const int32_t *count, int64_t entries, int n_permutations, double **pvalues) {
  PS_ALLOC(*pvalues, entries);
  for (int64_t e = 0; e < entries; e++) (*pvalues)[e] = (double)count[e] / n_permutations;
  return PS_OK;
}

static int perm_run(MPI_Comm comm, const ridge_system *s, const ps_design *design, const ps_csr *y,
                    const ps_ridge_perm_options *opt, const double *beta, double **pvalues, perm_work *w) {
  int R = opt->n_permutations;
  int64_t entries = (int64_t)s->n * s->n_genes;
  PS_CALL(rows_gather(comm, design, &w->rows));
  PS_CALL(ps_error_sync(comm, perm_alloc(w, entries)));
  int batch = ps_ridge_perm_batch(s->n, s->n_genes, R, opt->batch_bytes);
  for (int r0 = 0; r0 < R; r0 += batch) {
    int width = R - r0 < batch ? R - r0 : batch;
    PS_CALL(ps_error_sync(comm, batch_fill(s, w, y, opt->seed, r0, width)));
    PS_CALL(ridge_rhs_solve(comm, s, &w->rhs));
    count_exceeding(s, &w->rhs, beta, w->count);
  }
  PS_CALL(ridge_allreduce_sum(comm, w->count, entries, MPI_INT32_T, sizeof *w->count));
  PS_CALL(ps_error_sync(comm, pvalues_fill(w->count, entries, R, pvalues)));
  return PS_OK;
}

static int check_options(const ps_ridge_perm_options *opt) {
  if (opt->n_permutations < 0)
    PS_FAIL(PS_ERR_INPUT, "--permutations must be >= 0, got %d", opt->n_permutations);
  if (opt->batch_bytes <= 0)
    PS_FAIL(PS_ERR_INPUT, "permutation batch memory must be positive, got %lld bytes", (long long)opt->batch_bytes);
  return PS_OK;
}

/* Everything a p-value run holds, freed in one place whichever step fails. */
static int pvalues_with_system(MPI_Comm comm, const ridge_system *s, const ps_design *design, const ps_csr *y,
                               const ps_ridge_perm_options *opt, const double *beta, double **pvalues) {
  perm_work w;
  memset(&w, 0, sizeof w);
  int err = perm_run(comm, s, design, y, opt, beta, pvalues, &w);
  perm_work_free(&w);
  if (err) {
    free(*pvalues);
    *pvalues = NULL;
  }
  return err;
}

int ps_ridge_permutation_pvalues(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda,
                                 const ps_ridge_perm_options *opt, const ps_ridge *fit, double **pvalues) {
  *pvalues = NULL;
  PS_CALL(check_options(opt));
  if (opt->n_permutations == 0) return PS_OK;
  int err = PS_OK;
  if (!fit->beta || fit->n_rows != design->n_perturbations + 1 || fit->n_genes != y->n_cols || fit->lambda != lambda)
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                       "permutation p-values: the fit (%d x %d, lambda %g) is not of this problem (%d x %lld, lambda %g)",
                       (int)fit->n_rows, (int)fit->n_genes, fit->lambda, (int)design->n_perturbations + 1,
                       (long long)y->n_cols, lambda);
  PS_CALL(ps_error_sync(comm, err)); /* y and the design are rank-local: agree before the collectives */
  ridge_system s;
  ridge_system_init(&s);
  err = ridge_system_build(comm, design, y, lambda, &s);
  if (!err) err = pvalues_with_system(comm, &s, design, y, opt, fit->beta, pvalues);
  ridge_system_free(&s);
  return err;
}

int ps_ridge_fit_pvalues(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda,
                         const ps_ridge_perm_options *opt, ps_ridge *out, double **pvalues) {
  memset(out, 0, sizeof *out);
  *pvalues = NULL;
  PS_CALL(check_options(opt));
  ridge_system s;
  ridge_system_init(&s);
  int err = ridge_system_build(comm, design, y, lambda, &s);
  if (!err) err = ridge_fit_with_system(comm, &s, design, y, lambda, out);
  if (!err && opt->n_permutations > 0) err = pvalues_with_system(comm, &s, design, y, opt, out->beta, pvalues);
  ridge_system_free(&s);
  if (err) ps_ridge_free(out);
  return err;
}
