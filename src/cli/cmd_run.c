/* pertscore run: read -> ridge -> score -> write (DESIGN.md data flow). */
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pertscore/calibrate.h"
#include "pertscore/cost.h"
#include "pertscore/cv.h"
#include "pertscore/data.h"
#include "pertscore/dosage.h"
#include "pertscore/results.h"
#include "pertscore/ridge.h"
#include "pertscore/score.h"

static const char *run_usage =
    "usage: mpirun -n P pertscore run --input DATA.h5ad (--guides TABLE | --guide-column COL)\n"
    "                              --control LABEL[,LABEL...] --output RESULTS.h5ad [options]\n"
    "\n"
    PS_CLI_DATASET_USAGE
    "groups:\n"
    "  --control-by COL      one basal expression (intercept) per group of obs column COL (batch, line)\n"
    "  --group-by COL        targets, beta and PS within each group of obs column COL (cell type):\n"
    "                        perturbation P becomes P@group per group; every group needs controls\n"
    "method:\n"
    "  --ridge-lambda X      ridge penalty of beta (0.01)\n"
    "  --lambda X            PS penalty (0.01, the paper; the reference R code uses 0)\n"
    "  --upper U             upper bound of psi (3, the reference scale_factor)\n"
    "  --no-rescale          keep raw PS (psi / U) instead of dividing by each perturbation's maximum\n"
    "  --score-all-cells     every perturbed cell gets a PS for every perturbation, not only the\n"
    "                        ones it carries; control cells keep PS = 0, as in the reference's\n"
    "                        output (reference-compatible; only for a few perturbations)\n"
    "  --permutations R      permutation p-values of beta from R shuffles (100; 0 disables)\n"
    "  --seed S              seed of the permutations (1)\n"
    "  --permutations-adaptive [H]  sequential p-values (Besag-Clifford): a pair stops at its H-th\n"
    "                        exceedance (10), p = H / permutations done; else as fixed (off; 0: off)\n"
    "dosage (SPEC section 5; perturbations whose own gene is measured):\n"
    "  --no-dosage           skip the dosage stage (Hill fit of PS against own-gene expression)\n"
    "  --min-dosage-cells N  fit only perturbations with at least N cells (100)\n"
    "calibrated calls (SPEC section 10, docs/method.md):\n"
    "  --no-calibration      skip var effect_pvalue / effect_fdr and layers/ps_pvalue\n"
    "  --calibration-controls F  share of control cells held out as the null (0.5; split from --seed)\n"
    "  --calibration-record  also write the stage's held-out and null scores (small screens, checks)\n"
    "cross-validation (SPEC section 7, docs/cv.md; as pertscore cv, on the data already read):\n"
    "  --cv SCHEME           cells or perturbations: tables in uns/cv of OUTPUT, summary in\n"
    "                        OUTPUT without .h5ad + .cv.tsv; folds from --seed\n"
    "  --folds F             number of folds (5)\n"
    "  --cv-ridge-lambdas LIST  cells: ridge lambda grid (10^-2..10^4 in half decades)\n"
    "  --cv-min-cells N      perturbations: leave out perturbations with fewer cells (10)\n"
    "job files:\n"
    "  --config JOB.yaml     read options from a YAML job file (jobs/example.yaml); options on the\n"
    "                        command line are applied after it\n"
    "output:\n"
    "  --output FILE         results .h5ad (written as FILE.partial, renamed when complete)\n"
    "  --cells-table FILE    also write the long per-cell TSV (cell, perturbation, guide, ps,\n"
    "                        ps_pvalue): one row per carried perturbation, one per control cell\n"
    "  --force               rerun even when OUTPUT records the same input digests and parameters\n"
    "  --resume              continue a killed run: take the stages OUTPUT.partial holds (ridge, score)\n"
    "                        when it records the same input digests and parameters; else start over\n"
    PS_CLI_MAX_MEMORY_USAGE
    "  --quiet               no progress on stderr\n"
    "  --json                print a machine-readable summary on stdout\n";

typedef struct {
  ps_cli_data_options data;
  ps_score_options score;
  ps_ridge_perm_options perm;
  double ridge_lambda;
  int score_all_cells;
  int dosage;                 /* the dosage stage: on unless --no-dosage */
  ps_dosage_options dosage_opt;
  ps_calibration_options calibration; /* SPEC section 10: on unless --no-calibration */
  ps_cv_options cv;           /* --cv: scheme 0 = no cross-validation stage */
  char cv_summary[4096];      /* its TSV: OUTPUT without .h5ad + .cv.tsv, written as .partial */
  char cv_partial[4200];
  const char *output;
  const char *cells_table;    /* --cells-table: the long per-cell TSV (src/results/cells.c) */
  int quiet, json, force;
  int resume;                 /* --resume: continue from the checkpoints in OUTPUT.partial */
  double max_memory;          /* --max-memory: bytes per rank, 0 = no explicit limit */
} run_options;

/* --score-all-cells solves cells x perturbations variables: a guard for the mode's intent. */
#define PS_SCORE_ALL_MAX INT64_C(50000000)

/* The options of run (also the keys of a job file, src/cli/job.c). */
enum { O_RIDGE_LAMBDA = 1, O_LAMBDA, O_UPPER, O_NO_RESCALE, O_OUTPUT, O_QUIET, O_JSON, O_HELP, O_SCORE_ALL,
       O_PERMUTATIONS, O_SEED, O_FORCE, O_NO_DOSAGE, O_MIN_DOSAGE_CELLS, O_CV, O_FOLDS, O_CV_RIDGE_LAMBDAS,
       O_CV_MIN_CELLS, O_RESUME, O_MAX_MEMORY, O_CONTROL_BY, O_GROUP_BY, O_CELLS_TABLE,
       O_NO_CALIBRATION, O_CALIBRATION_CONTROLS, O_CALIBRATION_RECORD, O_PERM_ADAPTIVE };
