/* Cell blocks -> gene shards (DESIGN.md data flow 3): gene-wise work (DE ranks,
 * percent expressed) needs all cells of a gene on one rank, and one Alltoallv of
 * the nonzeros puts gene g on rank g % P. No rank holds all genes of all cells. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

/* 16 bytes without padding: the transpose moves every nonzero of the analysed cells */
typedef struct {
  int32_t cell; /* global analysed index (checked < 2^31) */
  int32_t gene;
  double value;
} expr_entry;

void ps_gene_shard_free(ps_gene_shard *s) {
  free(s->ptr), free(s->cell), free(s->value);
  memset(s, 0, sizeof *s);
}

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

int ps_gene_shard_build(MPI_Comm comm, const ps_csr *x, const int64_t *keep, int64_t analysed_offset,
                        int64_t n_analysed, int64_t n_genes, ps_gene_shard *s) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (n_analysed > INT32_MAX)
    PS_FAIL(PS_ERR_INPUT, "target selection: %lld analysed cells; at most 2^31 - 1 are supported", (long long)n_analysed);
  int *scount, *rcount, *sdispl, *rdispl, *fill;
  PS_ALLOC(scount, size);
  PS_ALLOC(rcount, size);
  PS_ALLOC(sdispl, size);
  PS_ALLOC(rdispl, size);
  PS_ALLOC(fill, size);
  int64_t *count64;
  PS_ALLOC(count64, size);
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    for (int64_t p = x->indptr[i]; p < x->indptr[i + 1]; p++) count64[x->indices[p] % size] += x->data[p] != 0;
  }
  int64_t s_total, r_total;
  PS_CALL(ps_exchange_counts(comm, count64, scount, sdispl, rcount, rdispl, &s_total, &r_total));
  free(count64);
  expr_entry *send, *recv;
  PS_ALLOC(send, s_total);
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    for (int64_t p = x->indptr[i]; p < x->indptr[i + 1]; p++) {
      if (x->data[p] == 0) continue; /* zeros are implicit in the DE tests */
      int r = x->indices[p] % size;
      send[sdispl[r] + fill[r]++] = (expr_entry){(int32_t)(analysed_offset + keep[i]), x->indices[p], x->data[p]};
    }
  }
  PS_ALLOC(recv, r_total);
  MPI_Datatype type;
  const int blocks[2] = {2, 1};
  const MPI_Aint offsets[2] = {offsetof(expr_entry, cell), offsetof(expr_entry, value)};
  const MPI_Datatype types[2] = {MPI_INT32_T, MPI_DOUBLE};
  PS_CALL(ps_mpi_struct_type(&type, 2, blocks, offsets, types, sizeof(expr_entry)));
  PS_CHECK_MPI(MPI_Alltoallv(send, scount, sdispl, type, recv, rcount, rdispl, type, comm));
  PS_CHECK_MPI(MPI_Type_free(&type));
  free(send);
  /* bucket by owned gene; cells arrive in rank order, so within a gene they are ascending */
  s->n_genes = n_genes > rank ? (n_genes - rank + size - 1) / size : 0;
  PS_ALLOC(s->ptr, s->n_genes + 1);
  PS_ALLOC(s->cell, r_total);
  PS_ALLOC(s->value, r_total);
  for (int64_t i = 0; i < r_total; i++) s->ptr[recv[i].gene / size + 1]++;
  for (int64_t lg = 0; lg < s->n_genes; lg++) s->ptr[lg + 1] += s->ptr[lg];
  int64_t *at;
  PS_ALLOC(at, s->n_genes + 1);
  memcpy(at, s->ptr, (size_t)(s->n_genes + 1) * sizeof *at);
  for (int64_t i = 0; i < r_total; i++) {
    int64_t lg = recv[i].gene / size, q = at[lg]++;
    s->cell[q] = recv[i].cell;
    s->value[q] = recv[i].value;
  }
  free(at), free(recv), free(scount), free(rcount), free(sdispl), free(rdispl), free(fill);
  return PS_OK;
}
