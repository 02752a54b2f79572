/* pertscore/ridge.h: scMAGeCK-LR ridge regression (SPEC.md section 2).
 *
 * B = (X^T X + lambda I)^-1 X^T Y with X = [1 | D] (M x (K+1)), the intercept
 * penalized too. Each rank adds its cells' sparse contributions to X^T X and
 * X^T Y; the sums land in ScaLAPACK block-cyclic matrices; one Cholesky
 * (pdpotrf) and one multi-right-hand-side solve (pdpotrs). */
#ifndef PERTSCORE_RIDGE_H
#define PERTSCORE_RIDGE_H

#include "pertscore/data.h"

typedef struct {
  int32_t n_rows;  /* K + 1: row 0 is the intercept (basal expression), row k + 1 is perturbation k */
  int32_t n_genes; /* N regression genes */
  double lambda;
  double *beta;    /* row-major (K + 1) x N, the same on every rank */
} ps_ridge;

/* y: local analysed cells x N regression genes (winsorized), rows aligned with design. */
int ps_ridge_fit(MPI_Comm comm, const ps_design *design, const ps_csr *y, double lambda, ps_ridge *out);
void ps_ridge_free(ps_ridge *r);

#endif