/* run's own options; the dataset options (dataset_options.c) come after them */
static const struct option run_own_longs[] = {
    {"ridge-lambda", required_argument, 0, O_RIDGE_LAMBDA}, {"lambda", required_argument, 0, O_LAMBDA},
    {"upper", required_argument, 0, O_UPPER}, {"no-rescale", no_argument, 0, O_NO_RESCALE},
    {"output", required_argument, 0, O_OUTPUT}, {"quiet", no_argument, 0, O_QUIET},
    {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, O_HELP},
    {"score-all-cells", no_argument, 0, O_SCORE_ALL},
    {"permutations", required_argument, 0, O_PERMUTATIONS}, {"seed", required_argument, 0, O_SEED},
    {"force", no_argument, 0, O_FORCE}, {"resume", no_argument, 0, O_RESUME},
    {"max-memory", required_argument, 0, O_MAX_MEMORY},
    {"no-dosage", no_argument, 0, O_NO_DOSAGE}, {"min-dosage-cells", required_argument, 0, O_MIN_DOSAGE_CELLS},
    {"cv", required_argument, 0, O_CV}, {"folds", required_argument, 0, O_FOLDS},
    {"cv-ridge-lambdas", required_argument, 0, O_CV_RIDGE_LAMBDAS},
    {"cv-min-cells", required_argument, 0, O_CV_MIN_CELLS},
    {"control-by", required_argument, 0, O_CONTROL_BY}, {"group-by", required_argument, 0, O_GROUP_BY},
    {"cells-table", required_argument, 0, O_CELLS_TABLE}, {"out", required_argument, 0, O_OUTPUT},
    {"no-calibration", no_argument, 0, O_NO_CALIBRATION},
    {"calibration-controls", required_argument, 0, O_CALIBRATION_CONTROLS},
    {"calibration-record", no_argument, 0, O_CALIBRATION_RECORD},
    {"permutations-adaptive", optional_argument, 0, O_PERM_ADAPTIVE},
    {0, 0, 0, 0}};

int ps_run_option_arity(const char *name) {
  for (const struct option *list[] = {run_own_longs, ps_cli_dataset_longs}, **l = list; l < list + 2; l++)
    for (const struct option *o = *l; o->name; o++)
      if (strcmp(o->name, name) == 0) return o->has_arg == no_argument ? 0 : 1;
  return -1;
}

const char *ps_run_option_suggest(const char *name) {
  const struct option *lists[] = {run_own_longs, ps_cli_dataset_longs};
  return ps_cli_suggest(lists, 2, name);
}

