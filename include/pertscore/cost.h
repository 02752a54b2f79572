/* pertscore/cost.h: the memory each rank needs, per stage, and the guard that
 * refuses a run before its heavy stages when that exceeds the limit
 * (issue #7 "Memory guard"; formulas in src/cost/cost.c, docs/performance.md). */
#ifndef PERTSCORE_COST_H
#define PERTSCORE_COST_H

#include "pertscore/data.h"
#include "pertscore/de.h"

/* The sizes the estimate depends on (global counts unless said otherwise). */
typedef struct {
  int64_t cells_input;   /* cells of the input matrix */
  int64_t genes;         /* G, input genes */
  int64_t nnz;           /* stored values of the input matrix; 0 = unknown (read and target stages not estimated) */
  int64_t cells;         /* M, analysed cells */
  int64_t control_cells; /* of them, control cells */
  int32_t perturbations; /* K */
  int32_t basal_rows;    /* intercept rows of B: 1, or the groups of --control-by / --group-by */
  int32_t regression_genes; /* N */
  int64_t nnz_y;         /* stored values of Y (analysed cells x N) */
  int64_t design_entries; /* nnz(D) = M x MOI: (cell, perturbation) pairs */
  int64_t gram_pairs;    /* largest over ranks of sum over its cells of (|S| + 1)(|S| + 2) / 2 */
  int64_t scored_entries; /* PS entries: nnz(D), or perturbed cells x K with --score-all-cells */
  int64_t target_pairs;  /* (perturbation, target gene) pairs; 0 with a targets file */
  int permutations;      /* R */
  int64_t perm_batch_bytes; /* --permutations' batch budget (ps_ridge_perm_options.batch_bytes) */
  int perm_adaptive;     /* --permutations-adaptive: the stopping tables and the open genes' copy of Y */
  int dosage;            /* the dosage stage runs */
  int ranks;             /* P */
  int block;             /* ScaLAPACK block size nb of the K x K matrix (0: the ridge default) */
  int keep_expression;   /* the dataset keeps every gene of the analysed cells (run --cv perturbations) */
  int select_targets;    /* targets are selected (no targets file): the targets stage runs */
  int known;             /* PS_COST_KNOWN_*: which sizes are known (the guard runs while the input is read) */
  int cv_scheme;         /* run --cv: PS_CV_SCHEME_PERTURBATIONS (1) or PS_CV_SCHEME_CELLS (2); 0 = none */
  int cv_only;           /* pertscore cv: after the read only the cv stage (cv_scheme) and the write of its
                          * tables run: no score stage, and no ridge stage but the cells scheme's own fits */
  int no_regression;     /* no regression genes, Y empty (no_target_selection without --targets: pertscore
                          * cv --scheme perturbations); the bound of nnz(Y) before the read's end is then 0 */
} ps_cost_problem;
/* ps_cost_problem.known: every size (estimates every stage); only the input's shape
 * (cells_input, genes, nnz: the read stage); the shape and the design (cells,
 * control_cells, perturbations, basal_rows, design_entries, target_pairs as a bound:
 * read, targets, and regression with nnz(Y) <= the analysed cells' nnz as the bound). */
enum { PS_COST_KNOWN_ALL = 0, PS_COST_KNOWN_SHAPE = 1, PS_COST_KNOWN_DESIGN = 2 };

/* Bytes per rank, at each stage's peak: what the stage holds on top of `resident`
 * (the dataset kept from read to write) and `runtime` (MPI, HDF5, PETSc, OpenBLAS). */
enum { PS_COST_READ, PS_COST_TARGETS, PS_COST_REGRESSION, PS_COST_RIDGE, PS_COST_PERMUTATIONS, PS_COST_SCORE,
       PS_COST_DOSAGE, PS_COST_CV, PS_COST_WRITE, PS_COST_N_STAGES };
