/* The factored ridge system (SPEC.md section 2): X^T X + lambda I with
 * X = [1 | D], assembled over every rank's (kept) cells once, then
 * Cholesky-factored for a lambda (again from a copy for each lambda of a grid, ridge.c).
 *
 * X^T X is a sum over cells, so each rank adds its own cells' (|S| + 1)^2
 * design pairs (never a dense cells x perturbations matrix) and the pairs are
 * routed to their ScaLAPACK block-cyclic owners on a BLACS grid over comm.
 * The factor is kept (ridge_system) because it does not change when Y is
 * paired differently with the design rows: the fit and every permutation
 * (ridge_perm.c) solve against it. */
#include "ridge_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this squared pivot / diagonal entry, X^T X + lambda I is singular to working
 * precision (rounding leaves ~1e-12 where the exact pivot is 0); a real design
 * column, even one shared with another in all but a few of a million cells, is far above. */
#define PS_RIDGE_MIN_RELATIVE_PIVOT 1e-10

/* ---- this rank's X^T X: keys i * n + j (i >= j) -> count ----
 * While adding, the keys are appended (one per design pair, in any order);
 * pair_table_finish radix-sorts them and counts repeats. A hash table did the
 * same with a cache miss per pair (~30 M pairs per rank at the genome shape). */

typedef struct {
  int64_t *keys;  /* after pair_table_finish: distinct, ascending */
  double *counts; /* after pair_table_finish: multiplicity of each key */
  int64_t cap, n; /* after pair_table_finish: cap == n */
} pair_table;

static int pair_table_alloc(pair_table *t, int64_t cap) {
  PS_ALLOC(t->keys, cap);
  t->counts = NULL;
  t->cap = cap;
  t->n = 0;
  return PS_OK;
}

static void pair_table_free(pair_table *t) {
  free(t->keys);
  free(t->counts);
  memset(t, 0, sizeof *t);
}

static int pair_table_add(pair_table *t, int64_t key) {
  if (t->n == t->cap) {
    int64_t *bigger = realloc(t->keys, (size_t)(2 * t->cap) * sizeof *bigger);
    if (!bigger) PS_FAIL(PS_ERR_SYSTEM, "out of memory growing the X^T X pairs to %lld", (long long)(2 * t->cap));
    t->keys = bigger;
    t->cap *= 2;
  }
  t->keys[t->n++] = key;
  return PS_OK;
}

/* LSD radix sort of keys in [0, max_key] by 11-bit digits, then run-length counts. */
static int pair_table_finish(pair_table *t, int64_t max_key) {
  enum { DIGIT = 11, BUCKETS = 1 << DIGIT };
  int64_t *tmp = malloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *tmp);
  if (!tmp) PS_FAIL(PS_ERR_SYSTEM, "out of memory sorting %lld X^T X pairs", (long long)t->n);
  int64_t *from = t->keys, *to = tmp, at[BUCKETS];
  for (int shift = 0; shift < 63 && (max_key >> shift) > 0; shift += DIGIT) {
    memset(at, 0, sizeof at);
    for (int64_t e = 0; e < t->n; e++) at[(from[e] >> shift) & (BUCKETS - 1)]++;
    for (int64_t d = 0, sum = 0; d < BUCKETS; d++) {
      int64_t c = at[d];
      at[d] = sum;
      sum += c;
    }
    for (int64_t e = 0; e < t->n; e++) to[at[(from[e] >> shift) & (BUCKETS - 1)]++] = from[e];
    int64_t *swap = from;
    from = to;
    to = swap;
  }
  t->keys = from; /* the sorted copy; the other buffer goes */
  free(to);
  int64_t distinct = 0;
  for (int64_t e = 0; e < t->n; e++) distinct += e == 0 || from[e] != from[e - 1];
  PS_ALLOC(t->counts, distinct);
  int64_t u = -1;
  for (int64_t e = 0; e < t->n; e++) {
    if (e == 0 || from[e] != from[e - 1]) from[++u] = from[e];
    t->counts[u] += 1.0;
  }
  t->n = t->cap = distinct;
  return PS_OK;
}

