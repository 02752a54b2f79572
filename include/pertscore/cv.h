/* pertscore/cv.h: cross-validation (SPEC.md section 7; definitions in docs/cv.md).
 *
 * Two schemes, k-fold, deterministic for a seed and the same on any number of ranks:
 *   perturbations: folds of perturbations; predict a held-out perturbation's
 *     pseudobulk expression change (delta) from the training perturbations with
 *     baselines (training mean, training median, zero) and the linear
 *     gene-embedding model, optionally score an external model's predictions,
 *     and a split-half reproducibility ceiling. A fold per rank group.
 *   cells: folds of cells stratified by perturbation; held-out prediction error
 *     of ridge beta over a ridge-lambda grid, and the stability of held-out PS.
 *     The folds run in turn on all ranks, the training cells a mask over the cells in place.
 *
 * ps_cv_stage_run runs either scheme on a dataset already read (`pertscore cv`,
 * and `pertscore run --cv`); src/results writes its tables (ps_results_write_cv,
 * into a file of their own or into the run's results file).
 *
 * The metric functions are plain serial C over flat arrays, kept public for tests. */
#ifndef PERTSCORE_CV_H
#define PERTSCORE_CV_H

#include "pertscore/data.h"
#include "pertscore/de.h"
#include "pertscore/ridge.h"
#include "pertscore/score.h"

/* ---------------------------------------------------------------- metrics */

/* Metrics of a predicted delta against the observed one (docs/cv.md "Metrics"). */
enum {
  PS_CV_MSE,         /* mean (p - o)^2 */
  PS_CV_MAE,         /* mean |p - o| */
  PS_CV_PEARSON,     /* Pearson delta */
  PS_CV_SPEARMAN,    /* Pearson of average ranks */
  PS_CV_SIGN,        /* over genes with o != 0: fraction with sign(p) == sign(o) */
  PS_CV_MSE_TOP,     /* MSE on the top_n genes by |o| */
  PS_CV_PEARSON_TOP, /* Pearson on the top_n genes by |o| */
  PS_CV_OVERLAP_TOP, /* |top_n by |p|  ∩  top_n by |o|| / top_n */
  PS_CV_R2_DE,       /* 1 - sum (o - p)^2 / sum (o - mean o)^2 on the top_de genes by |o| */
  PS_CV_RETRIEVAL,   /* normalized rank of the truth among the fold's held-out perturbations */
  PS_CV_N_METRICS
};
extern const char *const ps_cv_metric_names[PS_CV_N_METRICS];

/* Metrics [0, PS_CV_RETRIEVAL) of pred against obs over the n_genes genes except
 * the n_skip listed in skip (the perturbed gene). metrics[PS_CV_RETRIEVAL] is set
 * to NaN (it needs the other held-out perturbations: ps_cv_retrieval). "Top" sets
 * hold min(top_n, genes) genes, ordered by |value| descending, ties by gene index.
 * A NaN in pred or obs makes every metric NaN; undefined correlations (a constant
 * vector) are NaN. Not collective. */
int ps_cv_delta_metrics(int64_t n_genes, const double *pred, const double *obs, const int64_t *skip, int n_skip,
                        int top_n, int top_de, double *metrics);

/* Pearson correlation over the genes not in skip; NaN if undefined. Two-pass. */
double ps_cv_pearson(int64_t n_genes, const double *x, const double *y, const int64_t *skip, int n_skip);

/* Retrieval of perturbation `truth` among n candidates: r_i = Pearson(pred,
 * obs[i]) over the genes except pred_own and obs_own[i] (-1: none); the result is
 * (#{i != truth : r_i < r_truth} + 0.5 #{i != truth : r_i == r_truth or r_i NaN}) / (n - 1):
 * 1 = the truth correlates best, 0.5 = random, 0 = worst. NaN if n < 2 or r_truth is NaN. */
double ps_cv_retrieval(int64_t n_genes, const double *pred, int64_t pred_own, const double *const *obs,
                       const int64_t *obs_own, int n, int truth);
