/* pertscore/data.h: the distributed dataset (SPEC.md sections 0 and 2).
 *
 * Every rank holds a contiguous block of the analysed cells: their expression
 * over the regression genes (winsorized), and their perturbation lists (the
 * sparse design D; nothing cells x perturbations is ever dense). */
#ifndef PERTSCORE_DATA_H
#define PERTSCORE_DATA_H

#include "pertscore/io.h"
#include "pertscore/util.h"

/* Sparse design: per local cell, the sorted ids (0..K-1) of the perturbations it
 * carries. The intercept (control) column is implicit: every cell has it, or,
 * with basal groups (--control-by / --group-by, SPEC sections 2 and 6), the
 * intercept column of its group: group 0 is column 0, group g >= 1 is column
 * K + g (after the perturbations, so perturbation k stays column k + 1). */
typedef struct {
  int32_t n_perturbations; /* K, global */
  ps_strlist names;        /* K perturbation labels, sorted, identical on all ranks */
  int64_t n_cells;         /* local analysed cells */
  int64_t *ptr;            /* n_cells + 1 */
  int32_t *ids;            /* ptr[n_cells] perturbation ids */
  int32_t n_groups;        /* basal groups G (global); 0 or 1: one intercept shared by every cell */
  int32_t *group;          /* per local cell its basal group in [0, G); NULL when G <= 1 */
} ps_design;

void ps_design_free(ps_design *d);
/* Basal groups (--control-by, --group-by): the beta row of group g's intercept:
 * row 0 for group 0, row K + g for g >= 1 (ps_ridge layout). */
static inline int64_t ps_design_basal_row(const ps_design *d, int32_t g) { return g > 0 ? d->n_perturbations + g : 0; }
/* Intercept columns of the ridge fit: G, at least 1. */
static inline int32_t ps_design_n_basal(const ps_design *d) { return d->n_groups > 1 ? d->n_groups : 1; }
/* The design the ridge fit takes (pertscore/ridge.h): with basal groups, each cell
 * of a group g >= 1 carries one extra id, -(K + g), first in its row: "this
 * cell's intercept column is K + g instead of 0"; n_perturbations becomes
 * K + G - 1 so that the fit has K + G rows. A permutation of design rows moves
 * the marker with the row, so X^T X stays unchanged (one factorization). Without
 * groups a plain copy. */
int ps_design_ridge_columns(const ps_design *d, ps_design *out);
/* Largest number of perturbations any local cell carries. */
int32_t ps_design_max_per_cell(const ps_design *d);
/* --score-all-cells (SPEC section 3): a design in which every perturbed cell has a
 * variable for every perturbation (names copied). Control cells keep none (PS = 0):
 * the reference implementation's output gives its control cells PS = 0 in this
 * mode too. Refuses when perturbed cells x perturbations, over all ranks, exceeds
 * max_entries. Collective. */
int ps_design_all(MPI_Comm comm, const ps_design *d, int64_t max_entries, ps_design *all);


enum { PS_INPUT_AUTO = 0, PS_INPUT_COUNTS = 1, PS_INPUT_LOGNORM = 2 };

struct ps_dataset; /* the memory guard's view of the dataset being read */

/* The read stage (ps_dataset_read): the matrix, its normalization, the guide calls,
 * the design and the basal groups. The later stages have their own options:
 * ps_targets_options (pertscore/de.h), ps_regression_options (below),
 * ps_pseudo_options (pertscore/lambda.h). */
typedef struct {
  const char *input;        /* .h5ad or 10x filtered_feature_bc_matrix.h5 */
  const char *layer;        /* --layer, NULL for X */
  const char *guides;       /* guide table path; NULL with guide_column or 10x guide capture */
  const char *guide_column; /* obs column holding guide labels */
  ps_strlist perturbations; /* --perturbations: analyse only these (plus controls); empty = all */
  int unit_guide;           /* --unit guide: the unit is the guide, not its target gene */
  double min_guide_umi;     /* 10x guide capture: a guide is called at >= this many UMIs (3) */
  ps_strlist controls;      /* control labels (merged into one control group) */
  int input_is;             /* PS_INPUT_* */
  int scale_median;         /* --scale median (SPEC section 9): y = ln(1 + s count / total), s = median total
                             * of the analysed cells */
  /* basal groups (SPEC sections 2 and 6), obs columns of the input; NULL = off.
   * control_by: one intercept per group. group_by: steps 1-3 within each group:
   * each (perturbation P, group g) is its own perturbation "P@g", targets are
   * selected against the controls (or the other cells) of g, winsorizing is per
   * group, and the intercept is per group. Both may not name different columns. */
  const char *control_by;
  const char *group_by;
  /* one group alone (cv and lambda --group-by: docs/cv.md "Groups"): analyse only the
   * cells whose obs column subset_column is subset_value, as if the input held those
   * cells only (cells of other groups carry no guide calls); NULL = every cell */
  const char *subset_column;
  const char *subset_value;
  /* the memory guard (pertscore/cost.h), called once the input's shape (cells,
   * genes, stored values) is known and before its values are read, then again
   * once the design is built (before target selection); a non-zero return
   * (already collective) stops the read. NULL = none. */
  int (*guard)(MPI_Comm comm, const struct ps_dataset *d, int phase, void *context);
  void *guard_context;
} ps_dataset_options;