/* ---- BLACS grid ---- */

/* Block size: PERTSCORE_RIDGE_NB when set (benchmarks), else 64 up to n = 8192
 * when every rank gets at least 4 blocks, and 128 otherwise. Measured on 2 ranks
 * (tools/bench/ridge_bench, MOI 1): at n = 2058 nb 64 ran the Cholesky at 52-76%
 * of dgemm against 48-60% for 128, the inverse at 39-42% against 31-35%, the
 * permutation products at 71-76% against 65%; equal at n = 8192; 128 was tuned
 * at n = 18596 (jurkat-genome, 82-87%). With few blocks per rank the block-cyclic
 * split is uneven by up to a block (n = 201 on 2 ranks: 128 + 73 rows at nb 64,
 * 101 + 100 at the n / P that grid_open takes then), which the permutation
 * products pay for. */
enum { RIDGE_NB_SMALL = 64, RIDGE_NB = 128, RIDGE_NB_SMALL_N = 8192, RIDGE_MIN_BLOCKS = 4 };
static int block_size(int n, int ranks) {
  int nb = n <= RIDGE_NB_SMALL_N && n / (ranks > 0 ? ranks : 1) >= RIDGE_MIN_BLOCKS * RIDGE_NB_SMALL ? RIDGE_NB_SMALL
                                                                                                      : RIDGE_NB;
  const char *env = getenv("PERTSCORE_RIDGE_NB");
  int forced = env ? atoi(env) : 0;
  return forced >= 1 && forced <= 4096 ? forced : nb;
}

int ps_ridge_block_size(int n, int ranks) { return block_size(n, ranks); }

/* A row of processes (1 x P, every rank in it): each rank holds whole columns,
 * so pdpotrf factors each column panel on one rank without messages (a P x 1
 * grid measured 5x slower on a busy machine), and the permutation products
 * (ridge_perm.c) are local dgemms of those columns of W = L^-1 against the
 * whole right-hand side. */
static int grid_open(MPI_Comm comm, int n, ridge_grid *g) {
  int size;
  PS_CHECK_MPI(MPI_Comm_size(comm, &size));
  int nprow = 1, npcol = size, me, nprocs;
  Cblacs_pinfo(&me, &nprocs); /* initialises BLACS on top of the running MPI */
  g->handle = Csys2blacs_handle(comm);
  g->ctxt = g->handle;
  Cblacs_gridinit(&g->ctxt, "Row", nprow, npcol);
  Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
  /* Blocks small enough that every process row gets some of a small matrix. */
  int spread = nprow > npcol ? nprow : npcol, nb = block_size(n, spread);
  g->nb = n / spread < 1 ? 1 : (n / spread > nb ? nb : n / spread);

  /* Ask rather than assume how BLACS placed the ranks. A failure on one rank is
   * every rank's before the Allgathers (grid_close frees what was allocated). */
  int err = PS_OK;
  if (g->nprow != nprow || g->npcol != npcol || g->myrow < 0 || g->mycol < 0)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "BLACS could not build a %d x %d process grid on %d ranks",
                       nprow, npcol, size);
  g->prow_of = malloc((size_t)size * sizeof *g->prow_of);
  g->pcol_of = malloc((size_t)size * sizeof *g->pcol_of);
  g->rank_at = malloc((size_t)size * sizeof *g->rank_at);
  if (!err && (!g->prow_of || !g->pcol_of || !g->rank_at))
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (BLACS grid of %d ranks)", size);
  PS_CALL(ps_error_sync(comm, err));
  PS_CHECK_MPI(MPI_Allgather(&g->myrow, 1, MPI_INT, g->prow_of, 1, MPI_INT, comm));
  PS_CHECK_MPI(MPI_Allgather(&g->mycol, 1, MPI_INT, g->pcol_of, 1, MPI_INT, comm));
  for (int r = 0; r < size; r++) g->rank_at[g->prow_of[r] * npcol + g->pcol_of[r]] = r;
  return PS_OK;
}

