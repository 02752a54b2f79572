/* Options shared by run, lambda and cv: the input, guides, controls, targets and
 * target selection (ps_cli_data_options). One table, one parser and one check, so
 * the commands agree. Each entry has its own getopt value: getopt_long takes the
 * first of several prefix matches with equal values instead of calling the prefix
 * ambiguous (--min-g would become --min-guide-umi for a user meaning --min-gene-frac). */
#include <string.h>

#include "cli.h"
#include "pertscore/data.h"
#include "pertscore/results.h"
#include "pertscore/score.h"

const struct option ps_cli_dataset_longs[] = {
    {"input", required_argument, 0, PS_CLI_DATASET + 0},
    {"layer", required_argument, 0, PS_CLI_DATASET + 1},
    {"input-is", required_argument, 0, PS_CLI_DATASET + 2},
    {"guides", required_argument, 0, PS_CLI_DATASET + 3},
    {"guide-column", required_argument, 0, PS_CLI_DATASET + 4},
    {"control", required_argument, 0, PS_CLI_DATASET + 5},
    {"min-guide-umi", required_argument, 0, PS_CLI_DATASET + 6},
    {"perturbations", required_argument, 0, PS_CLI_DATASET + 7},
    {"unit", required_argument, 0, PS_CLI_DATASET + 8},
    {"targets", required_argument, 0, PS_CLI_DATASET + 9},
    {"min-gene-frac", required_argument, 0, PS_CLI_DATASET + 10},
    {"min-pct", required_argument, 0, PS_CLI_DATASET + 11},
    {"logfc", required_argument, 0, PS_CLI_DATASET + 12},
    {"min-targets", required_argument, 0, PS_CLI_DATASET + 13},
    {"max-targets", required_argument, 0, PS_CLI_DATASET + 14},
    {"exclude-perturbed-gene", no_argument, 0, PS_CLI_DATASET + 15},
    {"de-background", required_argument, 0, PS_CLI_DATASET + 16},
    {"de-strict-groups", no_argument, 0, PS_CLI_DATASET + 17},
    {"preset", required_argument, 0, PS_CLI_DATASET + 18},
    {"scale", required_argument, 0, PS_CLI_DATASET + 19},
    {"target-fdr", required_argument, 0, PS_CLI_DATASET + 20},
    {"no-winsorize", no_argument, 0, PS_CLI_DATASET + 21},
    {"qp-genes", required_argument, 0, PS_CLI_DATASET + 22},
    {"gene-weights", required_argument, 0, PS_CLI_DATASET + 23},
    {0, 0, 0, 0}};
_Static_assert(sizeof ps_cli_dataset_longs / sizeof *ps_cli_dataset_longs == PS_CLI_DATASET_END - PS_CLI_DATASET + 1,
               "PS_CLI_DATASET_END (cli.h) must count the entries of ps_cli_dataset_longs");

int ps_cli_join_longs(const struct option *own, struct option *joined, size_t capacity) {
  size_t n = 0;
  for (const struct option *list[] = {own, ps_cli_dataset_longs}, **l = list; l < list + 2; l++)
    for (const struct option *o = *l; o->name; o++) {
      if (n + 1 >= capacity) PS_FAIL(PS_ERR_SYSTEM, "command line: option table longer than %zu", capacity);
      joined[n++] = *o;
    }
  joined[n] = (struct option){0, 0, 0, 0};
  ps_cli_set_suggestions(joined);
  return PS_OK;
}

void ps_cli_data_options_default(ps_cli_data_options *o) {
  memset(o, 0, sizeof *o);
  ps_dataset_options_default(&o->read);
  ps_targets_options_default(&o->targets);
  ps_regression_options_default(&o->regression);
}

int ps_cli_preset(const char *name, ps_cli_data_options *d) {
  int accurate;
  if (strcmp(name, "accurate") == 0) accurate = 1;
  else if (strcmp(name, "paper") == 0) accurate = 0;
  else PS_FAIL(PS_ERR_INPUT, "--preset expects paper or accurate, got '%s'", name);
  d->preset = accurate ? "accurate" : "paper";
  d->read.scale_median = accurate;
  d->targets.de.fdr = accurate ? 0.05 : 0.0;
  d->regression.no_winsorize = accurate;
  d->qp_genes_own = accurate;
  d->gene_weights = accurate;
  return PS_OK;
}

int ps_cli_method_is_paper(const ps_cli_data_options *d) {
  return !d->read.scale_median && !(d->targets.de.fdr > 0) && !d->regression.no_winsorize && !d->qp_genes_own && !d->gene_weights;
}

