/* pertscore/dosage.h: the dosage analysis of one perturbation (SPEC.md section 5).
 *
 * For a perturbation X whose own (targeted) gene is measured, given the X cells'
 * own-gene values y (log-normalized), their perturbation scores PS and the
 * control cells' own-gene values:
 *   1. normalized expression x = (y - min) / (median_controls - min), min over the
 *      X cells and the control cells together; x >= 0, values above 1 kept;
 *   2. ten bins by the deciles of x over the X cells (R type-7 quantiles; equal
 *      breakpoints merge bins exactly like R's
 *        cut(x, unique(quantile(x, 0:10 / 10)), include.lowest = TRUE));
 *      per bin the mean x, mean PS and count; >= 5 bins needed to fit;
 *   3. the LL.4 curve of R drc,
 *        Hill(x) = c + (d - c) / (1 + exp(b (ln x - ln e))),
 *      least squares on the bin means (unweighted), ED50 = e; kept only if
 *      Hill(0) - Hill(1) >= 0.2; buffered if ED50 <= 0.5, sensitive otherwise;
 *   4. Pearson and Spearman correlation of PS with y over the X cells, with the
 *      p-values of R cor.test (Spearman with exact = FALSE); CRISPRi efficiency
 *      detected when the Pearson r < -0.1 with p <= 0.05; the sum of PS.
 * Everything here is serial and communication-free: the distributed stage
 * gathers one perturbation's cells to the rank that owns it and calls
 * ps_dosage_fit_one there, with one ps_hill_solver per rank reused for every
 * perturbation. The lower-level steps are public for tests and diagnostics. */
#ifndef PERTSCORE_DOSAGE_H
#define PERTSCORE_DOSAGE_H

#include "pertscore/data.h"
#include "pertscore/io.h"
#include "pertscore/util.h"

/* Most bins a result can hold (n_bins is validated against it). */
#define PS_DOSAGE_MAX_BINS 64

/* ---- options (SPEC.md section 5 defaults) ---- */
typedef struct {
  int64_t min_cells;   /* --min-dosage-cells 100: fewer X cells -> not fitted */
  int n_bins;          /* 10 quantile bins (deciles) */
  int min_bins;        /* 5: fewer distinct bins after merging ties -> not fitted */
  double min_drop;     /* 0.2: keep the fit only if Hill(0) - Hill(1) >= min_drop */
  double ed50_split;   /* 0.5: buffered if ED50 <= split, sensitive if above */
  double crispri_r;    /* -0.1: CRISPRi efficiency detected if Pearson r < crispri_r ... */
  double crispri_p;    /* 0.05: ... and its p <= crispri_p */
} ps_dosage_options;

void ps_dosage_options_default(ps_dosage_options *o);
/* PS_ERR_INPUT with a message naming the bad field. */
int ps_dosage_options_check(const ps_dosage_options *o);

/* Why a perturbation has (or has not) a Hill fit. Everything except
 * PS_DOSAGE_FITTED means "no ED50, no class"; correlations and the cumulative
 * score are filled in whenever there are cells (they need no fit). */
typedef enum {
  PS_DOSAGE_FITTED = 0,        /* fit kept: ED50 and class are valid */
  PS_DOSAGE_TOO_FEW_CELLS,     /* n < min_cells */
  PS_DOSAGE_NOT_EXPRESSED,     /* median over controls == min: x undefined (0 / 0); typically
                                  the own gene is zero in at least half of the control cells */
  PS_DOSAGE_TOO_FEW_BINS,      /* fewer than min_bins distinct bins after merging tied deciles */
  PS_DOSAGE_FILTER_FAILED,     /* fitted, but Hill(0) - Hill(1) < min_drop: hill[] kept for inspection */
  PS_DOSAGE_FIT_FAILED,        /* the least-squares fit did not converge to a finite point */
} ps_dosage_status;

/* Short fixed text for a status, e.g. "too few bins" (for result files and logs). */
const char *ps_dosage_status_name(ps_dosage_status s);

typedef enum { PS_DOSAGE_CLASS_NONE = 0, PS_DOSAGE_BUFFERED, PS_DOSAGE_SENSITIVE } ps_dosage_class;
const char *ps_dosage_class_name(ps_dosage_class c); /* "", "buffered", "sensitive" */

/* ---- step 1: normalized own-gene expression ----
 * x[i] = (own[i] - min) / (median - min) for the n X cells, min = the smallest of
 * all n + n_control values, median = R median() of the control values (mean of the
 * two middle values for even n_control). Writes *min_out and *median_out always;
 * if median == min, x is undefined: *status = PS_DOSAGE_NOT_EXPRESSED and x is
 * left untouched; otherwise *status = PS_DOSAGE_FITTED ("no problem").
 * Needs n >= 1 and n_control >= 1 finite values, else PS_ERR_INPUT. */