/* Release the grid and the system handle only: Cblacs_exit would also end BLACS (and with 0, MPI).
 * BLACS sends asynchronously and tests those sends only on its next send: one still
 * queued holds the grid's communicator, which Cblacs_gridexit's MPI_Comm_free then
 * never releases (LeakSanitizer). Every rank has finished the grid's ScaLAPACK
 * calls here, so the sends are matched and the wait ends. */
static void grid_close(ridge_grid *g) {
  if (g->ctxt >= 0) {
    Cblacs_freebuff(g->ctxt, 1);
    Cblacs_gridexit(g->ctxt);
  }
  if (g->handle >= 0) Cfree_blacs_system_handle(g->handle);
  free(g->rank_at);
  free(g->prow_of);
  free(g->pcol_of);
  memset(g, 0, sizeof *g);
  g->ctxt = g->handle = -1;
}

/* ---- the factored system: X^T X + lambda I ---- */

/* Temporaries of the X^T X assembly, freed as soon as X^T X is in place. */
typedef struct {
  pair_table gram; /* this rank's cells' X^T X, lower triangle */
  int *send_n, *send_off, *recv_n, *recv_off;
  int64_t *send_key, *recv_key;
  double *send_val, *recv_val;
} gram_work;

static void gram_work_free(gram_work *w) {
  pair_table_free(&w->gram);
  free(w->send_n), free(w->send_off), free(w->recv_n), free(w->recv_off);
  free(w->send_key), free(w->recv_key), free(w->send_val), free(w->recv_val);
}

/* K and N must agree across ranks, rows must match the design. */
static int check_inputs(MPI_Comm comm, const ps_design *design, const ps_csr *y) {
  int err = PS_OK;
  if (design->n_perturbations < 0 || design->n_perturbations == INT32_MAX)
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "ridge: bad number of perturbations %d",
                       (int)design->n_perturbations);
  else if (y->n_cols < 0 || y->n_cols > INT_MAX)
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "ridge: bad number of regression genes %lld",
                       (long long)y->n_cols);
  else if (y->n_rows != design->n_cells)
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                       "ridge: expression has %lld local cells but the design has %lld",
                       (long long)y->n_rows, (long long)design->n_cells);
  PS_CALL(ps_error_sync(comm, err));
  int64_t mine[4] = {design->n_perturbations, -design->n_perturbations, y->n_cols, -y->n_cols}, all[4];
  PS_CHECK_MPI(MPI_Allreduce(mine, all, 4, MPI_INT64_T, MPI_MAX, comm));
  if (all[0] != -all[1] || all[2] != -all[3])
    PS_FAIL(PS_ERR_SYSTEM, "ridge: ranks disagree on the problem size (K %lld..%lld, N %lld..%lld)",
            (long long)-all[1], (long long)all[0], (long long)-all[3], (long long)all[2]);
  return PS_OK;
}

/* Per cell with perturbation set S: the pairs of {intercept} + S, lower triangle.
 * The intercept is column 0, or with basal groups the column -ids[0] named by a
 * negative first id (ps_design_ridge_columns). */
