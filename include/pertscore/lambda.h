/* pertscore/lambda.h: choosing the PS penalty lambda by false-positive rate
 * (SPEC.md section 4, the reference's scmageck_best_lambda).
 *
 *   1. ps_pseudo_relabel (lambda calls it between ps_dataset_read and
 *      ps_targets_select): some control cells become cells carrying only a pseudo
 *      perturbation, before target selection, so it gets targets and a beta row
 *      like any other;
 *   2. ps_lambda_scan: for each lambda of a grid, the pseudo cells' final PS
 *      (after rescaling); FPR(lambda) = fraction of them with PS > 0.5;
 *   3. ps_lambda_choose: the smallest lambda with FPR <= the target.
 *
 * Only the pseudo cells are scored in the scan, and that is exact: a pseudo
 * cell carries the pseudo perturbation alone, so its QP involves only beta
 * rows 0 (intercept) and the pseudo row, and the pseudo perturbation's
 * rescaling maximum runs over the cells carrying it, which are exactly the
 * pseudo cells. No other cell's PS enters FPR. */
#ifndef PERTSCORE_LAMBDA_H
#define PERTSCORE_LAMBDA_H

#include "pertscore/data.h"
#include "pertscore/ridge.h"
#include "pertscore/score.h"

/* Defaults of SPEC.md section 4 and the reference. */
#define PS_LAMBDA_PSEUDO_CELLS 250
#define PS_LAMBDA_PSEUDO_LABEL "PSEUDO_CONTROL"
#define PS_LAMBDA_TARGET_FPR 0.1
/* Control cells that must remain after the relabelling: the pseudo cells' DE test
 * and the intercept need a control group of their own. */
#define PS_LAMBDA_MIN_CONTROLS 100
/* A pseudo cell is a false positive when its final PS is above this (reference: eff > 0.5 is "KO"). */
#define PS_LAMBDA_POSITIVE_PS 0.5

/* pertscore lambda's relabelling (SPEC section 4): this many control cells, chosen
 * by seed, become the pseudo perturbation label (NULL: PS_LAMBDA_PSEUDO_LABEL); 0 = off. */
typedef struct {
  int64_t pseudo_cells;
  uint64_t pseudo_seed;
  const char *pseudo_label;
} ps_pseudo_options;

void ps_pseudo_options_default(ps_pseudo_options *o);

/* Relabel opt->pseudo_cells control cells as opt->pseudo_label (default
 * PS_LAMBDA_PSEUDO_LABEL). The cells are a uniform random subset of the control
 * cells, chosen by their global control index (control cells in analysed order,
 * which is input order: the same on any number of ranks) with Floyd's sampling
 * from ps_rng_make(opt->pseudo_seed ^ "pseudo!!", 0), so the choice depends on
 * the seed only. Each chosen cell then carries the pseudo perturbation and nothing
 * else: not a control cell, no control guide (the reference relabels every guide
 * row of the cell), its DE group the pseudo one. The label is inserted into the
 * sorted perturbation names (ids above it shift by one). d->low_moi is left as
 * the real cells gave it. Fails if the label is already a perturbation, or if
 * fewer than PS_LAMBDA_MIN_CONTROLS control cells would remain (controls: the
 * read's control labels, which the label may not be either). Sets d->pseudo_label.
 * Collective; called after ps_dataset_read, before ps_targets_select. */
int ps_pseudo_relabel(MPI_Comm comm, const ps_pseudo_options *opt, const ps_strlist *controls, ps_dataset *d);

/* n lambdas log-spaced from min to max (both > 0), endpoints exact:
 * 10^(log10 min + i (log10 max - log10 min) / (n - 1)), like R's 10^seq(a, b, length = n). */
int ps_lambda_grid_log(double min, double max, int n, double **grid);

typedef struct {
  int n;               /* grid size */
  double *lambda;      /* n, ascending */
  double *fpr;         /* n: fraction of pseudo cells with final PS > 0.5 */
  int64_t *n_positive; /* n: how many */
  double *max_raw;     /* n: the pseudo perturbation's maximum raw PS (psi / U) */
  uint8_t *rescaled;   /* n: 1 if the pseudo PS were divided by that maximum */
  int64_t n_pseudo;    /* pseudo cells, all ranks */
  int32_t pseudo_id;   /* the pseudo perturbation's id in d->design */
  double max_kkt;      /* worst relative KKT residual over every scan QP */
  int64_t n_qp;        /* QPs solved in the scan, all ranks */
} ps_lambda_curve;

/* FPR for each lambda of grid (ascending, n values), scoring only the pseudo
 * cells (see the top of this file) with base's upper bound, tolerance and
 * rescale flag; base->lambda is ignored. One ridge fit serves every lambda.
 * The same on every rank. Collective; progress may be NULL. */
int ps_lambda_scan(MPI_Comm comm, const ps_dataset *d, const ps_ridge *ridge, const char *pseudo_label,
                   const double *grid, int n, const ps_score_options *base, ps_progress *progress,
                   ps_lambda_curve *out);
void ps_lambda_curve_free(ps_lambda_curve *c);

/* Index of the smallest lambda with fpr <= target_fpr, or -1 if there is none. */
int ps_lambda_choose(const ps_lambda_curve *c, double target_fpr);

/* FPR of the pseudo perturbation in a full run's scores (scores of design d,
 * ps_score_cells): the same quantity as the scan's, for checking. Collective. */
int ps_lambda_fpr_of(MPI_Comm comm, const ps_design *d, const ps_scores *s, int32_t pseudo_id, double *fpr);

#endif