/* Phases of ps_dataset_options.guard. */
enum { PS_DATASET_GUARD_SHAPE = 1, PS_DATASET_GUARD_DESIGN = 2 };

void ps_dataset_options_default(ps_dataset_options *o);

/* The regression stage (ps_regression_prepare, SPEC section 1 last bullet and 2). */
typedef struct {
  double min_gene_frac;   /* regression genes: y > 0 in at least this fraction of analysed cells (0.01) */
  double winsor_quantile; /* 0.95 */
  int no_winsorize;       /* --no-winsorize (SPEC section 9): the response is not clipped */
  /* keep ps_dataset.expression (every gene of the local analysed cells,
   * log-normalized) so that nothing reads the matrix twice (cv, calibration) */
  int keep_expression;
} ps_regression_options;

void ps_regression_options_default(ps_regression_options *o);

typedef struct ps_dataset {
  int64_t n_cells_input, n_genes; /* shape of the input matrix */
  int64_t nnz_input;              /* stored values of the input matrix (from its indptr; dense: cells x genes) */
  ps_strlist genes;               /* all gene names */
  int is_counts;                  /* input was counts and was log-normalized */
  double scale;                   /* s of y = ln(1 + s count / total): 1e4, or with --scale median the
                                   * median total count of the analysed cells; 0 when not counts */
  /* analysed cells: those with at least one guide; rank r holds a contiguous block */
  int64_t n_analysed, analysed_offset;
  ps_strlist cells;               /* local analysed cell names */
  int64_t n_control;              /* control cells, all ranks */
  ps_design design;               /* local analysed cells' perturbations */
  /* per local analysed cell, for target selection (SPEC sections 0-1) */
  uint8_t *has_control_guide;     /* carries a control guide (the reference quirk) */
  int32_t *top_perturbation;      /* perturbation of its largest-UMI guide; -1 if that is a control */
  int low_moi;                    /* the median non-control analysed cell carries one guide */
  /* per local analysed cell, as assigned (for the results' obs and --cells-table):
   * its guide names and their unit labels, '+'-joined in call order (parallel
   * lists), and its number of guide calls */
  char **cell_guides;
  char **cell_units;
  int64_t *cell_n_guides;
  /* guide tables (--guides): data rows read, and of them rows naming no cell of the matrix */
  int64_t n_guide_rows, n_guide_rows_unmatched;
  /* regression genes (SPEC section 1, last bullet) */
  int32_t n_regression;
  int32_t *regression_gene;       /* indices into genes */
  double *winsor_cap;             /* per regression gene: its 95th percentile (R type 7); with
                                   * --group-by n_winsor_groups rows, each over its group's cells */
  ps_csr y;                       /* local analysed cells x regression genes, winsorized */
  int32_t *n_targets;             /* K: targets per perturbation that are regression genes */
  ps_target_pairs targets;        /* user targets as given (valid genes only), or the selected ones */
  double *target_threshold;       /* K: |log2FC| threshold of the last selection; NULL for user targets */
  double seconds_targets;         /* time spent selecting targets (0 for user targets) */
  /* dosage (SPEC section 5), filled only with opt->own_genes (else NULL / empty):
   * own_gene[k] is the gene named like perturbation k (-1 if none: --unit guide, a
   * label that is not a measured gene); own is local analysed cells x K, column k
   * holding gene own_gene[k], log-normalized and NOT winsorized. A perturbed cell
   * has entries for the perturbations it carries, a control cell for every
   * perturbation with an own gene (the control medians); zeros are not stored. */
  int32_t *own_gene;
  ps_csr own;
  /* basal groups (--control-by / --group-by; design.group holds each cell's) */
  char *group_column;             /* the obs column the groups come from, NULL without groups */
  ps_strlist groups;              /* G group labels, sorted (empty without groups) */
  int by_group;                   /* --group-by: perturbation k is (base[k], group_of[k]) */
  ps_strlist base;                /* with by_group: K original perturbation labels */
  int32_t *group_of;              /* with by_group: K group indices */
  int32_t n_winsor_groups;        /* rows of winsor_cap: G with --group-by, else 1 */
  /* with opt->keep_expression: local analysed cells x all genes, log-normalized
   * exactly as SPEC section 0 (not winsorized), rows aligned with design; else empty */
  ps_csr expression;
  /* facts of the read that later stages name or use */
  char *input;                    /* the input file (messages) */
  int unit_guide;                 /* the unit is the guide (--unit guide): no perturbation has an own gene */
  char *targets_file;             /* set by ps_targets_select: the --targets file, NULL when selected */
  int targets_unused;             /* set by ps_targets_select: cv --scheme perturbations, no PS: no
                                   * regression genes without a file, no warnings about targets */
  char *pseudo_label;             /* set by ps_pseudo_relabel: the perturbation it added, else NULL */
  /* between the stage verbs: ps_dataset_read leaves this rank's matrix block
   * (all genes, log-normalized, not winsorized; block_keep[i] the analysed position
   * of block row i, or -1) and the gene-name index for ps_targets_select, the
   * dosage's own genes (ps_dosage_own_genes) and ps_regression_prepare, which frees
   * them; candidates (sorted gene indices) come from ps_targets_select */
  ps_csr block;
  int64_t *block_keep;
  ps_strmap gene_index;
  int32_t *candidates;
  int32_t n_candidates;
} ps_dataset;

