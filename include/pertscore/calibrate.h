/* pertscore/calibrate.h: calibrated calls (SPEC.md section 10, docs/method.md
 * "Calibrated calls").
 *
 * An extra stage after the run's scores, which it does not change. Control cells
 * are split (seeded by the cell's global analysed position, so the split does not
 * depend on the rank count) into C_fit and a held-out null C_null, itself split in
 * two halves N_0, N_1; perturbed cells into halves H_0, H_1. Fit f (f = 0, 1):
 * target selection (SPEC section 1, the run's options; skipped with a targets
 * file) and ridge beta (section 2, no permutations) on C_fit + H_f only; then the
 * held-out perturbed cells H_{1-f} are scored with the run's QP (section 3, raw PS,
 * no rescaling) and every cell of N_f is scored as if it carried perturbation k
 * alone, for every k. Under the null, given fit f, the cells of H_{1-f} and N_f are
 * exchangeable, so
 *   ps_pvalue(j, k) = (1 + #{c in N_f : s_ck >= s_jk}) / (1 + |N_f|)
 * is a valid p-value, and a one-sided Wilcoxon rank-sum of k's held-out cells
 * against N_f gives z_f(k), p_f(k) = 1 - Phi(z_f(k)); effect_pvalue(k) =
 * min(1, 2 min(p_0, p_1)) (Bonferroni: the fits' z are correlated under the null,
 * so Stouffer would not be valid), effect_fdr its Benjamini-Hochberg adjustment
 * over the K perturbations. */
#ifndef PERTSCORE_CALIBRATE_H
#define PERTSCORE_CALIBRATE_H
#include "pertscore/data.h"
#include "pertscore/de.h"
#include "pertscore/ridge.h"
#include "pertscore/score.h"

typedef struct {
  int enabled;             /* 1 unless --no-calibration */
  double control_fraction; /* --calibration-controls: share of control cells held out as the null (0.5) */
  uint64_t seed;           /* the run's --seed */
  int record;              /* --calibration-record: keep the stage's scores for the results file */
  double fdr;              /* the FDR of the reported counts (0.05) */
} ps_calibration_options;
void ps_calibration_options_default(ps_calibration_options *o);

/* Roles of a cell in the stage (ps_calibration.role). */
enum { PS_CAL_CONTROL_FIT = -1, PS_CAL_NULL_0 = 0, PS_CAL_NULL_1 = 1, PS_CAL_HALF_0 = 2, PS_CAL_HALF_1 = 3 };

typedef struct {
  int32_t n_perturbations;
  double *effect_pvalue, *effect_fdr, *effect_z; /* K, the same on every rank; effect_z = max_f z_f */
  double *fit_z;           /* 2 x K: z_f(k) of each fit */
  int64_t *n_heldout;      /* 2 x K: held-out cells of k in fit f */
  int64_t n_null[2];       /* |N_f| */
  int32_t n_regression[2]; /* regression genes of each fit */
  double *ps_pvalue;       /* layout of the scored design (local), NaN where the cell does not carry k */
  int32_t *role;           /* local analysed cells: PS_CAL_* */
  double *heldout_score;   /* with record: layout of the scored design, raw PS of the held-out fit (NaN elsewhere) */
  double *null_score[2];   /* with record: |N_f| x K row-major (null cells in global order), every rank */
  int32_t n_called;        /* perturbations at effect_fdr < fdr */
  int64_t n_entries, n_entries_significant; /* carried (cell, perturbation) pairs; of them ps_pvalue < fdr */
  double fdr;
  double seconds;
} ps_calibration;

/* The stage on the dataset the run read (d->expression must be kept: opt
 * keep_expression, unless targets_opt->targets is given; the refits repeat the
 * targets and regression stages with targets_opt and regression_opt, and qp_genes_own). scored: the design of the
 * run's scores (d->design or --score-all-cells'). With basal groups (--control-by,
 * --group-by) the refits have the run's group intercepts (and --group-by's per-group
 * selection and caps), and a cell is compared with the held-out controls of its own
 * group: ps_pvalue against them, the effect test a rank-sum stratified by group (with
 * --group-by k = P@g has one group). Collective. */
int ps_calibrate(MPI_Comm comm, const ps_targets_options *targets_opt, const ps_regression_options *regression_opt,
                 int qp_genes_own, const ps_dataset *d, const ps_design *scored, double ridge_lambda,
                 const ps_score_options *score_opt, const ps_calibration_options *opt, ps_progress *progress,
                 ps_calibration *out);
void ps_calibration_free(ps_calibration *c);

/* Benjamini-Hochberg q-values of n p-values (NaN stays NaN, not counted). */
int ps_bh_adjust(const double *p, int64_t n, double *q);

#endif