int ps_dosage_normalize(const double *own, int64_t n, const double *control, int64_t n_control,
                        double *x, double *min_out, double *median_out, ps_dosage_status *status);

/* ---- step 2: quantile bins ---- */
typedef struct {
  int n_breaks;                          /* unique quantile breakpoints, ascending */
  double breaks[PS_DOSAGE_MAX_BINS + 1];
  int n_bins;                            /* bins holding at least one cell */
  int interval[PS_DOSAGE_MAX_BINS];      /* bin k is (breaks[interval[k]], breaks[interval[k] + 1]] */
  double mean_x[PS_DOSAGE_MAX_BINS];     /* strictly increasing in k */
  double mean_ps[PS_DOSAGE_MAX_BINS];
  int64_t count[PS_DOSAGE_MAX_BINS];
} ps_dosage_bins;

/* R type-7 quantile of the ascending values sorted[0..n-1] at prob, computed the
 * way R's quantile.default does: (1 - h) x[lo] + h x[hi], skipped when x[hi] == x[lo]. */
double ps_quantile7(const double *sorted, int64_t n, double prob);

/* Bins of x by its n_quantiles-quantiles (probabilities k / n_quantiles, as R's
 * 0:10 / 10): breaks = the unique quantiles; cell i is in the interval k with
 * breaks[k] < x[i] <= breaks[k + 1], the lowest interval closed on the left.
 * An interval can be empty: when a block of tied values v ends exactly at the
 * lower index of the next quantile, that quantile interpolates between v and the
 * next value w and nothing lies in (v, quantile]. Empty intervals are dropped, as
 * grouping the cells by interval does, and n_bins counts the rest.
 * n >= 1, 1 <= n_quantiles <= PS_DOSAGE_MAX_BINS; ps may be NULL (mean_ps = NaN). */
int ps_dosage_bin(const double *x, const double *ps, int64_t n, int n_quantiles, ps_dosage_bins *out);

/* ---- step 3: the LL.4 fit ---- */
typedef struct {
  double b, c, d, e; /* canonical: d >= c (drc's upper / lower limit); b > 0 means decreasing in x */
  double sse;        /* sum of squared residuals at the fit */
  int converged;     /* 1 if stationary (see ps_hill_fit) or flat; 0: "fit failed" */
  int flat;          /* converged only in that the sum of squares settled along a flat valley
                        (b -> +-infinity: a step; or e beyond the data with c or d running off):
                        the curve is determined, the parameters along the valley are not */
  int at_bound;      /* 1 if a parameter ended on the search box (see ps_hill_fit) */
  int iterations;    /* TAO iterations of the kept start (both methods) */
} ps_hill_params;

/* Hill(x) for x >= 0; x = 0 is the limit x -> 0: d if b > 0, c if b < 0,
 * (c + d) / 2 if b == 0. */
double ps_hill_eval(const ps_hill_params *p, double x);

typedef struct ps_hill_solver ps_hill_solver;

/* A solver holds two TAOBRGN objects (options prefixes -ps_hill_ and
 * -ps_hill_fallback_, see src/dosage/hill.c) sized for up to max_points data
 * points; create it once per rank and reuse it for every fit. Needs PetscInitialize. */
int ps_hill_solver_create(int max_points, ps_hill_solver **out);
void ps_hill_solver_destroy(ps_hill_solver **solver);
/* Fits, TAO solves, solves that needed the fallback method, TAO iterations (any pointer may be NULL). */
void ps_hill_solver_counts(const ps_hill_solver *solver, int64_t *n_fits, int64_t *n_solves,
                           int64_t *n_fallback, int64_t *n_iterations);

/* Least-squares LL.4 fit to n points (x[i] >= 0, y[i]), 4 <= n <= max_points, at
 * least two distinct x and one x > 0; x = 0 enters through the x -> 0 limit.
 * Parameters (b, c, d, ln e). Start: a grid of 14 b (0.25 .. 22.6) x 41 ln e
 * (the positive x's ln range widened by 1 on each side), c and d by linear least
 * squares at each grid point; the three best local minima of the grid are refined
 * with TAO and the lowest sum of squares is kept (canonical form d >= c).
 * Search box: |b| <= 100, ln e within ln 10 of the positive x's ln range, c and d
 * within ten data ranges of the y's.
 * "Stationary": the residual is orthogonal to every free Jacobian column to 1e-6
 * (max |cos|), or the residual is at rounding level.
 * Returns PS_OK with out->converged = 0 when no start converged; PS_ERR_INPUT for
 * bad data, PS_ERR_SYSTEM for PETSc failures. */