typedef struct {
  double runtime, resident;
  double stage[PS_COST_N_STAGES]; /* 0 for a stage that does not run or cannot be estimated; read,
                                   * targets and regression (the end of the read: regression genes,
                                   * winsorizing) hold everything of theirs (no resident dataset yet) */
  double peak;                    /* runtime + the largest of read, targets, regression, resident + a later stage */
  int peak_stage;                 /* PS_COST_* of that stage */
} ps_cost_memory;

/* The problem of a run from its dataset (after ps_dataset_read) and the design it
 * scores (d->design, or ps_design_all's with --score-all-cells); nnz = d->nnz_input.
 * Collective (sums and maxima over ranks). */
int ps_cost_problem_of_run(MPI_Comm comm, const ps_dataset *d, const ps_design *scored, int permutations,
                           int64_t perm_batch_bytes, int dosage, ps_cost_problem *p);

const char *ps_cost_stage_name(int stage);
/* The estimate; not collective. */
void ps_cost_memory_estimate(const ps_cost_problem *p, ps_cost_memory *out);

/* "512M", "12G", "1.5T", "800k" (powers of 1024; a trailing B or iB is allowed) or
 * plain bytes, into bytes; 0 means no limit. An error names the text. */
int ps_cost_parse_size(const char *text, double *bytes);
/* Human-readable size ("1.5 GiB") into buf. */
const char *ps_cost_format_size(double bytes, char *buf, size_t size);

/* The per-rank limit: max_memory (bytes per rank, > 0: --max-memory) and Slurm's
 * (SLURM_MEM_PER_NODE MB divided by ranks_on_node, or SLURM_MEM_PER_CPU MB x
 * SLURM_CPUS_PER_TASK), the smaller; *limit = 0 when there is none. source says
 * where the binding limit came from. Not collective. */
void ps_cost_memory_limit(double max_memory, int ranks_on_node, double *limit, char *source, size_t size);

/* The guard: estimate, record it (ps_stats "memory.estimate_bytes" and
 * "memory.estimate.STAGE_bytes", "memory.limit_bytes"), and fail with a message
 * (estimate, limit, its source, what to change) on every rank when any rank's
 * estimate exceeds its limit. Collective. */
int ps_cost_check_memory(MPI_Comm comm, const ps_cost_problem *p, double max_memory);

/* The guard inside ps_dataset_read (ps_dataset_options.guard = ps_cost_dataset_guard,
 * guard_context = a ps_cost_guard): at PS_DATASET_GUARD_SHAPE (before the matrix is
 * loaded) it checks the read stage from the input's shape; at
 * PS_DATASET_GUARD_DESIGN (before target selection) also the targets stage, with
 * K x max_targets target pairs as the bound, and the regression part of the read
 * (nnz(Y) bounded by the analysed cells' nnz). The later stages need the regression
 * genes: check them with ps_cost_check_memory after the read. Collective. */
typedef struct {
  double max_memory;     /* --max-memory bytes per rank, 0 = none (Slurm's limit still applies) */
  int select_targets;    /* no targets file: the targets stage runs */
  int64_t max_targets;   /* --max-targets */
  int keep_expression;
  int cv_only;           /* pertscore cv (ps_cost_problem.cv_only) */
  int no_regression;     /* ps_cost_problem.no_regression */
} ps_cost_guard;
int ps_cost_dataset_guard(MPI_Comm comm, const struct ps_dataset *d, int phase, void *context);

/* Fills g from the read's options (targets selected unless --targets or
 * no_target_selection, --max-targets, keep_expression, no regression genes with
 * no_target_selection and no --targets; cv_only 0) and installs it
 * as their guard (data->guard, data->guard_context); g must outlive the read. Call
 * it once the options are final (after ps_cv_dataset_options). Not collective. */
void ps_cost_guard_install(ps_cost_guard *g, double max_memory, ps_dataset_options *data,
                           const ps_targets_options *targets, const ps_regression_options *regression);

#endif
