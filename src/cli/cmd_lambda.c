/* pertscore lambda: choose the PS penalty by false-positive rate (SPEC.md section 4).
 * read (with pseudo cells) -> ridge (once) -> FPR scan over the grid -> a full
 * run at the chosen lambda -> results with the curve. */
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pertscore/data.h"
#include "pertscore/lambda.h"
#include "pertscore/results.h"
#include "pertscore/ridge.h"
#include "pertscore/score.h"

static const char *lambda_usage =
    "usage: mpirun -n P pertscore lambda --input DATA.h5ad (--guides TABLE | --guide-column COL)\n"
    "                                 --control LABEL[,LABEL...] [--output RESULTS.h5ad] [--curve FILE.tsv] [options]\n"
    "\n"
    "Relabels random control cells as a pseudo perturbation, scores them for every PS penalty\n"
    "lambda of a grid and reports FPR(lambda) = fraction of pseudo cells with PS > 0.5; the\n"
    "chosen lambda is the smallest with FPR <= --target-fpr (SPEC.md section 4).\n"
    "\n"
    PS_CLI_DATASET_USAGE
    "pseudo perturbation:\n"
    "  --pseudo-cells N      control cells relabelled as the pseudo perturbation (250)\n"
    "  --pseudo-label NAME   its label (PSEUDO_CONTROL)\n"
    "  --seed S              seed of the choice of pseudo cells (and of --permutations) (1)\n"
    "grid:\n"
    "  --lambda-grid LIST    lambdas, comma-separated (sorted; duplicates dropped)\n"
    "  --lambda-min X        log-spaced grid from X ... (0.001)\n"
    "  --lambda-max X        ... to X ... (1000)\n"
    "  --lambda-steps N      ... in N values (100): 10^seq(-3, 3, length = 100) by default\n"
    "  --target-fpr F        choose the smallest lambda with FPR <= F (0.1)\n"
    "method (as run): --ridge-lambda X (0.01), --upper U (3), --no-rescale,\n"
    "  --permutations R      p-values of beta in the results file (0 here: they do not depend on lambda)\n"
    "output:\n"
    "  --output FILE         results .h5ad of a full run at the chosen lambda, with the curve in\n"
    "                        uns/pertscore/lambda (written as FILE.partial, renamed when complete)\n"
    "  --curve FILE          the curve as TSV: lambda, fpr, n_positive, max_raw_ps, rescaled\n"
    "  --force               replace OUTPUT if it exists (always done; accepted as for run)\n"
    "  --quiet               no progress on stderr\n"
    "  --json                a JSON summary with the whole curve on stdout instead of the table\n"
    "                        (one line per group with --group-by)\n"
    "groups (docs/cv.md \"Groups\"):\n"
    "  --group-by COL        the scan on each group of obs column COL alone, as on a file of that\n"
    "                        group's cells (its own pseudo cells, targets and lambda): OUTPUT and\n"
    "                        CURVE get .GROUP before their extension; CURVE joins the groups'\n"
    "                        curves (a group column)\n"
    "  --control-by COL      one intercept per group of COL in the ridge (as run); the pseudo cells\n"
    "                        are drawn from all control cells and keep their group\n";

