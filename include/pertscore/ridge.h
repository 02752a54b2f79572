/* pertscore/ridge.h: scMAGeCK-LR ridge regression (SPEC.md section 2).
 *
 * B = (X^T X + lambda I)^-1 X^T Y with X = [1 | D] (M x (K+1)), the intercept
 * penalized too. Each rank adds its cells' sparse contributions to X^T X and
 * X^T Y; the sums land in ScaLAPACK block-cyclic matrices (a 1 x P grid); one
 * Cholesky (pdpotrf) and then either one multi-right-hand-side solve (pdpotrs)
 * or, when N is not small against K (K + 1 <= 4 N) and for the permutations,
 * W = L^-1 (pdtrtri) and B = W^T (W X^T Y) as local dgemms: the same B to
 * rounding (~1e-14 relative), at the dgemm rate. */
#ifndef PERTSCORE_RIDGE_H
#define PERTSCORE_RIDGE_H

#include "pertscore/data.h"

typedef struct {
  int32_t n_rows;  /* K + 1: row 0 is the intercept (basal expression), row k + 1 is perturbation k;
                    * with G basal groups K + G: rows K + g are the intercepts of groups g >= 1 (the
                    * fit takes ps_design_ridge_columns of the design) */
  int32_t n_genes; /* N regression genes */
  double lambda;
  double *beta;    /* row-major (K + 1) x N, the same on every rank */
} ps_ridge;

/* y: local analysed cells x N regression genes (winsorized), rows aligned with design. */
int ps_ridge_fit(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda, ps_ridge *out);
void ps_ridge_free(ps_ridge *r);

/* Called with the fit of lambdas[l], in grid order, the same on every rank; it
 * may keep B->beta (set it NULL); else the buffer is reused for the next lambda
 * and freed at the end, so the callee must copy what it needs. Non-zero
 * return stops the grid (return the same on every rank). */
typedef int (*ps_ridge_each)(void *ctx, int l, ps_ridge *B);
/* A ps_ridge_each that keeps the fit in *(ps_ridge *)ctx (one lambda: a later one would replace it). */
int ps_ridge_each_keep(void *ctx, int l, ps_ridge *B);

/* The fits of a lambda grid on the local cells with keep[c] != 0 (keep NULL:
 * all; cross-validation's training cells without copying them): X^T X and
 * X^T Y are summed once, then each lambda costs one Cholesky (and inverse) of
 * the (K + 1) x (K + 1) system and its solve. Each fit equals ps_ridge_fit on
 * the kept cells to rounding (bitwise for keep NULL and one lambda, which is
 * how ps_ridge_fit runs). With more than one lambda every rank also holds a
 * copy of its share of X^T X and of X^T Y. Collective. */
int ps_ridge_fit_grid(MPI_Comm comm, const ps_design *design, const ps_csr *y, const uint8_t *keep, int n_lambdas,
                      const double *lambdas, ps_ridge_each each, void *ctx);
/* Largest ScaLAPACK block size nb of the n x n matrix, n = K + 1, on `ranks` ranks
 * (PERTSCORE_RIDGE_NB or the default: 64 up to n = 8192 with >= 4 blocks per rank,
 * else 128); a matrix of n rows on P ranks uses min(nb, n / P), at least 1.
 * For the memory estimate (src/cost). */
int ps_ridge_block_size(int n, int ranks);

/* ---- permutation p-values (SPEC.md section 2, --permutations) ----
 *
 * p[k, n] = (1/R) #{r : |B_r[k, n]| > |B[k, n]|} (strictly greater, as the
 * reference), B_r refitted with the cells' design rows shuffled against Y
 * (within basal groups: ps_ridge_permutation_within).
 * X^T X does not change under a row permutation: it is factored once and each
 * batch of permutations is one multi-right-hand-side solve. */

typedef struct {
  int n_permutations;  /* R, --permutations (100); 0: no p-values */
  uint64_t seed;       /* permutation r depends on (seed, r) only (1) */
  int64_t batch_bytes; /* per-rank memory for one batch of right-hand sides (256 MB), see ps_ridge_perm_batch */
  int adaptive_h;      /* --permutations-adaptive H (0: off): sequential p-values (Besag and Clifford 1991),
                        * a (row, gene) pair stops at its H-th exceedance after L permutations with
                        * p = H / L; a pair that never reaches H keeps count / R. Later batches compute
                        * only the genes with an open pair (and skip the second product for rows with
                        * none); the p-values do not depend on the batch widths or the rank count
                        * (docs/method.md) */
  ps_progress *progress; /* updated after each batch (the fraction of permutations done); NULL: none */
} ps_ridge_perm_options;

