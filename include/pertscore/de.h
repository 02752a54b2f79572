/* pertscore/de.h: target (signature) genes of one perturbation (SPEC.md section 1).
 *
 * Two pure, communication-free steps:
 *   1. ps_de_test_gene: one gene, cells carrying X (group P, n1 cells) against
 *      controls (group C, n2 cells): pct1, pct2, log2FC and the Wilcoxon
 *      rank-sum p-value of R wilcox.test(exact = FALSE). For one gene tested
 *      against many perturbations, ps_de_ref_build summarizes C once and
 *      ps_de_test_gene_ref tests each P against it (same results, far cheaper).
 *   2. ps_de_select: from the G per-gene results, the targets: min.pct filter,
 *      |log2FC| >= t with the adaptive threshold, the max_targets cap.
 * The caller owns the data layout (gene shards, which cells form P and C); these
 * functions only see one gene's values or one perturbation's results. */
#ifndef PERTSCORE_DE_H
#define PERTSCORE_DE_H

#include "pertscore/data.h"
#include "pertscore/util.h"

/* ---- options (SPEC.md section 1 defaults) ---- */
typedef struct {
  double min_pct;      /* --min-pct 0.1: tested only if max(pct1, pct2) >= min_pct */
  double logfc;        /* --logfc 0.1: first |log2FC| threshold */
  int64_t min_targets; /* --min-targets 10: fewer kept -> lower the threshold */
  int64_t max_targets; /* --max-targets 500: more kept -> keep the smallest p-values */
  int max_rounds;      /* 3 selections in all: thresholds 0.1, 0.08, 0.064 */
  double factor;       /* 0.8: threshold multiplier between selections */
  double fdr;          /* --target-fdr Q (SPEC section 9): also q <= Q, Benjamini-Hochberg over
                        * the genes that passed min_pct; 0 = off (the paper) */
} ps_de_options;

void ps_de_options_default(ps_de_options *o);

/* ---- step 1: one gene, P vs C ---- */
typedef struct {
  double pct1, pct2; /* fraction of cells with y > 0 in P, C; rounded like R round(x, 3) */
  double log2fc;     /* log2(mean(expm1(y_P)) + 1) - log2(mean(expm1(y_C)) + 1) */
  double p;          /* two-sided Wilcoxon rank-sum p; NaN when every value is tied (as R) */
} ps_de_gene;

/* Scratch memory for ps_de_test_gene, reused across calls; zero-initialize it
 * (ps_de_work w = {0}) and release it with ps_de_work_free. */
typedef struct {
  double *buf;
  int64_t cap;
} ps_de_work;

/* Room for n values in w->buf (grows, never shrinks). */
int ps_de_work_reserve(ps_de_work *w, int64_t n);
void ps_de_work_free(ps_de_work *w);

/* The gene's values are given sparsely: v1 holds nnz1 values of P (n1 cells),
 * v2 holds nnz2 values of C (n2 cells); every other cell of a group has y = 0.
 * Values need not be sorted and may include explicit zeros; they must be finite
 * (log-normalized y >= 0; negative values are ranked correctly too).
 * n1, n2 >= 1 and nnz <= n, else PS_ERR_INPUT. Cost O(nnz log nnz): the zeros
 * are one tie block handled analytically, never expanded.
 *
 * p is R's stats:::wilcox.test.default with exact = FALSE, correct = TRUE:
 *   W = sum of P's ranks (average ranks for ties) - n1 (n1 + 1) / 2
 *   z = (W - n1 n2 / 2 - 0.5 sign(W - n1 n2 / 2)) / sigma,
 *   sigma = sqrt(n1 n2 / 12 * ((n1 + n2 + 1) - sum(t^3 - t) / ((n1 + n2)(n1 + n2 - 1))))
 *   p = 2 min(pnorm(z), 1 - pnorm(z)) = erfc(|z| / sqrt 2)
 * computed with erfc so that p keeps its relative accuracy down to ~1e-300.
 * sigma = 0 happens only when all n1 + n2 values are equal; R then computes
 * 0 / 0 and reports NaN, and so do we (log2FC is then 0, so ps_de_select never
 * keeps such a gene). */