typedef struct {
  ps_cli_data_options data;
  ps_pseudo_options pseudo; /* the relabelling before the targets (SPEC section 4) */
  ps_score_options score;
  ps_ridge_perm_options perm;
  double ridge_lambda;
  double *grid;
  int n_grid;
  double grid_min, grid_max, target_fpr;
  int grid_steps, grid_log_given;
  const char *output, *curve;
  const char *group_by; /* --group-by: the scan on each group's cells alone (group_runs.c) */
  const char *group;    /* the group of this pass, NULL without --group-by */
  int quiet, json;
} lambda_options;

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* --lambda-grid a,b,c: numbers >= 0, sorted, duplicates dropped. */
static int parse_grid(const char *text, lambda_options *o) {
  ps_strlist parts = {0};
  PS_CALL(ps_cli_split_list(text, &parts));
  if (parts.n == 0) PS_FAIL(PS_ERR_INPUT, "--lambda-grid expects comma-separated numbers, got '%s'", text);
  free(o->grid);
  PS_ALLOC(o->grid, parts.n);
  for (int64_t i = 0; i < parts.n; i++) {
    PS_CALL(ps_cli_number("--lambda-grid", parts.items[i], &o->grid[i]));
    if (!(o->grid[i] >= 0) || !isfinite(o->grid[i]))
      PS_FAIL(PS_ERR_INPUT, "--lambda-grid values must be finite and >= 0, got '%s'", parts.items[i]);
  }
  qsort(o->grid, (size_t)parts.n, sizeof *o->grid, compare_doubles);
  int n = 0;
  for (int64_t i = 0; i < parts.n; i++)
    if (n == 0 || o->grid[i] != o->grid[n - 1]) o->grid[n++] = o->grid[i];
  o->n_grid = n;
  ps_strlist_free(&parts);
  return PS_OK;
}

