/* scMAGeCK-LR ridge regression (SPEC.md section 2):
 * B = (X^T X + lambda I)^-1 X^T Y with X = [1 | D], the intercept penalized too.
 *
 * X^T X and X^T Y are sums over cells, so each rank adds its own cells and the
 * sums meet in ScaLAPACK block-cyclic matrices on a BLACS grid over comm.
 * X^T X is assembled from each cell's (|S| + 1)^2 design pairs, never from a
 * dense cells x perturbations matrix. X^T Y is accumulated densely per rank:
 * (K + 1) x N is the size of the answer, which every rank holds anyway.
 * One Cholesky (pdpotrf), one multi-right-hand-side solve (pdpotrs). */
#include "pertscore/ridge.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* BLACS C interface and ScaLAPACK. The ScaLAPACK routines are Fortran: the
 * trailing size_t is gfortran's hidden length of a CHARACTER argument. */
void Cblacs_pinfo(int *mypnum, int *nprocs);
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja, const int *desca,
              int *info, size_t uplo_len);
void pdpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *ia, const int *ja,
              const int *desca, double *b, const int *ib, const int *jb, const int *descb, int *info,
              size_t uplo_len);

/* ---- block-cyclic index arithmetic (block size nb, first block on process 0) ---- */

static int owner_of(int64_t global, int nb, int nprocs) { return (int)((global / nb) % nprocs); }
static int64_t local_of(int64_t global, int nb, int nprocs) {
  return global / ((int64_t)nb * nprocs) * nb + global % nb;
}
static int64_t global_of(int64_t local, int nb, int proc, int nprocs) {
  return local / nb * nb * nprocs + (int64_t)proc * nb + local % nb;
}
static int local_count(int global_n, int nb, int proc, int nprocs) {
  int zero = 0;
  return numroc_(&global_n, &nb, &proc, &zero, &nprocs);
}

/* ---- sparse accumulator for this rank's X^T X: key i * n + j (i >= j) -> count ---- */

typedef struct {
  int64_t *keys; /* -1 = empty slot */
  double *counts;
  int64_t cap, n;
} pair_table;

static uint64_t pair_slot(int64_t key, int64_t cap) {
  uint64_t h = (uint64_t)key * 0x9e3779b97f4a7c15ULL;
  return (h ^ (h >> 31)) & (uint64_t)(cap - 1);
}

static int pair_table_alloc(pair_table *t, int64_t cap) {
  PS_ALLOC(t->keys, cap);
  PS_ALLOC(t->counts, cap);
  for (int64_t s = 0; s < cap; s++) t->keys[s] = -1;
  t->cap = cap;
  t->n = 0;
  return PS_OK;
}

static void pair_table_free(pair_table *t) {
  free(t->keys);
  free(t->counts);
  memset(t, 0, sizeof *t);
}

static void pair_table_insert(pair_table *t, int64_t key, double count) {
  uint64_t s = pair_slot(key, t->cap);
  while (t->keys[s] != -1 && t->keys[s] != key) s = (s + 1) & (uint64_t)(t->cap - 1);
  if (t->keys[s] == -1) {
    t->keys[s] = key;
    t->n++;
  }
  t->counts[s] += count;
}

/* Keep the load at most one half so linear probing stays short. */
static int pair_table_add(pair_table *t, int64_t key) {
  if (2 * (t->n + 1) > t->cap) {
    pair_table bigger = {0};
    int err = pair_table_alloc(&bigger, 2 * t->cap);
    if (err) {
      pair_table_free(&bigger);
      PS_CALL(err);
    }
    for (int64_t s = 0; s < t->cap; s++)
      if (t->keys[s] != -1) pair_table_insert(&bigger, t->keys[s], t->counts[s]);
    pair_table_free(t);
    *t = bigger;
  }
  pair_table_insert(t, key, 1.0);
  return PS_OK;
}

/* ---- BLACS grid ---- */

