/* Permutation p-values for the ridge beta (SPEC.md section 2, --permutations):
 * p[k, n] = (1/R) #{r : |B_r[k, n]| > |B[k, n]|}, B_r refitted with the cells'
 * design rows shuffled against Y.
 *
 * X^T X sums over cells whatever their order, so it is the same for every
 * permutation. Its Cholesky factor L is turned into W = L^-1 once (pdtrtri,
 * n^3/3 flops; the system is SPD and well conditioned with lambda > 0), so
 * (X^T X + lambda I)^-1 = W^T W and each batch of permutations is two local
 * triangular dgemm passes per rank over its columns of W with one allreduce
 * between them (batch_products): the same 2 n^2 flops per column as the two
 * triangular solves of pdpotrs, but at the dgemm rate; the grid is 1 x P so a
 * rank's columns of W are whole columns (ridge_system.c).
 *
 * Which design row meets which cell: permutation r is a global permutation pi_r
 * of the M analysed cells (rank blocks concatenated), and X^T Y_r =
 * sum_j x_{pi_r(j)} y_j^T. Every rank generates pi_r identically and holds
 * every cell's design row (allgathered once: O(M x MOI) integers), so it adds
 * its own cells' y_j against any row without further communication; the only
 * traffic per batch is one allreduce of X^T Y_r. Routing y rows to the ranks
 * holding the design rows instead would move O(nnz(Y)) per permutation.
 * The adds go by row or by gene tile (see "X^T Y_r from this rank's y") so the rows they hit stay in cache.
 *
 * The counts are taken where B_r lands: each rank compares its rows of B_r with
 * the replicated B, so B_r is never gathered; one sum of the (K + 1) x N counts
 * at the end replicates them. */
#include "ridge_internal.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Other stages draw from ps_rng_make(seed, cell) (the simulator does, with the
 * same --seed); the salt keeps permutation r from replaying cell r's stream. */
#define PERM_SEED_SALT 0x7065726d75746521ULL /* "permute!" */

void ps_ridge_perm_options_default(ps_ridge_perm_options *o) {
  o->n_permutations = 100;
  o->seed = 1;
  o->batch_bytes = (int64_t)256 << 20;
  o->adaptive_h = 0;
  o->progress = NULL;
}

/* O(M) on every rank for every permutation (~7 ms per million cells): fine for
 * M up to a few million and R in the hundreds. Past that, a random-access
 * bijection (e.g. a Feistel network with cycle walking) would let each rank
 * compute pi_r on its own cells only; that is another definition, so it would
 * change every p-value for a given seed. */
void ps_ridge_permutation_within(uint64_t seed, int64_t r, int64_t n_cells, const int64_t *order,
                                 const int64_t *stratum_ptr, int32_t n_strata, int64_t *pi) {
  for (int64_t i = 0; i < n_cells; i++) pi[i] = i;
  ps_rng g = ps_rng_make(seed ^ PERM_SEED_SALT, (uint64_t)r);
  int32_t strata = order ? n_strata : 1;
  for (int32_t h = 0; h < strata; h++) {
    int64_t first = order ? stratum_ptr[h] : 0, n = order ? stratum_ptr[h + 1] - first : n_cells;
    for (int64_t i = n - 1; i > 0; i--) {
      /* Reject the 2^64 mod (i + 1) lowest draws so x mod (i + 1) is exactly uniform. */
      uint64_t bound = (uint64_t)i + 1, reject = (uint64_t)(0 - bound) % bound, x;
      do x = ps_rng_next(&g);
      while (x < reject);
      int64_t k = (int64_t)(x % bound);
      int64_t a = order ? order[first + i] : i, b = order ? order[first + k] : k, t = pi[a];
      pi[a] = pi[b];
      pi[b] = t;
    }
  }
}

void ps_ridge_permutation(uint64_t seed, int64_t r, int64_t n_cells, int64_t *pi) {
  ps_ridge_permutation_within(seed, r, n_cells, NULL, NULL, 1, pi);
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

/* ---- the inverse factor W = L^-1, once ---- */

/* In place (the system is not solved with pdpotrs afterwards): the factor L
 * becomes W = L^-1, so (X^T X + lambda I)^-1 = W^T W. The upper triangle is
 * zeroed because the products below read whole groups of columns from the
 * group's first diagonal entry down. */
static int invert(ridge_system *s) {
  const ridge_grid *g = &s->grid;
  if (g->nprow != 1) PS_FAIL(PS_ERR_SYSTEM, "ridge: the inverse factor needs a 1 x P process grid");
  int one = 1, info = 0;
  pdtrtri_("L", "N", &s->n, s->a, &one, &one, s->desc_a, &info, 1, 1);
  if (info != 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: pdtrtri failed (info %d)", info);
  int lda = s->a_rows > 1 ? s->a_rows : 1;
  for (int lj = 0; lj < s->a_cols; lj++) {
    int64_t j = ridge_global_of(lj, g->nb, g->mycol, g->npcol);
    memset(s->a + (int64_t)lj * lda, 0, (size_t)j * sizeof *s->a);
  }
  return PS_OK;
}

/* ---- X^T Y_r from this rank's y: two ways, the same sums bit for bit ----
 *
 * Both add, for every right-hand-side entry (row k, gene g), the values y_cg of
 * the cells meeting row k in cell order, so they give identical sums; they
 * differ in what they hold and how often they read y:
 * - by row (rows per cell below 2.5, i.e. MOI about 1): the cells are bucketed
 *   by the row they add to and each row is summed in an N-long buffer that stays
 *   in cache while its cells' rows of y stream in. y is read in place, once per
 *   permutation; the intercept row, which a permutation does not change when
 *   every cell shares one intercept, is summed once. Bucketing at higher MOI
 *   would read each row of y once per row it meets.
 * - by gene tile (higher MOI): a gene-tiled copy of y (about the size of y) is
 *   read once per permutation, each cell adding a tile's values to all its rows
 *   while that tile of the right-hand side stays in cache.
 * PERTSCORE_PERM_RHS=rows|tiles overrides the choice (tests, benchmarks). */

/* A tile of the right-hand side ((K + 1) rows x TILE genes, two cache lines a
 * row) stays in cache while every local cell adds into the rows of its
 * (permuted) design row, instead of every add missing the cache of a (K + 1) x N
 * sum. 16 measured faster than 8 (Y re-streamed per tile) and 32 (tile out of cache). */
enum { TILE = 16 };

typedef struct {
  int n_tiles;
  int64_t *run_ptr;   /* per tile: its runs, [run_ptr[t], run_ptr[t + 1]) */
  int32_t *run_cell;  /* per run: the local cell (cells with a nonzero in the tile, in order) */
  int64_t *entry_ptr; /* per run: its entries, [entry_ptr[run], entry_ptr[run + 1]) */
  uint8_t *slot;      /* per entry: gene - TILE t */
  double *value;
} y_tiles;

static void y_tiles_free(y_tiles *y) {
  free(y->run_ptr), free(y->run_cell), free(y->entry_ptr), free(y->slot), free(y->value);
  memset(y, 0, sizeof *y);
}

static int y_tiles_count(const ps_csr *y, int n_genes, y_tiles *yt, int64_t *mark, int64_t *entries_in) {
  for (int t = 0; t < yt->n_tiles; t++) mark[t] = -1;
  for (int64_t c = 0; c < y->n_rows; c++)
    for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++) {
      int32_t gene = y->indices[p];
      if (gene < 0 || gene >= n_genes)
        PS_FAIL(PS_ERR_INPUT, "ridge: local cell %lld has gene index %d outside [0, %d)", (long long)c, (int)gene,
                n_genes);
      int t = gene / TILE;
      if (mark[t] != c) mark[t] = c, yt->run_ptr[t + 1]++;
      entries_in[t + 1]++;
    }
  for (int t = 0; t < yt->n_tiles; t++) yt->run_ptr[t + 1] += yt->run_ptr[t], entries_in[t + 1] += entries_in[t];
  return PS_OK;
}

/* Runs of a tile in cell order, so a cell's entries in it are consecutive and
 * entry_ptr[run + 1] ends run `run` (the next run, or the next tile's first). */
static int y_tiles_fill(const ps_csr *y, y_tiles *yt, int64_t *mark, int64_t *run_at, int64_t *entry_at) {
  int64_t runs = yt->run_ptr[yt->n_tiles], entries = entry_at[yt->n_tiles];
  PS_ALLOC(yt->run_cell, runs);
  PS_ALLOC(yt->entry_ptr, runs + 1);
  PS_ALLOC(yt->slot, entries);
  PS_ALLOC(yt->value, entries);
  for (int t = 0; t < yt->n_tiles; t++) mark[t] = -1, run_at[t] = yt->run_ptr[t];
  yt->entry_ptr[runs] = entries;
  for (int64_t c = 0; c < y->n_rows; c++)
    for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++) {
      int t = y->indices[p] / TILE;
      if (mark[t] != c) {
        mark[t] = c;
        yt->run_cell[run_at[t]] = (int32_t)c;
        yt->entry_ptr[run_at[t]++] = entry_at[t];
      }
      yt->slot[entry_at[t]] = (uint8_t)(y->indices[p] - TILE * t);
      yt->value[entry_at[t]++] = y->data[p];
    }
  return PS_OK;
}

