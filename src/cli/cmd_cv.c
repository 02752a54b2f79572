/* pertscore cv: cross-validation (SPEC.md section 7, docs/cv.md). Reads the
 * input like `run`, then the cells scheme (ridge-lambda grid, held-out PS) or the
 * perturbations scheme (baselines, embedding model, external predictions,
 * split-half ceiling), and writes the tables and a TSV summary. */
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pertscore/cost.h"
#include "pertscore/cv.h"
#include "pertscore/data.h"
#include "pertscore/io.h"

static const char *cv_usage =
    "usage: mpirun -n P pertscore cv --scheme perturbations|cells --input DATA.h5ad\n"
    "                             (--guides TABLE | --guide-column COL) --control LABEL[,LABEL...]\n"
    "                             --output CV.h5ad [options]\n"
    "\n"
    "Cross-validation (docs/cv.md). Folds are deterministic for --seed and the same on any\n"
    "number of ranks.\n"
    "  perturbations: folds of perturbations (none in both train and test); predicts each\n"
    "    held-out perturbation's pseudobulk change vs the control mean over all measured genes\n"
    "    (its own gene left out) with the training mean, training median, zero change and the\n"
    "    linear gene-embedding model, scores --predictions if given, and a split-half ceiling.\n"
    "  cells: folds of cells stratified by perturbation; held-out error of ridge beta over a\n"
    "    ridge-lambda grid, the lambda with the least held-out MSE, and held-out PS vs full PS.\n"
    "\n"
    PS_CLI_DATASET_USAGE
    "  The targets are the cells scheme's regression genes; the perturbations scheme uses\n"
    "  no targets and selects none.\n"
    "folds:\n"
    "  --scheme KIND         perturbations or cells (required)\n"
    "  --folds F             number of folds (5)\n"
    "  --seed S              seed of the fold assignment and the split halves (1)\n"
    "perturbations scheme:\n"
    "  --cv-min-cells N      perturbations with fewer cells are left out of every fold (10);\n"
    "                        --min-cells: the same\n"
    "  --pcs K               gene-embedding dimension: top K PCs of the training deltas (10)\n"
    "  --embedding-lambda X  ridge penalty of the embedding model's W (0.1)\n"
    "  --top-genes N         size of the 'top' gene sets: MSE/Pearson/overlap (100)\n"
    "  --top-de N            genes of the R^2 on the top DE genes (50)\n"
    "  --predictions FILE    an external model's predictions: .h5ad, one row per perturbation,\n"
    "                        X = predicted mean log-normalized expression; genes are matched by\n"
    "                        name and the evaluation uses the genes both files have\n"
    "  --predictions-column COL  obs column of FILE naming the perturbation (perturbation)\n"
    "  --strict              refuse --predictions that miss a held-out perturbation (default: warn and\n"
    "                        compare every model on the perturbations all models predict)\n"
    "  --disjoint-controls   training deltas (and --predictions) against one half of the control\n"
    "                        cells, held-out deltas against the other: no model shares the held-out\n"
    "                        control noise (docs/cv.md)\n"
    "  --save-predictions    also write X = observed deltas and layers/<model> = predicted deltas\n"
    "cells scheme:\n"
    "  --cv-ridge-lambdas LIST  ridge lambda grid, comma-separated (0.01,0.0316,...,10000:\n"
    "                        10^-2..10^4); --ridge-lambdas: the same\n"
    "  --lambda X            PS penalty of the held-out scores (0.01)\n"
    "  --upper U             upper bound of psi (3)\n"
    "output:\n"
    "  --output FILE         results .h5ad (tables in uns/cv; written as FILE.partial, renamed)\n"
    "  --summary FILE        TSV summary (default: OUTPUT without .h5ad + .summary.tsv)\n"
    PS_CLI_MAX_MEMORY_USAGE
    "  --force               replace OUTPUT if it exists (always done; accepted as for run)\n"
    "  --quiet               no progress on stderr\n"
    "  --json                print a machine-readable summary on stdout (one line per group)\n"
    "groups (docs/cv.md \"Groups\"):\n"
    "  --group-by COL        the scheme on each group of obs column COL alone, as on a file of that\n"
    "                        group's cells: OUTPUT and the summary get .GROUP before their\n"
    "                        extension, and the summary path joins the groups' (a group column)\n"
    "  --control-by COL      one basal expression per group of COL: cells scheme, one intercept per\n"
    "                        group in every fold's ridge; perturbations scheme, each cell against\n"
    "                        its own group's control mean\n";

