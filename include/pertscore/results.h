/* pertscore/results.h: the results file (DESIGN.md "Results file").
 *
 * A valid .h5ad: X = PS (analysed cells x perturbations, CSR; a cell has entries
 * only for the perturbations it carries), obs = analysed cells, var =
 * perturbations, varm/beta = the perturbation rows of B, uns/pertscore = the
 * run's parameters, basal expression, regression genes, targets and timings.
 * Written collectively into OUTPUT.partial and renamed on success.
 *
 * src/results owns every object of the results file and of pertscore cv's file:
 * the run (results.c), per-cell columns (cells.c), the lambda curve (lambda.c),
 * the dosage table (results.c), the calibrated calls (calibration.c), the cv
 * tables (cv_tables.c), the --resume checkpoint (checkpoint.c) and reading them
 * back (read.c). No other module names a path inside these files; src/io is the
 * generic h5ad / HDF5 layer it writes and reads through. The stages' types come
 * in from their headers (one way: no stage includes this header). */
#ifndef PERTSCORE_RESULTS_H
#define PERTSCORE_RESULTS_H

#include "pertscore/calibrate.h"
#include "pertscore/cv.h"
#include "pertscore/data.h"
#include "pertscore/dosage.h"
#include "pertscore/lambda.h"
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

/* pertscore lambda (src/results/lambda.c): ps_results_write for the full run at
 * the scored lambda, then the curve c in uns/pertscore/lambda: grid, fpr,
 * n_positive, max_raw_ps, rescaled (each 1 x n, like uns/pertscore/basal),
 * chosen (c->lambda[chosen], NaN when chosen < 0), scored_lambda
 * (c->lambda[scored]), target_fpr, pseudo_cells and pseudo_label. Every rank
 * passes the same curve. Collective. */
int ps_results_write_lambda(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_ridge *ridge,
                            const double *pvalues, const ps_scores *scores, const ps_run_info *info,
                            const ps_lambda_curve *c, int chosen, int scored, double target_fpr,
                            const char *pseudo_label);

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

/* The calibration stage (pertscore/calibrate.h) into the results file PATH
 * (src/results/calibration.c):
 * var effect_pvalue, effect_fdr, effect_z, effect_z_fit0, effect_z_fit1, calibration_cells;
 * layers/ps_pvalue (X's pattern, index types as X's); obs calibration_role and
 * ps_pvalue (the p-value of the cell's obs "ps", its largest PS; NaN for controls);
 * uns/pertscore/calibration/{n_null, n_called, fdr, ...}; with record also
 * layers/calibration_score and uns/pertscore/calibration/null_score_{0,1}.
 * Collective. */
int ps_results_add_calibration(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                               const ps_scores *s, const ps_calibration *c);

/* ---------------------------------------------------------------- cross-validation tables (cv_tables.c)
 * docs/cv.md "Output". Where the tables go: a new .h5ad of their own (pertscore
 * cv: obs and var are the scheme's rows and columns), or added to an existing
 * results file (`run --cv`: the scheme's obs and var frames become uns/cv/obs and
 * uns/cv/var; a previous uns/cv is replaced). */
enum { PS_CV_NEW_FILE = 0, PS_CV_ADD_TO_RESULTS = 1 };

/* The tables of a finished cv stage (ps_cv_stage_run on d) into PATH (where:
 * PS_CV_NEW_FILE or PS_CV_ADD_TO_RESULTS), the run's parameters info in
 * uns/cv/parameters (info first gets the stage's seconds), and its summary TSV
 * into tsv (NULL: none).
 *   perturbations scheme: obs = perturbations, var = evaluated genes, uns/cv/
 *     {folds, metrics, summary, halves, pereggrn, pereggrn_summary, control_mean,
 *     ...}; with opt->keep_predictions in a new file X = observed deltas and
 *     layers/<model> the predicted ones; tsv = the per-fold, per-model summary.
 *   cells scheme: obs = analysed cells with their fold, var = perturbations,
 *     uns/cv/{lambda_curve, groups, ps_stability, ridge_lambdas, ...}; tsv = the
 *     lambda curve.
 * Collective. */
int ps_results_write_cv(MPI_Comm comm, const ps_dataset *d, const ps_cv_stage_result *r, const ps_cv_options *opt,
                        const char *path, int where, const char *tsv, ps_run_info *info);

/* ---------------------------------------------------------------- reading a results file back (read.c) */

/* The string parameter KEY the run recorded (uns/pertscore/parameters/KEY, e.g.
 * "input", "layer", "input_digest"). Serial (any one rank). A missing file, a
 * file that is not HDF5 or a missing KEY give found = 0, not an error. */
int ps_results_read_parameter(const char *path, const char *key, char *buf, size_t size, int *found);

/* What pertscore dosage recomputes from (pertscore/dosage.h ps_dosage_results):
 * X (the PS) by blocks of cells, read like an input matrix (CSR, blocks balanced
 * by nonzeros, collective hyperslab reads), the perturbations each block cell
 * carries (obs column "perturbations"; a label not in var is an error), and the
 * run's unit and scale_value parameters (rank 0 reads them, every rank gets
 * them). Collective; errors are synced. */
int ps_results_read_dosage_input(MPI_Comm comm, const char *path, ps_dosage_results *out);

/* The perturbations (var index) of the results file PATH, in var order. Collective. */
int ps_results_read_perturbations(MPI_Comm comm, const char *path, ps_strlist *out);

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
