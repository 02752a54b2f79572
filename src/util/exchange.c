/* All-to-all helpers for the exchanges of the stages (gene shards in src/de, the
 * winsorizing quantiles in src/data): a committed struct type, and the counts
 * step of an Alltoallv checked against MPI's int counts. */
#include <stddef.h>
#include <stdint.h>

#include "pertscore/util.h"

int ps_mpi_struct_type(MPI_Datatype *out, int n, const int *blocks, const MPI_Aint *offsets, const MPI_Datatype *types,
                       size_t extent) {
  MPI_Datatype t;
  PS_CHECK_MPI(MPI_Type_create_struct(n, blocks, offsets, types, &t));
  PS_CHECK_MPI(MPI_Type_create_resized(t, 0, (MPI_Aint)extent, out));
  PS_CHECK_MPI(MPI_Type_commit(out));
  PS_CHECK_MPI(MPI_Type_free(&t));
  return PS_OK;
}

static int check_total(int64_t total) {
  if (total > INT32_MAX)
    PS_FAIL(PS_ERR_SYSTEM, "%lld values to exchange on one rank exceed the MPI count limit; use more ranks",
            (long long)total);
  return PS_OK;
}

int ps_exchange_counts(MPI_Comm comm, const int64_t *send_count, int *scount, int *sdispl, int *rcount, int *rdispl,
                       int64_t *s_total, int64_t *r_total) {
  int size;
  MPI_Comm_size(comm, &size);
  *s_total = 0;
  for (int r = 0; r < size; r++) *s_total += send_count[r];
  PS_CALL(ps_error_sync(comm, check_total(*s_total))); /* no rank may wait in the Alltoall below */
  for (int r = 0, at = 0; r < size; r++) {
    scount[r] = (int)send_count[r];
    sdispl[r] = at;
    at += scount[r];
  }
  PS_CHECK_MPI(MPI_Alltoall(scount, 1, MPI_INT, rcount, 1, MPI_INT, comm));
  *r_total = 0;
  for (int r = 0; r < size; r++) *r_total += rcount[r];
  PS_CALL(ps_error_sync(comm, check_total(*r_total)));
  for (int r = 0, at = 0; r < size; r++) {
    rdispl[r] = at;
    at += rcount[r];
  }
  return PS_OK;
}