int ps_hill_fit(ps_hill_solver *solver, int n, const double *x, const double *y, ps_hill_params *out);

/* ---- step 4: correlations ---- */
typedef struct {
  double r; /* NaN if either variable is constant (R: NA with a warning) */
  double p; /* two-sided; NaN if r is NaN or n < 3 */
} ps_cor_test;

/* R cor.test(x, y, method = "pearson"): t = sqrt(n - 2) r / sqrt(1 - r^2), t_{n-2}. */
int ps_cor_pearson(const double *x, const double *y, int64_t n, ps_cor_test *out);
/* R cor.test(x, y, method = "spearman", exact = FALSE): r of the average ranks,
 * p from t = r / sqrt((1 - r^2) / (n - 2)) on n - 2 df (after R's round trip
 * through S = (n^3 - n)(1 - r) / 6). */
int ps_cor_spearman(const double *x, const double *y, int64_t n, ps_cor_test *out);

/* R pt(t, df, lower.tail) and pbeta(x, a, b, lower.tail) (continued fraction;
 * relative accuracy ~1e-13 in either tail). */
double ps_pt(double t, double df, int lower_tail);
double ps_pbeta(double x, double a, double b, int lower_tail);

/* ---- all of it for one perturbation ---- */
typedef struct {
  ps_dosage_status status;
  ps_dosage_class cls;      /* valid when status == PS_DOSAGE_FITTED */
  int64_t n_cells;
  double expr_min, control_median; /* normalization (step 1) */
  ps_dosage_bins bins;      /* n_bins == 0 when not binned (too few cells, not expressed) */
  ps_hill_params hill;      /* set when a fit was attempted (FITTED, FILTER_FAILED, FIT_FAILED) */
  double hill0, hill1;      /* Hill(0), Hill(1) of that fit */
  double ed50;              /* e when FITTED, else NaN */
  ps_cor_test pearson, spearman; /* PS vs own-gene y over the X cells */
  int crispri_efficient;    /* pearson.r < crispri_r && pearson.p <= crispri_p */
  double cumulative_ps;     /* sum of PS over the X cells */
} ps_dosage_result;

/* The whole of SPEC.md section 5 for one perturbation: own[i], ps[i] for its n
 * X cells, control[] for the n_control control cells; solver made with
 * max_points >= opt->n_bins. The statuses above are results, not errors: the
 * return value is PS_OK for them and an error code only for bad input
 * (non-finite values, bad options) or a system failure. Order of the checks:
 * too few cells, not expressed, too few bins, fit failed, filter failed. */
int ps_dosage_fit_one(const double *own, const double *ps, int64_t n, const double *control,
                      int64_t n_control, const ps_dosage_options *opt, ps_hill_solver *solver,
                      ps_dosage_result *out);

/* ---- the distributed stage (src/dosage/stage.c) ----
 * Every perturbation k is owned by rank k % P. Each rank sends the (own-gene
 * value, PS) pairs of its cells carrying k, and its control cells' nonzero
 * own-gene values of k's gene (only for perturbations with >= min_cells cells),
 * to the owner in one Alltoallv each; the owner orders its cells by global index
 * (so the fit does not depend on the rank count), calls ps_dosage_fit_one with
 * one reusable ps_hill_solver, and one Allreduce gives every rank the whole table. */

/* Status of a perturbation that never reaches ps_dosage_fit_one: its label is not
 * a measured gene (a guide with --unit guide, a pseudo perturbation, a gene
 * missing from the matrix). Stored next to the ps_dosage_status values. */
#define PS_DOSAGE_NO_OWN_GENE (-1)

/* What the stage reads on each rank: its cells, each with a global index (the
 * analysed order: unique over all ranks), the perturbations it carries and its
 * PS for them; control cells carry none. */
typedef struct {
  int32_t n_perturbations;  /* K, the same on every rank */
  int64_t n_cells;          /* local cells */
  int64_t first_index;      /* global index of local cell j: first_index + j ... */
  const int64_t *index;     /* ... or index[j] when not NULL (cells in any order, e.g. pertscore dosage) */
  const int64_t *ptr;       /* n_cells + 1 */
  const int32_t *ids;       /* carried perturbations of each cell */
  const double *ps;         /* aligned with ids: the cell's PS for that perturbation */
  const int32_t *own_gene;  /* K: >= 0 when perturbation k's own gene is measured */
  const ps_csr *own;        /* local cells x K own-gene values, layout of ps_dataset.own (data.h) */
} ps_dosage_input;