static int gram_accumulate(const ps_design *d, const uint8_t *keep, int n, pair_table *t) {
  int64_t pairs = 0, triangle = (int64_t)n * (n + 1) / 2;
  for (int64_t c = 0; c < d->n_cells; c++) {
    if (keep && !keep[c]) continue;
    int64_t s = d->ptr[c + 1] - d->ptr[c];
    pairs += (s + 1) * (s + 2) / 2;
  }
  int64_t expect = pairs < triangle ? pairs : triangle, cap = 16;
  while (cap < 2 * expect && cap < ((int64_t)1 << 24)) cap *= 2;
  PS_CALL(pair_table_alloc(t, cap));
  for (int64_t c = 0; c < d->n_cells; c++) {
    if (keep && !keep[c]) continue;
    const int32_t *ids = d->ids + d->ptr[c];
    int64_t s = d->ptr[c + 1] - d->ptr[c], first = 0, basal = 0;
    if (s > 0 && ids[0] < 0) { /* the cell's group intercept */
      basal = -(int64_t)ids[0];
      first = 1;
      if (basal >= n)
        PS_FAIL(PS_ERR_INPUT, "ridge: local cell %lld names intercept column %lld outside [0, %d)", (long long)c,
                (long long)basal, n);
    }
    PS_CALL(pair_table_add(t, basal * n + basal));
    for (int64_t p = first; p < s; p++) {
      /* Sorted and distinct ids make every (row, col) below land in the lower triangle once. */
      if (ids[p] < 0 || ids[p] >= n - 1 || (p > first && ids[p] <= ids[p - 1]))
        PS_FAIL(PS_ERR_INPUT, "ridge: local cell %lld has perturbation ids that are not sorted, distinct and in [0, %d)",
                (long long)c, n - 1);
      int64_t row = ids[p] + 1;
      PS_CALL(pair_table_add(t, row > basal ? row * n + basal : basal * n + row));
      for (int64_t q = first; q <= p; q++) PS_CALL(pair_table_add(t, row * n + ids[q] + 1));
    }
  }
  return PS_OK;
}

/* Sort the local X^T X pairs by the rank owning their block-cyclic position. */
static int gram_pack(const ridge_system *s, gram_work *w, int size) {
  const ridge_grid *g = &s->grid;
  PS_ALLOC(w->send_n, size);
  PS_ALLOC(w->send_off, size);
  PS_ALLOC(w->recv_n, size);
  PS_ALLOC(w->recv_off, size);
  PS_ALLOC(w->send_key, w->gram.n);
  PS_ALLOC(w->send_val, w->gram.n);
  int *owner;
  PS_ALLOC(owner, w->gram.cap);
  for (int64_t t = 0; t < w->gram.cap; t++) {
    int64_t key = w->gram.keys[t];
    if (key < 0) continue;
    int64_t i = key / s->n, j = key % s->n;
    owner[t] = g->rank_at[ridge_owner_of(i, g->nb, g->nprow) * g->npcol + ridge_owner_of(j, g->nb, g->npcol)];
    w->send_n[owner[t]]++; /* at most the owner's share of X^T X, checked to fit an int */
  }
  for (int r = 1; r < size; r++) w->send_off[r] = w->send_off[r - 1] + w->send_n[r - 1];
  int *fill = malloc((size_t)size * sizeof *fill);
  if (!fill) {
    free(owner);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory (X^T X exchange)");
  }
  memcpy(fill, w->send_off, (size_t)size * sizeof *fill);
  for (int64_t t = 0; t < w->gram.cap; t++) {
    if (w->gram.keys[t] < 0) continue;
    int at = fill[owner[t]]++;
    w->send_key[at] = w->gram.keys[t];
    w->send_val[at] = w->gram.counts[t];
  }
  free(fill);
  free(owner);
  return PS_OK;
}

/* This rank's cells only: no communication, so the caller syncs one error for all of it. */
static int gram_local(const ps_design *design, const uint8_t *keep, ridge_system *s, gram_work *w, int size) {
  const ridge_grid *g = &s->grid;
  s->a_rows = ridge_local_count(s->n, g->nb, g->myrow, g->nprow);
  s->a_cols = ridge_local_count(s->n, g->nb, g->mycol, g->npcol);
  /* MPI counts are int: each rank's share must fit one. */
  if ((int64_t)s->a_rows * s->a_cols > INT_MAX)
    PS_FAIL(PS_ERR_INPUT, "ridge: K + 1 = %d is too large for one rank's share of X^T X on %d ranks", s->n, size);
  PS_ALLOC(s->a, (int64_t)s->a_rows * s->a_cols);
  PS_CALL(gram_accumulate(design, keep, s->n, &w->gram));
  PS_CALL(pair_table_finish(&w->gram, (int64_t)s->n * s->n - 1));
  PS_CALL(gram_pack(s, w, size));
  return PS_OK;
}

static int alloc_received(gram_work *w, int64_t total) {
  PS_ALLOC(w->recv_key, total);
  PS_ALLOC(w->recv_val, total);
  return PS_OK;
}