typedef struct {
  ps_cli_data_options data;
  ps_cv_options cv;
  const char *predictions, *predictions_column;
  const char *output;
  char summary[4096];
  const char *group_by; /* --group-by: the scheme on each group's cells alone (group_runs.c) */
  const char *group;    /* the group of this pass, NULL without --group-by */
  int quiet, json;
  double max_memory; /* --max-memory: bytes per rank, 0 = no explicit limit */
} cv_cli;

static int parse_cv(int argc, char **argv, cv_cli *o, int *help) {
  enum { O_SCHEME = 1, O_FOLDS, O_SEED, O_MIN_CELLS, O_PCS, O_EMB_LAMBDA, O_TOP, O_TOP_DE, O_PREDICTIONS,
         O_PRED_COLUMN, O_SAVE_PRED, O_RIDGE_LAMBDAS, O_LAMBDA, O_UPPER, O_OUTPUT, O_SUMMARY, O_QUIET, O_JSON,
         O_HELP, O_MAX_MEMORY, O_FORCE, O_STRICT, O_DISJOINT, O_GROUP_BY, O_CONTROL_BY };
  static const struct option own_longs[] = {
      {"scheme", required_argument, 0, O_SCHEME}, {"folds", required_argument, 0, O_FOLDS},
      {"seed", required_argument, 0, O_SEED}, {"min-cells", required_argument, 0, O_MIN_CELLS},
      {"pcs", required_argument, 0, O_PCS}, {"embedding-lambda", required_argument, 0, O_EMB_LAMBDA},
      {"top-genes", required_argument, 0, O_TOP}, {"top-de", required_argument, 0, O_TOP_DE},
      {"predictions", required_argument, 0, O_PREDICTIONS},
      {"predictions-column", required_argument, 0, O_PRED_COLUMN},
      {"save-predictions", no_argument, 0, O_SAVE_PRED}, {"ridge-lambdas", required_argument, 0, O_RIDGE_LAMBDAS},
      {"lambda", required_argument, 0, O_LAMBDA}, {"upper", required_argument, 0, O_UPPER},
      {"output", required_argument, 0, O_OUTPUT}, {"summary", required_argument, 0, O_SUMMARY},
      {"quiet", no_argument, 0, O_QUIET}, {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, O_HELP},
      {"max-memory", required_argument, 0, O_MAX_MEMORY}, {"strict", no_argument, 0, O_STRICT},
      {"disjoint-controls", no_argument, 0, O_DISJOINT},
      {"group-by", required_argument, 0, O_GROUP_BY}, {"control-by", required_argument, 0, O_CONTROL_BY},
      /* run's names for the same options (pertscore run --cv), and the common output options */
      {"cv-ridge-lambdas", required_argument, 0, O_RIDGE_LAMBDAS}, {"cv-min-cells", required_argument, 0, O_MIN_CELLS},
      {"out", required_argument, 0, O_OUTPUT}, {"force", no_argument, 0, O_FORCE},
      {0, 0, 0, 0}};
  ps_cli_data_options_default(&o->data);
  ps_cv_options_default(&o->cv);
  o->cv.scheme = 0;
  o->predictions_column = "perturbation";
  const char *summary = NULL;
  double v;
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
      case O_SCHEME:
        if (strcmp(optarg, "perturbations") == 0) o->cv.scheme = PS_CV_SCHEME_PERTURBATIONS;
        else if (strcmp(optarg, "cells") == 0) o->cv.scheme = PS_CV_SCHEME_CELLS;
        else PS_FAIL(PS_ERR_INPUT, "--scheme expects perturbations or cells, got '%s'", optarg);
        break;
      case O_FOLDS:
        PS_CALL(ps_cli_count("--folds", optarg, &v));
        if (v < 2 || v > 1000) PS_FAIL(PS_ERR_INPUT, "--folds must be in [2, 1000], got '%s'", optarg);
        o->cv.n_folds = (int)v;
        break;
      case O_SEED: PS_CALL(ps_cli_count("--seed", optarg, &v)); o->cv.seed = (uint64_t)v; break;
      case O_MIN_CELLS:
        PS_CALL(ps_cli_count("--min-cells", optarg, &v));
        o->cv.min_cells = v < 2 ? 2 : (int64_t)v; /* the split halves need two cells */
        break;
      case O_PCS:
        PS_CALL(ps_cli_count("--pcs", optarg, &v));
        if (v < 1 || v > 500) PS_FAIL(PS_ERR_INPUT, "--pcs must be in [1, 500], got '%s'", optarg);
        o->cv.n_pcs = (int)v;
        break;
      case O_EMB_LAMBDA:
        PS_CALL(ps_cli_number("--embedding-lambda", optarg, &o->cv.embedding_lambda));
        if (!(o->cv.embedding_lambda > 0)) PS_FAIL(PS_ERR_INPUT, "--embedding-lambda must be > 0");
        break;
      case O_TOP:
        PS_CALL(ps_cli_count("--top-genes", optarg, &v));
        if (v < 1 || v > 1e7) PS_FAIL(PS_ERR_INPUT, "--top-genes must be >= 1");
        o->cv.top_n = (int)v;
        break;
      case O_TOP_DE:
        PS_CALL(ps_cli_count("--top-de", optarg, &v));
        if (v < 2 || v > 1e7) PS_FAIL(PS_ERR_INPUT, "--top-de must be >= 2");
        o->cv.top_de = (int)v;
        break;
      case O_PREDICTIONS: o->predictions = optarg; break;
      case O_PRED_COLUMN: o->predictions_column = optarg; break;
      case O_SAVE_PRED: o->cv.keep_predictions = 1; break;
      case O_STRICT: o->cv.strict_predictions = 1; break;
      case O_DISJOINT: o->cv.disjoint_controls = 1; break;
      case O_GROUP_BY: o->group_by = optarg; break;
      case O_CONTROL_BY: o->data.read.control_by = optarg; break;
      case O_RIDGE_LAMBDAS: PS_CALL(ps_cv_parse_ridge_lambdas("--ridge-lambdas", optarg, &o->cv)); break;
      case O_LAMBDA: PS_CALL(ps_cli_number("--lambda", optarg, &o->cv.score.lambda)); break;
      case O_UPPER: PS_CALL(ps_cli_number("--upper", optarg, &o->cv.score.upper)); break;
      case O_OUTPUT: o->output = optarg; break;
      case O_SUMMARY: summary = optarg; break;
      case O_FORCE: break; /* OUTPUT is always replaced; --force as for run (one vocabulary) */
      case O_QUIET: o->quiet = 1; break;
      case O_JSON: o->json = 1; break;
      case O_HELP: *help = 1; return PS_OK;
      case O_MAX_MEMORY: PS_CALL(ps_cost_parse_size(optarg, &o->max_memory)); break;
      default: return ps_cli_unknown_option("cv", argv[optind - 1]);
    }
  }
  if (optind < argc) PS_FAIL(PS_ERR_INPUT, "cv: unexpected argument '%s'", argv[optind]);
  if (!o->cv.scheme) PS_FAIL(PS_ERR_INPUT, "cv: --scheme perturbations|cells is required");
  PS_CALL(ps_cli_dataset_check("cv", &o->data));
  if (!o->output) PS_FAIL(PS_ERR_INPUT, "cv: --output FILE is required");
  if (o->predictions && o->cv.scheme != PS_CV_SCHEME_PERTURBATIONS)
    PS_FAIL(PS_ERR_INPUT, "cv: --predictions applies to --scheme perturbations");
  if (o->cv.score.lambda < 0) PS_FAIL(PS_ERR_INPUT, "--lambda must be >= 0 (got %g)", o->cv.score.lambda);
  if (o->cv.score.upper <= 0) PS_FAIL(PS_ERR_INPUT, "--upper must be > 0 (got %g)", o->cv.score.upper);
  if (o->group_by && o->data.read.control_by && strcmp(o->group_by, o->data.read.control_by) != 0)
    PS_FAIL(PS_ERR_INPUT, "cv: --group-by %s and --control-by %s name different columns; within each --group-by group "
            "the intercept is already one, so give one of them (or the same column to both)", o->group_by,
            o->data.read.control_by);
  if (o->group_by) o->data.read.control_by = NULL; /* one group at a time: one intercept */
  if (o->data.read.control_by && o->cv.disjoint_controls)
    PS_FAIL(PS_ERR_INPUT, "cv: --disjoint-controls does not support --control-by (each group's control mean is taken "
            "over all its control cells)");
  if (summary) {
    snprintf(o->summary, sizeof o->summary, "%s", summary);
  } else {
    snprintf(o->summary, sizeof o->summary, "%s", o->output);
    size_t len = strlen(o->summary);
    if (len > 5 && strcmp(o->summary + len - 5, ".h5ad") == 0) o->summary[len - 5] = '\0';
    strncat(o->summary, ".summary.tsv", sizeof o->summary - strlen(o->summary) - 1);
  }
  return PS_OK;
}

