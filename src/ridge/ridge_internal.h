/* Internal to src/ridge: the factored ridge system and its block-cyclic
 * right-hand sides, shared by the fit (ridge.c) and the permutation p-values
 * (ridge_perm.c). X^T X does not depend on how Y is paired with the design
 * rows (SPEC.md section 2), so it is assembled and factored once
 * (ridge_system) and then solved against any number of right-hand-side blocks
 * (ridge_rhs). */
#ifndef PS_RIDGE_INTERNAL_H
#define PS_RIDGE_INTERNAL_H

#include "pertscore/ridge.h"
#include "../util/scalapack.h"

/* ---- block-cyclic index arithmetic (block size nb, first block on process 0) ---- */

static inline int ridge_owner_of(int64_t global, int nb, int nprocs) { return (int)((global / nb) % nprocs); }
static inline int64_t ridge_local_of(int64_t global, int nb, int nprocs) {
  return global / ((int64_t)nb * nprocs) * nb + global % nb;
}
static inline int64_t ridge_global_of(int64_t local, int nb, int proc, int nprocs) {
  return local / nb * nb * nprocs + (int64_t)proc * nb + local % nb;
}
static inline int ridge_local_count(int global_n, int nb, int proc, int nprocs) {
  int zero = 0;
  return numroc_(&global_n, &nb, &proc, &zero, &nprocs);
}

typedef struct {
  int handle, ctxt; /* BLACS system handle and grid context; -1 when not open */
  int nprow, npcol, myrow, mycol;
  int nb;       /* square block size, the same for both matrices (pdpotrs needs equal row blocks) */
  int *rank_at; /* comm rank at grid position (prow, pcol): rank_at[prow * npcol + pcol] */
  int *prow_of, *pcol_of; /* grid position of each comm rank */
} ridge_grid;

/* X^T X + lambda I summed over every rank's cells and Cholesky-factored in
 * place (pdpotrf, lower triangle): built once, solved many times. */
typedef struct {
  ridge_grid grid;
  int n;              /* K + 1 */
  int n_genes;        /* N, checked to agree across ranks */
  int a_rows, a_cols; /* this rank's block-cyclic share of the n x n matrix */
  int desc_a[9];
  double *a;          /* local part of the factor L */
} ridge_system;

/* One n x ncols right-hand side (X^T Y, or several permuted X^T Y_r side by
 * side). Every rank adds its cells densely into `packed`, laid out in the
 * reduce-scatter's order (comm rank by comm rank, each rank's block-cyclic
 * share column-major), so one MPI_Reduce_scatter leaves each rank exactly its
 * share in `b` with no dense intermediate copy. */
typedef struct {
  int n;                /* K + 1 rows */
  int ncols;
  int b_cols;           /* this rank's local columns */
  int npcol;            /* process columns of the grid */
  int desc_b[9];
  int *share;           /* per comm rank: entries of its share (reduce-scatter counts) */
  int64_t *base;        /* per grid position prow * npcol + pcol: start of that share in packed */
  int *row_proc, *row_local, *row_span; /* per global row: process row, local row, rows of that process row */
  int *col_proc, *col_local;            /* per global column: process column, local column */
  double *packed;       /* n x ncols, this rank's cells only */
  double *dense;        /* n x N row-major scratch of one ridge_rhs_add */
  int dense_cols;       /* N */
  double *b;            /* this rank's share of the sum; solved in place; leading dimension max(a_rows, 1) */
} ridge_rhs;

/* Check the inputs, open the grid and assemble X^T X (no lambda yet) over the
 * local cells with keep[c] != 0 (keep NULL: all) into s->a. Collective; on
 * error the caller still calls ridge_system_free. */
int ridge_system_assemble(MPI_Comm comm, const ps_design *design, const ps_csr *y, const uint8_t *keep,
                          ridge_system *s);
/* PS_ERR_INPUT unless lambda is finite and >= 0. Rank-local. */
int ridge_lambda_check(double lambda);
/* Add lambda to the diagonal of s->a and Cholesky-factor it in place (pdpotrf). Collective. */
int ridge_system_factor(ridge_system *s, double lambda);
/* Assemble over every cell and factor. Collective. */
int ridge_system_build(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda, ridge_system *s);
void ridge_system_init(ridge_system *s); /* empty, safe to free */
void ridge_system_free(ridge_system *s);

/* Layout and buffers of an n x ncols right-hand side. Rank-local (no
 * communication): the caller agrees on errors with ps_error_sync. */
int ridge_rhs_init(const ridge_system *s, int ncols, ridge_rhs *r);
void ridge_rhs_free(ridge_rhs *r);
/* Add x_c y_c^T for every local cell c with keep[c] != 0 (keep NULL: all) into
 * columns [col0, col0 + N) of packed (y has the system's N genes). ptr/ids are
 * design rows as in ps_design (already validated by ridge_system_assemble).
 * Rank-local. */
int ridge_rhs_add(ridge_rhs *r, const int64_t *ptr, const int32_t *ids, const uint8_t *keep, const ps_csr *y,
                  int col0);

/* The lambda grid of ps_ridge_fit_grid on an assembled (unfactored) system;
 * gram: a copy of the assembled s->a to refactor from for every lambda after
 * the first (NULL when there is one lambda). Through W = L^-1 (ridge_perm.c:
 * pdtrtri, then two triangular dgemm passes) or pdpotrs (ridge.c). Collective. */
int ridge_grid_inverse(MPI_Comm comm, ridge_system *s, const double *gram, const ps_design *design, const ps_csr *y,
                       const uint8_t *keep, int n_lambdas, const double *lambdas, ps_ridge_each each, void *ctx);
/* Whether a fit is faster through W = L^-1 than pdpotrs (PERTSCORE_RIDGE_SOLVE overrides). */
int ridge_fit_prefers_inverse(const ridge_system *s);

#endif