typedef struct {
  int handle, ctxt; /* BLACS system handle and grid context; -1 when not open */
  int nprow, npcol, myrow, mycol;
  int nb;       /* square block size, the same for both matrices (pdpotrs needs equal row blocks) */
  int *rank_at; /* comm rank at grid position (prow, pcol): rank_at[prow * npcol + pcol] */
  int *prow_of, *pcol_of; /* grid position of each comm rank */
} ridge_grid;

/* The grid uses every rank: nprow is the largest divisor of P not above sqrt(P)
 * (1 x P for a prime P), so no rank sits idle outside the grid. */
static int grid_open(MPI_Comm comm, int n, ridge_grid *g) {
  int size;
  PS_CHECK_MPI(MPI_Comm_size(comm, &size));
  int nprow = 1;
  for (int d = 1; d * d <= size; d++)
    if (size % d == 0) nprow = d;
  int npcol = size / nprow, me, nprocs;
  Cblacs_pinfo(&me, &nprocs); /* initialises BLACS on top of the running MPI */
  g->handle = Csys2blacs_handle(comm);
  g->ctxt = g->handle;
  Cblacs_gridinit(&g->ctxt, "Row", nprow, npcol);
  Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
  if (g->nprow != nprow || g->npcol != npcol || g->myrow < 0 || g->mycol < 0)
    PS_FAIL(PS_ERR_SYSTEM, "BLACS could not build a %d x %d process grid on %d ranks", nprow, npcol, size);
  /* Blocks small enough that every process row and column gets some of a small matrix. */
  int spread = nprow > npcol ? nprow : npcol;
  g->nb = n / spread < 1 ? 1 : (n / spread > 64 ? 64 : n / spread);

  /* Ask rather than assume how BLACS placed the ranks. */
  PS_ALLOC(g->prow_of, size);
  PS_ALLOC(g->pcol_of, size);
  PS_ALLOC(g->rank_at, size);
  PS_CHECK_MPI(MPI_Allgather(&g->myrow, 1, MPI_INT, g->prow_of, 1, MPI_INT, comm));
  PS_CHECK_MPI(MPI_Allgather(&g->mycol, 1, MPI_INT, g->pcol_of, 1, MPI_INT, comm));
  for (int r = 0; r < size; r++) g->rank_at[g->prow_of[r] * npcol + g->pcol_of[r]] = r;
  return PS_OK;
}

/* Release the grid and the system handle only: Cblacs_exit would also end BLACS (and with 0, MPI). */
static void grid_close(ridge_grid *g) {
  if (g->ctxt >= 0) Cblacs_gridexit(g->ctxt);
  if (g->handle >= 0) Cfree_blacs_system_handle(g->handle);
  free(g->rank_at);
  free(g->prow_of);
  free(g->pcol_of);
  memset(g, 0, sizeof *g);
  g->ctxt = g->handle = -1;
}

/* ---- everything one fit holds, freed in one place whichever step fails ---- */

typedef struct {
  ridge_grid grid;
  int n, nrhs;                 /* K + 1, N */
  int a_rows, a_cols, b_cols;  /* local block-cyclic sizes (B has A's row distribution) */
  int desc_a[9], desc_b[9];
  double *a, *b;               /* local parts of X^T X + lambda I (lower triangle) and of X^T Y */
  pair_table gram;             /* this rank's cells' X^T X, lower triangle */
  double *xty;                 /* this rank's cells' X^T Y, row-major (K + 1) x N */
  int *send_n, *send_off, *recv_n, *recv_off; /* per-rank counts for the X^T X exchange */
  int *xty_n;                  /* per-rank share of X^T Y for the reduce-scatter */
  int64_t *send_key, *recv_key;
  double *send_val, *recv_val;
  double *packed;              /* X^T Y packed per owner for the reduce-scatter */
} ridge_work;

static void work_free(ridge_work *w) {
  if (w->grid.ctxt >= 0 || w->grid.handle >= 0) grid_close(&w->grid);
  pair_table_free(&w->gram);
  free(w->a), free(w->b), free(w->xty), free(w->packed), free(w->xty_n);
  free(w->send_n), free(w->send_off), free(w->recv_n), free(w->recv_off);
  free(w->send_key), free(w->recv_key), free(w->send_val), free(w->recv_val);
}

