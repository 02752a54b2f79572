/* Bytes communicated, for the benchmarks (tools/bench, docs/performance.md).
 *
 * PMPI wrappers: these definitions of MPI_Send, MPI_Allreduce, ... replace Open
 * MPI's in the executable, and because the executable exports them, they also
 * catch the calls that ScaLAPACK/BLACS, HDF5 and PETSc make from their shared
 * libraries. Each wrapper adds the bytes this rank must deliver to other ranks
 * and forwards to PMPI_. Counting rule (logical volume, not the algorithm's):
 * point-to-point: the message; Bcast root: n (P - 1); Reduce, Gather(v), Scan,
 * Exscan: n from every non-root rank; Allreduce: 2 n (P - 1) / P (reduce-scatter +
 * allgather); Allgather(v), Alltoall(v), Reduce_scatter, Scatterv: the blocks meant
 * for the other ranks. MPI-IO is not counted (it is file traffic). */
#include "pertscore/util.h"

static ps_mpi_counts totals;

void ps_mpi_counts_get(ps_mpi_counts *c) { *c = totals; }

static double type_bytes(MPI_Datatype type, double count) {
  int size = 0;
  if (type == MPI_DATATYPE_NULL || PMPI_Type_size(type, &size) != MPI_SUCCESS) return 0;
  return count * (double)size;
}

static int comm_size(MPI_Comm comm) {
  int p = 1;
  if (PMPI_Comm_size(comm, &p) != MPI_SUCCESS) return 1;
  return p;
}

static int comm_rank(MPI_Comm comm) {
  int r = 0;
  if (PMPI_Comm_rank(comm, &r) != MPI_SUCCESS) return 0;
  return r;
}

static void count_p2p(double bytes) {
  totals.p2p_bytes += bytes;
  totals.p2p_calls += 1;
  totals.bytes += bytes;
  totals.calls += 1;
}

static void count_collective(double bytes) {
  totals.bytes += bytes;
  totals.calls += 1;
}

int MPI_Send(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count_p2p(type_bytes(type, count));
  return PMPI_Send(buf, count, type, dest, tag, comm);
}

int MPI_Ssend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count_p2p(type_bytes(type, count));
  return PMPI_Ssend(buf, count, type, dest, tag, comm);
}

int MPI_Rsend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm) {
  count_p2p(type_bytes(type, count));
  return PMPI_Rsend(buf, count, type, dest, tag, comm);
}

int MPI_Isend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm, MPI_Request *req) {
  count_p2p(type_bytes(type, count));
  return PMPI_Isend(buf, count, type, dest, tag, comm, req);
}

int MPI_Irsend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm, MPI_Request *req) {
  count_p2p(type_bytes(type, count));
  return PMPI_Irsend(buf, count, type, dest, tag, comm, req);
}

int MPI_Sendrecv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, int dest, int sendtag, void *recvbuf,
                 int recvcount, MPI_Datatype recvtype, int source, int recvtag, MPI_Comm comm, MPI_Status *status) {
  count_p2p(type_bytes(sendtype, sendcount));
  return PMPI_Sendrecv(sendbuf, sendcount, sendtype, dest, sendtag, recvbuf, recvcount, recvtype, source, recvtag,
                       comm, status);
}

int MPI_Bcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm) {
  count_collective(comm_rank(comm) == root ? type_bytes(type, count) * (comm_size(comm) - 1) : 0);
  return PMPI_Bcast(buf, count, type, root, comm);
}

int MPI_Reduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op, int root, MPI_Comm comm) {
  count_collective(comm_rank(comm) == root ? 0 : type_bytes(type, count));
  return PMPI_Reduce(sendbuf, recvbuf, count, type, op, root, comm);
}

