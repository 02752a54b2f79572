/* The stages before the ridge fit, in order (SPEC sections 0-2): read, pertscore
 * lambda's relabelling, targets, the dosage's own genes, regression. run, lambda
 * and cv call this one sequence. */
#include "cli.h"
#include "pertscore/dosage.h"
#include "pertscore/lambda.h"

int ps_cli_data_stages(MPI_Comm comm, const ps_cli_data_options *o, const ps_pseudo_options *pseudo, int own_genes,
                       ps_progress *progress, ps_dataset *d) {
  PS_CALL(ps_dataset_read(comm, &o->read, progress, d));
  if (pseudo && pseudo->pseudo_cells > 0) { /* before the targets, so the pseudo perturbation gets its own */
    int err = ps_error_sync(comm, ps_pseudo_relabel(comm, pseudo, &o->read.controls, d));
    if (err) ps_dataset_free(d);
    PS_CALL(err);
  }
  PS_CALL(ps_targets_select(comm, &o->targets, progress, d));
  if (own_genes) PS_CALL(ps_dosage_own_genes(comm, d)); /* before ps_regression_prepare frees the block */
  PS_CALL(ps_regression_prepare(comm, &o->regression, progress, d));
  return PS_OK;
}
