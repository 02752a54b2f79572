/* The gene embedding's SVD (SPEC.md section 7): ScaLAPACK pdgesvd on a BLACS
 * grid over one fold group's ranks. The training deltas are replicated on the
 * group (they come from the replicated pseudobulk table), so every rank fills
 * its own block-cyclic share directly, and the leading singular vectors are
 * summed back into a replicated genes x k table. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"

typedef struct {
  int handle, ctxt, nprow, npcol, myrow, mycol, nb;
} svd_grid;

/* nprow is the largest divisor of P not above sqrt(P): every rank is in the grid.
 * The tall side (genes) goes on the rows. */
static int grid_open(MPI_Comm comm, int m, int n, svd_grid *g) {
  int size, me, nprocs;
  PS_CHECK_MPI(MPI_Comm_size(comm, &size));
  int small = 1;
  for (int d = 1; d * d <= size; d++)
    if (size % d == 0) small = d;
  int nprow = m >= n ? size / small : small, npcol = size / nprow;
  Cblacs_pinfo(&me, &nprocs);
  g->handle = Csys2blacs_handle(comm);
  g->ctxt = g->handle;
  Cblacs_gridinit(&g->ctxt, "Row", nprow, npcol);
  Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
  if (g->nprow != nprow || g->npcol != npcol || g->myrow < 0 || g->mycol < 0)
    PS_FAIL(PS_ERR_SYSTEM, "cv: BLACS could not build a %d x %d process grid on %d ranks", nprow, npcol, size);
  int lo = m < n ? m : n, spread = nprow > npcol ? nprow : npcol;
  g->nb = lo / spread < 1 ? 1 : (lo / spread > 64 ? 64 : lo / spread);
  return PS_OK;
}

/* Cblacs_freebuff first: a queued asynchronous send would keep the grid's
 * communicator alive past Cblacs_gridexit (as in src/ridge/ridge_system.c). */
static void grid_close(svd_grid *g) {
  if (g->ctxt >= 0) {
    Cblacs_freebuff(g->ctxt, 1);
    Cblacs_gridexit(g->ctxt);
  }
  if (g->handle >= 0) Cfree_blacs_system_handle(g->handle);
  g->ctxt = g->handle = -1;
}

static int local_count(int n, int nb, int proc, int nprocs) {
  int zero = 0;
  return numroc_(&n, &nb, &proc, &zero, &nprocs);
}

/* Global index of local index l on process proc (block size nb, first block on 0). */
static int global_of(int l, int nb, int proc, int nprocs) { return l / nb * nb * nprocs + proc * nb + l % nb; }

static int svd_on_grid(const svd_grid *g, int m, int n, const double *a, int k, double *scores, double *sigma) {
  int lo = m < n ? m : n, zero = 0, one = 1, info = 0;
  int a_rows = local_count(m, g->nb, g->myrow, g->nprow), a_cols = local_count(n, g->nb, g->mycol, g->npcol);
  int u_cols = local_count(lo, g->nb, g->mycol, g->npcol);
  int vt_rows = local_count(lo, g->nb, g->myrow, g->nprow);
  int lld_a = a_rows > 1 ? a_rows : 1, lld_vt = vt_rows > 1 ? vt_rows : 1;
  int desc_a[9], desc_u[9], desc_vt[9];
  descinit_(desc_a, &m, &n, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld_a, &info);
  if (!info) descinit_(desc_u, &m, &lo, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld_a, &info);
  if (!info) descinit_(desc_vt, &lo, &n, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld_vt, &info);
  if (info) PS_FAIL(PS_ERR_SYSTEM, "cv: descinit for the SVD failed (info %d)", info);
  double *la, *lu, *lvt, *s;
  PS_ALLOC(la, (int64_t)lld_a * (a_cols > 0 ? a_cols : 1));
  PS_ALLOC(lu, (int64_t)lld_a * (u_cols > 0 ? u_cols : 1));
  PS_ALLOC(lvt, (int64_t)lld_vt * (a_cols > 0 ? a_cols : 1));
  PS_ALLOC(s, lo);
  for (int lj = 0; lj < a_cols; lj++) {
    int j = global_of(lj, g->nb, g->mycol, g->npcol);
    for (int li = 0; li < a_rows; li++)
      la[(int64_t)lj * lld_a + li] = a[(int64_t)j * m + global_of(li, g->nb, g->myrow, g->nprow)];
  }
  double query;
  int lwork = -1;
  pdgesvd_("V", "N", &m, &n, la, &one, &one, desc_a, s, lu, &one, &one, desc_u, lvt, &one, &one, desc_vt, &query,
           &lwork, &info, 1, 1);
  if (info) PS_FAIL(PS_ERR_SYSTEM, "cv: pdgesvd workspace query failed (info %d)", info);
  if (query > (double)INT_MAX) PS_FAIL(PS_ERR_INPUT, "cv: the SVD of a %d x %d matrix needs too much workspace", m, n);
  lwork = (int)query + 1;
  double *work;
  PS_ALLOC(work, lwork);
  pdgesvd_("V", "N", &m, &n, la, &one, &one, desc_a, s, lu, &one, &one, desc_u, lvt, &one, &one, desc_vt, work,
           &lwork, &info, 1, 1);
  free(work);
  if (info < 0) PS_FAIL(PS_ERR_SYSTEM, "cv: pdgesvd rejected argument %d", -info);
  if (info > 0) PS_FAIL(PS_ERR_INPUT, "cv: the SVD of the training deltas did not converge (pdgesvd info %d)", info);
  for (int c = 0; c < k; c++) sigma[c] = s[c];
  memset(scores, 0, (size_t)m * (size_t)k * sizeof *scores);
  for (int lj = 0; lj < u_cols; lj++) {
    int j = global_of(lj, g->nb, g->mycol, g->npcol);
    if (j >= k) continue;
    for (int li = 0; li < a_rows; li++)
      scores[(int64_t)global_of(li, g->nb, g->myrow, g->nprow) * k + j] = lu[(int64_t)lj * lld_a + li] * s[j];
  }
  free(la);
  free(lu);
  free(lvt);
  free(s);
  return PS_OK;
}

int cv_svd_scores(MPI_Comm comm, int m, int n, const double *a, int k, double *scores, double *sigma) {
  int lo = m < n ? m : n;
  if (k < 1 || k > lo) PS_FAIL(PS_ERR_SYSTEM, "cv: %d singular vectors of a %d x %d matrix", k, m, n);
  svd_grid g = {.handle = -1, .ctxt = -1};
  int err = grid_open(comm, m, n, &g);
  if (!err) err = svd_on_grid(&g, m, n, a, k, scores, sigma);
  grid_close(&g);
  PS_CALL(ps_error_sync(comm, err));
  /* each entry of U came from exactly one rank */
  PS_CALL(ps_allreduce_sum(comm, scores, (int64_t)m * k, MPI_DOUBLE, sizeof(double)));
  return PS_OK;
}