/* The stage's answer, identical on every rank: one row per perturbation. */
typedef struct {
  int32_t n_perturbations, n_bins; /* K; columns of the bin arrays (opt->n_bins) */
  int32_t *status;                 /* K: ps_dosage_status or PS_DOSAGE_NO_OWN_GENE */
  int32_t *cls;                    /* K: ps_dosage_class (NONE unless fitted) */
  int32_t *crispri_efficient;      /* K: 0/1 */
  int64_t *n_cells;                /* K: cells carrying the perturbation */
  double *ed50, *hill_b, *hill_c, *hill_d, *hill_e, *hill0, *hill1; /* K; NaN when not fitted/attempted */
  double *pcc, *pcc_p, *scc, *scc_p; /* K: PS vs own-gene expression over the perturbation's cells */
  double *cumulative_ps;           /* K: sum of PS over them */
  double *own_min, *own_control_median; /* K: the normalization (step 1) */
  double *bin_x, *bin_ps, *bin_count; /* K x n_bins row-major, NaN beyond a perturbation's bins */
  int64_t n_control;               /* control cells */
  int64_t n_with_own_gene, n_fitted, n_buffered, n_sensitive, n_crispri_efficient;
  int64_t hill_fits, hill_solves, hill_fallback, hill_iterations; /* summed over ranks */
} ps_dosage_table;

/* Text for a table status: ps_dosage_status_name, or "own gene not measured". */
const char *ps_dosage_table_status_name(int32_t status);
/* The categories of a status column, in code order (status s has code s, NO_OWN_GENE the last). */
#define PS_DOSAGE_N_STATUS_NAMES 7

/* Collective. progress may be NULL. Needs PetscInitialize (the Hill solver). */
int ps_dosage_stage(MPI_Comm comm, const ps_dosage_input *in, const ps_dosage_options *opt, ps_progress *progress,
                    ps_dosage_table *out);
void ps_dosage_table_free(ps_dosage_table *t);

/* What pertscore dosage takes from the results file it recomputes, read by
 * ps_results_read_dosage_input (pertscore/results.h, src/results/read.c): a block
 * of its cells' PS (X read like an input matrix, so x.genes are the perturbations
 * (var) and x.cells this block's cells (obs)), the perturbations each block cell
 * carries (obs column "perturbations", as sorted ids into var; with
 * --score-all-cells X has entries beyond them), and how the run read its input. */
typedef struct {
  ps_matrix x;
  int64_t *carried_ptr; /* x.x.n_rows + 1 */
  int32_t *carried;
  int unit_guide;       /* the run's --unit was guide */
  double scale;         /* the s the run normalized with (uns/pertscore/parameters/scale_value, else 1e4) */
} ps_dosage_results;
void ps_dosage_results_free(ps_dosage_results *r);

/* pertscore dosage (src/dosage/recompute.c): the stage on the PS of an existing
 * results file (res, read from src->results, which names it in messages) and the
 * own-gene expression of the input it was computed from (read and log-normalized
 * as pertscore run does: layer, input_is = PS_INPUT_* of data.h, res->scale).
 * Cells are matched by obs name (every results cell must be in the input); a
 * cell's carried perturbations and PS come from res; the results row is the
 * global index, so the table equals the one pertscore run computed from the same
 * PS. With results of --unit guide, no perturbation has an own gene. Collective. */
typedef struct {
  const char *results, *input, *layer;
  int input_is;
} ps_dosage_source;
int ps_dosage_recompute(MPI_Comm comm, const ps_dosage_source *src, const ps_dosage_results *res,
                        const ps_dosage_options *opt, ps_progress *progress, ps_dosage_table *out);

/* ---- own genes (src/dosage/own_genes.c) ----
 * ps_dosage_own_genes: on the dataset between ps_targets_select and
 * ps_regression_prepare (d->block, d->block_keep, d->gene_index still there), each
 * perturbation's own-gene values into d->own_gene and d->own (pertscore/data.h);
 * with --group-by "P@g" has P's own gene. Collective (errors synced). */
int ps_dosage_own_genes(MPI_Comm comm, ps_dataset *d);
/* own_gene[k] = the index of the gene named like design->names[k] in gene_index, or
 * -1 (all -1 with unit_guide); own = analysed rows of x (keep[i] = analysed position
 * of block row i, or -1) x K as described for ps_dataset.own. x: log-normalized, all
 * genes. Not collective. */
int ps_own_genes_extract(const ps_csr *x, const int64_t *keep, const ps_design *design, const ps_strmap *gene_index,
                         int unit_guide, int32_t **own_gene, ps_csr *own);

#endif