int ps_de_test_gene(const double *v1, int64_t nnz1, int64_t n1, const double *v2, int64_t nnz2,
                    int64_t n2, ps_de_work *work, ps_de_gene *out);

/* As ps_de_test_gene, for values already sorted ascending (no copy, no sort). */
int ps_de_test_gene_sorted(const double *v1, int64_t nnz1, int64_t n1, const double *v2,
                           int64_t nnz2, int64_t n2, ps_de_gene *out);

/* The p-value above from the Mann-Whitney statistic w (rank sum of P minus
 * n1 (n1 + 1) / 2) and tie_sum = sum over tie blocks of t^3 - t. */
double ps_de_wilcoxon_p(int64_t n1, int64_t n2, double w, double tie_sum);

/* ---- step 1, many perturbations against one large group ----
 * A gene's values in the group every perturbation is tested against (the
 * control cells; with --de-background others, all analysed cells), summarized
 * once as distinct values with cumulative counts. A test then costs
 * O((nnz_P + nnz_add + nnz_remove) log nnz_ref) instead of O(nnz_ref). */
typedef struct {
  const double *values; /* nnz stored values, any order, explicit zeros allowed */
  int64_t nnz, n;       /* the group's other n - nnz cells are 0 */
} ps_de_group;

typedef struct {
  int64_t n;              /* cells */
  int64_t n_distinct;     /* distinct values, the zero block included */
  double *values;         /* n_distinct, ascending */
  int64_t *below;         /* n_distinct + 1: cells with a value < values[i]; below[n_distinct] = n */
  int64_t n_positive;     /* cells with y > 0 */
  double tie_sum;         /* sum over distinct values of t^3 - t (t = cells with that value) */
  double sum_expm1[2];    /* sum of expm1(y) over the cells as hi + lo (double-double):
                           * removing P from all cells must not cancel to noise */
} ps_de_ref;

int ps_de_ref_build(const ps_de_group *g, ps_de_ref *ref);
void ps_de_ref_free(ps_de_ref *ref);

/* P against C = ref + add - remove (add, remove may be NULL; remove must be
 * cells of ref). Default background: ref = controls, add = cells of X that also
 * carry a control guide (the reference quirk of SPEC section 1; they are then
 * not in P). --de-background others: ref = all analysed cells, remove = P.
 * Gives what ps_de_test_gene gives on the explicit C: pct and W exactly, p and
 * log2FC to rounding (tie sums and means are added up in another order). */
int ps_de_test_gene_ref(const ps_de_group *p, const ps_de_ref *ref, const ps_de_group *add,
                        const ps_de_group *remove, ps_de_work *work, ps_de_gene *out);

/* ---- step 1, P against all other cells (--de-background others, src/de/complement.c) ----
 * When C = the reference's cells minus P (P a subset of the reference), P and C together
 * are the reference for every perturbation: rank the gene's values once
 * (ps_de_ref_rank), add each perturbation's cells into its ps_de_sums (O(1) each), and
 * test with ps_de_test_gene_complement (O(1)). A gene's K tests then cost O(nnz x MOI)
 * in all instead of K sorts. Same results as ps_de_test_gene_ref(P, ref, NULL,
 * remove = P), bit for bit when P's values are added in the same order. */
typedef struct {
  int64_t nnz;         /* P's stored values added */
  int64_t positive;    /* of them > 0 */
  double rank_sum;     /* sum of their average ranks among the reference's cells */
  double sum_expm1[2]; /* sum of expm1(value) as hi + lo (compensated) */
} ps_de_sums;

/* Average (1-based, ties averaged) rank of v among the reference's n cells; NaN if no
 * cell of the reference has the value v (0 counts when the reference has zeros). */