/* The read stage (SPEC sections 0 and 2): the matrix block, normalized, the guide
 * calls, the design, the basal groups; leaves d->block, d->block_keep and
 * d->gene_index for the next stages (ps_targets_select, then
 * ps_regression_prepare, which frees them). Collective. Errors name the file and
 * what was expected; on error d is freed. */
int ps_dataset_read(MPI_Comm comm, const ps_dataset_options *opt, ps_progress *progress, ps_dataset *out);
/* The regression stage (SPEC section 1 last bullet, 2): of d->candidates the genes
 * with y > 0 in at least min_gene_frac of the analysed cells, the response y over
 * them, winsorized per gene (per group and gene with --group-by) unless
 * no_winsorize; the block is freed (kept as d->expression with keep_expression).
 * Collective; on error d is freed. */
int ps_regression_prepare(MPI_Comm comm, const ps_regression_options *opt, ps_progress *progress, ps_dataset *d);
void ps_dataset_free(ps_dataset *d);
/* The peak RSS of a part of a stage (matrix, targets, regression) for the cost model
 * (src/cost): STAGE.PART_peak_rss_bytes in the statistics, STAGE progress's stage;
 * the peak is reset so the next part starts afresh. No-op without progress. */
void ps_dataset_part_peak(const ps_progress *progress, const char *part);

/* SPEC section 0 on a block of cells x genes, in place: counts (input_is COUNTS,
 * or AUTO and every stored value of every rank integral) become
 * ln(1 + 1e4 x / total); *is_counts says which. Collective. */
int ps_expression_normalize(MPI_Comm comm, ps_csr *x, int input_is, int *is_counts);
/* The same with s instead of 1e4 (--scale median: the s a run recorded). Collective. */
int ps_expression_normalize_scale(MPI_Comm comm, ps_csr *x, int input_is, double scale, int *is_counts);

/* The sorted labels of obs column `column` of `input` over all its cells (empty
 * labels skipped): the groups cv and lambda --group-by run one at a time. Errors
 * name option. Collective. */
int ps_groups_list(MPI_Comm comm, const char *input, const char *column, const char *option, ps_strlist *groups);
/* Basal groups (src/data/groups.c): read the obs column of --control-by or
 * --group-by for this rank's block (keep[i]: analysed position of block row i or -1), set
 * d->groups and d->design.group, check every group has control cells, and with
 * --group-by relabel perturbations as (P, group) (d->base, d->group_of, and the
 * design's names, ids and d->top_perturbation). No-op when neither is given.
 * Collective. */
int ps_groups_assign(MPI_Comm comm, const ps_dataset_options *opt, const ps_matrix *m, const int64_t *keep,
                     ps_dataset *d);

/* Per-gene caps of y (local cells x genes): the prob quantile (R type 7) of each
 * column over n_total cells on all ranks (the zeros implicit). Collective. */
int ps_winsor_caps(MPI_Comm comm, const ps_csr *y, int64_t n_total, double prob, double *caps);
/* The same per (group, gene): row_group gives each local row's group in [0, n_groups)
 * (NULL: all 0), n_total[g] the group's cells on all ranks, caps[g * n_cols + gene]
 * (--group-by's caps, SPEC section 2). Collective. */
int ps_winsor_caps_grouped(MPI_Comm comm, const ps_csr *y, const int32_t *row_group, int32_t n_groups,
                           const int64_t *n_total, double prob, double *caps);

/* R type-7 quantile of n values of which only the nonzeros are given (sorted
 * ascending, all >= 0): the others are zeros. */
double ps_quantile_type7_sparse(const double *sorted_nonzero, int64_t n_nonzero, int64_t n, double prob);

#endif
