/* Internal to src/data: checks for likely input mistakes (checks.c, issue 16).
 * Warnings are printed by rank 0 on stderr, with counts and names. */
#ifndef PS_DATA_CHECKS_H
#define PS_DATA_CHECKS_H

#include "pertscore/data.h"

/* With a targets file: warn, with names, for perturbations left with no target
 * among the regression genes (their PS is 0); the pseudo perturbation (d->pseudo_label)
 * is not one. Rank 0 prints; no communication. */
void ps_check_warn_no_targets(MPI_Comm comm, const ps_dataset *d);
/* Before controls are relabelled: warn when a --control label is the guide name
 * of a unit whose other guides stay perturbations (--control NonTargeting_sg_1).
 * Collective. */
int ps_check_control_guides(MPI_Comm comm, const ps_dataset_options *opt, const ps_guide_calls *calls);
/* Guide tables: count the rows that name no cell of any rank's block (sets
 * d->n_guide_rows and d->n_guide_rows_unmatched) and warn with examples.
 * Collective. */
int ps_check_guide_rows(MPI_Comm comm, const ps_dataset_options *opt, const ps_guide_calls *calls,
                        ps_dataset *d);
/* --input-is counts with non-integral values, or lognorm with only whole numbers:
 * a warning. x holds this rank's block as stored. Collective. */
int ps_check_input_is(MPI_Comm comm, const ps_dataset_options *opt, const ps_csr *x);

#endif