/* Rank-local. */
static int y_tiles_build(const ps_csr *y, int n_genes, y_tiles *yt) {
  if (y->n_rows > INT32_MAX) PS_FAIL(PS_ERR_INPUT, "ridge: %lld local cells exceed the tile index", (long long)y->n_rows);
  yt->n_tiles = (n_genes + TILE - 1) / TILE;
  int64_t *mark = NULL, *entry_at = NULL, *run_at = NULL;
  PS_ALLOC(yt->run_ptr, yt->n_tiles + 1);
  int err = PS_OK;
  mark = malloc((size_t)(yt->n_tiles + 1) * sizeof *mark);
  entry_at = calloc((size_t)yt->n_tiles + 1, sizeof *entry_at);
  run_at = malloc((size_t)(yt->n_tiles + 1) * sizeof *run_at);
  if (!mark || !entry_at || !run_at) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (Y tiles)");
  if (!err) err = y_tiles_count(y, n_genes, yt, mark, entry_at);
  if (!err) err = y_tiles_fill(y, yt, mark, run_at, entry_at);
  free(mark), free(entry_at), free(run_at);
  return err;
}

/* ct[k TILE + g] += cell's tile values for every row k it meets. Cloned per ISA
 * where the compiler can (the adds are the whole cost of forming X^T Y_r). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void tile_add(const y_tiles *yt, int t, const int64_t *row_ptr, const int32_t *rows, double *restrict ct) {
  for (int64_t run = yt->run_ptr[t]; run < yt->run_ptr[t + 1]; run++) {
    double v[TILE] = {0};
    for (int64_t e = yt->entry_ptr[run]; e < yt->entry_ptr[run + 1]; e++) v[yt->slot[e]] += yt->value[e];
    int32_t c = yt->run_cell[run];
    for (int64_t q = row_ptr[c]; q < row_ptr[c + 1]; q++) {
      double *dst = ct + (int64_t)rows[q] * TILE;
      for (int g = 0; g < TILE; g++) dst[g] += v[g];
    }
  }
}

/* Q permutations in one pass over y (issue 17): each run's tile values v are
 * summed once and added to the rows of the cell's design row in every
 * permutation q, into that permutation's tile ct + q n TILE. Every entry of
 * every tile still receives its cells' values in cell order, so the sums are
 * bit for bit those of tile_add, permutation by permutation. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void tile_add_multi(const y_tiles *yt, int t, int Q, int64_t n_local, const int64_t *row_ptr,
                           int32_t *const *rows, int64_t tile_stride, double *restrict ct) {
  for (int64_t run = yt->run_ptr[t]; run < yt->run_ptr[t + 1]; run++) {
    double v[TILE] = {0};
    for (int64_t e = yt->entry_ptr[run]; e < yt->entry_ptr[run + 1]; e++) v[yt->slot[e]] += yt->value[e];
    int32_t c = yt->run_cell[run];
    for (int q = 0; q < Q; q++) {
      const int64_t *rp = row_ptr + (int64_t)q * (n_local + 1);
      const int32_t *rq = rows[q];
      double *cq = ct + (int64_t)q * tile_stride;
      for (int64_t i = rp[c]; i < rp[c + 1]; i++) {
        double *dst = cq + (int64_t)rq[i] * TILE;
        for (int g = 0; g < TILE; g++) dst[g] += v[g];
      }
    }
  }
}

/* ---- the permutations ---- */

typedef struct {
  all_rows rows;
  int rows_borrowed; /* rows is the local design (a fit alone): not freed here */
  const uint8_t *keep; /* a fit alone: the local cells it sums (NULL: all) */
  int by_tiles;      /* X^T Y_r by gene tiles (y) rather than by row (bucket_*) */
  y_tiles y;
  int shared_intercept; /* every cell's intercept is row 0: its sum does not change with the permutation */
  int intercept_ready;
  double *intercept;   /* N: row 0's sum over the kept cells, once */
  double *row_sum;     /* N: the row being summed */
  int64_t *bucket_ptr; /* per row + 1: its cells in bucket_cell */
  int64_t *bucket_at;  /* per row: fill position */
  int32_t *bucket_cell;
  int64_t bucket_cap;
  int64_t *pi;       /* the current permutation of all M cells */
  int64_t *stratum_order, *stratum_ptr; /* basal groups: the cells by group (ps_ridge_permutation_within) */
  int32_t n_strata;
  int64_t *row_ptr;  /* per local cell: the right-hand-side rows its permuted design row adds to */
  int32_t *rows_of;
  int64_t rows_cap;
  double *tile;      /* (K + 1) x TILE */
  double *rhs;       /* the batch's X^T Y_r, grouped by the rank owning each row (reduce-scatter order); after
                      * the sum, this rank's rows (a_cols x ncols); after the solve, its rows of B_r */
  int *share;        /* per comm rank: its rows x ncols (reduce-scatter counts) */
  int64_t *row_base; /* per row k: where column 0 of row k sits in rhs for the current ncols */
  int *row_stride;   /* per row k: rows of its owner (the column stride there) */
  double *z;         /* n x ncols column-major: W X^T Y_r */
  int32_t *count;    /* (K + 1) x N: permutations with |B_r| > |B|, this rank's rows of B_r only */
  /* X^T Y_r of several permutations in one pass over y (by gene tile, tile_add_multi) */
  int fuse;          /* permutations per pass (1: one pass per permutation, as before issue 17) */
  int64_t *qrow_ptr; /* fuse x (local cells + 1): row_ptr of each permutation of the pass */
  int32_t **qrows;   /* fuse: rows_of of each */
  int64_t *qcap;
  double *qtile;     /* fuse x (K + 1) x TILE */
  /* --permutations-adaptive (Besag-Clifford): columns of the batch are the open genes only */
  int32_t *stop;        /* (K + 1) x N: permutations done when the pair's h-th exceedance came (0: open), this rank's rows */
  int32_t *col_of;      /* per gene: its column within a permutation's block of the batch, -1 when closed */
  int32_t *open_genes;  /* the open genes, ascending */
  int32_t n_open;
  int32_t y_cols;       /* columns of the y being summed (N, or the compaction's) */
  uint8_t *row_open;    /* per local row of B (a_cols): some gene of it still open */
  uint8_t *gene_open;   /* per gene: some rank has an open pair of it */
  uint8_t *tile_open;   /* per gene tile: some gene of it still open */
  ps_csr y_open;        /* adaptive: y restricted to the genes open when it was last compacted (indptr NULL: not) */
  int32_t *y_open_gene; /* its columns' genes */
  FILE *trace;          /* PERTSCORE_PERM_TRACE (tests): fixed permutations' exceedances as int32 (r, row, gene) */
} perm_work;