static int parse_lambda(int argc, char **argv, lambda_options *o, int *help) {
  enum { O_RIDGE_LAMBDA = 1, O_UPPER, O_NO_RESCALE, O_OUTPUT, O_QUIET, O_JSON, O_HELP, O_PERMUTATIONS, O_SEED,
         O_PSEUDO_CELLS, O_PSEUDO_LABEL, O_GRID, O_GRID_MIN, O_GRID_MAX, O_GRID_STEPS, O_TARGET_FPR, O_CURVE, O_FORCE,
         O_GROUP_BY, O_CONTROL_BY };
  static const struct option own_longs[] = {
      {"ridge-lambda", required_argument, 0, O_RIDGE_LAMBDA}, {"upper", required_argument, 0, O_UPPER},
      {"no-rescale", no_argument, 0, O_NO_RESCALE}, {"output", required_argument, 0, O_OUTPUT},
      {"quiet", no_argument, 0, O_QUIET}, {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, O_HELP},
      {"permutations", required_argument, 0, O_PERMUTATIONS},
      {"seed", required_argument, 0, O_SEED}, {"pseudo-cells", required_argument, 0, O_PSEUDO_CELLS},
      {"pseudo-label", required_argument, 0, O_PSEUDO_LABEL}, {"lambda-grid", required_argument, 0, O_GRID},
      {"lambda-min", required_argument, 0, O_GRID_MIN}, {"lambda-max", required_argument, 0, O_GRID_MAX},
      {"lambda-steps", required_argument, 0, O_GRID_STEPS}, {"target-fpr", required_argument, 0, O_TARGET_FPR},
      {"curve", required_argument, 0, O_CURVE},
      {"group-by", required_argument, 0, O_GROUP_BY}, {"control-by", required_argument, 0, O_CONTROL_BY},
      {"out", required_argument, 0, O_OUTPUT}, {"force", no_argument, 0, O_FORCE},
      {0, 0, 0, 0}};
  double number;
  ps_cli_data_options_default(&o->data);
  ps_pseudo_options_default(&o->pseudo);
  ps_score_options_default(&o->score);
  ps_ridge_perm_options_default(&o->perm);
  o->perm.n_permutations = 0; /* beta's p-values do not depend on lambda: only on request */
  o->ridge_lambda = 0.01;
  o->pseudo.pseudo_cells = PS_LAMBDA_PSEUDO_CELLS;
  o->pseudo.pseudo_seed = o->perm.seed;
  o->pseudo.pseudo_label = PS_LAMBDA_PSEUDO_LABEL;
  o->grid_min = 1e-3;
  o->grid_max = 1e3;
  o->grid_steps = 100;
  o->target_fpr = PS_LAMBDA_TARGET_FPR;
  optind = 1;
  opterr = 0;
  struct option longs[64];
  PS_CALL(ps_cli_join_longs(own_longs, longs, sizeof longs / sizeof *longs));
  int c, long_index = -1;
  while ((c = getopt_long(argc, argv, "", longs, &long_index)) != -1) {
    if (ps_cli_is_dataset(c)) {
      PS_CALL(ps_cli_dataset_option(longs[long_index].name, optarg, &o->data));
      continue;
    }
    switch (c) {
      case O_RIDGE_LAMBDA: PS_CALL(ps_cli_number("--ridge-lambda", optarg, &o->ridge_lambda)); break;
      case O_UPPER: PS_CALL(ps_cli_number("--upper", optarg, &o->score.upper)); break;
      case O_NO_RESCALE: o->score.rescale = 0; break;
      case O_OUTPUT: o->output = optarg; break;
      case O_CURVE: o->curve = optarg; break;
      case O_GROUP_BY: o->group_by = optarg; break;
      case O_CONTROL_BY: o->data.read.control_by = optarg; break;
      case O_FORCE: break; /* OUTPUT is always replaced; --force as for run (one vocabulary) */
      case O_QUIET: o->quiet = 1; break;
      case O_JSON: o->json = 1; break;
      case O_HELP: *help = 1; return PS_OK;
      case O_PERMUTATIONS:
        PS_CALL(ps_cli_count("--permutations", optarg, &number));
        if (number > 1e6) PS_FAIL(PS_ERR_INPUT, "--permutations must be at most 1000000 (got %s)", optarg);
        o->perm.n_permutations = (int)number;
        break;
      case O_SEED:
        PS_CALL(ps_cli_count("--seed", optarg, &number));
        o->perm.seed = o->pseudo.pseudo_seed = (uint64_t)number;
        break;
      case O_PSEUDO_CELLS:
        PS_CALL(ps_cli_count("--pseudo-cells", optarg, &number));
        if (number < 1) PS_FAIL(PS_ERR_INPUT, "--pseudo-cells must be at least 1 (got %s)", optarg);
        o->pseudo.pseudo_cells = (int64_t)number;
        break;
      case O_PSEUDO_LABEL: o->pseudo.pseudo_label = optarg; break;
      case O_GRID: PS_CALL(parse_grid(optarg, o)); break;
      case O_GRID_MIN: PS_CALL(ps_cli_number("--lambda-min", optarg, &o->grid_min)); o->grid_log_given = 1; break;
      case O_GRID_MAX: PS_CALL(ps_cli_number("--lambda-max", optarg, &o->grid_max)); o->grid_log_given = 1; break;
      case O_GRID_STEPS:
        PS_CALL(ps_cli_count("--lambda-steps", optarg, &number));
        if (number < 1 || number > 100000) PS_FAIL(PS_ERR_INPUT, "--lambda-steps must be in 1..100000 (got %s)", optarg);
        o->grid_steps = (int)number;
        o->grid_log_given = 1;
        break;
      case O_TARGET_FPR: PS_CALL(ps_cli_number("--target-fpr", optarg, &o->target_fpr)); break;
      default: return ps_cli_unknown_option("lambda", argv[optind - 1]);
    }
  }
  if (optind < argc) PS_FAIL(PS_ERR_INPUT, "lambda: unexpected argument '%s'", argv[optind]);
  PS_CALL(ps_cli_dataset_check("lambda", &o->data));
  if (o->grid && o->grid_log_given)
    PS_FAIL(PS_ERR_INPUT, "lambda: give --lambda-grid or --lambda-min/--lambda-max/--lambda-steps, not both");
  if (!o->grid) {
    PS_CALL(ps_lambda_grid_log(o->grid_min, o->grid_max, o->grid_steps, &o->grid));
    o->n_grid = o->grid_steps;
  }
  if (!(o->target_fpr >= 0 && o->target_fpr <= 1))
    PS_FAIL(PS_ERR_INPUT, "--target-fpr must be in [0, 1] (got %g)", o->target_fpr);
  if (o->ridge_lambda <= 0) PS_FAIL(PS_ERR_INPUT, "--ridge-lambda must be > 0 (got %g)", o->ridge_lambda);
  if (o->score.upper <= 0) PS_FAIL(PS_ERR_INPUT, "--upper must be > 0 (got %g)", o->score.upper);
  if (o->group_by && o->data.read.control_by && strcmp(o->group_by, o->data.read.control_by) != 0)
    PS_FAIL(PS_ERR_INPUT, "lambda: --group-by %s and --control-by %s name different columns; within each --group-by "
            "group the intercept is already one, so give one of them (or the same column to both)", o->group_by,
            o->data.read.control_by);
  if (o->group_by) o->data.read.control_by = NULL; /* one group at a time: one intercept */
  return PS_OK;
}

