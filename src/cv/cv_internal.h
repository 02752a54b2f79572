/* Internal to src/cv: ScaLAPACK's SVD on a fold group's BLACS grid and small helpers. */
#ifndef PS_CV_INTERNAL_H
#define PS_CV_INTERNAL_H

#include "pertscore/cv.h"
#include "../util/scalapack.h"

/* Rank-local allocations (ok: all succeeded) just before a collective on comm: one
 * rank's out-of-memory becomes every rank's error, so none is left waiting in the
 * collective. Collective. */
int cv_alloc_sync(MPI_Comm comm, int ok, const char *what);

/* Leading singular vectors of the m x n column-major matrix a (replicated on every
 * rank of comm) through pdgesvd on a BLACS grid over comm: scores = U_k S_k
 * (m x k row-major) and sigma (k), the same on every rank of comm. k <= min(m, n). */
int cv_svd_scores(MPI_Comm comm, int m, int n, const double *a, int k, double *scores, double *sigma);

#endif