/* Route each X^T X pair to its owner, which adds it into its local array. */
static int gram_exchange(MPI_Comm comm, ridge_system *s, gram_work *w, int size) {
  const ridge_grid *g = &s->grid;
  int err = PS_OK;
  PS_CHECK_MPI(MPI_Alltoall(w->send_n, 1, MPI_INT, w->recv_n, 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; r++) total += w->recv_n[r];
  if (total > INT_MAX) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "ridge: too many X^T X entries for one rank");
  for (int r = 1; r < size && !err; r++) w->recv_off[r] = w->recv_off[r - 1] + w->recv_n[r - 1];
  if (!err) err = alloc_received(w, total);
  PS_CALL(ps_error_sync(comm, err)); /* the receive size is only known now: agree before exchanging */
  PS_CHECK_MPI(MPI_Alltoallv(w->send_key, w->send_n, w->send_off, MPI_INT64_T, w->recv_key, w->recv_n,
                             w->recv_off, MPI_INT64_T, comm));
  PS_CHECK_MPI(MPI_Alltoallv(w->send_val, w->send_n, w->send_off, MPI_DOUBLE, w->recv_val, w->recv_n,
                             w->recv_off, MPI_DOUBLE, comm));
  int lld = s->a_rows > 1 ? s->a_rows : 1;
  for (int64_t e = 0; e < total; e++) {
    int64_t i = w->recv_key[e] / s->n, j = w->recv_key[e] % s->n;
    s->a[ridge_local_of(j, g->nb, g->npcol) * lld + ridge_local_of(i, g->nb, g->nprow)] += w->recv_val[e];
  }
  return PS_OK;
}

/* diagonal[j] for the diagonal entries this rank holds of the n x n matrix in s->a, 0 elsewhere */
static void diagonal_gather(const ridge_system *s, double *diagonal) {
  const ridge_grid *g = &s->grid;
  int lld = s->a_rows > 1 ? s->a_rows : 1;
  memset(diagonal, 0, (size_t)s->n * sizeof *diagonal);
  for (int lj = 0; lj < s->a_cols; lj++) {
    int64_t j = ridge_global_of(lj, g->nb, g->mycol, g->npcol);
    if (ridge_owner_of(j, g->nb, g->nprow) == g->myrow) {
      diagonal[j] = s->a[(int64_t)lj * lld + ridge_local_of(j, g->nb, g->nprow)];
    }
  }
}

int ridge_lambda_check(double lambda) {
  if (!(lambda >= 0) || !isfinite(lambda)) PS_FAIL(PS_ERR_INPUT, "ridge lambda must be finite and >= 0, got %g", lambda);
  return PS_OK;
}