/* The same with r_i multiplied by scale[i] before the ranking (the corrected ceiling's
 * disattenuation, docs/cv.md "Ceiling"); scale NULL = ps_cv_retrieval. */
double ps_cv_retrieval_scaled(int64_t n_genes, const double *pred, int64_t pred_own, const double *const *obs,
                              const int64_t *obs_own, int n, int truth, const double *scale);

/* The split-half ceiling corrected to full-data reliability (docs/cv.md "Ceiling"):
 * raw = the ten split-half metrics of one perturbation, q = |top set| / evaluated genes
 * (for overlap_top); out[PS_CV_RETRIEVAL] is left as it is (it needs the fold:
 * ps_cv_retrieval_scaled). out may not alias raw. Not collective. */
/* kappa = the evaluated delta's noise variance over a half delta's: 1/2 with the shared
 * control mean, estimated per perturbation with --disjoint-controls. */
void ps_cv_ceiling_correct(const double *raw, double q, double kappa, double *out);
/* Disattenuation factor of a half-data delta of split-half Pearson r as the observed
 * side of a correlation: sqrt(rho_full / rho_half) = sqrt(1 / (r + kappa (1 - r))),
 * sqrt(2 / (1 + r)) at kappa 1/2; 1 when r is NaN. */
double ps_cv_ceiling_scale(double r, double kappa);

/* PEREGGRN's conventions (docs/cv.md): sums of squared errors over all genes and the
 * top 20 / 100 / 200 by |o| (average-rank cut-off), their means, and the direction
 * over all genes (0 == 0 right); over the genes except skip. */
enum {
  PS_CV_PG_MSE_SUM,
  PS_CV_PG_TOP20, PS_CV_PG_TOP100, PS_CV_PG_TOP200,
  PS_CV_PG_TOP20_SUM, PS_CV_PG_TOP100_SUM, PS_CV_PG_TOP200_SUM,
  PS_CV_PG_SIGN_ALL,
  PS_CV_N_PEREGGRN
};
extern const char *const ps_cv_pereggrn_names[PS_CV_N_PEREGGRN];
int ps_cv_pereggrn_metrics(int64_t n_genes, const double *pred, const double *obs, const int64_t *skip, int n_skip,
                           double *out);
/* The ceiling of the split-half PEREGGRN metrics: squared errors / 4, the direction as sign_fraction's. */
void ps_cv_pereggrn_correct(const double *raw, double kappa, double *out);
/* The corrected sign agreement of a split-half agreement s (docs/cv.md "Ceiling"). */
double ps_cv_ceiling_sign(double s, double kappa);

/* ---------------------------------------------------------------- folds */

/* Fold of each of n items (perturbations, sorted): pi = Fisher-Yates permutation of
 * n keyed by seed; fold[i] = pi[i] mod n_folds. Not collective. */
int ps_cv_permutation_folds(int64_t n, int n_folds, uint64_t seed, int32_t *fold);

/* Balanced random slots within strata, the same on any number of ranks: item i of
 * this rank (in stratum stratum[i] in [0, n_strata)) has position p within its
 * stratum counted in global order (rank 0's items first); the positions are cut
 * into blocks of n_slots and each block gets a random permutation of the slots,
 * keyed by (seed, salt, stratum, block). So every stratum's slots differ in size by
 * at most one. Collective. */
int ps_cv_stratified_slots(MPI_Comm comm, int64_t n_local, const int32_t *stratum, int32_t n_strata, int n_slots,
                           uint64_t seed, uint64_t salt, int32_t *slot);

/* cells scheme: fold of each local analysed cell, stratified by perturbation: the
 * stratum of a perturbed cell is top_perturbation (its largest-UMI guide's
 * perturbation) or, when that is -1, its first perturbation; control cells are
 * one stratum. Collective. */
int ps_cv_cell_folds(MPI_Comm comm, const ps_design *design, const int32_t *top_perturbation, int n_folds,
                     uint64_t seed, int32_t *fold);

/* ---------------------------------------------------------------- pseudobulk */

