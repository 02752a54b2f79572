/* Gene shards (DESIGN.md data flow 3): gene-wise work (DE ranks, percent expressed)
 * needs all cells of a gene on one rank. The transpose itself runs in gene batches
 * in targets_select.c, so no rank holds all genes of all cells, nor all nonzeros twice. */
#include <stdlib.h>
#include <string.h>

#include "de_internal.h"

void ps_gene_shard_free(ps_gene_shard *s) {
  free(s->ptr), free(s->cell), free(s->value);
  memset(s, 0, sizeof *s);
}