double ps_de_ref_rank(const ps_de_ref *ref, double v);
/* ps_de_ref_build, and rank[i] = ps_de_ref_rank of g->values[i] for each stored value
 * (rank: g->nnz doubles), for the cost of the one sort. */
int ps_de_ref_build_ranks(const ps_de_group *g, ps_de_ref *ref, double *rank);
/* One stored value of P: its value, ps_de_ref_rank of it, and expm1 of it. Zero-initialize
 * the sums first. */
void ps_de_sums_add(ps_de_sums *s, double value, double rank, double expm1_value);
/* P (n1 cells, the stored values in p, the others 0) against the reference's other
 * n - n1 cells. PS_ERR_INPUT if a group would be empty or P has a value (or zeros) the
 * reference lacks. */
int ps_de_test_gene_complement(const ps_de_sums *p, int64_t n1, const ps_de_ref *ref, ps_de_gene *out);

/* ---- step 1, every perturbation of one gene from one ranking (src/de/ranking.c) ----
 * The K tests of a gene, each P_k against C_k = reference(k) + add_k - remove_k, from one
 * sort of the gene's stored values over the cells that take part in any test: a walk
 * over the sorted values hands each block of equal values to the tests its cells are in,
 * and a test's W and tie sum come from counts (docs/method.md, "one ranking per gene").
 * A gene costs one sort of its nnz values plus O(nnz x memberships + K), where
 * ps_de_test_gene_ref per test sorts each test's own cells. Results equal
 * ps_de_test_gene_ref's on the same groups bit for bit (W and tie sums are exact
 * integers; the expm1 sums are added in the same order). */
enum { PS_DE_ROLE_P = 0, PS_DE_ROLE_ADD = 1, PS_DE_ROLE_REMOVE = 2, PS_DE_N_ROLES = 3 };

typedef struct {
  int32_t n_tests;         /* K */
  int32_t n_refs;          /* references (1, or one per group) */
  const int64_t *ref_size; /* n_refs: cells per reference */
  const int32_t *ref_of;   /* n_tests: reference of test k; NULL: all 0 */
  const int64_t *size;     /* 3 n_tests: cells of test k in P, added to C, removed from C */
  int64_t n_cells;
  const int64_t *role_ptr; /* n_cells + 1 */
  const int32_t *roles;    /* per cell: 3 k + PS_DE_ROLE_* (a removed cell must be in reference(k)) */
  const int32_t *in_ref;   /* n_cells: the reference holding the cell, or -1 */
} ps_de_layout;

typedef struct ps_de_rank_work ps_de_rank_work; /* scratch, reused across genes */

int ps_de_rank_work_create(const ps_de_layout *L, ps_de_rank_work **w);
void ps_de_rank_work_free(ps_de_rank_work *w);

/* One gene: nnz stored values value[i] of cells cell[i] (each cell at most once; cells
 * not listed are 0; stored zeros count as unstored). out[k] for every test k, and
 * tested[k] = 1, when n1, n2 >= 1 and max(pct1, pct2) >= min_pct; else tested[k] = 0
 * and out[k] is not written (pass min_pct = -1 to test all). PS_ERR_INPUT for a
 * non-finite value, a cell out of range, or removed cells the reference lacks. */
int ps_de_test_gene_layout(const ps_de_layout *L, const int32_t *cell, const double *value, int64_t nnz,
                           double min_pct, ps_de_rank_work *w, ps_de_gene *out, uint8_t *tested);

/* x rounded to 3 decimals exactly as R >= 4.0.0 round(x, 3) does it (the
 * nearer of the two 3-decimal neighbours of x, ties to the even last digit);
 * Seurat rounds pct.1 and pct.2 with it, and min.pct compares the rounded value. */
double ps_de_round3(double x);

/* ---- step 2: targets of one perturbation ---- */
typedef struct {
  int64_t n;         /* selected genes */
  int64_t *genes;    /* n gene indices, ordered by ascending p, then larger |log2FC|,
                      * then smaller index (NaN p sorts last) */
  double threshold;  /* |log2FC| threshold of the last selection made */
  int rounds;        /* selections made, 1 .. max_rounds */
  int64_t n_passing; /* genes passing that threshold, before the max_targets cap */
} ps_de_selection;

