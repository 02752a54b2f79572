/* Options shared by run, lambda and cv: the input, guides, controls, targets and
 * target selection (ps_dataset_options). One parser, so the commands agree. */
#include <string.h>

#include "cli.h"
#include "pertscore/data.h"

int ps_cli_dataset_option(const char *name, const char *arg, void *options, int *handled) {
  ps_dataset_options *d = options;
  double number;
  *handled = 1;
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
  } else if (strcmp(name, "group-by") == 0) d->group_by = arg;
  else if (strcmp(name, "control-by") == 0) d->control_by = arg;
  else *handled = 0;
  return PS_OK;
}
