/* pertscore/results.h: the results file (DESIGN.md "Results file").
 *
 * A valid .h5ad: X = PS (analysed cells x perturbations, CSR; a cell has entries
 * only for the perturbations it carries), obs = analysed cells, var =
 * perturbations, varm/beta = the perturbation rows of B, uns/pertscore = the
 * run's parameters, basal expression, regression genes, targets and timings.
 * Written collectively into OUTPUT.partial and renamed on success. */
#ifndef PERTSCORE_RESULTS_H
#define PERTSCORE_RESULTS_H

#include "pertscore/data.h"
#include "pertscore/ridge.h"
#include "pertscore/score.h"

/* A run's parameters and provenance as (key, value) text pairs plus numbers. */
typedef struct {
  ps_strlist keys, values;        /* string parameters (paths, labels, command line) */
  ps_strlist number_keys;
  double numbers[64];             /* numeric parameters and timings, aligned with number_keys */
} ps_run_info;

int ps_run_info_string(ps_run_info *info, const char *key, const char *value);
int ps_run_info_number(ps_run_info *info, const char *key, double value);
void ps_run_info_free(ps_run_info *info);

/* scored: the design the scores follow (d->design, or every cell x every
 * perturbation with --score-all-cells). pvalues: (K + 1) x N permutation p-values
 * of beta, or NULL without permutations. */
int ps_results_write(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                     const ps_ridge *ridge, const double *pvalues, const ps_scores *scores, const ps_run_info *info);

#endif
