/* The BLACS C interface and the ScaLAPACK routines pertscore calls (Debian's
 * libscalapack-openmpi ships no C header). The ScaLAPACK routines are Fortran: the
 * trailing size_t arguments are gfortran's hidden lengths of CHARACTER arguments.
 * Shared by src/ridge and src/cv; not part of the public API. */
#ifndef PS_SCALAPACK_H
#define PS_SCALAPACK_H

#include <mpi.h>
#include <stddef.h>

void Cblacs_pinfo(int *mypnum, int *nprocs);
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
/* wait != 0: completes (and frees) BLACS's queued asynchronous sends of every grid */
void Cblacs_freebuff(int ctxt, int wait);
/* Element-wise sum of an m x n matrix over the grid's scope ("All"); rdest = -1: the result on every process */
void Cdgsum2d(int ctxt, const char *scope, const char *top, int m, int n, double *a, int lda, int rdest, int cdest);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
               const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja, const int *desca,
              int *info, size_t uplo_len);
void pdpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *ia, const int *ja,
              const int *desca, double *b, const int *ib, const int *jb, const int *descb, int *info,
              size_t uplo_len);
void pdtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, int *info, size_t uplo_len, size_t diag_len);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *s, double *u, const int *iu, const int *ju, const int *descu,
              double *vt, const int *ivt, const int *jvt, const int *descvt, double *work, const int *lwork,
              int *info, size_t jobu_len, size_t jobvt_len);

#endif