static int parse_run(int argc, char **argv, run_options *o, int *help) {
  double number;
  ps_cli_data_options_default(&o->data);
  ps_score_options_default(&o->score);
  o->ridge_lambda = 0.01;
  o->dosage = 1;
  ps_dosage_options_default(&o->dosage_opt);
  ps_ridge_perm_options_default(&o->perm);
  ps_cv_options_default(&o->cv);
  o->cv.scheme = 0;
  ps_calibration_options_default(&o->calibration);
  optind = 1;
  opterr = 0;
  struct option longs[64];
  PS_CALL(ps_cli_join_longs(run_own_longs, longs, sizeof longs / sizeof *longs));
  int c, long_index = -1;
  while ((c = getopt_long(argc, argv, "", longs, &long_index)) != -1) {
    if (ps_cli_is_dataset(c)) {
      PS_CALL(ps_cli_dataset_option(longs[long_index].name, optarg, &o->data));
      continue;
    }
    switch (c) {
      case O_RIDGE_LAMBDA: PS_CALL(ps_cli_number("--ridge-lambda", optarg, &o->ridge_lambda)); break;
      case O_LAMBDA: PS_CALL(ps_cli_number("--lambda", optarg, &o->score.lambda)); break;
      case O_UPPER: PS_CALL(ps_cli_number("--upper", optarg, &o->score.upper)); break;
      case O_NO_RESCALE: o->score.rescale = 0; break;
      case O_OUTPUT: o->output = optarg; break;
      case O_CELLS_TABLE: o->cells_table = optarg; break;
      case O_CONTROL_BY: o->data.read.control_by = optarg; break;
      case O_GROUP_BY: o->data.read.group_by = optarg; break;
      case O_QUIET: o->quiet = 1; break;
      case O_JSON: o->json = 1; break;
      case O_HELP: *help = 1; return PS_OK;
      case O_SCORE_ALL: o->score_all_cells = 1; break;
      case O_FORCE: o->force = 1; break;
      case O_RESUME: o->resume = 1; break;
      case O_MAX_MEMORY: PS_CALL(ps_cost_parse_size(optarg, &o->max_memory)); break;
      case O_NO_DOSAGE: o->dosage = 0; break;
      case O_NO_CALIBRATION: o->calibration.enabled = 0; break;
      case O_CALIBRATION_RECORD: o->calibration.record = 1; break;
      case O_CALIBRATION_CONTROLS:
        PS_CALL(ps_cli_number("--calibration-controls", optarg, &o->calibration.control_fraction));
        if (!(o->calibration.control_fraction > 0 && o->calibration.control_fraction < 1))
          PS_FAIL(PS_ERR_INPUT, "--calibration-controls must be in (0, 1), got %s", optarg);
        break;
      case O_MIN_DOSAGE_CELLS:
        PS_CALL(ps_cli_count("--min-dosage-cells", optarg, &number));
        if (number < 1) PS_FAIL(PS_ERR_INPUT, "--min-dosage-cells must be >= 1 (got %s)", optarg);
        o->dosage_opt.min_cells = (int64_t)number;
        break;
      case O_CV:
        if (strcmp(optarg, "perturbations") == 0) o->cv.scheme = PS_CV_SCHEME_PERTURBATIONS;
        else if (strcmp(optarg, "cells") == 0) o->cv.scheme = PS_CV_SCHEME_CELLS;
        else PS_FAIL(PS_ERR_INPUT, "--cv expects cells or perturbations, got '%s'", optarg);
        break;
      case O_FOLDS:
        PS_CALL(ps_cli_count("--folds", optarg, &number));
        if (number < 2 || number > 1000) PS_FAIL(PS_ERR_INPUT, "--folds must be in [2, 1000], got '%s'", optarg);
        o->cv.n_folds = (int)number;
        break;
      case O_CV_RIDGE_LAMBDAS: PS_CALL(ps_cv_parse_ridge_lambdas("--cv-ridge-lambdas", optarg, &o->cv)); break;
      case O_CV_MIN_CELLS:
        PS_CALL(ps_cli_count("--cv-min-cells", optarg, &number));
        o->cv.min_cells = number < 2 ? 2 : (int64_t)number; /* the split halves need two cells */
        break;
      case O_PERMUTATIONS: {
        double r;
        PS_CALL(ps_cli_count("--permutations", optarg, &r));
        if (r > 1e6) PS_FAIL(PS_ERR_INPUT, "--permutations must be at most 1000000 (got %s)", optarg);
        o->perm.n_permutations = (int)r;
        break;
      }
      case O_PERM_ADAPTIVE: { /* H as --permutations-adaptive=H, the next word when a count, or 10 */
        const char *h = optarg;
        if (!h && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9') h = argv[optind++];
        double v = 10;
        if (h) PS_CALL(ps_cli_count("--permutations-adaptive", h, &v));
        if (v > 1e6) PS_FAIL(PS_ERR_INPUT, "--permutations-adaptive must be at most 1000000 (got %s)", h);
        o->perm.adaptive_h = (int)v;
        break;
      }
      case O_SEED: {
        double seed;
        PS_CALL(ps_cli_count("--seed", optarg, &seed));
        o->perm.seed = (uint64_t)seed;
        break;
      }
      default: return ps_cli_unknown_option("run", argv[optind - 1]);
    }
  }
  if (optind < argc) PS_FAIL(PS_ERR_INPUT, "run: unexpected argument '%s'", argv[optind]);
  PS_CALL(ps_cli_dataset_check("run", &o->data));
  if (!o->output) PS_FAIL(PS_ERR_INPUT, "run: --output FILE is required");
  if (o->ridge_lambda <= 0) PS_FAIL(PS_ERR_INPUT, "--ridge-lambda must be > 0 (got %g)", o->ridge_lambda);
  if (o->score.lambda < 0) PS_FAIL(PS_ERR_INPUT, "--lambda must be >= 0 (got %g)", o->score.lambda);
  if (o->score.upper <= 0) PS_FAIL(PS_ERR_INPUT, "--upper must be > 0 (got %g)", o->score.upper);
  if (o->data.read.group_by && o->cv.scheme) /* --control-by: the stage's fits carry the group intercepts */
    PS_FAIL(PS_ERR_INPUT, "run: --cv does not support --group-by; `pertscore cv --group-by %s` cross-validates each "
            "group on its own cells (docs/cv.md \"Groups\")", o->data.read.group_by);
  o->calibration.seed = o->perm.seed;
  ps_cli_method_score(&o->data, &o->score); /* SPEC section 9: --gene-weights */
  o->cv.seed = o->perm.seed; /* --cv: the same options as pertscore cv; folds from --seed */
  o->cv.score = o->score;
  size_t stem = strlen(o->output);
  if (stem > 5 && strcmp(o->output + stem - 5, ".h5ad") == 0) stem -= 5;
  snprintf(o->cv_summary, sizeof o->cv_summary, "%.*s.cv.tsv", (int)stem, o->output);
  snprintf(o->cv_partial, sizeof o->cv_partial, "%s.partial", o->cv_summary);
  return PS_OK;
}

static int same_file(const char *a, const char *b) {
  if (!a || !b) return 0;
  char ra[4096], rb[4096];
  if (realpath(a, ra) && realpath(b, rb)) return strcmp(ra, rb) == 0;
  return strcmp(a, b) == 0;
}

static int check_output(const run_options *o) {
  const char *inputs[] = {o->data.read.input, o->data.read.guides, o->data.targets.targets};
  for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
    if (same_file(o->output, inputs[i]))
      PS_FAIL(PS_ERR_INPUT, "%s: the output path is also an input; choose another --output", o->output);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", o->output);
  const char *folder = dirname(dir);
  if (access(folder, W_OK) != 0)
    PS_FAIL(PS_ERR_INPUT, "%s: the output folder '%s' does not exist or is not writable", o->output, folder);
  return PS_OK;
}

static int record_parameters(const run_options *o, int argc, char **argv, ps_run_info *info) {
  char command[8192] = "pertscore";
  for (int i = 0; i < argc; i++) {
    strncat(command, " ", sizeof command - strlen(command) - 1);
    strncat(command, argv[i], sizeof command - strlen(command) - 1);
  }
  char controls[4096] = "";
  for (int64_t i = 0; i < o->data.read.controls.n; i++) {
    strncat(controls, i ? "," : "", sizeof controls - strlen(controls) - 1);
    strncat(controls, o->data.read.controls.items[i], sizeof controls - strlen(controls) - 1);
  }
  PS_CALL(ps_run_info_string(info, "command", command));
  PS_CALL(ps_run_info_string(info, "input", o->data.read.input));
  PS_CALL(ps_run_info_string(info, "layer", o->data.read.layer ? o->data.read.layer : "X"));
  PS_CALL(ps_run_info_string(info, "guides", o->data.read.guides ? o->data.read.guides : ""));
  PS_CALL(ps_run_info_string(info, "guide_column", o->data.read.guide_column ? o->data.read.guide_column : ""));
  PS_CALL(ps_run_info_string(info, "targets", o->data.targets.targets ? o->data.targets.targets : ""));
  PS_CALL(ps_run_info_string(info, "control", controls));
  PS_CALL(ps_run_info_number(info, "ridge_lambda", o->ridge_lambda));
  PS_CALL(ps_run_info_number(info, "lambda", o->score.lambda));
  PS_CALL(ps_run_info_number(info, "upper", o->score.upper));
  PS_CALL(ps_run_info_number(info, "rescale", o->score.rescale));
  PS_CALL(ps_run_info_number(info, "min_gene_frac", o->data.regression.min_gene_frac));
  PS_CALL(ps_run_info_number(info, "score_all_cells", o->score_all_cells));
  PS_CALL(ps_run_info_number(info, "permutations", o->perm.n_permutations));
  PS_CALL(ps_run_info_number(info, "seed", (double)o->perm.seed));
  if (o->perm.adaptive_h > 0 && o->perm.n_permutations > 0) /* absent when off: older results stay up to date */
    PS_CALL(ps_run_info_number(info, "permutations_adaptive", o->perm.adaptive_h));
  PS_CALL(ps_run_info_string(info, "unit", o->data.read.unit_guide ? "guide" : "gene"));
  if (o->data.read.control_by) PS_CALL(ps_run_info_string(info, "control_by", o->data.read.control_by));
  if (o->data.read.group_by) PS_CALL(ps_run_info_string(info, "group_by", o->data.read.group_by));
  /* Permutations shuffle within the groups (ps_ridge_permutation_within); results written
   * when they shuffled across all cells lack this key: not up to date, not resumable. */
  if ((o->data.read.control_by || o->data.read.group_by) && o->perm.n_permutations > 0)
    PS_CALL(ps_run_info_string(info, "permutation_strata", "basal_groups"));
  PS_CALL(ps_run_info_number(info, "dosage", o->dosage));
  PS_CALL(ps_run_info_number(info, "calibration", o->calibration.enabled));
  if (o->calibration.enabled) {
    PS_CALL(ps_run_info_number(info, "calibration_controls", o->calibration.control_fraction));
    PS_CALL(ps_run_info_number(info, "calibration_record", o->calibration.record));
  }
  if (o->dosage) PS_CALL(ps_run_info_number(info, "min_dosage_cells", (double)o->dosage_opt.min_cells));
  if (o->cv.scheme) {
    PS_CALL(ps_run_info_string(info, "cv", o->cv.scheme == PS_CV_SCHEME_CELLS ? "cells" : "perturbations"));
    PS_CALL(ps_run_info_number(info, "folds", o->cv.n_folds));
    if (o->cv.scheme == PS_CV_SCHEME_PERTURBATIONS)
      PS_CALL(ps_run_info_number(info, "cv_min_cells", (double)o->cv.min_cells));
    for (int l = 0; l < o->cv.n_ridge_lambdas && o->cv.scheme == PS_CV_SCHEME_CELLS; l++) {
      char key[64];
      snprintf(key, sizeof key, "cv_ridge_lambda_%02d", l);
      PS_CALL(ps_run_info_number(info, key, o->cv.ridge_lambdas[l]));
    }
  }
  char subset[4096] = "";
  for (int64_t i = 0; i < o->data.read.perturbations.n; i++) {
    strncat(subset, i ? "," : "", sizeof subset - strlen(subset) - 1);
    strncat(subset, o->data.read.perturbations.items[i], sizeof subset - strlen(subset) - 1);
  }
  PS_CALL(ps_run_info_string(info, "perturbations", subset));
  if (!o->data.targets.targets) { /* the selection's knobs matter only when it runs */
    PS_CALL(ps_run_info_number(info, "min_pct", o->data.targets.de.min_pct));
    PS_CALL(ps_run_info_number(info, "logfc", o->data.targets.de.logfc));
    PS_CALL(ps_run_info_number(info, "min_targets", (double)o->data.targets.de.min_targets));
    PS_CALL(ps_run_info_number(info, "max_targets", (double)o->data.targets.de.max_targets));
    PS_CALL(ps_run_info_number(info, "exclude_perturbed_gene", o->data.targets.exclude_perturbed_gene));
    PS_CALL(ps_run_info_number(info, "de_strict_groups", o->data.targets.de_strict_groups));
    PS_CALL(ps_run_info_string(info, "de_background", o->data.targets.de_background_others ? "others" : "controls"));
  }
  PS_CALL(ps_cli_method_record(&o->data, info)); /* SPEC section 9, when not the paper's */
  return PS_OK;
}

/* Perturbations without any target among the regression genes that were left unscored
 * (SPEC section 9: --target-fdr or --qp-genes own). */
static int n_not_scored(const run_options *o, const ps_dataset *d) {
  if (!(o->data.targets.de.fdr > 0) && !o->data.qp_genes_own) return 0;
  int n = 0;
  for (int32_t k = 0; k < d->design.n_perturbations; k++) n += d->n_targets[k] == 0;
  return n;
}

static void print_summary(const run_options *o, const ps_dataset *d, const ps_scores *s, const double *seconds,
                          int n_ranks, const ps_dosage_table *dosage, double dosage_seconds, double cv_seconds,
                          const ps_calibration *cal) {
  printf("{\"output\": \"%s\", \"ranks\": %d, \"cells_input\": %lld, \"cells_analysed\": %lld, "
         "\"control_cells\": %lld, \"perturbations\": %d, \"regression_genes\": %d, \"input_was_counts\": %s, "
         "\"guide_rows\": {\"read\": %lld, \"unmatched\": %lld}, "
         "\"targets\": {\"source\": \"%s\", \"pairs\": %lld, \"moi\": \"%s\", \"seconds\": %.3f}, "
         "\"qp_solved\": %lld, \"max_kkt_residual\": %.3g, \"perturbations_not_rescaled\": %d, "
         "\"preset\": \"%s\", \"perturbations_not_scored\": %d, "
         "\"seconds\": {\"read\": %.3f, \"ridge\": %.3f, \"score\": %.3f, \"write\": %.3f, \"total\": %.3f}",
         o->output, n_ranks, (long long)d->n_cells_input, (long long)d->n_analysed, (long long)d->n_control,
         d->design.n_perturbations, d->n_regression, d->is_counts ? "true" : "false",
         (long long)d->n_guide_rows, (long long)d->n_guide_rows_unmatched,
         o->data.targets.targets ? "file" : "selected", (long long)d->targets.gene.n, d->low_moi ? "low" : "high",
         d->seconds_targets, (long long)s->n_qp, s->max_kkt,
         s->n_not_rescaled, ps_cli_method_is_paper(&o->data) ? "paper" : o->data.preset ? o->data.preset : "custom",
         n_not_scored(o, d), seconds[0], seconds[1], seconds[2], seconds[3], seconds[4]);
  if (o->cv.scheme)
    printf(", \"cv\": {\"scheme\": \"%s\", \"seconds\": %.3f}",
           o->cv.scheme == PS_CV_SCHEME_CELLS ? "cells" : "perturbations", cv_seconds);
  else
    printf(", \"cv\": null");
  if (o->calibration.enabled)
    printf(", \"calibration\": {\"fdr\": %g, \"perturbations_called\": %d, \"perturbations_tested\": %d, "
           "\"cell_pvalues\": %lld, \"cell_pvalues_below_fdr\": %lld, \"null_cells\": [%lld, %lld], "
           "\"controls_held_out\": %g, \"seconds\": %.3f}",
           cal->fdr, cal->n_called, cal->n_perturbations, (long long)cal->n_entries,
           (long long)cal->n_entries_significant, (long long)cal->n_null[0], (long long)cal->n_null[1],
           o->calibration.control_fraction, cal->seconds);
  else
    printf(", \"calibration\": null");
  if (o->dosage)
    printf(", \"dosage\": {\"with_own_gene\": %lld, \"fitted\": %lld, \"buffered\": %lld, \"sensitive\": %lld, "
           "\"crispri_efficient\": %lld, \"seconds\": %.3f}}\n",
           (long long)dosage->n_with_own_gene, (long long)dosage->n_fitted, (long long)dosage->n_buffered,
           (long long)dosage->n_sensitive, (long long)dosage->n_crispri_efficient, dosage_seconds);
  else
    printf(", \"dosage\": null}\n");
  fflush(stdout);
}

static void print_text_summary(const run_options *o, const ps_dataset *d, const ps_scores *s, double total) {
  fprintf(stderr,
          "pertscore: done in %.1fs: %lld of %lld cells analysed (%lld controls), %d perturbations, "
          "%lld %s targets, %d regression genes -> %s\n",
          total, (long long)d->n_analysed, (long long)d->n_cells_input, (long long)d->n_control,
          d->design.n_perturbations, (long long)d->targets.gene.n, o->data.targets.targets ? "given" : "selected",
          d->n_regression, o->output);
  (void)s;
}

/* The dosage stage (SPEC section 5) on the run's scores. It needs each cell's PS
 * for the perturbations it carries: the scores themselves, or with
 * --score-all-cells the carried entries looked up in the scored design. */
static int align_scores(const ps_design *D, const ps_design *scored, const ps_scores *scores, double **aligned) {
  PS_ALLOC(*aligned, D->ptr[D->n_cells]);
  for (int64_t j = 0; j < D->n_cells; j++)
    for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++)
      for (int64_t q = scored->ptr[j]; q < scored->ptr[j + 1]; q++)
        if (scored->ids[q] == D->ids[p]) (*aligned)[p] = scores->ps[q];
  return PS_OK;
}