static void perm_work_free(perm_work *w) {
  if (!w->rows_borrowed) all_rows_free(&w->rows);
  y_tiles_free(&w->y);
  free(w->intercept), free(w->row_sum), free(w->bucket_ptr), free(w->bucket_at), free(w->bucket_cell);
  free(w->pi), free(w->row_ptr), free(w->rows_of), free(w->tile), free(w->rhs), free(w->z), free(w->count);
  free(w->share), free(w->row_base), free(w->row_stride), free(w->stratum_order), free(w->stratum_ptr);
  for (int q = 0; w->qrows && q < w->fuse; q++) free(w->qrows[q]);
  free(w->qrows), free(w->qrow_ptr), free(w->qcap), free(w->qtile);
  free(w->gene_open), free(w->stop), free(w->col_of), free(w->open_genes), free(w->row_open), free(w->tile_open);
  if (w->trace) fclose(w->trace);
  ps_csr_free(&w->y_open);
  free(w->y_open_gene);
  memset(w, 0, sizeof *w);
}

/* With basal groups, permutations stay within each group: the cells by group
 * marker (the first id -(K + g) of a group g >= 1 cell; none: group 0), groups in
 * marker order, cells in global order within each (a counting sort over the
 * n ridge rows). No markers: one stratum, order stays NULL. */
static int64_t group_key(const all_rows *a, int64_t c) {
  int32_t first = a->ptr[c + 1] > a->ptr[c] ? a->ids[a->ptr[c]] : 0;
  return first < 0 ? -(int64_t)first : 0; /* the group column K + g, or 0 */
}

static int strata_build(const ridge_system *s, perm_work *w) {
  const all_rows *a = &w->rows;
  int64_t *count;
  PS_ALLOC(count, (int64_t)s->n + 1);
  int64_t markers = 0;
  for (int64_t c = 0; c < a->n_cells; c++) {
    int64_t key = group_key(a, c);
    if (key >= s->n) {
      free(count);
      PS_FAIL(PS_ERR_INPUT, "permutation p-values: cell %lld's group column %lld is outside the %d ridge rows",
              (long long)c, (long long)key, s->n);
    }
    count[key]++;
    markers += key > 0;
  }
  if (markers == 0) {
    free(count);
    return PS_OK;
  }
  int32_t strata = 0;
  for (int32_t k = 0; k <= s->n; k++) strata += count[k] > 0;
  w->stratum_order = malloc((size_t)(a->n_cells > 0 ? a->n_cells : 1) * sizeof *w->stratum_order);
  w->stratum_ptr = malloc(((size_t)strata + 1) * sizeof *w->stratum_ptr);
  if (!w->stratum_order || !w->stratum_ptr) {
    free(count);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory (permutation strata of %lld cells)", (long long)a->n_cells);
  }
  /* count[key] becomes the key's first position in stratum_order */
  int32_t h = 0;
  int64_t at = 0;
  for (int32_t k = 0; k <= s->n; k++) {
    if (!count[k]) continue;
    w->stratum_ptr[h++] = at;
    int64_t n = count[k];
    count[k] = at;
    at += n;
  }
  w->stratum_ptr[strata] = at;
  w->n_strata = strata;
  for (int64_t c = 0; c < a->n_cells; c++) {
    w->stratum_order[count[group_key(a, c)]++] = c;
  }
  free(count);
  return PS_OK;
}

/* Permutations per pass over y (rhs_fill_fused): as many as the batch has,
 * within 64 MB of their permuted row lists and 256 kB of their right-hand-side
 * tiles, at most 64. The kernel is bound by the adds into the tiles, not by
 * reading y (tools/bench/ridge_bench --compare-fuse: 1.1-1.2x at K = 30, none
 * once the tiles leave L2: at the jurkat shape one permutation's 18,596 rows
 * x 16 genes is 2.4 MB, so Q = 1 there). PERTSCORE_PERM_FUSE=Q overrides (1:
 * one pass per permutation; benchmarks). Rank-local, any Q gives the same sums. */
static int fuse_alloc(const ridge_system *s, const ps_csr *y, perm_work *w, int batch) {
  const all_rows *a = &w->rows;
  double entries_per_cell = a->n_cells > 0 ? (double)(a->ptr[a->n_cells] - a->ptr[0]) / (double)a->n_cells : 0;
  double list = 8.0 * (y->n_rows + 1) + 4.5 * (double)y->n_rows * (1 + entries_per_cell);
  double tile = 8.0 * s->n * TILE;
  double q = fmin(64.0, fmin((64 << 20) / fmax(list, 1), (256 << 10) / tile));
  const char *env = getenv("PERTSCORE_PERM_FUSE");
  if (env && atoi(env) > 0) q = atoi(env);
  int Q = q < 1 ? 1 : q > batch ? batch : (int)q;
  w->fuse = Q;
  ps_stats_set("perm.rhs_fused", Q);
  if (Q == 1) return PS_OK;
  PS_ALLOC(w->qrow_ptr, (int64_t)Q * (y->n_rows + 1));
  PS_ALLOC(w->qrows, Q);
  PS_ALLOC(w->qcap, Q);
  PS_ALLOC(w->qtile, (int64_t)Q * s->n * TILE);
  return PS_OK;
}

