/* scMAGeCK-LR ridge regression (SPEC.md section 2):
 * B = (X^T X + lambda I)^-1 X^T Y with X = [1 | D], the intercept penalized too.
 *
 * X^T X is assembled once over the kept cells (ridge_system.c) and, per lambda
 * of a grid, refactored from a copy of it. X^T Y is a block-cyclic right-hand
 * side: each rank adds its cells densely ((K + 1) x N is the size of the
 * answer, which every rank holds anyway), one reduce-scatter sums the ranks'
 * parts straight into their owners' shares, and one multi-right-hand-side
 * solve (pdpotrs) gives B. When it is faster (ridge_fit_prefers_inverse) the
 * grid runs instead on W = L^-1 (ridge_perm.c), as the permutations do. */
#include "ridge_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- right-hand sides ---- */

static int rhs_layout(const ridge_system *s, int ncols, ridge_rhs *r) {
  const ridge_grid *g = &s->grid;
  int size = g->nprow * g->npcol, zero = 0, info = 0;
  r->ncols = ncols;
  r->b_cols = ridge_local_count(ncols, g->nb, g->mycol, g->npcol);
  if ((int64_t)s->a_rows * r->b_cols > INT_MAX) /* MPI counts are int */
    PS_FAIL(PS_ERR_INPUT, "ridge: K + 1 = %d by %d right-hand-side columns is too large for one rank's share on %d ranks",
            s->n, ncols, size);
  PS_ALLOC(r->share, size);
  PS_ALLOC(r->base, size);
  int64_t at = 0;
  for (int rank = 0; rank < size; rank++) {
    int pr = g->prow_of[rank], pc = g->pcol_of[rank];
    int64_t entries = (int64_t)ridge_local_count(s->n, g->nb, pr, g->nprow) *
                      ridge_local_count(ncols, g->nb, pc, g->npcol);
    r->share[rank] = (int)entries; /* each rank checked its own share above; errors are synced before use */
    r->base[pr * g->npcol + pc] = at;
    at += entries;
  }
  PS_ALLOC(r->row_proc, s->n);
  PS_ALLOC(r->row_local, s->n);
  PS_ALLOC(r->row_span, s->n);
  for (int i = 0; i < s->n; i++) {
    r->row_proc[i] = ridge_owner_of(i, g->nb, g->nprow);
    r->row_local[i] = (int)ridge_local_of(i, g->nb, g->nprow);
    r->row_span[i] = ridge_local_count(s->n, g->nb, r->row_proc[i], g->nprow);
  }
  PS_ALLOC(r->col_proc, ncols);
  PS_ALLOC(r->col_local, ncols);
  for (int j = 0; j < ncols; j++) {
    r->col_proc[j] = ridge_owner_of(j, g->nb, g->npcol);
    r->col_local[j] = (int)ridge_local_of(j, g->nb, g->npcol);
  }
  PS_ALLOC(r->packed, (int64_t)s->n * ncols);
  PS_ALLOC(r->dense, (int64_t)s->n * s->n_genes);
  r->n = s->n;
  r->dense_cols = s->n_genes;
  PS_ALLOC(r->b, (int64_t)s->a_rows * r->b_cols);
  int lld = s->a_rows > 1 ? s->a_rows : 1;
  descinit_(r->desc_b, &s->n, &r->ncols, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld, &info);
  if (info != 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: descinit for X^T Y failed (info %d)", info);
  r->npcol = g->npcol;
  return PS_OK;
}

int ridge_rhs_init(const ridge_system *s, int ncols, ridge_rhs *r) {
  memset(r, 0, sizeof *r);
  return rhs_layout(s, ncols, r);
}

void ridge_rhs_free(ridge_rhs *r) {
  free(r->share), free(r->base), free(r->row_proc), free(r->row_local), free(r->row_span);
  free(r->col_proc), free(r->col_local), free(r->packed), free(r->dense), free(r->b);
  memset(r, 0, sizeof *r);
}

/* Where global entry (i, column with owner pc and local index lc) sits in packed. */
static inline int64_t rhs_at(const ridge_rhs *r, int32_t i, int pc, int64_t lc) {
  return r->base[r->row_proc[i] * r->npcol + pc] + lc * r->row_span[i] + r->row_local[i];
}

/* Row 0 sums every cell's expression (with basal groups: row -ids[0] if the
 * design row starts with a negative id, ps_design_ridge_columns); row k + 1 sums
 * the cells whose design row carries k. The sums go to a row-major (K + 1) x N scratch first: a cell's
 * genes are consecutive there, whereas in packed they are a column stride apart
 * (a cache miss per add once a batch is larger than the cache). Copying the
 * scratch into packed costs (K + 1) x N, the size the reduce-scatter moves anyway. */
int ridge_rhs_add(ridge_rhs *r, const int64_t *ptr, const int32_t *ids, const uint8_t *keep, const ps_csr *y,
                  int col0) {
  int n_genes = r->dense_cols;
  if (y->n_cols != n_genes || (int64_t)col0 + n_genes > r->ncols)
    PS_FAIL(PS_ERR_SYSTEM, "ridge: %lld genes at column %d do not fit %d right-hand sides of %d genes",
            (long long)y->n_cols, col0, r->ncols, n_genes);
  memset(r->dense, 0, (size_t)r->n * (size_t)n_genes * sizeof *r->dense);
  for (int64_t c = 0; c < y->n_rows; c++) {
    if (keep && !keep[c]) continue;
    const int32_t *row = ids + ptr[c];
    int64_t s = ptr[c + 1] - ptr[c], basal = 0;
    if (s > 0 && row[0] < 0) { /* group intercept; validated with the design by ridge_system_assemble */
      basal = -(int64_t)row[0];
      row++;
      s--;
    }
    double *basal_row = r->dense + basal * n_genes;
    for (int64_t p = y->indptr[c]; p < y->indptr[c + 1]; p++) {
      int32_t gene = y->indices[p];
      double v = y->data[p];
      if (gene < 0 || gene >= n_genes)
        PS_FAIL(PS_ERR_INPUT, "ridge: local cell %lld has gene index %d outside [0, %d)", (long long)c,
                (int)gene, n_genes);
      basal_row[gene] += v;
      for (int64_t q = 0; q < s; q++) r->dense[(int64_t)(row[q] + 1) * n_genes + gene] += v;
    }
  }
  for (int j = 0; j < n_genes; j++) {
    int pc = r->col_proc[col0 + j];
    int64_t lc = r->col_local[col0 + j];
    for (int32_t i = 0; i < r->n; i++) r->packed[rhs_at(r, i, pc, lc)] += r->dense[(int64_t)i * n_genes + j];
  }
  return PS_OK;
}

/* ---- fits over a lambda grid through pdpotrs ---- */

/* Every rank writes its solved entries into a zeroed dense beta; a sum replicates it. */
static int beta_gather(MPI_Comm comm, const ridge_system *s, const ridge_rhs *r, double *beta) {
  const ridge_grid *g = &s->grid;
  int lld = s->a_rows > 1 ? s->a_rows : 1;
  memset(beta, 0, (size_t)s->n * (size_t)r->ncols * sizeof *beta);
  for (int lj = 0; lj < r->b_cols; lj++) {
    int64_t j = ridge_global_of(lj, g->nb, g->mycol, g->npcol);
    for (int li = 0; li < s->a_rows; li++)
      beta[ridge_global_of(li, g->nb, g->myrow, g->nprow) * r->ncols + j] = r->b[(int64_t)lj * lld + li];
  }
  PS_CALL(ps_allreduce_sum(comm, beta, (int64_t)s->n * r->ncols, MPI_DOUBLE, sizeof *beta));
  return PS_OK;
}

/* Buffers of a pdpotrs grid, freed in one place. */
typedef struct {
  ridge_rhs r;
  double *saved; /* this rank's share of X^T Y, to solve again for the next lambda */
  ps_ridge fit;
} potrs_work;

static int potrs_alloc(const ridge_system *s, const ps_design *design, const ps_csr *y, const uint8_t *keep,
                       int n_lambdas, potrs_work *w) {
  PS_CALL(ridge_rhs_init(s, s->n_genes, &w->r));
  if (n_lambdas > 1) PS_ALLOC(w->saved, (int64_t)s->a_rows * w->r.b_cols);
  PS_CALL(ridge_rhs_add(&w->r, design->ptr, design->ids, keep, y, 0));
  return PS_OK;
}

static int potrs_grid(MPI_Comm comm, ridge_system *s, const double *gram, const ps_design *design, const ps_csr *y,
                      const uint8_t *keep, int n_lambdas, const double *lambdas, ps_ridge_each each, void *ctx,
                      potrs_work *w) {
  double t = ps_wtime();
  PS_CALL(ps_error_sync(comm, potrs_alloc(s, design, y, keep, n_lambdas, w)));
  ps_stats_add("ridge.rhs_seconds", ps_wtime() - t);
  t = ps_wtime();
  /* Sum every rank's X^T Y; each rank receives exactly its block-cyclic part. */
  PS_CHECK_MPI(MPI_Reduce_scatter(w->r.packed, w->r.b, w->r.share, MPI_DOUBLE, MPI_SUM, comm));
  ps_stats_add("ridge.reduce_seconds", ps_wtime() - t);
  int64_t share = (int64_t)s->a_rows * w->r.b_cols, entries = (int64_t)s->a_rows * s->a_cols;
  if (w->saved) memcpy(w->saved, w->r.b, (size_t)share * sizeof *w->saved);
  for (int l = 0; l < n_lambdas; l++) {
    if (l > 0) {
      memcpy(s->a, gram, (size_t)entries * sizeof *s->a);
      memcpy(w->r.b, w->saved, (size_t)share * sizeof *w->r.b);
    }
    PS_CALL(ridge_system_factor(s, lambdas[l]));
    t = ps_wtime();
    int one = 1, info = 0;
    pdpotrs_("L", &s->n, &w->r.ncols, s->a, &one, &one, s->desc_a, w->r.b, &one, &one, w->r.desc_b, &info, 1);
    if (info != 0) PS_FAIL(PS_ERR_SYSTEM, "ridge: pdpotrs rejected argument %d", -info);
    ps_stats_add("ridge.solve_seconds", ps_wtime() - t);
    ps_stats_add("ridge.solve_flops", 2.0 * s->n * (double)s->n * w->r.ncols); /* two triangular solves */
    /* each may have kept the previous lambda's beta on some ranks only: every rank syncs, allocating or not. */
    if (!w->fit.beta) w->fit.beta = ps_alloc_huge((size_t)s->n * (size_t)s->n_genes * sizeof *w->fit.beta);
    PS_CALL(ps_error_sync(comm, w->fit.beta ? PS_OK
                                            : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (ridge beta)")));
    PS_CALL(beta_gather(comm, s, &w->r, w->fit.beta));
    w->fit.n_rows = s->n;
    w->fit.n_genes = s->n_genes;
    w->fit.lambda = lambdas[l];
    PS_CALL(each(ctx, l, &w->fit));
  }
  return PS_OK;
}

static int check_grid(MPI_Comm comm, int n_lambdas, const double *lambdas) {
  int err = n_lambdas < 1 ? ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "ridge: an empty lambda grid") : PS_OK;
  for (int l = 0; l < n_lambdas && !err; l++) err = ridge_lambda_check(lambdas[l]);
  return ps_error_sync(comm, err);
}

static int fit_grid(MPI_Comm comm, ridge_system *s, double **gram, const ps_design *design, const ps_csr *y,
                    const uint8_t *keep, int n_lambdas, const double *lambdas, ps_ridge_each each, void *ctx) {
  PS_CALL(ridge_system_assemble(comm, design, y, keep, s));
  if (n_lambdas > 1) {
    int64_t entries = (int64_t)s->a_rows * s->a_cols;
    *gram = malloc((size_t)(entries > 0 ? entries : 1) * sizeof **gram);
    PS_CALL(ps_error_sync(comm, *gram ? PS_OK
                                      : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (X^T X copy)")));
    memcpy(*gram, s->a, (size_t)entries * sizeof **gram);
  }
  if (ridge_fit_prefers_inverse(s))
    return ridge_grid_inverse(comm, s, *gram, design, y, keep, n_lambdas, lambdas, each, ctx);
  potrs_work w;
  memset(&w, 0, sizeof w);
  int err = potrs_grid(comm, s, *gram, design, y, keep, n_lambdas, lambdas, each, ctx, &w);
  ridge_rhs_free(&w.r);
  free(w.saved);
  ps_ridge_free(&w.fit);
  return err;
}

int ps_ridge_fit_grid(MPI_Comm comm, const ps_design *design, const ps_csr *y, const uint8_t *keep, int n_lambdas,
                      const double *lambdas, ps_ridge_each each, void *ctx) {
  PS_CALL(check_grid(comm, n_lambdas, lambdas));
  ridge_system s;
  ridge_system_init(&s);
  double *gram = NULL;
  int err = fit_grid(comm, &s, &gram, design, y, keep, n_lambdas, lambdas, each, ctx);
  free(gram);
  ridge_system_free(&s);
  return err;
}

int ps_ridge_each_keep(void *ctx, int l, ps_ridge *B) {
  (void)l;
  ps_ridge *out = ctx;
  ps_ridge_free(out);
  *out = *B;
  B->beta = NULL;
  return PS_OK;
}

int ps_ridge_fit(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda, ps_ridge *out) {
  memset(out, 0, sizeof *out);
  int err = ps_ridge_fit_grid(comm, design, y, NULL, 1, &lambda, ps_ridge_each_keep, out);
  if (err) ps_ridge_free(out);
  return err;
}

void ps_ridge_free(ps_ridge *r) {
  if (!r) return;
  free(r->beta);
  memset(r, 0, sizeof *r);
}