static int run_dosage(MPI_Comm comm, const run_options *o, const ps_dataset *d, const ps_design *scored,
                      const ps_scores *scores, ps_progress *progress, ps_dosage_table *table) {
  const ps_design *D = &d->design;
  double *aligned = NULL;
  if (scored != D) PS_CALL(ps_error_sync(comm, align_scores(D, scored, scores, &aligned)));
  ps_dosage_input in = {.n_perturbations = D->n_perturbations, .n_cells = D->n_cells,
                        .first_index = d->analysed_offset, .ptr = D->ptr, .ids = D->ids,
                        .ps = aligned ? aligned : scores->ps, .own_gene = d->own_gene, .own = &d->own};
  int err = ps_dosage_stage(comm, &in, &o->dosage_opt, progress, table);
  free(aligned);
  PS_CALL(err);
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0 && !o->quiet && table->n_with_own_gene == 0)
    fprintf(stderr, "pertscore: dosage: no perturbation is named like a measured gene; nothing to fit\n");
  return PS_OK;
}

/* Provenance: digests of the input files' bytes and of the effective parameters
 * (every recorded parameter but the command line). A run whose output already
 * records both is up to date. */
static int provenance(MPI_Comm comm, const run_options *o, int argc, char **argv, char *inputs, size_t size,
                      char params[17]) {
  const char *files[] = {o->data.read.input, o->data.read.guides, o->data.targets.targets};
  inputs[0] = '\0';
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char digest[17];
    if (!files[i]) continue;
    PS_CALL(ps_digest_file(comm, files[i], digest));
    size_t used = strlen(inputs);
    snprintf(inputs + used, size - used, "%s%s", used ? "," : "", digest);
  }
  ps_run_info info = {0};
  PS_CALL(record_parameters(o, argc, argv, &info));
  size_t cap = 1 << 16, len = 0;
  char *text = calloc(cap, 1);
  if (!text) PS_FAIL(PS_ERR_SYSTEM, "out of memory");
  for (int64_t i = 0; i < info.keys.n; i++)
    if (strcmp(info.keys.items[i], "command") != 0)
      len += (size_t)snprintf(text + len, cap - len < 1 ? 0 : cap - len, "%s=%s\n", info.keys.items[i], info.values.items[i]);
  for (int64_t i = 0; i < info.number_keys.n && len < cap; i++)
    len += (size_t)snprintf(text + len, cap - len, "%s=%.17g\n", info.number_keys.items[i], info.numbers[i]);
  if (len >= cap) PS_FAIL(PS_ERR_SYSTEM, "parameter list too long to digest");
  PS_CALL(ps_digest_string(text, params));
  free(text);
  ps_run_info_free(&info);
  return PS_OK;
}