/* K and N must agree across ranks, rows must match the design. */
static int check_inputs(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda) {
  int err = PS_OK;
  if (!(lambda >= 0) || !isfinite(lambda))
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "ridge lambda must be finite and >= 0, got %g", lambda);
  else if (design->n_perturbations < 0 || design->n_perturbations == INT32_MAX)
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

/* Per cell with perturbation set S: the pairs of {intercept} + S, lower triangle. */
static int gram_accumulate(const ps_design *d, int n, pair_table *t) {
  int64_t pairs = 0, triangle = (int64_t)n * (n + 1) / 2;
  for (int64_t c = 0; c < d->n_cells; c++) {
    int64_t s = d->ptr[c + 1] - d->ptr[c];
    pairs += (s + 1) * (s + 2) / 2;
  }
  int64_t expect = pairs < triangle ? pairs : triangle, cap = 16;
  while (cap < 2 * expect && cap < ((int64_t)1 << 24)) cap *= 2;
  PS_CALL(pair_table_alloc(t, cap));
  for (int64_t c = 0; c < d->n_cells; c++) {
    const int32_t *ids = d->ids + d->ptr[c];
    int64_t s = d->ptr[c + 1] - d->ptr[c];
    PS_CALL(pair_table_add(t, 0));
    for (int64_t p = 0; p < s; p++) {
      /* Sorted and distinct ids make every (row, col) below land in the lower triangle once. */
      if (ids[p] < 0 || ids[p] >= n - 1 || (p > 0 && ids[p] <= ids[p - 1]))
        PS_FAIL(PS_ERR_INPUT, "ridge: local cell %lld has perturbation ids that are not sorted, distinct and in [0, %d)",
                (long long)c, n - 1);
      int64_t row = ids[p] + 1;
      PS_CALL(pair_table_add(t, row * n));
      for (int64_t q = 0; q <= p; q++) PS_CALL(pair_table_add(t, row * n + ids[q] + 1));
    }
  }
  return PS_OK;
}

/* Row 0 sums every cell's expression; row k + 1 sums the cells carrying k. */
static int xty_accumulate(const ps_design *d, const ps_csr *y, int nrhs, double *xty) {
  for (int64_t c = 0; c < d->n_cells; c++) {
    for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++) {
      int32_t gene = y->indices[p];
      double v = y->data[p];
      if (gene < 0 || gene >= nrhs)
        PS_FAIL(PS_ERR_INPUT, "ridge: local cell %lld has gene index %d outside [0, %d)", (long long)c,
                (int)gene, nrhs);
      xty[gene] += v;
      for (int64_t q = d->ptr[c]; q < d->ptr[c + 1]; q++) xty[(int64_t)(d->ids[q] + 1) * nrhs + gene] += v;
    }
  }
  return PS_OK;
}

/* Sort the local X^T X pairs by the rank owning their block-cyclic position. */
static int gram_pack(ridge_work *w, int size) {
  const ridge_grid *g = &w->grid;
  PS_ALLOC(w->send_n, size);
  PS_ALLOC(w->send_off, size);
  PS_ALLOC(w->recv_n, size);
  PS_ALLOC(w->recv_off, size);
  PS_ALLOC(w->send_key, w->gram.n);
  PS_ALLOC(w->send_val, w->gram.n);
  int *owner;
  PS_ALLOC(owner, w->gram.cap);
  for (int64_t s = 0; s < w->gram.cap; s++) {
    int64_t key = w->gram.keys[s];
    if (key < 0) continue;
    int64_t i = key / w->n, j = key % w->n;
    owner[s] = g->rank_at[owner_of(i, g->nb, g->nprow) * g->npcol + owner_of(j, g->nb, g->npcol)];
    w->send_n[owner[s]]++; /* at most the owner's share of X^T X, checked to fit an int */
  }
  for (int r = 1; r < size; r++) w->send_off[r] = w->send_off[r - 1] + w->send_n[r - 1];
  int *fill;
  PS_ALLOC(fill, size);
  memcpy(fill, w->send_off, (size_t)size * sizeof *fill);
  for (int64_t s = 0; s < w->gram.cap; s++) {
    if (w->gram.keys[s] < 0) continue;
    int at = fill[owner[s]]++;
    w->send_key[at] = w->gram.keys[s];
    w->send_val[at] = w->gram.counts[s];
  }
  free(fill);
  free(owner);
  return PS_OK;
}