static int perm_alloc(const ridge_system *s, const ps_csr *y, perm_work *w, int64_t entries, int batch) {
  int64_t ncols = (int64_t)batch * s->n_genes;
  PS_ALLOC(w->pi, w->rows.n_cells);
  PS_ALLOC(w->count, entries);
  PS_ALLOC(w->row_ptr, y->n_rows + 1);
  PS_ALLOC(w->tile, (int64_t)s->n * TILE);
  PS_ALLOC(w->rhs, (int64_t)s->n * ncols);
  PS_ALLOC(w->z, (int64_t)s->n * ncols);
  PS_ALLOC(w->share, s->grid.npcol);
  w->y_cols = s->n_genes;
  PS_ALLOC(w->row_base, s->n);
  PS_ALLOC(w->row_stride, s->n);
  const all_rows *a = &w->rows;
  /* A cell's rows: its intercept and one per perturbation; a group intercept's
   * marker (a negative first id) replaces the intercept, it adds no row. */
  int64_t markers = 0;
  for (int64_t c = 0; c < a->n_cells; c++) markers += a->ptr[c + 1] > a->ptr[c] && a->ids[a->ptr[c]] < 0;
  double rows_per_cell =
      a->n_cells > 0 ? 1.0 + (double)(a->ptr[a->n_cells] - a->ptr[0] - markers) / (double)a->n_cells : 1.0;
  const char *env = getenv("PERTSCORE_PERM_RHS");
  w->by_tiles = env && !strcmp(env, "tiles") ? 1 : env && !strcmp(env, "rows") ? 0 : rows_per_cell >= 2.5;
  ps_stats_set("perm.rhs_by_tiles", w->by_tiles);
  if (w->by_tiles) {
    PS_CALL(y_tiles_build(y, s->n_genes, &w->y));
    return fuse_alloc(s, y, w, batch);
  }
  if (y->n_rows > INT32_MAX) PS_FAIL(PS_ERR_INPUT, "ridge: %lld local cells exceed the cell index", (long long)y->n_rows);
  w->shared_intercept = markers == 0; /* else some cells' intercept is their group's row */
  PS_ALLOC(w->intercept, s->n_genes);
  PS_ALLOC(w->row_sum, s->n_genes);
  PS_ALLOC(w->bucket_ptr, (int64_t)s->n + 1);
  PS_ALLOC(w->bucket_at, s->n);
  for (int64_t c = 0; c < y->n_rows; c++)
    for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++)
      if (y->indices[p] < 0 || y->indices[p] >= s->n_genes)
        PS_FAIL(PS_ERR_INPUT, "ridge: local cell %lld has gene index %d outside [0, %d)", (long long)c,
                (int)y->indices[p], s->n_genes);
  return PS_OK;
}

/* The right-hand-side rows of each local cell's permuted design row: its
 * intercept (0, or the group column -ids[0], ps_design_ridge_columns) and k + 1
 * per perturbation k; none for a cell the fit leaves out (keep). */
static int permuted_rows_into(const perm_work *w, int64_t n_local, int64_t *row_ptr, int32_t **rows_of,
                              int64_t *cap) {
  const all_rows *a = &w->rows;
  const int64_t *pi = w->pi + a->offset;
  int64_t need = n_local;
  for (int64_t c = 0; c < n_local; c++) need += a->ptr[pi[c] + 1] - a->ptr[pi[c]];
  if (need > *cap || !*rows_of) {
    free(*rows_of);
    *cap = 0;
    PS_ALLOC(*rows_of, need + need / 8);
    *cap = need + need / 8;
  }
  int32_t *out = *rows_of;
  int64_t at = 0;
  for (int64_t c = 0; c < n_local; c++) {
    const int32_t *ids = a->ids + a->ptr[pi[c]];
    int64_t s = a->ptr[pi[c] + 1] - a->ptr[pi[c]], first = s > 0 && ids[0] < 0;
    row_ptr[c] = at;
    if (w->keep && !w->keep[c]) continue;
    out[at++] = first ? -ids[0] : 0;
    for (int64_t q = first; q < s; q++) out[at++] = ids[q] + 1;
  }
  row_ptr[n_local] = at;
  return PS_OK;
}

static int permuted_rows(perm_work *w, int64_t n_local) {
  return permuted_rows_into(w, n_local, w->row_ptr, &w->rows_of, &w->rows_cap);
}

/* Where X^T Y_r entries go for a right-hand side of ncols columns: the rows of
 * comm rank 0 first (its block-cyclic rows, column-major), then rank 1's...,
 * so one reduce-scatter leaves each rank the sums of exactly its rows. The
 * counts are int: checked by the caller (batch_limit). */
static void rhs_layout(const ridge_system *s, perm_work *w, int64_t ncols) {
  const ridge_grid *g = &s->grid;
  int64_t start = 0;
  for (int r = 0; r < g->npcol; r++) {
    int rows = ridge_local_count(s->n, g->nb, g->pcol_of[r], g->npcol);
    w->share[r] = (int)(rows * ncols);
    for (int lk = 0; lk < rows; lk++) {
      int64_t k = ridge_global_of(lk, g->nb, g->pcol_of[r], g->npcol);
      w->row_base[k] = start + lk;
      w->row_stride[k] = rows;
    }
    start += rows * ncols;
  }
  memset(w->rhs, 0, (size_t)s->n * (size_t)ncols * sizeof *w->rhs);
}

static inline void add_row(const ps_csr *y, int64_t c, double *restrict sum) {
  for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++) sum[y->indices[p]] += y->data[p];
}

/* sum += the rows of y of the given cells, in their order. */
static void add_cells(const ps_csr *y, const int32_t *cells, int64_t n_cells, double *restrict sum) {
  for (int64_t i = 0; i < n_cells; i++) add_row(y, cells[i], sum);
}

/* The batch column (within a permutation's block) of column j of the y being
 * summed (the original or its adaptive compaction): -1 for a closed gene. */
static inline int64_t batch_col(const perm_work *w, int32_t j) {
  if (!w->col_of) return j;
  return w->col_of[w->y_open_gene ? w->y_open_gene[j] : j];
}

/* Row k's sum into columns [col0, col0 + N) of rhs. */
static void rhs_put_row(const ridge_system *s, perm_work *w, int32_t k, const double *sum, int64_t col0) {
  double *dst = w->rhs + w->row_base[k] + col0 * w->row_stride[k];
  int64_t stride = w->row_stride[k];
  if (w->col_of) { /* adaptive: the open genes only, in their columns */
    for (int32_t j = 0; j < w->y_cols; j++) {
      int64_t col = batch_col(w, j);
      if (col >= 0) dst[col * stride] = sum[j];
    }
    return;
  }
  for (int32_t g = 0; g < s->n_genes; g++) dst[g * stride] = sum[g];
}

/* Tile t of one permutation (ct, (K + 1) x TILE) into its columns from col0. */
static void rhs_put_tile(const ridge_system *s, perm_work *w, int t, const double *ct, int64_t col0) {
  int width = w->y_cols - TILE * t < TILE ? w->y_cols - TILE * t : TILE;
  for (int g = 0; g < width; g++) {
    int64_t col = batch_col(w, TILE * t + g);
    if (col < 0) continue;
    col += col0;
    for (int32_t k = 0; k < s->n; k++) w->rhs[w->row_base[k] + col * w->row_stride[k]] = ct[(int64_t)k * TILE + g];
  }
}

/* X^T Y_r by row (see above): bucket the local cells by the rows of their
 * permuted design rows (in cell order), then sum each row's cells. Rank-local. */
