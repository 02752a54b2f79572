/* Internal to src/data: the gene-sharded view of the analysed cells
 * (DESIGN.md data flow 3) and two MPI helpers for all-to-all exchanges. */
#ifndef PS_DATA_INTERNAL_H
#define PS_DATA_INTERNAL_H

#include "pertscore/data.h"
#include "pertscore/io.h"
#include "pertscore/util.h"

/* A batch of this rank's genes (targets_auto.c: owners balanced by nonzeros; the
 * quantiles in dataset.c: g % P == rank): per local gene lg, the analysed cells
 * where it is nonzero, ascending, and the values there. */
typedef struct {
  int64_t n_genes; /* owned */
  int64_t *ptr;    /* n_genes + 1 */
  int32_t *cell;   /* global analysed index */
  double *value;
} ps_gene_shard;

void ps_gene_shard_free(ps_gene_shard *s);

/* A committed struct type of the given blocks, resized to extent (sizeof the C struct). */
int ps_mpi_struct_type(MPI_Datatype *out, int n, const int *blocks, const MPI_Aint *offsets,
                       const MPI_Datatype *types, size_t extent);
/* The counts step of an Alltoallv: from this rank's send counts (per destination),
 * the int counts and displacements of both sides, and the totals. Fails on every
 * rank, before any data moves, if some rank's total exceeds the int counts of MPI.
 * Arrays have comm's size entries. Collective. */
int ps_exchange_counts(MPI_Comm comm, const int64_t *send_count, int *scount, int *sdispl, int *rcount, int *rdispl,
                       int64_t *s_total, int64_t *r_total);

/* opt->subset_column (cv / lambda --group-by, one group at a time): drop the calls of
 * the block cells whose label there is not opt->subset_value, so that only the
 * group's cells are analysed; an error when no cell of any rank has the value.
 * No-op without subset_column. Collective. */
int ps_groups_subset_calls(MPI_Comm comm, const ps_dataset_options *opt, const ps_matrix *m, ps_guide_calls *calls);

#endif