static int same_file(const char *a, const char *b) {
  if (!a || !b) return 0;
  char ra[4096], rb[4096];
  if (realpath(a, ra) && realpath(b, rb)) return strcmp(ra, rb) == 0;
  return strcmp(a, b) == 0;
}

static int check_output(const cv_cli *o) {
  const char *inputs[] = {o->data.read.input, o->data.read.guides, o->data.targets.targets, o->predictions};
  const char *outputs[] = {o->output, o->summary};
  for (size_t j = 0; j < 2; j++) {
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
      if (same_file(outputs[j], inputs[i]))
        PS_FAIL(PS_ERR_INPUT, "%s: an output path is also an input; choose another --output or --summary", outputs[j]);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", outputs[j]);
    const char *folder = dirname(dir);
    if (access(folder, W_OK) != 0)
      PS_FAIL(PS_ERR_INPUT, "%s: the output folder '%s' does not exist or is not writable", outputs[j], folder);
  }
  if (same_file(o->output, o->summary)) PS_FAIL(PS_ERR_INPUT, "cv: --summary must differ from --output");
  return PS_OK;
}

static int record_parameters(const cv_cli *o, int argc, char **argv, ps_run_info *info) {
  char command[8192] = "pertscore";
  for (int i = 0; i < argc; i++) {
    strncat(command, " ", sizeof command - strlen(command) - 1);
    strncat(command, argv[i], sizeof command - strlen(command) - 1);
  }
  PS_CALL(ps_run_info_string(info, "command", command));
  PS_CALL(ps_run_info_string(info, "input", o->data.read.input));
  PS_CALL(ps_run_info_string(info, "guides", o->data.read.guides ? o->data.read.guides : ""));
  PS_CALL(ps_run_info_string(info, "guide_column", o->data.read.guide_column ? o->data.read.guide_column : ""));
  PS_CALL(ps_run_info_string(info, "targets", o->data.targets.targets ? o->data.targets.targets : ""));
  PS_CALL(ps_run_info_number(info, "folds", o->cv.n_folds));
  PS_CALL(ps_run_info_number(info, "seed", (double)o->cv.seed));
  if (o->cv.scheme == PS_CV_SCHEME_PERTURBATIONS) {
    PS_CALL(ps_run_info_string(info, "predictions", o->predictions ? o->predictions : ""));
    PS_CALL(ps_run_info_number(info, "min_cells", (double)o->cv.min_cells));
    PS_CALL(ps_run_info_number(info, "pcs", o->cv.n_pcs));
    PS_CALL(ps_run_info_number(info, "embedding_lambda", o->cv.embedding_lambda));
    PS_CALL(ps_run_info_number(info, "top_genes", o->cv.top_n));
    PS_CALL(ps_run_info_number(info, "top_de", o->cv.top_de));
    PS_CALL(ps_run_info_number(info, "disjoint_controls", o->cv.disjoint_controls));
  } else {
    PS_CALL(ps_run_info_number(info, "lambda", o->cv.score.lambda));
    PS_CALL(ps_run_info_number(info, "upper", o->cv.score.upper));
  }
  PS_CALL(ps_cli_method_record(&o->data, info)); /* SPEC section 9, when not the paper's */
  if (o->group_by) PS_CALL(ps_run_info_string(info, "group_by", o->group_by));
  if (o->group) PS_CALL(ps_run_info_string(info, "group", o->group));
  if (o->data.read.control_by) PS_CALL(ps_run_info_string(info, "control_by", o->data.read.control_by));
  return PS_OK;
}