static int rhs_by_rows(const ridge_system *s, perm_work *w, const ps_csr *y, int64_t col0) {
  int32_t n = s->n, N = (int32_t)y->n_cols;
  int64_t n_local = y->n_rows, pairs = w->row_ptr[n_local];
  if (w->shared_intercept && !w->intercept_ready) {
    memset(w->intercept, 0, (size_t)N * sizeof *w->intercept);
    for (int64_t c = 0; c < n_local; c++)
      if (w->row_ptr[c + 1] > w->row_ptr[c]) add_row(y, c, w->intercept);
    w->intercept_ready = 1;
  }
  if (pairs > w->bucket_cap || !w->bucket_cell) { /* allocated even for no pairs: no arithmetic on NULL below */
    free(w->bucket_cell);
    w->bucket_cap = 0;
    PS_ALLOC(w->bucket_cell, pairs + pairs / 8);
    w->bucket_cap = pairs + pairs / 8;
  }
  memset(w->bucket_ptr, 0, ((size_t)n + 1) * sizeof *w->bucket_ptr);
  /* A kept cell's first row is then the intercept, summed once above: start past it. */
  int skip = w->shared_intercept;
  for (int64_t c = 0; c < n_local; c++) {
    int64_t first = w->row_ptr[c] + (w->row_ptr[c + 1] > w->row_ptr[c] ? skip : 0);
    for (int64_t q = first; q < w->row_ptr[c + 1]; q++) w->bucket_ptr[w->rows_of[q] + 1]++;
  }
  for (int32_t k = 0; k < n; k++) w->bucket_ptr[k + 1] += w->bucket_ptr[k];
  memcpy(w->bucket_at, w->bucket_ptr, (size_t)n * sizeof *w->bucket_at);
  for (int64_t c = 0; c < n_local; c++) {
    int64_t first = w->row_ptr[c] + (w->row_ptr[c + 1] > w->row_ptr[c] ? skip : 0);
    for (int64_t q = first; q < w->row_ptr[c + 1]; q++) w->bucket_cell[w->bucket_at[w->rows_of[q]]++] = (int32_t)c;
  }
  for (int32_t k = 0; k < n; k++) {
    memset(w->row_sum, 0, (size_t)N * sizeof *w->row_sum);
    add_cells(y, w->bucket_cell + w->bucket_ptr[k], w->bucket_ptr[k + 1] - w->bucket_ptr[k], w->row_sum);
    rhs_put_row(s, w, k, k == 0 && skip ? w->intercept : w->row_sum, col0);
  }
  return PS_OK;
}

/* Rank-local: this rank's cells' X^T Y_r of permutation r (r < 0: the
 * unpermuted X^T Y of the fit) into columns [col0, col0 + N) of rhs. */
static int rhs_fill(const ridge_system *s, perm_work *w, const ps_csr *y, uint64_t seed, int r, int64_t col0) {
  if (r >= 0)
    ps_ridge_permutation_within(seed, r, w->rows.n_cells, w->stratum_order, w->stratum_ptr, w->n_strata, w->pi);
  else
    for (int64_t c = 0; c < w->rows.n_cells; c++) w->pi[c] = c;
  PS_CALL(permuted_rows(w, y->n_rows));
  if (!w->by_tiles) return rhs_by_rows(s, w, y, col0);
  for (int t = 0; t < w->y.n_tiles; t++) {
    if (w->tile_open && !w->tile_open[t]) continue;
    memset(w->tile, 0, (size_t)s->n * TILE * sizeof *w->tile);
    tile_add(&w->y, t, w->row_ptr, w->rows_of, w->tile);
    rhs_put_tile(s, w, t, w->tile, col0);
  }
  return PS_OK;
}

/* Permutations r0 .. r0 + Q - 1 (Q <= w->fuse) by gene tile in one pass over y:
 * block q of the batch's columns starts at (q0 + q) cols. Rank-local. */
static int rhs_fill_fused(const ridge_system *s, perm_work *w, const ps_csr *y, uint64_t seed, int r0, int Q,
                          int64_t col0, int64_t cols) {
  int64_t n_local = y->n_rows, stride = (int64_t)s->n * TILE;
  for (int q = 0; q < Q; q++) {
    ps_ridge_permutation_within(seed, r0 + q, w->rows.n_cells, w->stratum_order, w->stratum_ptr, w->n_strata, w->pi);
    PS_CALL(permuted_rows_into(w, n_local, w->qrow_ptr + (int64_t)q * (n_local + 1), &w->qrows[q], &w->qcap[q]));
  }
  for (int t = 0; t < w->y.n_tiles; t++) {
    if (w->tile_open && !w->tile_open[t]) continue;
    memset(w->qtile, 0, (size_t)Q * (size_t)stride * sizeof *w->qtile);
    tile_add_multi(&w->y, t, Q, n_local, w->qrow_ptr, w->qrows, stride, w->qtile);
    for (int q = 0; q < Q; q++) rhs_put_tile(s, w, t, w->qtile + q * stride, col0 + q * cols);
  }
  return PS_OK;
}

/* B = W^T (W C) for the batch's C = X^T Y_r (summed over ranks first), two
 * passes over this rank's columns of W in groups, each one dgemm from the
 * group's first diagonal entry down (W is lower triangular and stored with
 * zeros above it: about half the flops of a dense product):
 *   Z = sum over ranks of W(:, J) C(J, :), then B(J, :) = W(:, J)^T Z.
 * A group is GROUP_BLOCKS blocks: one block (k = nb) ran the first pass at
 * half the dgemm rate; the zeros above the later blocks' diagonals cost a few %.
 * This rank's rows of B (its columns J) overwrite rhs, leading dimension a_cols. */
enum { GROUP_BLOCKS = 4 };

/* Each rank receives the sums of its own rows only: C(J, :), a_cols x ncols, at the start of rhs. */
static int batch_reduce(MPI_Comm comm, perm_work *w, const char *stage) {
  char name[48];
  snprintf(name, sizeof name, "%s.reduce_seconds", stage);
  double t = ps_wtime();
  PS_CHECK_MPI(MPI_Reduce_scatter(MPI_IN_PLACE, w->rhs, w->share, MPI_DOUBLE, MPI_SUM, comm));
  ps_stats_add(name, ps_wtime() - t);
  return PS_OK;
}

static int any_open(const uint8_t *open, int n) {
  for (int i = 0; i < n; i++)
    if (open[i]) return 1;
  return 0;
}