/* Mean log-normalized expression per perturbation (over the cells carrying that
 * perturbation only: cells with two or more are left out, so that a held-out
 * perturbation's cells never enter a training mean) and of the control cells
 * (empty design row), over the
 * evaluated genes, and the same for two random halves of each group's cells
 * (ps_cv_stratified_slots with 2 slots, strata = groups, salt "halves").
 * Every rank sums its own cells: memory 3 x 8 (K + 1) G bytes per rank at the
 * peak (the halves' sums, then the means), all replicated. */
typedef struct {
  int32_t n_perturbations; /* K; row K is the control group */
  int64_t n_genes;         /* G evaluated genes */
  int64_t *n_cells;        /* K + 1 */
  int64_t *n_half;         /* (K + 1) x 2 */
  double *mean;            /* (K + 1) x G row-major; NaN where a group has no cells */
  double *half_mean;       /* (K + 1) x 2 x G: row 2k + h is half h of group k; NaN where empty */
  int64_t n_multiple;      /* cells left out for carrying two or more perturbations (all ranks) */
  int32_t *cell_half;      /* local cells of the design: split half 0 / 1, -1 = left out (two or more) */
  double *test_delta;      /* --disjoint-controls: K x G held-out deltas (against control half 1); else NULL */
  double *kappa;           /* --disjoint-controls: K, the ceiling's noise ratio (docs/cv.md); else NULL */
} ps_cv_bulk;

/* x: local analysed cells x input genes (rows aligned with design), log-normalized.
 * column_of: input gene -> evaluated gene in [0, n_genes) or -1; NULL = identity. Collective. */
int ps_cv_pseudobulk(MPI_Comm comm, const ps_design *design, const ps_csr *x, const int32_t *column_of,
                     int64_t n_genes, uint64_t seed, ps_cv_bulk *out);
void ps_cv_bulk_free(ps_cv_bulk *b);

/* ---------------------------------------------------------------- baselines and the embedding model */

/* Per gene g, over the T training deltas without their own-gene entry
 * (delta[t][own[t]] is missing): the mean (summed in t order, divided by the
 * count) and the median (R type 7: the middle value or the mean of the two
 * middle ones); NaN where no entry remains. median may be NULL. Not collective. */
int ps_cv_baselines(int64_t n_genes, int32_t n_train, const double *const *delta, const int64_t *own, double *mean,
                    double *median);

/* The linear gene-embedding model (docs/cv.md): Y = training deltas minus the
 * training mean (genes x T; own-gene entries, which are missing, become 0, i.e. are
 * imputed with the mean); G = U_k S_k, the top k left singular vectors of Y
 * scaled by their singular values (ScaLAPACK pdgesvd over comm); k = min(n_pcs,
 * T - 1, genes); P = rows of G of the training perturbations' genes (those with
 * own >= 0), Y' their columns; W = (G^T G + lambda I)^-1 G^T Y' P^T (P P^T + lambda I)^-1.
 * Prediction for a perturbation of gene j: mean + G W G[j, :]^T. */
typedef struct {
  int64_t n_genes;
  int k;            /* PCs used; 0 when the model could not be fitted (fewer than 2 usable perturbations) */
  double lambda;
  double *scores;   /* G x k row-major: U_k S_k */
  double *sigma;    /* k singular values */
  double *w;        /* k x k row-major */
} ps_cv_embedding;

/* Collective over comm (a fold's rank group); the result is the same on its ranks. */
int ps_cv_embedding_fit(MPI_Comm comm, int64_t n_genes, int32_t n_train, const double *const *delta,
                        const int64_t *own, const double *center, int n_pcs, double lambda, ps_cv_embedding *out);
/* pred = center + G W G[own, :]^T; all NaN when own < 0 or the model is empty. */
void ps_cv_embedding_predict(const ps_cv_embedding *e, const double *center, int64_t own, double *pred);
void ps_cv_embedding_free(ps_cv_embedding *e);

/* ---------------------------------------------------------------- the schemes */

enum { PS_CV_SCHEME_PERTURBATIONS = 1, PS_CV_SCHEME_CELLS = 2 };