/* genes: the G per-gene results of one perturbation, indexed by gene.
 * exclude: a gene index to leave out (the perturbed gene itself,
 * --exclude-perturbed-gene), or -1. It is removed before counting, so it never
 * counts towards min_targets.
 * A gene is kept at threshold t when max(pct1, pct2) >= min_pct and
 * |log2FC| >= t. t starts at logfc; while fewer than min_targets are kept and
 * fewer than max_rounds selections were made, t <- factor * t and select
 * again (repeated multiplication in double: 0.1, 0.08000000000000002,
 * 0.06400000000000002, so a gene at exactly 0.08 is not kept at round 2).
 * The last selection is returned even when it is short of min_targets; if it
 * has more than max_targets genes, the max_targets first in the order above
 * are kept.
 * With opt->fdr > 0 (--target-fdr, SPEC section 9) the threshold t is found as
 * above, then a gene is kept only if also its Benjamini-Hochberg q <= fdr, q over
 * the m genes that passed min_pct (the excluded gene not counted; a NaN p counts
 * as 1): q_(h) = min over h' >= h of p_(h') m / h'. Then the cap. The result may
 * be empty.
 * out is overwritten; free it with ps_de_selection_free. */
int ps_de_select(const ps_de_gene *genes, int64_t n_genes, int64_t exclude, const ps_de_options *opt,
                 ps_de_selection *out);
void ps_de_selection_free(ps_de_selection *s);

/* ---- the targets stage (src/de/targets_stage.c, SPEC section 1) ---- */
typedef struct {
  const char *targets;        /* GMT or TSV of target genes; NULL selects them */
  ps_de_options de;           /* --min-pct, --logfc, --min-targets, --max-targets, --target-fdr */
  int de_strict_groups;       /* --de-strict-groups: no reference quirk */
  int de_background_others;   /* --de-background others: C = analysed cells not carrying X */
  int exclude_perturbed_gene; /* --exclude-perturbed-gene */
  /* cv --scheme perturbations (pertscore/cv.h): no PS, so no selection; without a
   * targets file there are then no regression genes (n_regression 0, y with no columns) */
  int no_target_selection;
} ps_targets_options;

void ps_targets_options_default(ps_targets_options *o);

/* The targets stage on the dataset ps_dataset_read left (d->block, d->block_keep,
 * d->gene_index): the targets file's pairs (valid genes; with --group-by P's serve
 * every "P@g"), or the automatic selection (ps_targets_select_cells, in the PETSc
 * log stage "targets"), or none with no_target_selection; sets d->targets,
 * d->n_targets (zero, counted by ps_regression_prepare), d->target_threshold,
 * d->seconds_targets, d->candidates, d->targets_file and d->targets_unused.
 * Collective; on error d is freed. */
int ps_targets_select(MPI_Comm comm, const ps_targets_options *opt, ps_progress *progress, ps_dataset *d);

/* The distributed selection (SPEC section 1; DESIGN.md data flow 4) on the cells of
 * x (this rank's block, all genes, log-normalized, not winsorized), keep[i] the
 * analysed position of block cell i or -1; d holds the design and the per-cell guide
 * facts; progress may be NULL. Fills d->targets (pairs in perturbation order, each
 * ordered by p-value), d->target_threshold, d->n_targets (allocated, zero) and the
 * candidate regression genes (sorted gene indices, allocated). Collective; identical
 * results on any number of ranks. The calibration's refits call it on their cells. */
int ps_targets_select_cells(MPI_Comm comm, const ps_targets_options *opt, const ps_csr *x, const int64_t *keep,
                            const ps_strmap *gene_index, ps_progress *progress, ps_dataset *d, int32_t **candidates,
                            int32_t *n_candidates);

#endif