static int batch_products(MPI_Comm comm, const ridge_system *s, perm_work *w, int64_t ncols, const char *stage) {
  const ridge_grid *g = &s->grid;
  int lda = s->a_rows > 1 ? s->a_rows : 1, ldb = s->a_cols > 1 ? s->a_cols : 1, n = s->n;
  char name[3][48];
  snprintf(name[0], sizeof name[0], "%s.reduce_seconds", stage);
  snprintf(name[1], sizeof name[1], "%s.solve_seconds", stage);
  snprintf(name[2], sizeof name[2], "%s.solve_flops", stage);
  double t = ps_wtime();
  memset(w->z, 0, (size_t)n * (size_t)ncols * sizeof *w->z);
  int group = GROUP_BLOCKS * g->nb;
  for (int lj0 = 0; lj0 < s->a_cols; lj0 += group) {
    int64_t j0 = ridge_global_of(lj0, g->nb, g->mycol, g->npcol);
    int width = s->a_cols - lj0 < group ? s->a_cols - lj0 : group, rows = n - (int)j0;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, rows, (int)ncols, width, 1.0, s->a + (int64_t)lj0 * lda + j0,
                lda, w->rhs + lj0, ldb, 1.0, w->z + j0, n);
  }
  double t_first = ps_wtime() - t;
  t = ps_wtime();
  PS_CALL(ps_allreduce_sum(comm, w->z, (int64_t)n * ncols, MPI_DOUBLE, sizeof *w->z));
  ps_stats_add(name[0], ps_wtime() - t);
  t = ps_wtime();
  for (int lj0 = 0; lj0 < s->a_cols; lj0 += group) {
    int64_t j0 = ridge_global_of(lj0, g->nb, g->mycol, g->npcol);
    int width = s->a_cols - lj0 < group ? s->a_cols - lj0 : group, rows = n - (int)j0;
    if (w->row_open && !any_open(w->row_open + lj0, width)) continue; /* adaptive: these rows of B_r are not read */
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, width, (int)ncols, rows, 1.0, s->a + (int64_t)lj0 * lda + j0,
                lda, w->z + j0, n, 0.0, w->rhs + lj0, ldb);
  }
  ps_stats_add(name[1], t_first + ps_wtime() - t);
  /* Of the whole product, all ranks (as ridge.factor_flops): two triangular products, 2 n^2 per column. */
  ps_stats_add(name[2], 2.0 * n * (double)n * ncols);
  return PS_OK;
}

/* This rank's rows of B_r (its columns of W): column jc of the batch is gene jc mod N. */
static void count_exceeding(const ridge_system *s, const double *b, int64_t ncols, const double *beta,
                            int32_t *count, FILE *trace, int r0) {
  const ridge_grid *g = &s->grid;
  int ldb = s->a_cols > 1 ? s->a_cols : 1, n_genes = s->n_genes;
  for (int64_t jc = 0; jc < ncols; jc++) {
    int64_t gene = jc % n_genes;
    const double *col = b + jc * ldb;
    for (int li = 0; li < s->a_cols; li++) {
      int64_t row = ridge_global_of(li, g->nb, g->mycol, g->npcol), at = row * n_genes + gene;
      if (!(fabs(col[li]) > fabs(beta[at]))) continue;
      count[at]++;
      if (trace) fwrite((int32_t[3]){r0 + (int32_t)(jc / n_genes), (int32_t)row, (int32_t)gene}, sizeof(int32_t), 3,
                        trace);
    }
  }
}

/* Adaptive (Besag and Clifford 1991): permutation by permutation, an open pair
 * counts its exceedance and closes at its h-th, remembering the permutations
 * done then (L = r + 1). Block q of the batch's columns is permutation r0 + q,
 * its columns the open genes. Later permutations of the batch do not touch a
 * pair that closed, so the result does not depend on the batch widths. */
static void count_adaptive(const ridge_system *s, const perm_work *w, const double *b, int width, int r0, int h,
                           const double *beta, int32_t *count, int32_t *stop) {
  const ridge_grid *g = &s->grid;
  int ldb = s->a_cols > 1 ? s->a_cols : 1, n_genes = s->n_genes;
  for (int q = 0; q < width; q++)
    for (int32_t j = 0; j < w->n_open; j++) {
      int64_t gene = w->open_genes[j];
      const double *col = b + ((int64_t)q * w->n_open + j) * ldb;
      for (int li = 0; li < s->a_cols; li++) {
        int64_t at = ridge_global_of(li, g->nb, g->mycol, g->npcol) * n_genes + gene;
        if (stop[at] || !(fabs(col[li]) > fabs(beta[at]))) continue;
        if (++count[at] == h) stop[at] = r0 + q + 1;
      }
    }
}

/* After a batch: which genes still have an open pair on some rank (their
 * columns in the next batch), which of this rank's rows, which gene tiles.
 * Collective; the same open genes on every rank. */
/* y restricted to the open genes (columns renumbered in gene order), once
 * fewer than 3/4 of the columns summed are still open: later batches read and
 * add only those. Each right-hand-side entry still sums its cells' values in
 * cell order: the same sums bit for bit. By gene tile the tiles are rebuilt
 * from it and the copy dropped. Rank-local. */
static int y_compact(const ridge_system *s, const ps_csr *y, perm_work *w) {
  ps_csr_free(&w->y_open);
  free(w->y_open_gene);
  w->y_open_gene = NULL;
  ps_csr *o = &w->y_open;
  int64_t nnz = 0;
  for (int64_t p = 0; p < y->indptr[y->n_rows]; p++) nnz += w->col_of[y->indices[p]] >= 0;
  o->n_rows = y->n_rows;
  o->n_cols = w->n_open;
  PS_ALLOC(o->indptr, y->n_rows + 1);
  PS_ALLOC(o->indices, nnz);
  PS_ALLOC(o->data, nnz);
  PS_ALLOC(w->y_open_gene, w->n_open);
  memcpy(w->y_open_gene, w->open_genes, (size_t)w->n_open * sizeof *w->open_genes);
  int64_t at = 0;
  for (int64_t c = 0; c < y->n_rows; c++) {
    for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++)
      if (w->col_of[y->indices[p]] >= 0) o->indices[at] = w->col_of[y->indices[p]], o->data[at++] = y->data[p];
    o->indptr[c + 1] = at;
  }
  w->y_cols = w->n_open;
  ps_stats_add("perm.y_compactions", 1);
  w->intercept_ready = 0; /* by row: the intercept's sum over the new columns */
  if (w->by_tiles) {
    y_tiles_free(&w->y);
    PS_CALL(y_tiles_build(o, w->n_open, &w->y));
    ps_csr_free(o);
  }
  (void)s;
  return PS_OK;
}

/* After a batch: which genes still have an open pair on some rank (their
 * columns in the next batch), which of this rank's rows, which gene tiles.
 * Collective; the same open genes on every rank. */
static int adaptive_update(MPI_Comm comm, const ridge_system *s, const ps_csr *y, perm_work *w) {
  const ridge_grid *g = &s->grid;
  int32_t N = s->n_genes;
  uint8_t *gene_open = w->gene_open;
  memset(gene_open, 0, (size_t)N);
  for (int li = 0; li < s->a_cols; li++) {
    const int32_t *stop = w->stop + ridge_global_of(li, g->nb, g->mycol, g->npcol) * N;
    uint8_t open = 0;
    for (int32_t j = 0; j < N; j++)
      if (!stop[j]) gene_open[j] = 1, open = 1;
    w->row_open[li] = open;
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, gene_open, N, MPI_UINT8_T, MPI_MAX, comm));
  w->n_open = 0;
  for (int32_t j = 0; j < N; j++) {
    w->col_of[j] = gene_open[j] ? w->n_open : -1;
    if (gene_open[j]) w->open_genes[w->n_open++] = j;
  }
  if (w->n_open > 0 && w->n_open < 0.75 * w->y_cols)
    PS_CALL(ps_error_sync(comm, y_compact(s, y, w)));
  if (w->by_tiles) {
    memset(w->tile_open, 0, (size_t)w->y.n_tiles);
    for (int32_t j = 0; j < w->y_cols; j++) w->tile_open[j / TILE] |= batch_col(w, j) >= 0;
  }
  return PS_OK;
}