int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  int p = comm_size(comm);
  count_collective(2.0 * type_bytes(type, count) * (p - 1) / p);
  return PMPI_Allreduce(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Scan(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  count_collective(comm_rank(comm) == comm_size(comm) - 1 ? 0 : type_bytes(type, count));
  return PMPI_Scan(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Exscan(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm) {
  count_collective(comm_rank(comm) == comm_size(comm) - 1 ? 0 : type_bytes(type, count));
  return PMPI_Exscan(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Allgather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, int recvcount,
                  MPI_Datatype recvtype, MPI_Comm comm) {
  double block = sendbuf == MPI_IN_PLACE ? type_bytes(recvtype, recvcount) : type_bytes(sendtype, sendcount);
  count_collective(block * (comm_size(comm) - 1));
  return PMPI_Allgather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, comm);
}

int MPI_Allgatherv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, const int recvcounts[],
                   const int displs[], MPI_Datatype recvtype, MPI_Comm comm) {
  double block = sendbuf == MPI_IN_PLACE ? type_bytes(recvtype, recvcounts[comm_rank(comm)])
                                         : type_bytes(sendtype, sendcount);
  count_collective(block * (comm_size(comm) - 1));
  return PMPI_Allgatherv(sendbuf, sendcount, sendtype, recvbuf, recvcounts, displs, recvtype, comm);
}

int MPI_Gather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, int recvcount,
               MPI_Datatype recvtype, int root, MPI_Comm comm) {
  count_collective(comm_rank(comm) == root ? 0 : type_bytes(sendtype, sendcount));
  return PMPI_Gather(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, root, comm);
}

int MPI_Gatherv(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, const int recvcounts[],
                const int displs[], MPI_Datatype recvtype, int root, MPI_Comm comm) {
  count_collective(comm_rank(comm) == root ? 0 : type_bytes(sendtype, sendcount));
  return PMPI_Gatherv(sendbuf, sendcount, sendtype, recvbuf, recvcounts, displs, recvtype, root, comm);
}

int MPI_Scatterv(const void *sendbuf, const int sendcounts[], const int displs[], MPI_Datatype sendtype,
                 void *recvbuf, int recvcount, MPI_Datatype recvtype, int root, MPI_Comm comm) {
  double bytes = 0;
  int me = comm_rank(comm);
  if (me == root)
    for (int r = 0, p = comm_size(comm); r < p; r++)
      if (r != me) bytes += type_bytes(sendtype, sendcounts[r]);
  count_collective(bytes);
  return PMPI_Scatterv(sendbuf, sendcounts, displs, sendtype, recvbuf, recvcount, recvtype, root, comm);
}

int MPI_Alltoall(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, int recvcount,
                 MPI_Datatype recvtype, MPI_Comm comm) {
  double block = sendbuf == MPI_IN_PLACE ? type_bytes(recvtype, recvcount) : type_bytes(sendtype, sendcount);
  count_collective(block * (comm_size(comm) - 1));
  return PMPI_Alltoall(sendbuf, sendcount, sendtype, recvbuf, recvcount, recvtype, comm);
}

int MPI_Alltoallv(const void *sendbuf, const int sendcounts[], const int sdispls[], MPI_Datatype sendtype,
                  void *recvbuf, const int recvcounts[], const int rdispls[], MPI_Datatype recvtype, MPI_Comm comm) {
  double bytes = 0;
  int me = comm_rank(comm);
  const int *counts = sendbuf == MPI_IN_PLACE ? recvcounts : sendcounts;
  MPI_Datatype type = sendbuf == MPI_IN_PLACE ? recvtype : sendtype;
  for (int r = 0, p = comm_size(comm); r < p; r++)
    if (r != me) bytes += type_bytes(type, counts[r]);
  count_collective(bytes);
  return PMPI_Alltoallv(sendbuf, sendcounts, sdispls, sendtype, recvbuf, recvcounts, rdispls, recvtype, comm);
}

int MPI_Reduce_scatter(const void *sendbuf, void *recvbuf, const int recvcounts[], MPI_Datatype type, MPI_Op op,
                       MPI_Comm comm) {
  double bytes = 0;
  int me = comm_rank(comm);
  for (int r = 0, p = comm_size(comm); r < p; r++)
    if (r != me) bytes += type_bytes(type, recvcounts[r]);
  count_collective(bytes);
  return PMPI_Reduce_scatter(sendbuf, recvbuf, recvcounts, type, op, comm);
}

int MPI_Barrier(MPI_Comm comm) {
  count_collective(0);
  return PMPI_Barrier(comm);
}
