/* Internal to src/data. */
#ifndef PS_DATA_INTERNAL_H
#define PS_DATA_INTERNAL_H

#include "pertscore/data.h"
#include "pertscore/io.h"
#include "pertscore/util.h"

/* opt->subset_column (cv / lambda --group-by, one group at a time): drop the calls of
 * the block cells whose label there is not opt->subset_value, so that only the
 * group's cells are analysed; an error when no cell of any rank has the value.
 * No-op without subset_column. Collective. */
int ps_groups_subset_calls(MPI_Comm comm, const ps_dataset_options *opt, const ps_matrix *m, ps_guide_calls *calls);

#endif
