/* Options shared by run, lambda and cv: the input, guides, controls, targets and
 * target selection (ps_dataset_options). One table, one parser and one check, so
 * the commands agree. */
#include <string.h>

#include "cli.h"
#include "pertscore/data.h"

const struct option ps_cli_dataset_longs[] = {
    {"input", required_argument, 0, PS_CLI_DATASET},
    {"layer", required_argument, 0, PS_CLI_DATASET},
    {"input-is", required_argument, 0, PS_CLI_DATASET},
    {"guides", required_argument, 0, PS_CLI_DATASET},
    {"guide-column", required_argument, 0, PS_CLI_DATASET},
    {"control", required_argument, 0, PS_CLI_DATASET},
    {"min-guide-umi", required_argument, 0, PS_CLI_DATASET},
    {"perturbations", required_argument, 0, PS_CLI_DATASET},
    {"unit", required_argument, 0, PS_CLI_DATASET},
    {"targets", required_argument, 0, PS_CLI_DATASET},
    {"min-gene-frac", required_argument, 0, PS_CLI_DATASET},
    {"min-pct", required_argument, 0, PS_CLI_DATASET},
    {"logfc", required_argument, 0, PS_CLI_DATASET},
    {"min-targets", required_argument, 0, PS_CLI_DATASET},
    {"max-targets", required_argument, 0, PS_CLI_DATASET},
    {"exclude-perturbed-gene", no_argument, 0, PS_CLI_DATASET},
    {"de-background", required_argument, 0, PS_CLI_DATASET},
    {"de-strict-groups", no_argument, 0, PS_CLI_DATASET},
    {0, 0, 0, 0}};

int ps_cli_join_longs(const struct option *own, struct option *joined, size_t capacity) {
  size_t n = 0;
  for (const struct option *list[] = {own, ps_cli_dataset_longs}, **l = list; l < list + 2; l++)
    for (const struct option *o = *l; o->name; o++) {
      if (n + 1 >= capacity) PS_FAIL(PS_ERR_SYSTEM, "command line: option table longer than %zu", capacity);
      joined[n++] = *o;
    }
  joined[n] = (struct option){0, 0, 0, 0};
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
