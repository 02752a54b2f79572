/* Subcommands of the pertscore executable (internal to src/cli). */
#ifndef PS_CLI_H
#define PS_CLI_H

#include <getopt.h>
#include <mpi.h>
#include <stddef.h>

#include "pertscore/data.h"
#include "pertscore/de.h"
#include "pertscore/lambda.h"
#include "pertscore/results.h"
#include "pertscore/ridge.h"
#include "pertscore/score.h"

/* Each takes the subcommand's own arguments (argv[0] is the subcommand name,
 * PETSc options already removed) and returns a process exit status. */
int ps_cmd_run(MPI_Comm comm, int argc, char **argv);
int ps_cmd_simulate(MPI_Comm comm, int argc, char **argv);
int ps_cmd_inspect(MPI_Comm comm, int argc, char **argv);
int ps_cmd_convert(MPI_Comm comm, int argc, char **argv);
int ps_cmd_lambda(MPI_Comm comm, int argc, char **argv);
int ps_cmd_cv(MPI_Comm comm, int argc, char **argv);
int ps_cmd_dosage(MPI_Comm comm, int argc, char **argv);

/* Parse a number option or fail with a message naming the option. */
int ps_cli_number(const char *option, const char *text, double *value);
/* As ps_cli_number, for a whole number >= 0. */
int ps_cli_count(const char *option, const char *text, double *value);
/* The options of the stages before the ridge fit, as the dataset options of run,
 * lambda and cv fill them: the read, targets and regression stages', and the score
 * stage's method options of SPEC section 9. */
typedef struct {
  ps_dataset_options read;
  ps_targets_options targets;
  ps_regression_options regression;
  int qp_genes_own;   /* --qp-genes own (ps_score_genes_apply) */
  int gene_weights;   /* --gene-weights residual (ps_score_options.gene_weights) */
  const char *preset; /* --preset given last ("paper" or "accurate"), NULL if none: recorded only */
} ps_cli_data_options;
void ps_cli_data_options_default(ps_cli_data_options *o);
/* read, pertscore lambda's relabelling (pseudo: NULL or pseudo_cells 0 = none),
 * targets, own genes (the dosage stage's, when own_genes), regression (stages.c).
 * Collective; on error d is freed. */
int ps_cli_data_stages(MPI_Comm comm, const ps_cli_data_options *o, const ps_pseudo_options *pseudo, int own_genes,
                       ps_progress *progress, ps_dataset *d);
/* The dataset options shared by run, lambda and cv (dataset_options.c): the
 * input, guides, controls, targets and target selection. getopt_long returns a
 * value for which ps_cli_is_dataset holds; ps_cli_dataset_option fills the
 * ps_cli_data_options. */
#define PS_CLI_DATASET 0x100
#define PS_CLI_DATASET_END (PS_CLI_DATASET + 24)
static inline int ps_cli_is_dataset(int c) { return c >= PS_CLI_DATASET && c < PS_CLI_DATASET_END; }
extern const struct option ps_cli_dataset_longs[];
/* own's entries, then the dataset options, then the terminator, into joined[capacity]. */
int ps_cli_join_longs(const struct option *own, struct option *joined, size_t capacity);
int ps_cli_dataset_option(const char *name, const char *arg, ps_cli_data_options *options);
/* --preset paper|accurate (SPEC section 9): sets the five method options of d. */
int ps_cli_preset(const char *name, ps_cli_data_options *d);
/* 1 when none of the section 9 options is on (the paper's method). */
int ps_cli_method_is_paper(const ps_cli_data_options *d);
/* The section 9 options into a results file's parameters (only when not the paper's,
 * so the paper's parameters and their digest stay as they were). */
int ps_cli_method_record(const ps_cli_data_options *d, ps_run_info *info);
/* The score-stage part of them (gene weights; own genes and unscored perturbations
 * need the dataset: ps_score_genes_build / _apply). */
void ps_cli_method_score(const ps_cli_data_options *d, ps_score_options *s);
/* After the ridge fit: the section 9 arrays into score (own genes, unscored
 * perturbations, the fit's gene weights), the warning for perturbations left
 * without targets and the error when none is left. genes and *weights are the
 * caller's to free (ps_score_genes_free, free). Collective. */
int ps_cli_method_prepare(MPI_Comm comm, const ps_cli_data_options *o, const ps_dataset *d, const ps_ridge *ridge,
                          int quiet, ps_score_options *score, ps_score_genes *genes, double **weights);
/* Fails with the message for an option COMMAND does not know (ARG as given). */
int ps_cli_unknown_option(const char *command, const char *arg);
/* "Did you mean" (suggest.c): the option name of lists closest to word (leading
 * dashes and "=value" ignored) within a small edit distance, or NULL. */
const char *ps_cli_suggest(const struct option *const *lists, int n_lists, const char *word);
/* The unknown-option error of a command with its own option table, with a suggestion. */
int ps_cli_unknown_option_in(const char *command, const char *arg, const struct option *longs);
/* The table ps_cli_unknown_option suggests from (ps_cli_join_longs sets it). */
void ps_cli_set_suggestions(const struct option *longs);
const struct option *ps_cli_current_longs(void);
/* The run option (or dataset option) closest to a misspelled job-file key, or NULL. */
const char *ps_run_option_suggest(const char *name);
/* The checks every command makes of them (COMMAND names it in messages); sorts
 * the control and perturbation lists. */