int ps_cli_method_record(const ps_cli_data_options *d, ps_run_info *info) {
  if (ps_cli_method_is_paper(d)) return PS_OK; /* the paper: the parameters (and their digest) as before */
  PS_CALL(ps_run_info_string(info, "preset", d->preset ? d->preset : "custom"));
  PS_CALL(ps_run_info_string(info, "scale", d->read.scale_median ? "median" : "1e4"));
  if (!d->targets.targets) PS_CALL(ps_run_info_number(info, "target_fdr", d->targets.de.fdr));
  PS_CALL(ps_run_info_number(info, "winsorize", !d->regression.no_winsorize));
  PS_CALL(ps_run_info_string(info, "qp_genes", d->qp_genes_own ? "own" : "union"));
  PS_CALL(ps_run_info_string(info, "gene_weights", d->gene_weights ? "residual" : "none"));
  return PS_OK;
}

void ps_cli_method_score(const ps_cli_data_options *d, ps_score_options *s) { s->gene_weights = d->gene_weights; }

int ps_cli_method_prepare(MPI_Comm comm, const ps_cli_data_options *o, const ps_dataset *d, const ps_ridge *ridge,
                          int quiet, ps_score_options *score, ps_score_genes *genes, double **weights) {
  memset(genes, 0, sizeof *genes);
  *weights = NULL;
  score->gene_weights = o->gene_weights;
  if (ps_cli_method_is_paper(o)) return PS_OK;
  PS_CALL(ps_error_sync(comm, ps_score_genes_build(d, genes)));
  ps_score_genes_apply(genes, o->qp_genes_own, o->targets.de.fdr > 0, score);
  if (score->unscored && genes->n_unscored == d->design.n_perturbations)
    PS_CALL(ps_error_sync(comm, ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                                            "%s: every one of the %d perturbations is left without targets%s; nothing "
                                            "to score (raise --target-fdr or give --targets)",
                                            o->read.input, (int)d->design.n_perturbations,
                                            o->targets.de.fdr > 0 ? " at the target FDR" : "")));
  if (score->unscored) ps_score_genes_warn(comm, d, genes); /* a warning: printed with --quiet too */
  (void)quiet;
  if (o->gene_weights) { /* from the fit's own design (all analysed cells) */
    PS_CALL(ps_score_gene_weights(comm, &d->design, &d->y, ridge, weights));
    score->weights = *weights;
  }
  return PS_OK;
}