static int same_file(const char *a, const char *b) {
  if (!a || !b) return 0;
  char ra[4096], rb[4096];
  if (realpath(a, ra) && realpath(b, rb)) return strcmp(ra, rb) == 0;
  return strcmp(a, b) == 0;
}

static int check_one_output(const lambda_options *o, const char *path) {
  if (!path) return PS_OK;
  const char *inputs[] = {o->data.read.input, o->data.read.guides, o->data.targets.targets};
  for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
    if (same_file(path, inputs[i])) PS_FAIL(PS_ERR_INPUT, "%s: the output path is also an input; choose another", path);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  const char *folder = dirname(dir);
  if (access(folder, W_OK) != 0)
    PS_FAIL(PS_ERR_INPUT, "%s: the output folder '%s' does not exist or is not writable", path, folder);
  return PS_OK;
}

static int check_outputs(const lambda_options *o) {
  PS_CALL(check_one_output(o, o->output));
  PS_CALL(check_one_output(o, o->curve));
  if (o->output && o->curve && same_file(o->output, o->curve))
    PS_FAIL(PS_ERR_INPUT, "--output and --curve name the same file");
  return PS_OK;
}

static int record_parameters(const lambda_options *o, int argc, char **argv, ps_run_info *info, double lambda) {
  char command[8192] = "pertscore", list[4096] = "";
  for (int i = 0; i < argc; i++) {
    strncat(command, " ", sizeof command - strlen(command) - 1);
    strncat(command, argv[i], sizeof command - strlen(command) - 1);
  }
  for (int64_t i = 0; i < o->data.read.controls.n; i++) {
    strncat(list, i ? "," : "", sizeof list - strlen(list) - 1);
    strncat(list, o->data.read.controls.items[i], sizeof list - strlen(list) - 1);
  }
  PS_CALL(ps_run_info_string(info, "command", command));
  PS_CALL(ps_run_info_string(info, "input", o->data.read.input));
  PS_CALL(ps_run_info_string(info, "layer", o->data.read.layer ? o->data.read.layer : "X"));
  PS_CALL(ps_run_info_string(info, "guides", o->data.read.guides ? o->data.read.guides : ""));
  PS_CALL(ps_run_info_string(info, "guide_column", o->data.read.guide_column ? o->data.read.guide_column : ""));
  PS_CALL(ps_run_info_string(info, "targets", o->data.targets.targets ? o->data.targets.targets : ""));
  PS_CALL(ps_run_info_string(info, "control", list));
  PS_CALL(ps_run_info_number(info, "ridge_lambda", o->ridge_lambda));
  PS_CALL(ps_run_info_number(info, "lambda", lambda));
  PS_CALL(ps_run_info_number(info, "upper", o->score.upper));
  PS_CALL(ps_run_info_number(info, "rescale", o->score.rescale));
  PS_CALL(ps_run_info_number(info, "min_gene_frac", o->data.regression.min_gene_frac));
  PS_CALL(ps_run_info_number(info, "score_all_cells", 0));
  PS_CALL(ps_run_info_number(info, "permutations", o->perm.n_permutations));
  PS_CALL(ps_run_info_number(info, "seed", (double)o->perm.seed));
  PS_CALL(ps_run_info_string(info, "unit", o->data.read.unit_guide ? "guide" : "gene"));
  list[0] = '\0';
  for (int64_t i = 0; i < o->data.read.perturbations.n; i++) {
    strncat(list, i ? "," : "", sizeof list - strlen(list) - 1);
    strncat(list, o->data.read.perturbations.items[i], sizeof list - strlen(list) - 1);
  }
  PS_CALL(ps_run_info_string(info, "perturbations", list));
  if (!o->data.targets.targets) {
    PS_CALL(ps_run_info_number(info, "min_pct", o->data.targets.de.min_pct));
    PS_CALL(ps_run_info_number(info, "logfc", o->data.targets.de.logfc));
    PS_CALL(ps_run_info_number(info, "min_targets", (double)o->data.targets.de.min_targets));
    PS_CALL(ps_run_info_number(info, "max_targets", (double)o->data.targets.de.max_targets));
    PS_CALL(ps_run_info_number(info, "exclude_perturbed_gene", o->data.targets.exclude_perturbed_gene));
    PS_CALL(ps_run_info_number(info, "de_strict_groups", o->data.targets.de_strict_groups));
    PS_CALL(ps_run_info_string(info, "de_background", o->data.targets.de_background_others ? "others" : "controls"));
  }
  PS_CALL(ps_cli_method_record(&o->data, info)); /* SPEC section 9, when not the paper's */
  if (o->group_by) PS_CALL(ps_run_info_string(info, "group_by", o->group_by));
  if (o->group) PS_CALL(ps_run_info_string(info, "group", o->group));
  if (o->data.read.control_by) PS_CALL(ps_run_info_string(info, "control_by", o->data.read.control_by));
  return PS_OK;
}

