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
 * carries. The intercept (control) column is implicit: every cell has it. */
typedef struct {
  int32_t n_perturbations; /* K, global */
  ps_strlist names;        /* K perturbation labels, sorted, identical on all ranks */
  int64_t n_cells;         /* local analysed cells */
  int64_t *ptr;            /* n_cells + 1 */
  int32_t *ids;            /* ptr[n_cells] perturbation ids */
} ps_design;

void ps_design_free(ps_design *d);
/* Largest number of perturbations any local cell carries. */
int32_t ps_design_max_per_cell(const ps_design *d);


enum { PS_INPUT_AUTO = 0, PS_INPUT_COUNTS = 1, PS_INPUT_LOGNORM = 2 };

typedef struct {
  const char *input;        /* .h5ad */
  const char *layer;        /* --layer, NULL for X */
  const char *guides;       /* guide table path, or NULL with guide_column */
  const char *guide_column; /* obs column holding guide labels */
  const char *targets;      /* GMT or TSV of target genes */
  ps_strlist controls;      /* control labels (merged into one control group) */
  int input_is;             /* PS_INPUT_* */
  double min_gene_frac;     /* regression genes: y > 0 in at least this fraction of analysed cells */
  double winsor_quantile;   /* 0.95 */
} ps_dataset_options;

void ps_dataset_options_default(ps_dataset_options *o);

typedef struct {
  int64_t n_cells_input, n_genes; /* shape of the input matrix */
  ps_strlist genes;               /* all gene names */
  int is_counts;                  /* input was counts and was log-normalized */
  /* analysed cells: those with at least one guide; rank r holds a contiguous block */
  int64_t n_analysed, analysed_offset;
  ps_strlist cells;               /* local analysed cell names */
  int64_t n_control;              /* control cells, all ranks */
  ps_design design;               /* local analysed cells' perturbations */
  /* regression genes (SPEC section 1, last bullet) */
  int32_t n_regression;
  int32_t *regression_gene;       /* indices into genes */
  double *winsor_cap;             /* per regression gene: its 95th percentile (R type 7) */
  ps_csr y;                       /* local analysed cells x regression genes, winsorized */
  int32_t *n_targets;             /* K: user targets per perturbation that are regression genes */
  ps_target_pairs targets;        /* as given (valid genes only) */
} ps_dataset;

/* Read the matrix and guides, build the design, pick and winsorize the regression
 * genes. Collective. Errors name the file and what was expected. */
int ps_dataset_read(MPI_Comm comm, const ps_dataset_options *opt, ps_progress *progress, ps_dataset *out);
void ps_dataset_free(ps_dataset *d);

/* R type-7 quantile of n values of which only the nonzeros are given (sorted
 * ascending, all >= 0): the others are zeros. */
double ps_quantile_type7_sparse(const double *sorted_nonzero, int64_t n_nonzero, int64_t n, double prob);

#endif