int ridge_system_factor(ridge_system *s, double lambda) {
  PS_CALL(ridge_lambda_check(lambda));
  double t = ps_wtime();
  const ridge_grid *g = &s->grid;
  int zero = 0, one = 1, info = 0;
  int lld = s->a_rows > 1 ? s->a_rows : 1;
  for (int lj = 0; lj < s->a_cols; lj++) { /* the intercept is penalized too (reference behaviour) */
    int64_t j = ridge_global_of(lj, g->nb, g->mycol, g->npcol);
    if (ridge_owner_of(j, g->nb, g->nprow) == g->myrow)
      s->a[(int64_t)lj * lld + ridge_local_of(j, g->nb, g->nprow)] += lambda;
  }
  descinit_(s->desc_a, &s->n, &s->n, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld, &info);
  if (info != 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: descinit for X^T X failed (info %d)", info);
  double *diagonal; /* n entries of X^T X + lambda I, then n squared pivots of its factor */
  PS_ALLOC(diagonal, 2 * (int64_t)s->n);
  diagonal_gather(s, diagonal);
  pdpotrf_("L", &s->n, s->a, &one, &one, s->desc_a, &info, 1);
  if (info == 0) diagonal_gather(s, diagonal + s->n);
  /* info is the same on every rank, so all ranks take part in the sum or none */
  if (info == 0) Cdgsum2d(g->ctxt, "All", " ", 2 * s->n, 1, diagonal, 2 * s->n, -1, -1);
  int weakest = -1;
  double weakest_ratio = 1;
  for (int j = 0; info == 0 && j < s->n; j++) {
    double ratio = diagonal[s->n + j] * diagonal[s->n + j] / diagonal[j];
    if (ratio < weakest_ratio) weakest_ratio = ratio, weakest = j;
  }
  free(diagonal);
  if (info > 0)
    PS_FAIL(PS_ERR_INPUT,
            "ridge: X^T X + lambda I is not positive definite (leading minor %d of %d; lambda = %g). "
            "With lambda = 0 a perturbation carried by no cell, or two always carried together, "
            "makes X^T X singular: use a positive ridge lambda",
            info, s->n, lambda);
  if (info < 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: pdpotrf rejected argument %d", -info);
  /* A singular X^T X can still factor in floating point, with a pivot at rounding
   * level (two perturbations always carried together, lambda 0): its beta would be
   * noise. The squared pivot over the diagonal entry is the share of that design
   * column not explained by the columns before it; lambda > 0 keeps it >= lambda / A_jj. */
  if (weakest >= 0 && weakest_ratio < PS_RIDGE_MIN_RELATIVE_PIVOT)
    PS_FAIL(PS_ERR_INPUT,
            "ridge: X^T X + lambda I is numerically singular (design column %d of %d %s: relative pivot %.3g < %g; "
            "lambda = %g). With lambda = 0, two perturbations always carried by the same cells (or a "
            "perturbation carried by every cell with the intercept) cannot be told apart: use a positive ridge lambda",
            weakest, s->n, weakest == 0 ? "(the intercept)" : "(a perturbation)", weakest_ratio,
            PS_RIDGE_MIN_RELATIVE_PIVOT, lambda);
  ps_stats_add("ridge.factor_seconds", ps_wtime() - t);
  ps_stats_add("ridge.factor_flops", (double)s->n * s->n * s->n / 3.0); /* Cholesky, the whole matrix */
  return PS_OK;
}

static int assemble(MPI_Comm comm, const ps_design *design, const ps_csr *y, const uint8_t *keep, ridge_system *s,
                    gram_work *w) {
  int size;
  PS_CHECK_MPI(MPI_Comm_size(comm, &size));
  PS_CALL(check_inputs(comm, design, y));
  s->n = design->n_perturbations + 1;
  s->n_genes = (int)y->n_cols;
  PS_CALL(grid_open(comm, s->n, &s->grid));
  double t = ps_wtime();
  PS_CALL(ps_error_sync(comm, gram_local(design, keep, s, w, size)));
  PS_CALL(gram_exchange(comm, s, w, size));
  ps_stats_add("ridge.gram_seconds", ps_wtime() - t);
  ps_stats_max("ridge.bytes_matrix", (double)s->a_rows * s->a_cols * sizeof *s->a);
  return PS_OK;
}

void ridge_system_init(ridge_system *s) {
  memset(s, 0, sizeof *s);
  s->grid.ctxt = s->grid.handle = -1;
}

int ridge_system_assemble(MPI_Comm comm, const ps_design *design, const ps_csr *y, const uint8_t *keep,
                          ridge_system *s) {
  gram_work w;
  memset(&w, 0, sizeof w);
  int err = assemble(comm, design, y, keep, s, &w);
  gram_work_free(&w);
  return err;
}

int ridge_system_build(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda, ridge_system *s) {
  PS_CALL(ps_error_sync(comm, ridge_lambda_check(lambda))); /* before the collectives of the assembly */
  PS_CALL(ps_fault_mpi_error("ridge", comm));                /* tests/fault/mpi_error.sh */
  PS_CALL(ridge_system_assemble(comm, design, y, NULL, s));
  return ridge_system_factor(s, lambda); /* pdpotrf's info is the same on every rank */
}

void ridge_system_free(ridge_system *s) {
  if (s->grid.ctxt >= 0 || s->grid.handle >= 0) grid_close(&s->grid);
  free(s->a);
  ridge_system_init(s);
}
