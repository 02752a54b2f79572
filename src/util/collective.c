/* Collectives on arrays longer than an MPI int count. */
#include "pertscore/util.h"

int ps_allreduce_sum(MPI_Comm comm, void *buf, int64_t count, MPI_Datatype type, size_t type_size) {
  const int64_t piece = INT64_C(1) << 27;
  for (int64_t at = 0; at < count; at += piece) {
    int n = (int)(count - at < piece ? count - at : piece);
    PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)at * type_size, n, type, MPI_SUM, comm));
  }
  return PS_OK;
}