/* Fixed: p = count / R. Adaptive: p = h / L for a pair that closed after L
 * permutations, count / R for one that never reached h. */
static int pvalues_fill(const int32_t *count, const int32_t *stop, int h, int64_t entries, int n_permutations,
                        double **pvalues) {
  PS_ALLOC(*pvalues, entries);
  for (int64_t e = 0; e < entries; e++)
    (*pvalues)[e] = stop && stop[e] ? (double)h / stop[e] : (double)count[e] / n_permutations;
  return PS_OK;
}

/* This rank's rows of B (rhs after batch_products) into a replicated beta. Collective. */
static int beta_replicate(MPI_Comm comm, const ridge_system *s, const perm_work *w, double lambda, ps_ridge *out) {
  const ridge_grid *g = &s->grid;
  int64_t entries = (int64_t)s->n * s->n_genes;
  int err = PS_OK;
  if (!out->beta) out->beta = ps_alloc_huge((size_t)entries * sizeof *out->beta);
  if (!out->beta) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (ridge beta)");
  PS_CALL(ps_error_sync(comm, err));
  memset(out->beta, 0, (size_t)entries * sizeof *out->beta);
  int ldb = s->a_cols > 1 ? s->a_cols : 1;
  for (int64_t j = 0; j < s->n_genes; j++)
    for (int li = 0; li < s->a_cols; li++)
      out->beta[ridge_global_of(li, g->nb, g->mycol, g->npcol) * s->n_genes + j] = w->rhs[j * ldb + li];
  PS_CALL(ps_allreduce_sum(comm, out->beta, entries, MPI_DOUBLE, sizeof *out->beta));
  out->n_rows = s->n;
  out->n_genes = s->n_genes;
  out->lambda = lambda;
  return PS_OK;
}

/* X^T Y of this rank's (kept) cells, summed: this rank's rows at the start of rhs. Collective. */
static int fit_rhs(MPI_Comm comm, const ridge_system *s, const ps_csr *y, perm_work *w) {
  double t = ps_wtime();
  rhs_layout(s, w, s->n_genes);
  PS_CALL(ps_error_sync(comm, rhs_fill(s, w, y, 0, -1, 0)));
  ps_stats_add("ridge.rhs_seconds", ps_wtime() - t);
  return batch_reduce(comm, w, "ridge");
}

static int invert_timed(ridge_system *s) {
  double t = ps_wtime();
  PS_CALL(invert(s));
  ps_stats_add("ridge.invert_seconds", ps_wtime() - t);
  ps_stats_add("ridge.invert_flops", (double)s->n * s->n * s->n / 3.0); /* pdtrtri */
  return PS_OK;
}

/* One batch: every rank's X^T Y_r summed on every rank, then this rank's rows of B_r. */
static int batch_run(MPI_Comm comm, const ridge_system *s, const ps_csr *y, const ps_ridge_perm_options *opt,
                     const double *beta, perm_work *w, int r0, int width) {
  int64_t cols = w->col_of ? w->n_open : s->n_genes, ncols = (int64_t)width * cols;
  double t = ps_wtime();
  int err = PS_OK;
  rhs_layout(s, w, ncols);
  if (w->y_open.indptr) y = &w->y_open; /* adaptive, by row: the open genes' columns of y */
  if (w->by_tiles && w->fuse > 1)
    for (int q = 0; q < width && !err; q += w->fuse) {
      int Q = width - q < w->fuse ? width - q : w->fuse;
      err = rhs_fill_fused(s, w, y, opt->seed, r0 + q, Q, (int64_t)q * cols, cols);
    }
  else
    for (int q = 0; q < width && !err; q++) err = rhs_fill(s, w, y, opt->seed, r0 + q, (int64_t)q * cols);
  PS_CALL(ps_error_sync(comm, err));
  ps_stats_add("perm.rhs_seconds", ps_wtime() - t);
  PS_CALL(batch_reduce(comm, w, "perm"));
  PS_CALL(batch_products(comm, s, w, ncols, "perm"));
  t = ps_wtime();
  if (w->stop) count_adaptive(s, w, w->rhs, width, r0, opt->adaptive_h, beta, w->count, w->stop);
  else count_exceeding(s, w->rhs, ncols, beta, w->count, w->trace, r0);
  ps_stats_add("perm.count_seconds", ps_wtime() - t);
  ps_stats_add("perm.columns_done", (double)ncols);
  return PS_OK;
}

static int adaptive_alloc(const ridge_system *s, perm_work *w, int64_t entries) {
  PS_ALLOC(w->stop, entries);
  PS_ALLOC(w->col_of, s->n_genes);
  PS_ALLOC(w->open_genes, s->n_genes);
  PS_ALLOC(w->row_open, s->a_cols);
  PS_ALLOC(w->tile_open, w->by_tiles ? w->y.n_tiles : 0);
  PS_ALLOC(w->gene_open, s->n_genes);
  return PS_OK;
}

/* With fit != NULL the fit is computed here too (on the inverse factor) and
 * its beta is the one compared against; else beta is given. */
static int perm_run(MPI_Comm comm, ridge_system *s, const ps_design *design, const ps_csr *y, double lambda,
                    const ps_ridge_perm_options *opt, ps_ridge *fit, const double *beta, double **pvalues,
                    perm_work *w) {
  int R = opt->n_permutations;
  int64_t entries = (int64_t)s->n * s->n_genes;
  int batch = ps_ridge_perm_batch(s->n, s->n_genes, R, opt->batch_bytes);
  /* A rank's rows x the batch's columns is one reduce-scatter count (int). */
  int64_t most_rows = ridge_local_count(s->n, s->grid.nb, 0, s->grid.npcol), per = most_rows * s->n_genes;
  if (per > INT_MAX)
    PS_FAIL(PS_ERR_INPUT, "permutation p-values: %d ridge rows x %d genes is too large for one rank (use more ranks)",
            s->n, s->n_genes);
  if (per > 0 && batch > INT_MAX / per) batch = (int)(INT_MAX / per);
  ps_stats_set("perm.batch_width", batch);
  double t = ps_wtime();
  PS_CALL(rows_gather(comm, design, &w->rows));
  PS_CALL(ps_error_sync(comm, perm_alloc(s, y, w, entries, batch)));
  PS_CALL(ps_error_sync(comm, strata_build(s, w)));
  ps_stats_add("perm.rows_seconds", ps_wtime() - t);
  ps_stats_max("perm.bytes_batch", 2.0 * s->n * batch * s->n_genes * sizeof *w->rhs);
  PS_CALL(invert_timed(s));
  if (fit) {
    PS_CALL(fit_rhs(comm, s, y, w));
    PS_CALL(batch_products(comm, s, w, s->n_genes, "ridge"));
    PS_CALL(beta_replicate(comm, s, w, lambda, fit));
    beta = fit->beta;
  }
  int h = opt->adaptive_h;
  const char *trace = getenv("PERTSCORE_PERM_TRACE");
  if (trace && h <= 0) {
    int rank;
    char path[4200];
    PS_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    snprintf(path, sizeof path, "%s.rank%d.bin", trace, rank);
    w->trace = fopen(path, "wb");
    PS_CALL(ps_error_sync(comm, w->trace ? PS_OK : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__,
                                                                 "%s: cannot write (PERTSCORE_PERM_TRACE)", path)));
  }
  if (h > 0) {
    PS_CALL(ps_error_sync(comm, adaptive_alloc(s, w, entries)));
    PS_CALL(adaptive_update(comm, s, y, w));
  }
  int r0 = 0;
  while (r0 < R && (h <= 0 || w->n_open > 0)) {
    /* Adaptive: no pair closes before h permutations; then batches of half the
     * permutations done so far (at least h), so a closed pair wastes at most a
     * third of its permutations and there are O(log(R / h)) batches. */
    int want = h > 0 ? (r0 / 2 > h ? r0 / 2 : h) : batch;
    int width = want < batch ? want : batch;
    if (width > R - r0) width = R - r0;
    PS_CALL(batch_run(comm, s, y, opt, beta, w, r0, width));
    r0 += width;
    if (h > 0) PS_CALL(adaptive_update(comm, s, y, w));
    if (opt->progress) ps_progress_update(opt->progress, (double)r0 / R);
  }
  ps_stats_set("perm.permutations_done", r0);
  ps_stats_set("perm.columns_fixed", (double)R * s->n_genes);
  PS_CALL(ps_allreduce_sum(comm, w->count, entries, MPI_INT32_T, sizeof *w->count));
  if (h > 0) PS_CALL(ps_allreduce_sum(comm, w->stop, entries, MPI_INT32_T, sizeof *w->stop));
  PS_CALL(ps_error_sync(comm, pvalues_fill(w->count, w->stop, h, entries, R, pvalues)));
  return PS_OK;
}