/* X^T Y in the reduce-scatter's order: rank by rank, each rank's local entries column-major. */
static int xty_pack(ridge_work *w, int size) {
  const ridge_grid *g = &w->grid;
  PS_ALLOC(w->packed, (int64_t)w->n * w->nrhs);
  PS_ALLOC(w->xty_n, size);
  int64_t at = 0;
  for (int r = 0; r < size; r++) {
    int rows = local_count(w->n, g->nb, g->prow_of[r], g->nprow);
    int cols = local_count(w->nrhs, g->nb, g->pcol_of[r], g->npcol);
    w->xty_n[r] = (int)((int64_t)rows * cols); /* each rank checked its own share fits an int */
    for (int lj = 0; lj < cols; lj++) {
      int64_t j = global_of(lj, g->nb, g->pcol_of[r], g->npcol);
      for (int li = 0; li < rows; li++)
        w->packed[at++] = w->xty[global_of(li, g->nb, g->prow_of[r], g->nprow) * w->nrhs + j];
    }
  }
  return PS_OK;
}

/* This rank's cells only: no communication, so the caller syncs one error for all of it. */
static int local_phase(const ps_design *design, const ps_csr *y, ridge_work *w, int size, double **beta) {
  const ridge_grid *g = &w->grid;
  w->a_rows = local_count(w->n, g->nb, g->myrow, g->nprow);
  w->a_cols = local_count(w->n, g->nb, g->mycol, g->npcol);
  w->b_cols = local_count(w->nrhs, g->nb, g->mycol, g->npcol);
  /* MPI counts are int: each rank's share of either matrix must fit one. */
  if ((int64_t)w->a_rows * w->b_cols > INT_MAX || (int64_t)w->a_rows * w->a_cols > INT_MAX)
    PS_FAIL(PS_ERR_INPUT, "ridge: K + 1 = %d, N = %d is too large for one rank's share on %d ranks", w->n,
            w->nrhs, size);
  PS_ALLOC(w->a, (int64_t)w->a_rows * w->a_cols);
  PS_ALLOC(w->b, (int64_t)w->a_rows * w->b_cols);
  PS_ALLOC(w->xty, (int64_t)w->n * w->nrhs);
  PS_ALLOC(*beta, (int64_t)w->n * w->nrhs);
  PS_CALL(gram_accumulate(design, w->n, &w->gram));
  PS_CALL(xty_accumulate(design, y, w->nrhs, w->xty));
  PS_CALL(gram_pack(w, size));
  PS_CALL(xty_pack(w, size));
  return PS_OK;
}

static int alloc_received(ridge_work *w, int64_t total) {
  PS_ALLOC(w->recv_key, total);
  PS_ALLOC(w->recv_val, total);
  return PS_OK;
}

/* Route each X^T X pair to its owner, which adds it into its local array. */
static int gram_exchange(MPI_Comm comm, ridge_work *w, int size) {
  const ridge_grid *g = &w->grid;
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
  int lld = w->a_rows > 1 ? w->a_rows : 1;
  for (int64_t e = 0; e < total; e++) {
    int64_t i = w->recv_key[e] / w->n, j = w->recv_key[e] % w->n;
    w->a[local_of(j, g->nb, g->npcol) * lld + local_of(i, g->nb, g->nprow)] += w->recv_val[e];
  }
  return PS_OK;
}

/* Sum every rank's X^T Y; each rank receives exactly its block-cyclic part. */
static int xty_exchange(MPI_Comm comm, ridge_work *w) {
  PS_CHECK_MPI(MPI_Reduce_scatter(w->packed, w->b, w->xty_n, MPI_DOUBLE, MPI_SUM, comm));
  return PS_OK;
}

