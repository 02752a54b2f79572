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
#include "pertscore/dosage.h"
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

/* An extra uns entry a subcommand adds to its results file, e.g. the lambda
 * curve of `pertscore lambda` (uns/pertscore/lambda/fpr). Every rank passes the
 * same values. */
typedef enum { PS_EXTRA_ARRAY, PS_EXTRA_SCALAR, PS_EXTRA_STRING } ps_results_extra_kind;
typedef struct {
  const char *name;            /* full path, e.g. "uns/pertscore/lambda/grid" */
  ps_results_extra_kind kind;
  const double *values;        /* ARRAY: n values, stored 1 x n (like uns/pertscore/basal); SCALAR: values[0] */
  int64_t n;
  const char *text;            /* STRING */
} ps_results_extra;

/* ps_results_write, then the n_extra entries, in the same file. */
int ps_results_write_extra(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                           const ps_ridge *ridge, const double *pvalues, const ps_scores *scores,
                           const ps_run_info *info, const ps_results_extra *extra, int n_extra);

/* The dosage table (SPEC.md section 5, pertscore/dosage.h) into the existing
 * results file PATH, replacing any earlier dosage entries: var columns ed50,
 * hill_b, hill_c, hill_d, hill_e, hill_0, hill_1, dosage_class (categorical:
 * buffered, sensitive, none), dosage_status (categorical, the reason strings),
 * pcc, pcc_p, scc, scc_p, crispri_efficient, own_min, own_control_median; and
 * uns/pertscore/dosage/{bin_x, bin_ps, bin_count} (K x n_bins, NaN-padded), the
 * options and counts, and, unless NULL, the command that computed them
 * (uns/pertscore/dosage/command; pertscore dosage records itself). The var rows of the file must be
 * the table's K perturbations in the same order. Every rank passes the same
 * table. Collective. */
int ps_results_add_dosage(MPI_Comm comm, const char *path, const ps_dosage_table *t, const ps_dosage_options *opt,
                          double seconds, const char *command);

/* ---------------------------------------------------------------- stage checkpoints (--resume)
 * (src/results/checkpoint.c, docs/reliability.md "Resume"). A run writes its
 * finished stages into OUTPUT.partial under uns/pertscore/checkpoint: after the
 * ridge stage beta and its p-values, after the score stage the PS. Everything is
 * stored in global order (cells in analysed order, B row-major), so a run on any
 * number of ranks can resume it. The final results write replaces the file. */
typedef enum { PS_CHECKPOINT_NONE = 0, PS_CHECKPOINT_RIDGE = 1, PS_CHECKPOINT_SCORE = 2 } ps_checkpoint_stage;

/* Create PATH (replacing any file there) holding the ridge stage: the provenance
 * digests it belongs to, the perturbation and regression gene names it was fitted
 * on (checked when resuming), B and, unless NULL, its p-values. Collective. */
int ps_checkpoint_write_ridge(MPI_Comm comm, const char *path, const char *input_digest, const char *params_digest,
                              const ps_dataset *d, const ps_ridge *ridge, const double *pvalues);
/* Add the score stage to the checkpoint at PATH: the scored design's entries and
 * PS of every analysed cell (each rank writes its rows at its global offset) and
 * the per-perturbation maxima. Collective. */
int ps_checkpoint_write_scores(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                               const ps_scores *scores);

/* What a resumed run takes from a checkpoint. */
typedef struct {
  ps_checkpoint_stage stage; /* the last completed stage that can be used */
  ps_ridge ridge;            /* stage >= RIDGE */
  double *pvalues;           /* stage >= RIDGE and the run has permutations, else NULL */
  ps_scores scores;          /* stage == SCORE: this rank's cells, layout of the scored design */
  char reason[512];          /* stage == NONE: why the checkpoint cannot be used */
} ps_checkpoint;

/* Read the checkpoint at PATH for a run with these digests on dataset d (read as
 * usual) and, for the score stage, the scored design. A missing file, another
 * run's checkpoint (different digests), a different dataset, or a damaged file
 * is not an error: out->stage = NONE and out->reason says why. Errors only for
 * failures of MPI itself. Collective; the same answer on every rank. */
int ps_checkpoint_read(MPI_Comm comm, const char *path, const char *input_digest, const char *params_digest,
                       const ps_dataset *d, const ps_design *scored, int with_pvalues, ps_checkpoint *out);
void ps_checkpoint_free(ps_checkpoint *c);


/* Per-cell columns of the results' obs (src/results/cells.c), for this rank's
 * analysed cells: perturbation = the carried perturbations '+'-joined (a control
 * cell: its control label as assigned), guide = its guides '+'-joined, ps = the
 * largest PS among the carried perturbations (NaN for control cells and cells
 * not scored), ps_code = that perturbation's id (-1: none). Categories are the
 * union over ranks. Collective. */
typedef struct {
  int64_t n;
  char **label;
  int32_t *label_code, *guide_code, *ps_code;
  double *ps;
  ps_strlist labels, guides;
} ps_cell_columns;
int ps_cell_columns_build(MPI_Comm comm, const ps_dataset *d, const ps_design *scored, const ps_scores *s,
                          const char *control, ps_cell_columns *c);
void ps_cell_columns_free(ps_cell_columns *c);
/* --cells-table: the long TSV (header cell, perturbation, guide, ps, ps_pvalue), one
 * row per carried perturbation of every analysed cell, one row (ps NA) per control
 * cell; numbers %.6g, NA where none. ps_pvalue: the calibrated p-values in the scored
 * layout (ps_calibration.ps_pvalue), or NULL (NA). Written collectively in cell order. */
int ps_cells_table_write(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                         const ps_scores *s, const double *ps_pvalue, const char *control);
/* The scored entry of local cell j's largest PS among the perturbations it carries
 * (obs "ps" / "ps_perturbation"), -1 when none is scored. */
int64_t ps_cell_top_entry(const ps_dataset *d, const ps_design *scored, const ps_scores *s, int64_t j);

#endif