/* Which way is better, per metric (docs/cv.md "Reading the summary"). */
static int lower_is_better(int m) { return m == PS_CV_MSE || m == PS_CV_MAE || m == PS_CV_MSE_TOP; }

/* The end-of-cv table on stderr: per metric, the direction, the baseline to beat (the
 * best of mean / median / zero), the models, the ceiling (what a perfect model reaches)
 * and the raw split half; a value averaged over fewer perturbations than the compared
 * ones carries its count. */
static void print_guide(const ps_cv_perturbation_result *r, const double *mean, const int64_t *count) {
  int F = r->n_folds;
  const int64_t n = r->n_compared;
  fprintf(stderr, "  means over the %lld held-out perturbations every model predicts", (long long)n);
  if (r->has_predictions && r->n_predictions_missing)
    fprintf(stderr, " (%lld without a --predictions row left out)", (long long)r->n_predictions_missing);
  fprintf(stderr, ":\n  %-14s %-7s %-20s %11s", "metric", "better", "baseline to beat", "embedding");
  if (r->has_predictions) fprintf(stderr, " %11s", "predictions");
  fprintf(stderr, " %11s %11s\n", "ceiling", "split_half");
  for (int m = 0; m < PS_CV_N_METRICS; m++) {
    int lower = lower_is_better(m), best = -1;
    for (int model = PS_CV_MODEL_MEAN; model <= PS_CV_MODEL_ZERO; model++) {
      double v = mean[((int64_t)F * PS_CV_N_MODELS + model) * PS_CV_N_METRICS + m];
      if (isnan(v)) continue;
      double b = best < 0 ? NAN : mean[((int64_t)F * PS_CV_N_MODELS + best) * PS_CV_N_METRICS + m];
      if (best < 0 || (lower ? v < b : v > b)) best = model;
    }
    char base[64] = "n/a";
    if (best >= 0)
      snprintf(base, sizeof base, "%.4g (%s)", mean[((int64_t)F * PS_CV_N_MODELS + best) * PS_CV_N_METRICS + m],
               ps_cv_model_names[best]);
    fprintf(stderr, "  %-14s %-7s %-20s", ps_cv_metric_names[m], lower ? "lower" : "higher", base);
    int shown[] = {PS_CV_MODEL_EMBEDDING, PS_CV_MODEL_PREDICTIONS, PS_CV_MODEL_CEILING, PS_CV_MODEL_SPLIT_HALF};
    for (int i = 0; i < 4; i++) {
      int model = shown[i];
      if (model == PS_CV_MODEL_PREDICTIONS && !r->has_predictions) continue;
      int64_t at = ((int64_t)F * PS_CV_N_MODELS + model) * PS_CV_N_METRICS + m;
      char cell[64];
      if (count[at] == n) snprintf(cell, sizeof cell, "%.4g", mean[at]);
      else snprintf(cell, sizeof cell, "%.4g[n=%lld]", mean[at], (long long)count[at]);
      fprintf(stderr, " %11s", cell);
    }
    fprintf(stderr, "\n");
  }
  fprintf(stderr, "  a model is useful where it beats the baseline; the ceiling is what a perfect model reaches on "
                  "this screen's noise (docs/cv.md)\n");
}