/* 1 on every rank when OUTPUT already holds a run with these digests. */
static int output_up_to_date(MPI_Comm comm, const char *output, const char *inputs, const char *params) {
  int rank, same = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    char old_inputs[1024], old_params[64];
    int found_inputs = 0, found_params = 0;
    int err = ps_results_read_parameter(output, "input_digest", old_inputs, sizeof old_inputs, &found_inputs);
    if (!err) err = ps_results_read_parameter(output, "parameters_digest", old_params, sizeof old_params, &found_params);
    if (err) { /* unreadable digests: not up to date, so the run goes on and replaces the file */
      fprintf(stderr, "pertscore: warning: %s: cannot read the digests of the existing output (%s); reprocessing\n",
              output, ps_error_message());
      ps_error_clear();
    }
    same = !err && found_inputs && found_params && strcmp(old_inputs, inputs) == 0 && strcmp(old_params, params) == 0;
  }
  MPI_Bcast(&same, 1, MPI_INT, 0, comm);
  return same;
}

/* --resume: read the checkpoint of OUTPUT.partial and say what is taken from it. */
static int resume_from(MPI_Comm comm, const run_options *o, const char *partial, const char *input_digest,
                       const char *params_digest, const ps_dataset *d, const ps_design *scored, ps_checkpoint *out) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  PS_CALL(ps_checkpoint_read(comm, partial, input_digest, params_digest, d, scored, o->perm.n_permutations > 0, out));
  if (rank == 0 && !o->quiet) {
    if (out->stage == PS_CHECKPOINT_NONE)
      fprintf(stderr, "pertscore: resume: starting from the beginning: the checkpoint in %s cannot be used: %s\n",
              partial, out->reason);
    else
      fprintf(stderr, "pertscore: resume: stages %s taken from %s; continuing with %s\n",
              out->stage == PS_CHECKPOINT_SCORE ? "ridge and score" : "ridge", partial,
              out->stage == PS_CHECKPOINT_SCORE ? (o->dosage ? "dosage" : "the write") : "score");
  }
  return PS_OK;
}

