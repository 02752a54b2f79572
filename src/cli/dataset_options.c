/* Options shared by run, lambda and cv: the input, guides, controls, targets and
 * target selection (ps_dataset_options). One table, one parser and one check, so
 * the commands agree. Each entry has its own getopt value: getopt_long takes the
 * first of several prefix matches with equal values instead of calling the prefix
 * ambiguous (--min-g would become --min-guide-umi for a user meaning --min-gene-frac). */
#include <string.h>

#include "cli.h"
#include "pertscore/data.h"

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

int ps_cli_dataset_option(const char *name, const char *arg, ps_dataset_options *d) {
  double number;
  if (strcmp(name, "input") == 0) d->input = arg;
  else if (strcmp(name, "layer") == 0) d->layer = arg;
  else if (strcmp(name, "input-is") == 0) {
    if (strcmp(arg, "counts") == 0) d->input_is = PS_INPUT_COUNTS;
    else if (strcmp(arg, "lognorm") == 0) d->input_is = PS_INPUT_LOGNORM;
    else if (strcmp(arg, "auto") == 0) d->input_is = PS_INPUT_AUTO;
    else PS_FAIL(PS_ERR_INPUT, "--input-is expects auto, counts or lognorm, got '%s'", arg);
  } else if (strcmp(name, "guides") == 0) d->guides = arg;
  else if (strcmp(name, "guide-column") == 0) d->guide_column = arg;
  else if (strcmp(name, "control") == 0) PS_CALL(ps_cli_split_list(arg, &d->controls));
  else if (strcmp(name, "targets") == 0) d->targets = arg;
  else if (strcmp(name, "min-gene-frac") == 0) PS_CALL(ps_cli_number("--min-gene-frac", arg, &d->min_gene_frac));
  else if (strcmp(name, "min-pct") == 0) PS_CALL(ps_cli_number("--min-pct", arg, &d->de.min_pct));
  else if (strcmp(name, "logfc") == 0) PS_CALL(ps_cli_number("--logfc", arg, &d->de.logfc));
  else if (strcmp(name, "min-targets") == 0) {
    PS_CALL(ps_cli_count("--min-targets", arg, &number));
    d->de.min_targets = (int64_t)number;
  } else if (strcmp(name, "max-targets") == 0) {
    PS_CALL(ps_cli_count("--max-targets", arg, &number));
    d->de.max_targets = (int64_t)number;
  } else if (strcmp(name, "exclude-perturbed-gene") == 0) d->exclude_perturbed_gene = 1;
  else if (strcmp(name, "de-background") == 0) {
    if (strcmp(arg, "others") == 0) d->de_background_others = 1;
    else if (strcmp(arg, "controls") == 0) d->de_background_others = 0;
    else PS_FAIL(PS_ERR_INPUT, "--de-background expects controls or others, got '%s'", arg);
  } else if (strcmp(name, "de-strict-groups") == 0) d->de_strict_groups = 1;
  else if (strcmp(name, "min-guide-umi") == 0) PS_CALL(ps_cli_number("--min-guide-umi", arg, &d->min_guide_umi));
  else if (strcmp(name, "perturbations") == 0) PS_CALL(ps_cli_split_list(arg, &d->perturbations));
  else if (strcmp(name, "unit") == 0) {
    if (strcmp(arg, "guide") == 0) d->unit_guide = 1;
    else if (strcmp(arg, "gene") == 0) d->unit_guide = 0;
    else PS_FAIL(PS_ERR_INPUT, "--unit expects gene or guide, got '%s'", arg);
  } else PS_FAIL(PS_ERR_SYSTEM, "command line: --%s is in the dataset table but has no parser", name);
  return PS_OK;
}

int ps_cli_unknown_option(const char *command, const char *arg) {
  /* the group options are run's own; another command names them rather than "unknown" */
  for (const char *const *g = (const char *const[]){"--group-by", "--control-by", NULL}; *g; g++)
    if (strncmp(arg, *g, strlen(*g)) == 0 && (arg[strlen(*g)] == '\0' || arg[strlen(*g)] == '='))
      PS_FAIL(PS_ERR_INPUT, "%s: %s is not supported yet (only pertscore run has groups); give it one group's cells "
              "(a subset of the input) at a time", command, *g);
  const struct option *longs = ps_cli_current_longs();
  if (longs) return ps_cli_unknown_option_in(command, arg, longs);
  PS_FAIL(PS_ERR_INPUT, "%s: unknown or incomplete option '%s' (see pertscore %s --help)", command, arg, command);
}

int ps_cli_dataset_check(const char *command, ps_dataset_options *d) {
  if (!d->input) PS_FAIL(PS_ERR_INPUT, "%s: --input FILE is required", command);
  if (d->guides && d->guide_column) PS_FAIL(PS_ERR_INPUT, "%s: give --guides or --guide-column, not both", command);
  if (!(d->min_gene_frac >= 0 && d->min_gene_frac <= 1))
    PS_FAIL(PS_ERR_INPUT, "--min-gene-frac must be in [0, 1] (got %g)", d->min_gene_frac);
  if (!(d->de.min_pct >= 0 && d->de.min_pct <= 1))
    PS_FAIL(PS_ERR_INPUT, "--min-pct must be in [0, 1] (got %g)", d->de.min_pct);
  if (!(d->de.logfc >= 0)) PS_FAIL(PS_ERR_INPUT, "--logfc must be >= 0 (got %g)", d->de.logfc);
  if (d->de.max_targets < 1)
    PS_FAIL(PS_ERR_INPUT, "--max-targets must be >= 1 (got %lld)", (long long)d->de.max_targets);
  ps_strlist_sort_unique(&d->controls);
  ps_strlist_sort_unique(&d->perturbations);
  return PS_OK;
}