static void report_perturbations(const cv_cli *o, const ps_cv_perturbation_result *r, double seconds, int size) {
  int F = r->n_folds;
  int64_t cells = ((int64_t)F + 1) * PS_CV_N_MODELS * PS_CV_N_METRICS;
  double *mean = malloc((size_t)cells * sizeof *mean);
  int64_t *count = malloc((size_t)cells * sizeof *count);
  if (!mean || !count) {
    free(mean);
    free(count);
    return;
  }
  ps_cv_summarize(r, mean, count);
  if (!o->quiet) {
    fprintf(stderr, "pertscore cv: perturbations scheme, %d folds, %.1fs\n", F, seconds);
    print_guide(r, mean, count);
    fprintf(stderr, "  -> %s, %s\n", o->output, o->summary);
  }
  if (o->json) {
    printf("{\"output\": \"%s\", \"summary\": \"%s\", \"scheme\": \"perturbations\", \"ranks\": %d, \"folds\": %d, "
           "\"genes\": %lld, \"seconds\": %.3f, \"n_compared\": %lld",
           o->output, o->summary, size, F, (long long)r->n_genes, seconds, (long long)r->n_compared);
    if (r->has_predictions)
      printf(", \"prediction_rows_ignored\": %lld, \"predictions_missing\": %lld", (long long)r->n_predictions_ignored,
             (long long)r->n_predictions_missing);
    printf(", \"models\": {");
    int first = 1;
    for (int model = 0; model < PS_CV_N_MODELS; model++) {
      if (model == PS_CV_MODEL_PREDICTIONS && !r->has_predictions) continue;
      const double *m = mean + ((int64_t)F * PS_CV_N_MODELS + model) * PS_CV_N_METRICS;
      const int64_t *c = count + ((int64_t)F * PS_CV_N_MODELS + model) * PS_CV_N_METRICS;
      printf("%s\"%s\": {", first ? "" : ", ", ps_cv_model_names[model]);
      for (int k = 0; k < PS_CV_N_METRICS; k++) {
        if (isnan(m[k])) printf("%s\"%s\": null", k ? ", " : "", ps_cv_metric_names[k]);
        else printf("%s\"%s\": %.10g", k ? ", " : "", ps_cv_metric_names[k], m[k]);
      }
      printf(", \"n\": {");
      for (int k = 0; k < PS_CV_N_METRICS; k++) printf("%s\"%s\": %lld", k ? ", " : "", ps_cv_metric_names[k], (long long)c[k]);
      printf("}}");
      first = 0;
    }
    printf("}, \"better\": {");
    for (int k = 0; k < PS_CV_N_METRICS; k++)
      printf("%s\"%s\": \"%s\"", k ? ", " : "", ps_cv_metric_names[k], lower_is_better(k) ? "lower" : "higher");
    printf("}}\n");
    fflush(stdout);
  }
  free(mean);
  free(count);
}