int ps_cli_dataset_option(const char *name, const char *arg, ps_cli_data_options *d) {
  double number;
  if (strcmp(name, "input") == 0) d->read.input = arg;
  else if (strcmp(name, "layer") == 0) d->read.layer = arg;
  else if (strcmp(name, "input-is") == 0) {
    if (strcmp(arg, "counts") == 0) d->read.input_is = PS_INPUT_COUNTS;
    else if (strcmp(arg, "lognorm") == 0) d->read.input_is = PS_INPUT_LOGNORM;
    else if (strcmp(arg, "auto") == 0) d->read.input_is = PS_INPUT_AUTO;
    else PS_FAIL(PS_ERR_INPUT, "--input-is expects auto, counts or lognorm, got '%s'", arg);
  } else if (strcmp(name, "guides") == 0) d->read.guides = arg;
  else if (strcmp(name, "guide-column") == 0) d->read.guide_column = arg;
  else if (strcmp(name, "control") == 0) PS_CALL(ps_cli_split_list(arg, &d->read.controls));
  else if (strcmp(name, "targets") == 0) d->targets.targets = arg;
  else if (strcmp(name, "min-gene-frac") == 0) PS_CALL(ps_cli_number("--min-gene-frac", arg, &d->regression.min_gene_frac));
  else if (strcmp(name, "min-pct") == 0) PS_CALL(ps_cli_number("--min-pct", arg, &d->targets.de.min_pct));
  else if (strcmp(name, "logfc") == 0) PS_CALL(ps_cli_number("--logfc", arg, &d->targets.de.logfc));
  else if (strcmp(name, "min-targets") == 0) {
    PS_CALL(ps_cli_count("--min-targets", arg, &number));
    d->targets.de.min_targets = (int64_t)number;
  } else if (strcmp(name, "max-targets") == 0) {
    PS_CALL(ps_cli_count("--max-targets", arg, &number));
    d->targets.de.max_targets = (int64_t)number;
  } else if (strcmp(name, "exclude-perturbed-gene") == 0) d->targets.exclude_perturbed_gene = 1;
  else if (strcmp(name, "de-background") == 0) {
    if (strcmp(arg, "others") == 0) d->targets.de_background_others = 1;
    else if (strcmp(arg, "controls") == 0) d->targets.de_background_others = 0;
    else PS_FAIL(PS_ERR_INPUT, "--de-background expects controls or others, got '%s'", arg);
  } else if (strcmp(name, "de-strict-groups") == 0) d->targets.de_strict_groups = 1;
  else if (strcmp(name, "min-guide-umi") == 0) PS_CALL(ps_cli_number("--min-guide-umi", arg, &d->read.min_guide_umi));
  else if (strcmp(name, "perturbations") == 0) PS_CALL(ps_cli_split_list(arg, &d->read.perturbations));
  else if (strcmp(name, "unit") == 0) {
    if (strcmp(arg, "guide") == 0) d->read.unit_guide = 1;
    else if (strcmp(arg, "gene") == 0) d->read.unit_guide = 0;
    else PS_FAIL(PS_ERR_INPUT, "--unit expects gene or guide, got '%s'", arg);
  } else if (strcmp(name, "preset") == 0) PS_CALL(ps_cli_preset(arg, d));
  else if (strcmp(name, "scale") == 0) {
    if (strcmp(arg, "median") == 0) d->read.scale_median = 1;
    else if (strcmp(arg, "1e4") == 0 || strcmp(arg, "10000") == 0) d->read.scale_median = 0;
    else PS_FAIL(PS_ERR_INPUT, "--scale expects 1e4 or median, got '%s'", arg);
  } else if (strcmp(name, "target-fdr") == 0) {
    PS_CALL(ps_cli_number("--target-fdr", arg, &d->targets.de.fdr));
    if (!(d->targets.de.fdr >= 0 && d->targets.de.fdr <= 1)) PS_FAIL(PS_ERR_INPUT, "--target-fdr must be in [0, 1] (0 = off), got %s", arg);
  } else if (strcmp(name, "no-winsorize") == 0) d->regression.no_winsorize = 1;
  else if (strcmp(name, "qp-genes") == 0) {
    if (strcmp(arg, "own") == 0) d->qp_genes_own = 1;
    else if (strcmp(arg, "union") == 0) d->qp_genes_own = 0;
    else PS_FAIL(PS_ERR_INPUT, "--qp-genes expects own or union, got '%s'", arg);
  } else if (strcmp(name, "gene-weights") == 0) {
    if (strcmp(arg, "residual") == 0) d->gene_weights = 1;
    else if (strcmp(arg, "none") == 0) d->gene_weights = 0;
    else PS_FAIL(PS_ERR_INPUT, "--gene-weights expects residual or none, got '%s'", arg);
  } else PS_FAIL(PS_ERR_SYSTEM, "command line: --%s is in the dataset table but has no parser", name);
  return PS_OK;
}

int ps_cli_unknown_option(const char *command, const char *arg) {
  /* the group options are run's own; another command names them rather than "unknown" */
  for (const char *const *g = (const char *const[]){"--group-by", "--control-by", NULL}; *g; g++)
    if (strncmp(arg, *g, strlen(*g)) == 0 && (arg[strlen(*g)] == '\0' || arg[strlen(*g)] == '='))
      PS_FAIL(PS_ERR_INPUT, "%s: %s is not supported yet (run, cv and lambda have groups); give it one group's cells "
              "(a subset of the input) at a time", command, *g);
  const struct option *longs = ps_cli_current_longs();
  if (longs) return ps_cli_unknown_option_in(command, arg, longs);
  PS_FAIL(PS_ERR_INPUT, "%s: unknown or incomplete option '%s' (see pertscore %s --help)", command, arg, command);
}

int ps_cli_dataset_check(const char *command, ps_cli_data_options *d) {
  if (!d->read.input) PS_FAIL(PS_ERR_INPUT, "%s: --input FILE is required", command);
  if (d->read.guides && d->read.guide_column) PS_FAIL(PS_ERR_INPUT, "%s: give --guides or --guide-column, not both", command);
  if (!(d->regression.min_gene_frac >= 0 && d->regression.min_gene_frac <= 1))
    PS_FAIL(PS_ERR_INPUT, "--min-gene-frac must be in [0, 1] (got %g)", d->regression.min_gene_frac);
  if (!(d->targets.de.min_pct >= 0 && d->targets.de.min_pct <= 1))
    PS_FAIL(PS_ERR_INPUT, "--min-pct must be in [0, 1] (got %g)", d->targets.de.min_pct);
  if (!(d->targets.de.logfc >= 0)) PS_FAIL(PS_ERR_INPUT, "--logfc must be >= 0 (got %g)", d->targets.de.logfc);
  if (d->targets.de.max_targets < 1)
    PS_FAIL(PS_ERR_INPUT, "--max-targets must be >= 1 (got %lld)", (long long)d->targets.de.max_targets);
  ps_strlist_sort_unique(&d->read.controls);
  ps_strlist_sort_unique(&d->read.perturbations);
  return PS_OK;
}