static int cholesky_solve(ridge_work *w, double lambda) {
  const ridge_grid *g = &w->grid;
  int zero = 0, one = 1, info = 0;
  int lld = w->a_rows > 1 ? w->a_rows : 1;
  for (int lj = 0; lj < w->a_cols; lj++) { /* the intercept is penalized too (reference behaviour) */
    int64_t j = global_of(lj, g->nb, g->mycol, g->npcol);
    if (owner_of(j, g->nb, g->nprow) == g->myrow) w->a[(int64_t)lj * lld + local_of(j, g->nb, g->nprow)] += lambda;
  }
  descinit_(w->desc_a, &w->n, &w->n, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld, &info);
  if (info != 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: descinit for X^T X failed (info %d)", info);
  descinit_(w->desc_b, &w->n, &w->nrhs, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld, &info);
  if (info != 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: descinit for X^T Y failed (info %d)", info);

  pdpotrf_("L", &w->n, w->a, &one, &one, w->desc_a, &info, 1);
  if (info > 0)
    PS_FAIL(PS_ERR_INPUT,
            "ridge: X^T X + lambda I is not positive definite (leading minor %d of %d; lambda = %g). "
            "With lambda = 0 a perturbation carried by no cell, or two always carried together, "
            "makes X^T X singular: use a positive ridge lambda",
            info, w->n, lambda);
  if (info < 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: pdpotrf rejected argument %d", -info);
  if (w->nrhs == 0) return PS_OK;
  pdpotrs_("L", &w->n, &w->nrhs, w->a, &one, &one, w->desc_a, w->b, &one, &one, w->desc_b, &info, 1);
  if (info != 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: pdpotrs rejected argument %d", -info);
  return PS_OK;
}

/* Every rank writes its solved entries into a zeroed dense beta; a sum replicates it. */
static int beta_gather(MPI_Comm comm, const ridge_work *w, double *beta) {
  const ridge_grid *g = &w->grid;
  int lld = w->a_rows > 1 ? w->a_rows : 1;
  for (int lj = 0; lj < w->b_cols; lj++) {
    int64_t j = global_of(lj, g->nb, g->mycol, g->npcol);
    for (int li = 0; li < w->a_rows; li++)
      beta[global_of(li, g->nb, g->myrow, g->nprow) * w->nrhs + j] = w->b[(int64_t)lj * lld + li];
  }
  int64_t total = (int64_t)w->n * w->nrhs, chunk = (int64_t)1 << 28; /* MPI counts are int */
  for (int64_t at = 0; at < total; at += chunk) {
    int count = (int)(total - at < chunk ? total - at : chunk);
    PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, beta + at, count, MPI_DOUBLE, MPI_SUM, comm));
  }
  return PS_OK;
}

static int fit(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda, ps_ridge *out,
               ridge_work *w) {
  int size;
  PS_CHECK_MPI(MPI_Comm_size(comm, &size));
  PS_CALL(check_inputs(comm, design, y, lambda));
  w->n = design->n_perturbations + 1;
  w->nrhs = (int)y->n_cols;
  PS_CALL(grid_open(comm, w->n, &w->grid));
  PS_CALL(ps_error_sync(comm, local_phase(design, y, w, size, &out->beta)));
  PS_CALL(gram_exchange(comm, w, size));
  PS_CALL(xty_exchange(comm, w));
  PS_CALL(cholesky_solve(w, lambda));
  PS_CALL(beta_gather(comm, w, out->beta));
  out->n_rows = w->n;
  out->n_genes = w->nrhs;
  out->lambda = lambda;
  return PS_OK;
}

int ps_ridge_fit(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda, ps_ridge *out) {
  memset(out, 0, sizeof *out);
  ridge_work w;
  memset(&w, 0, sizeof w);
  w.grid.ctxt = w.grid.handle = -1;
  int err = fit(comm, design, y, lambda, out, &w);
  work_free(&w);
  if (err) ps_ridge_free(out);
  return err;
}

void ps_ridge_free(ps_ridge *r) {
  if (!r) return;
  free(r->beta);
  memset(r, 0, sizeof *r);
}