/* ---------------------------------------------------------------- cells scheme */

static void report_cells(const cv_cli *o, const ps_cv_cells_result *r, double seconds, int size) {
  int F = r->n_folds, L = r->n_lambdas;
  int32_t K = r->n_perturbations, GK = K + 2;
  const double *pooled_mse = r->mse + (int64_t)F * L * GK, *pooled_r2 = r->r2 + (int64_t)F * L * GK;
  double ps_all = r->ps_pearson[(int64_t)F * (K + 1) + K];
  if (!o->quiet) {
    fprintf(stderr, "pertscore cv: cells scheme, %d folds, %.1fs; held-out error over the ridge lambdas:\n", F, seconds);
    for (int l = 0; l < L; l++)
      fprintf(stderr, "  ridge lambda %-10.4g mse %.6g  r2 %.4f%s\n", r->lambdas[l], pooled_mse[(int64_t)l * GK + K + 1],
              pooled_r2[(int64_t)l * GK + K + 1], l == r->chosen ? "  <- chosen" : "");
    fprintf(stderr, "  held-out vs full-data PS (raw, chosen lambda): Pearson %.4f over %lld entries\n", ps_all,
            (long long)r->ps_n[(int64_t)F * (K + 1) + K]);
    fprintf(stderr, "  -> %s, %s\n", o->output, o->summary);
  }
  if (o->json) {
    printf("{\"output\": \"%s\", \"summary\": \"%s\", \"scheme\": \"cells\", \"ranks\": %d, \"folds\": %d, "
           "\"chosen_ridge_lambda\": %.10g, \"lambda_curve\": [",
           o->output, o->summary, size, F, r->lambdas[r->chosen]);
    for (int l = 0; l < L; l++)
      printf("%s{\"ridge_lambda\": %.10g, \"mse\": %.10g, \"r2\": %.10g}", l ? ", " : "", r->lambdas[l],
             pooled_mse[(int64_t)l * GK + K + 1], pooled_r2[(int64_t)l * GK + K + 1]);
    printf("], \"ps_pearson\": %.10g, \"seconds\": %.3f}\n", ps_all, seconds);
    fflush(stdout);
  }
}