int ps_cli_dataset_check(const char *command, ps_cli_data_options *options);
/* Help text of the dataset options, as run, lambda and cv print it. */
#define PS_CLI_DATASET_USAGE \
    "input:\n" \
    "  --input FILE          AnnData .h5ad (X as CSR, CSC or dense) or 10x filtered_feature_bc_matrix.h5\n" \
    "  --layer NAME          use layers/NAME instead of X\n" \
    "  --input-is KIND       auto (default: counts if every value is integral), counts, lognorm\n" \
    "  --guides FILE         scMAGeCK barcode table (TSV) or Cell Ranger protospacer_calls_per_cell.csv\n" \
    "  --guide-column COL    take guide labels from obs column COL instead (',' '|' '+' separate several)\n" \
    "  --control LABELS      control label(s), comma-separated; all merge into one control group\n" \
    "  --min-guide-umi N     10x guide capture (when no --guides): call a guide at >= N UMIs (3)\n" \
    "  --perturbations LIST  analyse only these perturbations (plus controls), comma-separated\n" \
    "  --unit KIND           gene (default: the targeted gene) or guide\n" \
    "  --targets FILE        target genes per perturbation: GMT, or TSV perturbation<TAB>gene\n" \
    "                        (without it they are selected by Wilcoxon tests, options below)\n" \
    "  --min-gene-frac F     regression genes need y > 0 in at least F of analysed cells (0.01)\n" \
    "target selection (without --targets):\n" \
    "  --min-pct F           test a gene only if max(pct1, pct2) >= F (0.1)\n" \
    "  --logfc X             first |log2FC| threshold; x0.8 while fewer than --min-targets, 3 tries (0.1)\n" \
    "  --min-targets N       lower the threshold while fewer genes pass (10)\n" \
    "  --max-targets N       keep at most N genes, smallest p-values first (500)\n" \
    "  --exclude-perturbed-gene  drop the perturbation's own gene from its targets\n" \
    "  --de-background KIND  controls (default): P against control cells; others: against\n" \
    "                        every analysed cell not carrying the perturbation (high MOI)\n" \
    "  --de-strict-groups    cells with the perturbation and a control guide stay out of C\n" \
    "                        (default: they count as controls, as the reference does)\n" \
    "method preset (SPEC section 9; options after --preset override it):\n" \
    "  --preset NAME         paper (default: the published method) or accurate (= --scale median\n" \
    "                        --target-fdr 0.05 --no-winsorize --qp-genes own --gene-weights residual)\n" \
    "  --scale KIND          1e4 (default) or median: y = ln(1 + s count / total), s = median total count\n" \
    "  --target-fdr Q        also keep only targets with Benjamini-Hochberg q <= Q (0 = off, default);\n" \
    "                        a perturbation left without targets is not scored (PS NaN)\n" \
    "  --no-winsorize        do not clip each gene at its 95th percentile\n" \
    "  --qp-genes KIND       union (default: every regression gene) or own (a cell's perturbations' targets)\n" \
    "  --gene-weights KIND   none (default) or residual (weigh genes by 1 / residual variance in the QP)\n"
/* Help text of --max-memory (run and cv, src/cost). */
#define PS_CLI_MAX_MEMORY_USAGE \
    "  --max-memory SIZE     refuse (before the matrix is read) when a rank would need more than SIZE\n" \
    "                        (512M, 12G, 1.5T, bytes; 0 = none); Slurm's --mem limit is checked too\n"
/* Split "a,b,c" and append the parts. */
int ps_cli_split_list(const char *text, void *strlist);

/* ---- cv and lambda --group-by (group_runs.c; docs/cv.md "Groups") ---- */
/* Per group of `groups`, path with ".GROUP" before its extension (.h5ad, .tsv; else
 * appended), characters other than letters, digits, '.', '-', '_' as '_'; fails when
 * two groups would share a path. out is emptied first. */
int ps_cli_group_paths(const char *path, const void *groups, void *out);
/* The per-group TSVs parts (one per group, same header) as one TSV at path with a
 * first column `group`; written by rank 0 as path.partial and renamed. Collective. */
int ps_cli_group_tsv(MPI_Comm comm, const char *path, const void *groups, const void *parts);

/* ---- job files (job.c) ---- */
#include "pertscore/util.h"

typedef struct {
  char path[4096];
  ps_strlist keys, values;   /* run options: name (no dashes) -> value ("" for a flag) */
  ps_strlist sweep_keys;     /* swept options, in file order */
  ps_strlist *sweep_values;  /* per swept option: its values */
  int64_t sweep_keys_capacity;
  ps_strlist slurm_keys, slurm_values; /* resources for the sbatch scripts */
} ps_job;

/* On failure the job is left empty (nothing to free); a sweep has at most 10^6 points. */
int ps_job_read(const char *path, ps_job *job);
void ps_job_free(ps_job *job);
/* Number of sweep points (the product of the swept lists' lengths; 1 without a sweep). */
int64_t ps_job_points(const ps_job *job);
const char *ps_job_sweep_value(const ps_job *job, int64_t point, int64_t key);
/* Output path of a point: OUTPUT.pointNNN.h5ad, or OUTPUT itself for point -1 / no sweep. */
int ps_job_output(const ps_job *job, int64_t point, char *buf, size_t size);
/* argv of `run` for a point (-1: the job without its sweep); empty on failure. */
int ps_job_argv(const ps_job *job, int64_t point, ps_strlist *argv);
/* -1: not an option of run; 0: a flag; 1: takes a value (cmd_run.c). */
int ps_run_option_arity(const char *name);
int ps_cmd_sweep(MPI_Comm comm, int argc, char **argv);

#endif
