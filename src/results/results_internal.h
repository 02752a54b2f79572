/* Internal to src/results: extra uns entries written with the run (the lambda curve). */
#ifndef PS_RESULTS_INTERNAL_H
#define PS_RESULTS_INTERNAL_H

#include "pertscore/results.h"

/* An extra uns entry added to a results file, e.g. uns/pertscore/lambda/fpr.
 * Every rank passes the same values. */
typedef enum { PS_EXTRA_ARRAY, PS_EXTRA_SCALAR, PS_EXTRA_STRING } ps_results_extra_kind;
typedef struct {
  const char *name;            /* full path, e.g. "uns/pertscore/lambda/grid" */
  ps_results_extra_kind kind;
  const double *values;        /* ARRAY: n values, stored 1 x n (like uns/pertscore/basal); SCALAR: values[0] */
  int64_t n;
  const char *text;            /* STRING */
} ps_results_extra;

/* ps_results_write, then the n_extra entries, in the same file. Collective. */
int ps_results_write_extra(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                           const ps_ridge *ridge, const double *pvalues, const ps_scores *scores,
                           const ps_run_info *info, const ps_results_extra *extra, int n_extra);

#endif