/* The stage writes OUTPUT.partial and SUMMARY.partial; both are renamed when complete. */
static int run_scheme(MPI_Comm comm, cv_cli *o, ps_dataset *d, ps_progress *progress, ps_run_info *info) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  ps_progress_stage(progress, "cv");
  char partial[4200], summary_partial[4200];
  snprintf(partial, sizeof partial, "%s.partial", o->output);
  snprintf(summary_partial, sizeof summary_partial, "%s.partial", o->summary);
  ps_cleanup_register(partial);
  ps_cleanup_register(summary_partial);
  ps_cv_stage_input in = {.data = &o->data.read, .predictions = o->predictions, .predictions_column = o->predictions_column};
  ps_cv_stage_result r;
  PS_CALL(ps_error_sync(comm, ps_cv_stage_run(comm, d, &in, &o->cv, progress, &r)));
  ps_progress_update(progress, 0.95);
  PS_CALL(ps_error_sync(comm, ps_results_write_cv(comm, d, &r, &o->cv, partial, PS_CV_NEW_FILE, summary_partial,
                                                  info)));
  PS_CALL(ps_error_sync(comm, ps_output_commit(comm, summary_partial, o->summary)));
  PS_CALL(ps_error_sync(comm, ps_output_commit(comm, partial, o->output)));
  ps_cleanup_unregister();
  ps_progress_done(progress);
  double seconds = ps_wtime() - progress->t_start;
  if (rank == 0 && o->predictions && !o->quiet)
    fprintf(stderr, "pertscore cv: %s: %lld perturbation rows, %lld genes shared with the input; %lld rows of "
            "unknown perturbations ignored\n", o->predictions, (long long)r.prediction_rows, (long long)r.n_genes,
            (long long)r.prediction_unknown);
  if (rank == 0 && r.scheme == PS_CV_SCHEME_PERTURBATIONS) report_perturbations(o, &r.perturbations, seconds, size);
  if (rank == 0 && r.scheme == PS_CV_SCHEME_CELLS) report_cells(o, &r.cells, seconds, size);
  ps_cv_stage_result_free(&r);
  return PS_OK;
}