/* The lambda the results file is scored at: the chosen one, or, when no lambda
 * reaches the target, the one with the lowest FPR (the smallest such). */
static int scored_index(const ps_lambda_curve *c, int chosen) {
  if (chosen >= 0) return chosen;
  int best = 0;
  for (int i = 1; i < c->n; i++)
    if (c->fpr[i] < c->fpr[best]) best = i;
  return best;
}

/* Grid points where FPR goes up with lambda (the method says it cannot, see src/lambda/scan.c). */
static int count_increases(const ps_lambda_curve *c) {
  int n = 0;
  for (int i = 1; i < c->n; i++) n += c->fpr[i] > c->fpr[i - 1];
  return n;
}

static int write_curve_tsv(MPI_Comm comm, const char *path, const ps_lambda_curve *c) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  char *text = NULL;
  int64_t length = 0;
  if (rank == 0) {
    size_t cap = 64 + (size_t)c->n * 96;
    PS_ALLOC(text, cap);
    length = snprintf(text, cap, "lambda\tfpr\tn_positive\tmax_raw_ps\trescaled\n");
    for (int i = 0; i < c->n; i++)
      length += snprintf(text + length, cap - (size_t)length, "%.6g\t%.6g\t%lld\t%.6g\t%d\n", c->lambda[i],
                         c->fpr[i], (long long)c->n_positive[i], c->max_raw[i], (int)c->rescaled[i]);
  }
  int err = ps_text_write_ordered(comm, path, text ? text : "", length);
  free(text);
  return err;
}

static void print_table(const lambda_options *o, const ps_dataset *d, const ps_lambda_curve *c, int chosen) {
  printf("pertscore lambda: %lld pseudo cells (%s) from %lld control cells; FPR = fraction with PS > %.1f\n",
         (long long)c->n_pseudo, o->pseudo.pseudo_label, (long long)(d->n_control + c->n_pseudo), PS_LAMBDA_POSITIVE_PS);
  printf("%14s  %7s\n", "lambda", "FPR");
  int stride = c->n > 12 ? (c->n + 10) / 11 : 1;
  for (int i = 0; i < c->n; i++) {
    int show = i % stride == 0 || i == c->n - 1 || i == chosen || i == chosen - 1;
    if (show) printf("%14.6g  %7.4f%s\n", c->lambda[i], c->fpr[i], i == chosen ? "  <- chosen" : "");
  }
  if (chosen >= 0)
    printf("chosen lambda: %.6g (FPR %.4f <= target %.4g; %d grid values)\n", c->lambda[chosen], c->fpr[chosen],
           o->target_fpr, c->n);
  else
    printf("chosen lambda: none (no lambda of the grid has FPR <= %.4g; the lowest FPR is %.4f at lambda %.6g)\n",
           o->target_fpr, c->fpr[scored_index(c, -1)], c->lambda[scored_index(c, -1)]);
  fflush(stdout);
}