/* ---- fits alone (a lambda grid) on the inverse factor ---- */

int ridge_fit_prefers_inverse(const ridge_system *s) {
  const char *env = getenv("PERTSCORE_RIDGE_SOLVE"); /* tests and benchmarks: "inverse" or "potrs" */
  if (env && !strcmp(env, "inverse")) return 1;
  if (env && !strcmp(env, "potrs")) return 0;
  /* pdtrtri costs n^3/3 once, then the products run near the dgemm rate;
   * pdpotrs costs 2 n^2 N at a few times below it (measured 4x on 2 ranks). */
  return s->n <= 4 * (int64_t)s->n_genes;
}

static int grid_inverse_run(MPI_Comm comm, ridge_system *s, const double *gram, const ps_design *design,
                            const ps_csr *y, int n_lambdas, const double *lambdas, ps_ridge_each each, void *ctx,
                            perm_work *w, double **saved, ps_ridge *fit) {
  /* A rank's rows x N is one reduce-scatter count (int); the same verdict on every rank. */
  if ((int64_t)ridge_local_count(s->n, s->grid.nb, 0, s->grid.npcol) * s->n_genes > INT_MAX)
    PS_FAIL(PS_ERR_INPUT, "ridge: %d ridge rows x %d genes is too large for one rank (use more ranks)", s->n,
            s->n_genes);
  /* The unpermuted right-hand side needs this rank's design rows only. */
  w->rows_borrowed = 1;
  w->rows.n_cells = design->n_cells;
  w->rows.offset = 0;
  w->rows.ptr = design->ptr;
  w->rows.ids = design->ids;
  PS_CALL(ps_error_sync(comm, perm_alloc(s, y, w, 0, 1)));
  PS_CALL(fit_rhs(comm, s, y, w));
  int64_t share = (int64_t)(s->a_cols > 1 ? s->a_cols : 1) * s->n_genes, entries = (int64_t)s->a_rows * s->a_cols;
  if (n_lambdas > 1) {
    *saved = malloc((size_t)share * sizeof **saved);
    PS_CALL(ps_error_sync(comm, *saved ? PS_OK
                                       : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (X^T Y copy)")));
    memcpy(*saved, w->rhs, (size_t)share * sizeof **saved);
  }
  for (int l = 0; l < n_lambdas; l++) {
    if (l > 0) {
      memcpy(s->a, gram, (size_t)entries * sizeof *s->a);
      memcpy(w->rhs, *saved, (size_t)share * sizeof *w->rhs);
    }
    PS_CALL(ridge_system_factor(s, lambdas[l]));
    PS_CALL(invert_timed(s));
    PS_CALL(batch_products(comm, s, w, s->n_genes, "ridge"));
    PS_CALL(beta_replicate(comm, s, w, lambdas[l], fit));
    PS_CALL(each(ctx, l, fit));
  }
  return PS_OK;
}

int ridge_grid_inverse(MPI_Comm comm, ridge_system *s, const double *gram, const ps_design *design, const ps_csr *y,
                       const uint8_t *keep, int n_lambdas, const double *lambdas, ps_ridge_each each, void *ctx) {
  perm_work w;
  memset(&w, 0, sizeof w);
  w.keep = keep;
  double *saved = NULL;
  ps_ridge fit;
  memset(&fit, 0, sizeof fit);
  int err = grid_inverse_run(comm, s, gram, design, y, n_lambdas, lambdas, each, ctx, &w, &saved, &fit);
  ps_ridge_free(&fit);
  free(saved);
  perm_work_free(&w);
  return err;
}

static int check_options(const ps_ridge_perm_options *opt) {
  if (opt->n_permutations < 0)
    PS_FAIL(PS_ERR_INPUT, "--permutations must be >= 0, got %d", opt->n_permutations);
  if (opt->adaptive_h < 0)
    PS_FAIL(PS_ERR_INPUT, "--permutations-adaptive must be >= 1 exceedances (0: off), got %d", opt->adaptive_h);
  if (opt->batch_bytes <= 0)
    PS_FAIL(PS_ERR_INPUT, "permutation batch memory must be positive, got %lld bytes", (long long)opt->batch_bytes);
  return PS_OK;
}

/* Everything a p-value run holds, freed in one place whichever step fails. */
static int pvalues_with_system(MPI_Comm comm, ridge_system *s, const ps_design *design, const ps_csr *y,
                               double lambda, const ps_ridge_perm_options *opt, ps_ridge *fit, const double *beta,
                               double **pvalues) {
  perm_work w;
  memset(&w, 0, sizeof w);
  int log_stage = ps_log_stage_push("permutations");
  int err = perm_run(comm, s, design, y, lambda, opt, fit, beta, pvalues, &w);
  ps_log_stage_pop(log_stage);
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
  if (!err) err = pvalues_with_system(comm, &s, design, y, lambda, opt, NULL, fit->beta, pvalues);
  ridge_system_free(&s);
  return err;
}

/* With permutations the fit uses the inverse factor the permutations need
 * anyway (pdpotrs on the 1 x P grid is slow); without, as ps_ridge_fit. */
int ps_ridge_fit_pvalues(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda,
                         const ps_ridge_perm_options *opt, ps_ridge *out, double **pvalues) {
  memset(out, 0, sizeof *out);
  *pvalues = NULL;
  PS_CALL(check_options(opt));
  if (opt->n_permutations == 0) return ps_ridge_fit(comm, design, y, lambda, out);
  ridge_system s;
  ridge_system_init(&s);
  int err = ridge_system_build(comm, design, y, lambda, &s);
  if (!err) err = pvalues_with_system(comm, &s, design, y, lambda, opt, out, NULL, pvalues);
  ridge_system_free(&s);
  if (err) ps_ridge_free(out);
  return err;
}