typedef struct {
  int scheme;
  int n_folds;             /* --folds (5) */
  uint64_t seed;           /* --seed (1) */
  /* perturbations scheme */
  int64_t min_cells;       /* --min-cells: perturbations with fewer cells (or an empty half) are left out (10) */
  int n_pcs;               /* --pcs (10) */
  double embedding_lambda; /* --embedding-lambda (0.1) */
  int top_n, top_de;       /* 100, 50 */
  int keep_predictions;    /* --save-predictions: keep every model's predicted and the observed deltas */
  int strict_predictions;  /* --strict: refuse predictions that miss a held-out perturbation */
  int disjoint_controls;   /* --disjoint-controls: training deltas (and predictions) against control half 0,
                              held-out deltas against control half 1 (docs/cv.md) */
  /* cells scheme */
  int n_ridge_lambdas;
  double ridge_lambdas[64];    /* --ridge-lambdas (10^-2 .. 10^4 in half decades) */
  ps_score_options score;      /* held-out PS (rescale is turned off: raw PS, see docs/cv.md) */
} ps_cv_options;

void ps_cv_options_default(ps_cv_options *o);

enum {
  PS_CV_MODEL_MEAN,        /* training mean delta */
  PS_CV_MODEL_MEDIAN,      /* training median delta */
  PS_CV_MODEL_ZERO,        /* zero delta: the control mean */
  PS_CV_MODEL_EMBEDDING,   /* linear gene-embedding model */
  PS_CV_MODEL_PREDICTIONS, /* external predictions (--predictions) */
  PS_CV_MODEL_CEILING,     /* split-half reproducibility corrected to the full data (the bound) */
  PS_CV_MODEL_SPLIT_HALF,  /* the raw split-half metrics (half 0 vs half 1) */
  PS_CV_N_MODELS
};
extern const char *const ps_cv_model_names[PS_CV_N_MODELS];

typedef struct {
  const ps_design *design;       /* local analysed cells */
  const ps_csr *x;               /* local analysed cells x input genes, log-normalized, rows aligned with design */
  const int32_t *column_of;      /* input gene -> evaluated gene or -1; NULL = all input genes */
  int64_t n_genes;               /* evaluated genes */
  const int64_t *own_gene;       /* K: evaluated gene of the perturbed gene, -1 when not measured */
  const double *predictions;     /* K x n_genes predicted mean log-normalized expression; NULL: none */
  const uint8_t *has_prediction; /* K (with predictions) */
  ps_progress *progress;         /* may be NULL: updated as rank 0's fold group finishes its folds */
} ps_cv_perturbation_input;

typedef struct {
  int32_t n_perturbations;
  int64_t n_genes;
  int n_folds;
  int has_predictions;
  int32_t *fold;        /* K: fold of each perturbation, -1 = left out (fewer than min_cells) */
  int64_t *n_cells;     /* K + 1 (K: controls): the cells of the pseudobulk means */
  int64_t n_multiple;   /* cells left out for carrying two or more perturbations */
  int64_t *own_gene;    /* K */
  int *n_pcs;           /* per fold: PCs the embedding model used */
  int *n_train;         /* per fold: training perturbations */
  double *metrics;      /* K x PS_CV_N_MODELS x PS_CV_N_METRICS; NaN where not evaluated */
  double *control_mean; /* G */
  double *observed;     /* keep_predictions: K x G observed deltas (NaN on the own gene) */
  double *predicted;    /* keep_predictions: PS_CV_N_MODELS x K x G predicted deltas (NaN where none) */
  double seconds[3];    /* pseudobulk, ceiling, folds */
  int64_t n_local_cells; /* local analysed cells (rows of the design) */
  int32_t *cell_half;   /* n_local_cells: split half of each local cell, -1 = left out (uns/cv/halves) */
  uint8_t *compared;    /* K: held out and predicted by every model (the summary's means are over these) */
  int64_t n_compared;
  int64_t n_predictions_ignored; /* rows of the predictions file naming no analysed perturbation */
  int64_t n_predictions_missing; /* held-out perturbations the predictions file has no row for */
  double *pereggrn;     /* K x PS_CV_N_MODELS x PS_CV_N_PEREGGRN; NaN where not evaluated */
} ps_cv_perturbation_result;