static void print_json_array(const char *key, const double *v, int n) {
  printf("\"%s\": [", key);
  for (int i = 0; i < n; i++) printf("%s%.17g", i ? ", " : "", v[i]);
  printf("]");
}

static void print_json(const lambda_options *o, const ps_dataset *d, const ps_lambda_curve *c, int chosen,
                       double fpr_full, const double *seconds, int n_ranks) {
  printf("{\"output\": %s%s%s, \"curve\": %s%s%s, \"ranks\": %d, \"cells_analysed\": %lld, \"control_cells\": %lld, "
         "\"pseudo_cells\": %lld, \"pseudo_label\": \"%s\", \"perturbations\": %d, \"regression_genes\": %d, "
         "\"target_fpr\": %.17g, ",
         o->output ? "\"" : "", o->output ? o->output : "null", o->output ? "\"" : "", o->curve ? "\"" : "",
         o->curve ? o->curve : "null", o->curve ? "\"" : "", n_ranks, (long long)d->n_analysed,
         (long long)d->n_control, (long long)c->n_pseudo, o->pseudo.pseudo_label, d->design.n_perturbations,
         d->n_regression, o->target_fpr);
  if (chosen >= 0) printf("\"chosen_lambda\": %.17g, \"chosen_fpr\": %.17g, ", c->lambda[chosen], c->fpr[chosen]);
  else printf("\"chosen_lambda\": null, \"chosen_fpr\": null, ");
  if (o->output) printf("\"scored_lambda\": %.17g, \"fpr_full_run\": %.17g, ", c->lambda[scored_index(c, chosen)], fpr_full);
  printf("\"fpr_increases\": %d, \"scan_qp_solved\": %lld, \"scan_max_kkt_residual\": %.3g, ", count_increases(c),
         (long long)c->n_qp, c->max_kkt);
  print_json_array("grid", c->lambda, c->n);
  printf(", ");
  print_json_array("fpr", c->fpr, c->n);
  printf(", \"seconds\": {\"read\": %.3f, \"ridge\": %.3f, \"scan\": %.3f, \"score\": %.3f, \"write\": %.3f, "
         "\"total\": %.3f}}\n",
         seconds[0], seconds[1], seconds[2], seconds[3], seconds[4], seconds[5]);
  fflush(stdout);
}

/* The full run at the scored lambda, written with the curve. */
static int write_results(MPI_Comm comm, const lambda_options *o, int argc, char **argv, const ps_dataset *d,
                         const ps_ridge *ridge, const double *pvalues, const ps_scores *scores,
                         const ps_lambda_curve *c, int chosen, const double *seconds) {
  int size;
  MPI_Comm_size(comm, &size);
  int at = scored_index(c, chosen);
  char partial[4200];
  snprintf(partial, sizeof partial, "%s.partial", o->output);
  ps_cleanup_register(partial);
  ps_run_info info = {0};
  PS_CALL(record_parameters(o, argc, argv, &info, c->lambda[at]));
  PS_CALL(ps_run_info_number(&info, "ranks", size));
  PS_CALL(ps_run_info_number(&info, "seconds_read", seconds[0]));
  PS_CALL(ps_run_info_number(&info, "seconds_ridge", seconds[1]));
  PS_CALL(ps_run_info_number(&info, "seconds_lambda_scan", seconds[2]));
  PS_CALL(ps_run_info_number(&info, "seconds_score", seconds[3]));
  PS_CALL(ps_error_sync(comm, ps_results_write_lambda(comm, partial, d, ridge, pvalues, scores, &info, c, chosen, at,
                                                      o->target_fpr, o->pseudo.pseudo_label)));
  PS_CALL(ps_error_sync(comm, ps_output_commit(comm, partial, o->output)));
  ps_cleanup_unregister();
  ps_run_info_free(&info);
  return PS_OK;
}

