/* Internal to src/cv: ScaLAPACK's SVD on a fold group's BLACS grid and small helpers. */
#ifndef PS_CV_INTERNAL_H
#define PS_CV_INTERNAL_H

#include "pertscore/cv.h"

/* BLACS C interface and ScaLAPACK (Fortran: the trailing size_t are gfortran's
 * hidden lengths of the CHARACTER arguments). */
void Cblacs_pinfo(int *mypnum, int *nprocs);
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *s, double *u, const int *iu, const int *ju, const int *descu,
              double *vt, const int *ivt, const int *jvt, const int *descvt, double *work, const int *lwork,
              int *info, size_t jobu_len, size_t jobvt_len);

/* Rank-local allocations (ok: all succeeded) just before a collective on comm: one
 * rank's out-of-memory becomes every rank's error, so none is left waiting in the
 * collective. Collective. */
int cv_alloc_sync(MPI_Comm comm, int ok, const char *what);

/* In-place MPI_SUM of a long array, in pieces because MPI counts are int. */
int cv_allreduce_sum(MPI_Comm comm, void *buf, int64_t count, MPI_Datatype type, size_t type_size);

/* Leading singular vectors of the m x n column-major matrix a (replicated on every
 * rank of comm) through pdgesvd on a BLACS grid over comm: scores = U_k S_k
 * (m x k row-major) and sigma (k), the same on every rank of comm. k <= min(m, n). */
int cv_svd_scores(MPI_Comm comm, int m, int n, const double *a, int k, double *scores, double *sigma);

#endif