/* Runs the pipeline; any error is made collective by the caller. */
static int run_pipeline(MPI_Comm comm, run_options *o, int argc, char **argv) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  PS_CALL(ps_error_sync(comm, check_output(o)));
  char input_digest[1024], params_digest[17];
  double t_digest = ps_wtime();
  PS_CALL(ps_error_sync(comm, provenance(comm, o, argc, argv, input_digest, sizeof input_digest, params_digest)));
  ps_stats_add("run.digest_seconds", ps_wtime() - t_digest);
  int cells_table_missing = o->cells_table && access(o->cells_table, F_OK) != 0;
  if (!o->force && !cells_table_missing && output_up_to_date(comm, o->output, input_digest, params_digest)) {
    if (rank == 0) {
      fprintf(stderr, "pertscore: %s is up to date (same input digests and parameters; --force reruns)\n", o->output);
      if (o->json) printf("{\"output\": \"%s\", \"up_to_date\": true}\n", o->output);
    }
    return PS_OK;
  }
  ps_progress progress;
  ps_progress_init(&progress, comm, o->quiet);
  double seconds[5] = {0};
  ps_dataset d;
  ps_cv_dataset_options(o->cv.scheme, 0, &o->data.targets, &o->data.regression); /* --cv perturbations: every gene kept, one read */
  if (o->calibration.enabled && !o->data.targets.targets) o->data.regression.keep_expression = 1; /* the refits select targets */
  /* the memory guard, first from the input's shape before the matrix is loaded, then
   * from the design before target selection (src/cost); the full check follows the read */
  ps_cost_guard guard;
  ps_cost_guard_install(&guard, o->max_memory, &o->data.read, &o->data.targets, &o->data.regression);
  ps_progress_stage(&progress, "read");
  PS_CALL(ps_cli_data_stages(comm, &o->data, NULL, o->dosage, &progress, &d));
  seconds[0] = ps_progress_done(&progress);
  ps_design all = {0};
  const ps_design *scored = &d.design;
  if (o->score_all_cells) {
    PS_CALL(ps_error_sync(comm, ps_design_all(comm, &d.design, PS_SCORE_ALL_MAX, &all)));
    scored = &all;
  }
  ps_cost_problem cost; /* the memory guard: refuse before the heavy stages (src/cost) */
  PS_CALL(ps_cost_problem_of_run(comm, &d, scored, o->perm.n_permutations, o->perm.batch_bytes, o->dosage, &cost));
  cost.cv_scheme = o->cv.scheme;
  cost.perm_adaptive = o->perm.adaptive_h > 0;
  PS_CALL(ps_cost_check_memory(comm, &cost, o->max_memory));
  /* --resume: the stages OUTPUT.partial already holds for this input and these parameters */
  char partial[4200];
  snprintf(partial, sizeof partial, "%s.partial", o->output);
  ps_checkpoint resumed = {0};
  if (o->resume) PS_CALL(resume_from(comm, o, partial, input_digest, params_digest, &d, scored, &resumed));
  ps_cleanup_register(partial); /* from here on OUTPUT.partial holds this run's checkpoints */
  if (o->cv.scheme) ps_cleanup_register(o->cv_partial);
  ps_progress_stage(&progress, "ridge");
  ps_ridge ridge = resumed.ridge;
  double *pvalues = resumed.pvalues;
  if (resumed.stage < PS_CHECKPOINT_RIDGE) {
    ps_design with_groups = {0}; /* --control-by / --group-by: one intercept column per group */
    if (d.design.n_groups > 1) PS_CALL(ps_error_sync(comm, ps_design_ridge_columns(&d.design, &with_groups)));
    const ps_design *fit_design = d.design.n_groups > 1 ? &with_groups : &d.design;
    ps_ridge_perm_options perm = o->perm;
    perm.progress = &progress;
    PS_CALL(ps_error_sync(comm, ps_ridge_fit_pvalues(comm, fit_design, &d.y, o->ridge_lambda, &perm, &ridge, &pvalues)));
    ps_design_free(&with_groups);
    PS_CALL(ps_error_sync(comm, ps_checkpoint_write_ridge(comm, partial, input_digest, params_digest, &d, &ridge, pvalues)));
  }
  seconds[1] = ps_progress_done(&progress);
  ps_progress_stage(&progress, "score");
  ps_fault_point("score"); /* tests/fault: a rank killed inside the score stage */
  ps_scores scores = resumed.scores;
  ps_score_genes genes; /* SPEC section 9: own genes, perturbations left without targets, gene weights */
  ps_score_options score_opt = o->score;
  double *fit_weights = NULL;
  PS_CALL(ps_cli_method_prepare(comm, &o->data, &d, &ridge, o->quiet, &score_opt, &genes, &fit_weights));
  o->cv.score.own_ptr = score_opt.own_ptr; /* --cv cells: held-out cells in the same method */
  o->cv.score.own_cols = score_opt.own_cols;
  o->cv.score.unscored = score_opt.unscored;
  if (resumed.stage < PS_CHECKPOINT_SCORE) {
    PS_CALL(ps_error_sync(comm, ps_score_cells(comm, scored, &d.y, &ridge, &score_opt, &progress, &scores)));
    PS_CALL(ps_error_sync(comm, ps_checkpoint_write_scores(comm, partial, &d, scored, &scores)));
  }
  if (fit_weights && !scores.weights) { /* resumed scores: the weights they were scored with (same fit) */
    PS_ALLOC(scores.weights, ridge.n_genes > 0 ? ridge.n_genes : 1);
    memcpy(scores.weights, fit_weights, (size_t)ridge.n_genes * sizeof *fit_weights);
  }
  seconds[2] = ps_progress_done(&progress);
  /* calibrated calls (SPEC section 10): refits on split cells, the run's scores unchanged */
  ps_calibration cal = {0};
  char cal_skipped[4096] = "";
  if (o->calibration.enabled) {
    ps_progress_stage(&progress, "calibration");
    int cal_err = ps_error_sync(comm, ps_calibrate(comm, &o->data.targets, &o->data.regression, o->data.qp_genes_own, &d, scored, o->ridge_lambda, &o->score,
                                                   &o->calibration, &progress, &cal));
    if (cal_err == PS_ERR_INPUT) { /* the data do not allow it (too few controls, ...): warned, the run goes on */
      if (rank == 0)
        fprintf(stderr, "pertscore: warning: calibrated calls skipped: %s\n", ps_error_message());
      snprintf(cal_skipped, sizeof cal_skipped, "%s", ps_error_message());
      ps_error_clear();
      ps_calibration_free(&cal);
      o->calibration.enabled = 0;
    } else {
      PS_CALL(cal_err);
    }
    ps_progress_done(&progress);
  }
  ps_dosage_table dosage = {0};
  double seconds_dosage = 0;
  if (o->dosage) {
    ps_fault_point("dosage");
    ps_progress_stage(&progress, "dosage");
    PS_CALL(ps_error_sync(comm, run_dosage(comm, o, &d, scored, &scores, &progress, &dosage)));
    seconds_dosage = ps_progress_done(&progress);
  }
  /* --cv: SPEC section 7 on the dataset already read, its own stage; its tables go
   * into uns/cv of the results file in the write stage */
  ps_cv_stage_result cv = {0};
  double seconds_cv = 0;
  if (o->cv.scheme) {
    ps_progress_stage(&progress, "cv");
    ps_cv_stage_input cv_in = {.data = &o->data.read};
    PS_CALL(ps_error_sync(comm, ps_cv_stage_run(comm, &d, &cv_in, &o->cv, &progress, &cv)));
    seconds_cv = ps_progress_done(&progress);
  }
  ps_progress_stage(&progress, "write");
  ps_run_info info = {0};
  PS_CALL(record_parameters(o, argc, argv, &info));
  PS_CALL(ps_run_info_string(&info, "input_digest", input_digest));
  PS_CALL(ps_run_info_string(&info, "parameters_digest", params_digest));
  PS_CALL(ps_run_info_number(&info, "ranks", size));
  if (o->data.read.scale_median) { /* the s of y = ln(1 + s count / total) it came to (0: not counts) */
    char text[64];
    snprintf(text, sizeof text, "%.17g", d.scale);
    PS_CALL(ps_run_info_string(&info, "scale_value", text)); /* pertscore dosage normalizes with it */
  }
  if (resumed.stage) /* which stages came from OUTPUT.partial (not part of the parameters digest) */
    PS_CALL(ps_run_info_string(&info, "resumed", resumed.stage == PS_CHECKPOINT_SCORE ? "ridge,score" : "ridge"));
  PS_CALL(ps_run_info_number(&info, "seconds_read", seconds[0]));
  PS_CALL(ps_run_info_number(&info, "seconds_ridge", seconds[1]));
  PS_CALL(ps_run_info_number(&info, "seconds_score", seconds[2]));
  if (o->dosage) PS_CALL(ps_run_info_number(&info, "seconds_dosage", seconds_dosage));
  if (o->cv.scheme) PS_CALL(ps_run_info_number(&info, "seconds_cv", seconds_cv));
  if (o->calibration.enabled) PS_CALL(ps_run_info_number(&info, "seconds_calibration", cal.seconds));
  if (cal_skipped[0]) PS_CALL(ps_run_info_string(&info, "calibration_skipped", cal_skipped));
  PS_CALL(ps_error_sync(comm, ps_results_write(comm, partial, &d, scored, &ridge, pvalues, &scores, &info)));
  if (o->dosage)
    PS_CALL(ps_error_sync(comm, ps_results_add_dosage(comm, partial, &dosage, &o->dosage_opt, seconds_dosage, NULL)));
  if (o->calibration.enabled)
    PS_CALL(ps_error_sync(comm, ps_results_add_calibration(comm, partial, &d, scored, &scores, &cal)));
  if (o->cv.scheme) /* the cv stage's tables into uns/cv of the partial file */
    PS_CALL(ps_error_sync(comm, ps_results_write_cv(comm, &d, &cv, &o->cv, partial, PS_CV_ADD_TO_RESULTS,
                                                    o->cv_partial, &info)));
  ps_cv_stage_result_free(&cv);
  char cells_partial[4200];
  if (o->cells_table) {
    snprintf(cells_partial, sizeof cells_partial, "%s.partial", o->cells_table);
    PS_CALL(ps_error_sync(comm, ps_cells_table_write(comm, cells_partial, &d, scored, &scores,
                                                     o->calibration.enabled ? cal.ps_pvalue : NULL, NULL)));
  }
  ps_fault_point("commit");
  PS_CALL(ps_error_sync(comm, ps_output_commit(comm, partial, o->output)));
  if (o->cv.scheme) PS_CALL(ps_error_sync(comm, ps_output_commit(comm, o->cv_partial, o->cv_summary)));
  if (o->cells_table) PS_CALL(ps_error_sync(comm, ps_output_commit(comm, cells_partial, o->cells_table)));
  ps_cleanup_unregister();
  seconds[3] = ps_progress_done(&progress);
  seconds[4] = ps_wtime() - progress.t_start;
  if (rank == 0 && !o->quiet) print_text_summary(o, &d, &scores, seconds[4]);
  if (rank == 0 && !o->quiet && o->dosage)
    fprintf(stderr, "pertscore: dosage: %lld of %lld perturbations with a measured own gene fitted (%lld buffered, "
            "%lld sensitive)\n", (long long)dosage.n_fitted, (long long)dosage.n_with_own_gene,
            (long long)dosage.n_buffered, (long long)dosage.n_sensitive);
  if (rank == 0 && o->json) print_summary(o, &d, &scores, seconds, size, &dosage, seconds_dosage, seconds_cv, &cal);
  if (rank == 0 && !o->quiet && o->calibration.enabled)
    fprintf(stderr, "pertscore: %d of %d perturbations with an effect at FDR %g (%lld of %lld cell scores at "
            "ps_pvalue < %g)\n", cal.n_called, cal.n_perturbations, cal.fdr, (long long)cal.n_entries_significant,
            (long long)cal.n_entries, cal.fdr);
  ps_calibration_free(&cal);
  ps_dosage_table_free(&dosage);
  ps_run_info_free(&info);
  ps_scores_free(&scores);
  ps_score_genes_free(&genes);
  free(fit_weights);
  ps_design_free(&all);
  free(pvalues);
  ps_ridge_free(&ridge);
  ps_dataset_free(&d);
  return PS_OK;
}