static int lambda_one(MPI_Comm comm, lambda_options *o, int argc, char **argv) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  PS_CALL(ps_error_sync(comm, check_outputs(o)));
  ps_progress progress;
  ps_progress_init(&progress, comm, o->quiet);
  double seconds[6] = {0}; /* read, ridge, scan, score, write, total */
  ps_dataset d;
  ps_progress_stage(&progress, "read");
  PS_CALL(ps_cli_data_stages(comm, &o->data, &o->pseudo, 0, &progress, &d));
  seconds[0] = ps_progress_done(&progress);
  ps_progress_stage(&progress, "ridge");
  ps_ridge ridge;
  double *pvalues = NULL;
  ps_design with_groups = {0}; /* --control-by: one intercept column per group, as run's fit */
  if (d.design.n_groups > 1) PS_CALL(ps_error_sync(comm, ps_design_ridge_columns(&d.design, &with_groups)));
  int err = ps_error_sync(comm, ps_ridge_fit_pvalues(comm, d.design.n_groups > 1 ? &with_groups : &d.design, &d.y,
                                                     o->ridge_lambda, &o->perm, &ridge, &pvalues));
  ps_design_free(&with_groups);
  PS_CALL(err);
  seconds[1] = ps_progress_done(&progress);
  ps_score_genes genes; /* SPEC section 9: the scan and the full scoring in the same method */
  double *fit_weights = NULL;
  PS_CALL(ps_cli_method_prepare(comm, &o->data, &d, &ridge, o->quiet, &o->score, &genes, &fit_weights));
  if (rank == 0 && o->score.unscored) {
    int64_t pid = ps_strlist_find_sorted(&d.design.names, o->pseudo.pseudo_label ? o->pseudo.pseudo_label : PS_LAMBDA_PSEUDO_LABEL);
    if (pid >= 0 && o->score.unscored[pid])
      fprintf(stderr, "pertscore: warning: the pseudo perturbation has no targets at the target FDR, so it is not "
              "scored and every lambda has FPR 0 (the FDR cut already keeps control cells from scoring)\n");
  }
  ps_progress_stage(&progress, "scan");
  ps_lambda_curve curve;
  PS_CALL(ps_lambda_scan(comm, &d, &ridge, o->pseudo.pseudo_label, o->grid, o->n_grid, &o->score, &progress, &curve));
  seconds[2] = ps_progress_done(&progress);
  int chosen = ps_lambda_choose(&curve, o->target_fpr);
  if (rank == 0 && !o->quiet) {
    if (chosen >= 0)
      fprintf(stderr, "pertscore: lambda %.6g is the smallest with FPR <= %.4g (FPR %.4f, %lld of %lld pseudo cells)\n",
              curve.lambda[chosen], o->target_fpr, curve.fpr[chosen], (long long)curve.n_positive[chosen],
              (long long)curve.n_pseudo);
    else
      fprintf(stderr, "pertscore: warning: no lambda of the grid has FPR <= %.4g; extend the grid (--lambda-max)%s\n",
              o->target_fpr, o->output ? "; the results file is scored at the lambda with the lowest FPR" : "");
    if (count_increases(&curve))
      fprintf(stderr, "pertscore: warning: FPR rises with lambda at %d grid point(s) (QP tolerance at the 0.5 "
              "boundary?)\n", count_increases(&curve));
  }
  double fpr_full = NAN;
  if (o->output) {
    ps_fault_point("score");
    ps_progress_stage(&progress, "score");
    ps_score_options at = o->score;
    at.lambda = curve.lambda[scored_index(&curve, chosen)];
    ps_scores scores;
    PS_CALL(ps_error_sync(comm, ps_score_cells(comm, &d.design, &d.y, &ridge, &at, &progress, &scores)));
    PS_CALL(ps_lambda_fpr_of(comm, &d.design, &scores, curve.pseudo_id, &fpr_full));
    seconds[3] = ps_progress_done(&progress);
    if (rank == 0 && fpr_full != curve.fpr[scored_index(&curve, chosen)])
      fprintf(stderr, "pertscore: warning: the full run's FPR %.6f differs from the scan's %.6f at lambda %.6g\n",
              fpr_full, curve.fpr[scored_index(&curve, chosen)], at.lambda);
    ps_progress_stage(&progress, "write");
    PS_CALL(write_results(comm, o, argc, argv, &d, &ridge, pvalues, &scores, &curve, chosen, seconds));
    ps_scores_free(&scores);
  } else {
    ps_progress_stage(&progress, "write");
  }
  if (o->curve) PS_CALL(ps_error_sync(comm, write_curve_tsv(comm, o->curve, &curve)));
  seconds[4] = ps_progress_done(&progress);
  seconds[5] = ps_wtime() - progress.t_start;
  if (rank == 0) {
    if (o->json) print_json(o, &d, &curve, chosen, fpr_full, seconds, size);
    else print_table(o, &d, &curve, chosen);
  }
  ps_lambda_curve_free(&curve);
  ps_score_genes_free(&genes);
  free(fit_weights);
  free(pvalues);
  ps_ridge_free(&ridge);
  ps_dataset_free(&d);
  return PS_OK;
}