/* Collective; the result is the same on every rank. */
int ps_cv_perturbations(MPI_Comm comm, const ps_cv_perturbation_input *in, const ps_cv_options *opt,
                        ps_cv_perturbation_result *out);
void ps_cv_perturbation_result_free(ps_cv_perturbation_result *r);

typedef struct {
  int32_t n_perturbations;
  int n_folds, n_lambdas;
  double lambdas[64];
  int32_t n_genes;    /* N regression genes */
  /* (F + 1) x L x (K + 2), index ((f * L) + l) * (K + 2) + group: fold F = all folds pooled,
   * group k < K = held-out cells carrying perturbation k, K = control cells, K + 1 = all */
  double *sse, *sst, *mse, *r2;
  int64_t *n_cells;   /* (F + 1) x (K + 2) held-out cells per group */
  int chosen;         /* index of the chosen ridge lambda: least pooled held-out MSE (first on ties) */
  /* PS stability at the chosen lambda: (F + 1) x (K + 1), group K = all entries pooled */
  double *ps_pearson;
  int64_t *ps_n;
  int32_t *cell_fold; /* local analysed cells */
  double seconds[2];  /* lambda grid, PS */
} ps_cv_cells_result;

/* y: the dataset's winsorized regression-gene response. Collective. */
int ps_cv_cells(MPI_Comm comm, const ps_design *design, const int32_t *top_perturbation, const ps_csr *y,
                const ps_cv_options *opt, ps_progress *progress, ps_cv_cells_result *out);
void ps_cv_cells_result_free(ps_cv_cells_result *r);

/* ---------------------------------------------------------------- the stage */

/* "a,b,c" -> opt->ridge_lambdas (1 to 64 values, each > 0); errors name option
 * (the command's own spelling). Not collective. */
int ps_cv_parse_ridge_lambdas(const char *option, const char *list, ps_cv_options *opt);

typedef struct {
  const ps_dataset_options *data; /* how the dataset was read: input, layer, unit */
  const char *predictions;        /* perturbations scheme: an external model's .h5ad, or NULL */
  const char *predictions_column; /* its obs column naming the perturbation ("perturbation") */
} ps_cv_stage_input;

typedef struct {
  int scheme;
  ps_cv_perturbation_result perturbations; /* scheme perturbations */
  ps_cv_cells_result cells;                /* scheme cells */
  int64_t n_genes;                         /* evaluated genes (perturbations scheme) */
  ps_strlist genes;                        /* their names */
  int64_t prediction_rows, prediction_unknown;
} ps_cv_stage_result;

/* Set the options of the targets and regression stages that a scheme needs: the perturbations
 * scheme keeps every gene of the analysed cells (keep_expression, so the matrix is
 * read once) and, when no_targets (pertscore cv: nothing else uses them), skips
 * target selection; the cells scheme needs the regression genes. Not collective. */
void ps_cv_dataset_options(int scheme, int no_targets, ps_targets_options *targets, ps_regression_options *regression);

/* The scheme of opt on the dataset d (as ps_dataset_read left it, with the options
 * of ps_cv_dataset_options). progress may be NULL (else updated per fold). Its
 * tables are written by ps_results_write_cv (pertscore/results.h). Collective. */
int ps_cv_stage_run(MPI_Comm comm, const ps_dataset *d, const ps_cv_stage_input *in, const ps_cv_options *opt,
                    ps_progress *progress, ps_cv_stage_result *out);
void ps_cv_stage_result_free(ps_cv_stage_result *r);

/* Per-fold, per-model means of the metrics over the compared held-out perturbations
 * (r->compared; NaN skipped): rows (F + 1) x PS_CV_N_MODELS, fold F = all folds; count[row * N_METRICS + m]
 * = perturbations with that metric defined. Not collective. */
int ps_cv_summarize(const ps_cv_perturbation_result *r, double *mean, int64_t *count);

#endif