/* --config JOB.yaml: the job file's options first, then the other command-line
 * options (so they override single-valued ones). The sweep section is not used. */
static int expand_config(int argc, char **argv, ps_strlist *expanded, int *used) {
  const char *config = NULL;
  *used = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) config = argv[i + 1];
    else if (strncmp(argv[i], "--config=", 9) == 0) config = argv[i] + 9;
  }
  if (!config) return PS_OK;
  ps_job job;
  PS_CALL(ps_job_read(config, &job));
  PS_CALL(ps_job_argv(&job, -1, expanded));
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0) i++;
    else if (strncmp(argv[i], "--config=", 9) != 0) PS_CALL(ps_strlist_push(expanded, argv[i]));
  }
  ps_job_free(&job);
  *used = 1;
  return PS_OK;
}

int ps_cmd_run(MPI_Comm comm, int argc, char **argv) {
  ps_strlist expanded = {0};
  int from_config = 0;
  int config_err = ps_error_sync(comm, expand_config(argc, argv, &expanded, &from_config));
  if (config_err) ps_die(comm, config_err, 1);
  if (from_config) {
    argc = (int)expanded.n;
    argv = expanded.items;
  }
  int rank, help = 0;
  MPI_Comm_rank(comm, &rank);
  run_options o;
  memset(&o, 0, sizeof o);
  int err = parse_run(argc, argv, &o, &help);
  if (!err && help) {
    if (rank == 0) fputs(run_usage, stdout);
    return 0;
  }
  if (!err) err = run_pipeline(comm, &o, argc, argv);
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  ps_strlist_free(&o.data.read.controls);
  ps_strlist_free(&o.data.read.perturbations);
  ps_strlist_free(&expanded);
  return 0;
}