/* --group-by: the scan on each group's cells alone; OUTPUT and CURVE get .GROUP
 * before their extension, and CURVE joins the groups' curves (docs/cv.md "Groups"). */
static int lambda_groups(MPI_Comm comm, lambda_options *o, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  ps_strlist groups = {0}, outputs = {0}, curves = {0};
  PS_CALL(ps_error_sync(comm, check_outputs(o)));
  int err = ps_groups_list(comm, o->data.read.input, o->group_by, "--group-by", &groups);
  if (!err && o->output) err = ps_error_sync(comm, ps_cli_group_paths(o->output, &groups, &outputs));
  if (!err && o->curve) err = ps_error_sync(comm, ps_cli_group_paths(o->curve, &groups, &curves));
  for (int64_t g = 0; g < groups.n && !err; g++) {
    lambda_options one = *o;
    one.data.read.subset_column = o->group_by;
    one.data.read.subset_value = groups.items[g];
    one.group = groups.items[g];
    one.output = o->output ? outputs.items[g] : NULL;
    one.curve = o->curve ? curves.items[g] : NULL;
    if (rank == 0 && !o->json) {
      printf("pertscore lambda: group '%s' of obs column '%s' (%lld of %lld)\n", groups.items[g], o->group_by,
             (long long)g + 1, (long long)groups.n);
      fflush(stdout);
    }
    err = lambda_one(comm, &one, argc, argv);
  }
  if (!err && o->curve) err = ps_cli_group_tsv(comm, o->curve, &groups, &curves);
  ps_strlist_free(&groups);
  ps_strlist_free(&outputs);
  ps_strlist_free(&curves);
  return err;
}

static int lambda_pipeline(MPI_Comm comm, lambda_options *o, int argc, char **argv) {
  return o->group_by ? lambda_groups(comm, o, argc, argv) : lambda_one(comm, o, argc, argv);
}

int ps_cmd_lambda(MPI_Comm comm, int argc, char **argv) {
  int rank, help = 0;
  MPI_Comm_rank(comm, &rank);
  lambda_options o;
  memset(&o, 0, sizeof o);
  int err = parse_lambda(argc, argv, &o, &help);
  if (!err && help) {
    if (rank == 0) fputs(lambda_usage, stdout);
    free(o.grid);
    return 0;
  }
  if (!err) err = lambda_pipeline(comm, &o, argc, argv);
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  free(o.grid);
  ps_strlist_free(&o.data.read.controls);
  ps_strlist_free(&o.data.read.perturbations);
  return 0;
}