void ps_ridge_perm_options_default(ps_ridge_perm_options *o);

/* Permutation r of the M analysed cells, pi[0..M): cell j's expression is paired
 * with the design row of cell pi[j], cells in global order (rank 0's block,
 * then rank 1's, ...), so the pairing is the same on any number of ranks.
 * Exactly: pi = identity; g = ps_rng_make(seed ^ 0x7065726d75746521 ("permute!"),
 * r); for i = M - 1 down to 1: draw x = ps_rng_next(&g) until x >= 2^64 mod
 * (i + 1), k = x mod (i + 1), swap pi[i] and pi[k] (Fisher-Yates, unbiased). */
void ps_ridge_permutation(uint64_t seed, int64_t r, int64_t n_cells, int64_t *pi);
/* The same within strata: cells trade design rows only with cells of their own
 * stratum. order lists the cells stratum by stratum (ascending within each),
 * stratum h at order[stratum_ptr[h] .. stratum_ptr[h + 1]); one stream g as
 * above runs Fisher-Yates over each stratum in turn, on positions in order.
 * order NULL: one stratum of all cells, exactly ps_ridge_permutation. With basal
 * groups (--control-by, --group-by: the design's group markers,
 * ps_design_ridge_columns) the p-values permute within groups, so a group's
 * cells keep its basal expression and --group-by tests each group on its own
 * cells, as a separate run per group would. */
void ps_ridge_permutation_within(uint64_t seed, int64_t r, int64_t n_cells, const int64_t *order,
                                 const int64_t *stratum_ptr, int32_t n_strata, int64_t *pi);

/* Permutations per batch: the batch's dense (K + 1) x (N b) right-hand side on
 * each rank plus the product W X^T Y_r of the same size (ridge_perm.c) stay
 * within batch_bytes; at least 1, at most R. The same on every rank. */
int ps_ridge_perm_batch(int32_t n_rows, int32_t n_genes, int n_permutations, int64_t batch_bytes);

/* P-values of fit->beta (ps_ridge_fit of the same design, y and lambda; the same
 * on every rank). *pvalues: (K + 1) x N row-major, row 0 the intercept, the
 * same on every rank, NULL when R = 0; the caller frees it. Collective.
 *
 * Rank count: pi_r does not depend on it, and B_r only through rounding
 * (summation order), so only an |B_r| within rounding of |B| can count
 * differently (exact mathematical ties: tiny or degenerate designs). Strict >
 * also means an entry with B = B_r = 0 exactly (a perturbation no analysed
 * cell carries) gets p = 0, as in the reference.
 * Memory per rank: every cell's design row (allgathered once: (M + 1) int64 +
 * nnz(D) int32; O(M x MOI), never cells x perturbations), one int64 permutation
 * of M cells (with basal groups another M int64: the cells by group), (K + 1) x N counts, at MOI about 1 the local cells bucketed by
 * right-hand-side row (y read in place), at higher MOI a gene-tiled copy of the
 * local y (about the size of y; ridge_perm.c says why), W = L^-1 in place of the factor L (this rank's columns:
 * (K + 1)^2 / P doubles) and one batch (ps_ridge_perm_batch): the whole
 * (K + 1) x N b right-hand side (replicated: the reduce-scatter input) plus
 * the product W X^T Y_r of the same size.
 * Time: once, W = L^-1 (pdtrtri, (K + 1)^3 / 3 flops over all ranks); per
 * permutation, every rank shuffles all M cells (O(M), ~7 ms for a million
 * cells: the scaling limit for very large M), adds its own cells' (|S| + 1) x
 * N-tile products, and 2 (K + 1)^2 N / P flops of dgemm; per batch one
 * reduce-scatter and one allreduce of (K + 1) x N b doubles. */
int ps_ridge_permutation_pvalues(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda,
                                 const ps_ridge_perm_options *opt, const ps_ridge *fit, double **pvalues);

/* ps_ridge_fit and ps_ridge_permutation_pvalues on one factorization. With
 * R > 0 the fit goes through W = L^-1 as the permutations do, so beta equals
 * ps_ridge_fit's to rounding, not bitwise. */
int ps_ridge_fit_pvalues(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda,
                         const ps_ridge_perm_options *opt, ps_ridge *out, double **pvalues);

#endif