static int run_cv_one(MPI_Comm comm, cv_cli *o, int argc, char **argv) {
  PS_CALL(ps_error_sync(comm, check_output(o)));
  ps_progress progress;
  ps_progress_init(&progress, comm, o->quiet);
  ps_progress_stage(&progress, "read");
  ps_dataset d;
  ps_cv_dataset_options(o->cv.scheme, 1, &o->data.targets, &o->data.regression); /* one read; no target selection it would not use */
  /* the memory guard as in run (src/cost): from the input's shape before the matrix
   * is loaded, from the design before target selection, then the cv stage after the read */
  ps_cost_guard guard;
  ps_cost_guard_install(&guard, o->max_memory, &o->data.read, &o->data.targets, &o->data.regression);
  guard.cv_only = 1;
  PS_CALL(ps_cli_data_stages(comm, &o->data, NULL, 0, &progress, &d));
  ps_progress_done(&progress);
  ps_cost_problem cost;
  PS_CALL(ps_cost_problem_of_run(comm, &d, &d.design, 0, 0, 0, &cost));
  cost.cv_scheme = o->cv.scheme;
  cost.cv_only = 1;
  PS_CALL(ps_cost_check_memory(comm, &cost, o->max_memory));
  ps_run_info info = {0};
  PS_CALL(record_parameters(o, argc, argv, &info));
  int size;
  MPI_Comm_size(comm, &size);
  PS_CALL(ps_run_info_number(&info, "ranks", size));
  ps_fault_point("cv");
  /* SPEC section 9: the held-out cells scored in the same method (gene weights from the
   * residuals of the cells each ps_score_cells call scores, under the beta it is given) */
  ps_score_genes genes = {0};
  o->cv.score.gene_weights = o->data.gene_weights;
  if (o->cv.scheme == PS_CV_SCHEME_CELLS && !ps_cli_method_is_paper(&o->data)) {
    PS_CALL(ps_error_sync(comm, ps_score_genes_build(&d, &genes)));
    ps_score_genes_apply(&genes, o->data.qp_genes_own, o->data.targets.de.fdr > 0, &o->cv.score);
  }
  int err = run_scheme(comm, o, &d, &progress, &info);
  ps_score_genes_free(&genes);
  PS_CALL(err);
  ps_run_info_free(&info);
  ps_dataset_free(&d);
  return PS_OK;
}

/* --group-by: the scheme on each group's cells alone, OUTPUT.GROUP.h5ad and
 * SUMMARY.GROUP.tsv per group, then SUMMARY with a group column (docs/cv.md "Groups"). */
static int run_cv_groups(MPI_Comm comm, cv_cli *o, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  ps_strlist groups = {0}, outputs = {0}, summaries = {0};
  PS_CALL(ps_error_sync(comm, check_output(o)));
  int err = ps_groups_list(comm, o->data.read.input, o->group_by, "--group-by", &groups);
  if (!err) err = ps_error_sync(comm, ps_cli_group_paths(o->output, &groups, &outputs));
  if (!err) err = ps_error_sync(comm, ps_cli_group_paths(o->summary, &groups, &summaries));
  for (int64_t g = 0; g < groups.n && !err; g++) {
    cv_cli one = *o;
    one.data.read.subset_column = o->group_by;
    one.data.read.subset_value = groups.items[g];
    one.group = groups.items[g];
    one.output = outputs.items[g];
    snprintf(one.summary, sizeof one.summary, "%s", summaries.items[g]);
    if (rank == 0 && !o->quiet)
      fprintf(stderr, "pertscore cv: group '%s' of obs column '%s' (%lld of %lld)\n", groups.items[g], o->group_by,
              (long long)g + 1, (long long)groups.n);
    err = run_cv_one(comm, &one, argc, argv);
  }
  if (!err) err = ps_cli_group_tsv(comm, o->summary, &groups, &summaries);
  if (!err && rank == 0 && !o->quiet)
    fprintf(stderr, "pertscore cv: %lld groups -> one results file each (%s with .GROUP before .h5ad), %s (with a "
            "group column)\n", (long long)groups.n, o->output, o->summary);
  ps_strlist_free(&groups);
  ps_strlist_free(&outputs);
  ps_strlist_free(&summaries);
  return err;
}

static int run_cv(MPI_Comm comm, cv_cli *o, int argc, char **argv) {
  return o->group_by ? run_cv_groups(comm, o, argc, argv) : run_cv_one(comm, o, argc, argv);
}

int ps_cmd_cv(MPI_Comm comm, int argc, char **argv) {
  int rank, help = 0;
  MPI_Comm_rank(comm, &rank);
  cv_cli o;
  memset(&o, 0, sizeof o);
  int err = parse_cv(argc, argv, &o, &help);
  if (!err && help) {
    if (rank == 0) fputs(cv_usage, stdout);
    return 0;
  }
  if (!err) err = run_cv(comm, &o, argc, argv);
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  ps_strlist_free(&o.data.read.controls);
  ps_strlist_free(&o.data.read.perturbations);
  return 0;
}
