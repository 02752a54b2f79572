/* The targets stage (SPEC.md section 1): the target genes of every perturbation from
 * a targets file, or selected by the distributed Wilcoxon selection
 * (targets_select.c), or none (cv --scheme perturbations). Works on the matrix block
 * ps_dataset_read left in the dataset; the candidates it leaves are the genes
 * ps_regression_prepare picks the regression genes from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "de_internal.h"
#include "pertscore/io.h"

void ps_targets_options_default(ps_targets_options *o) {
  memset(o, 0, sizeof *o);
  ps_de_options_default(&o->de);
}

#define NAMES_LISTED 5 /* names listed in a message before ", ..." */

/* "a, b, c, ..." of the first NAMES_LISTED items. */
static void list_names(char *buf, size_t size, char *const *items, int64_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int64_t i = 0; i < n && used < size; i++) {
    if (i == NAMES_LISTED) {
      snprintf(buf + used, size - used, ", ...");
      return;
    }
    used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", items[i]);
  }
}

/* An error when none of the targets file's perturbation names is an analysed
 * perturbation (names the file, the first unmatched names and the existing
 * perturbations); a likely mistake that would otherwise score nothing (issue 16).
 * Not with no_target_selection (cv --scheme perturbations scores nothing). Not
 * collective (every rank holds the same lists). */
static int check_targets_match(const ps_targets_options *opt, const ps_target_pairs *raw, const ps_dataset *d) {
  if (opt->no_target_selection) return PS_OK; /* cv --scheme perturbations: no PS, the targets are not used */
  const ps_strlist *names = d->by_group ? &d->base : &d->design.names;
  ps_strlist known = {0};
  for (int64_t i = 0; i < names->n; i++) PS_CALL(ps_strlist_push(&known, names->items[i]));
  ps_strlist_sort_unique(&known);
  int64_t matched = 0;
  ps_strlist unmatched = {0};
  for (int64_t i = 0; i < raw->perturbation.n; i++) {
    if (ps_strlist_find_sorted(&known, raw->perturbation.items[i]) >= 0) matched++;
    else PS_CALL(ps_strlist_push(&unmatched, raw->perturbation.items[i]));
  }
  int err = PS_OK;
  if (matched == 0 && raw->perturbation.n > 0) {
    ps_strlist_sort_unique(&unmatched);
    char given[1024], exist[1024];
    list_names(given, sizeof given, unmatched.items, unmatched.n);
    list_names(exist, sizeof exist, known.items, known.n);
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                       "%s: none of its %lld perturbation names is an analysed perturbation (first: %s); the "
                       "perturbations of the guide assignment are: %s (%lld in all)%s",
                       opt->targets, (long long)unmatched.n, given, exist, (long long)known.n,
                       d->unit_guide ? "; with --unit guide, name guides" : "");
  }
  ps_strlist_free(&known);
  ps_strlist_free(&unmatched);
  return err;
}

/* --group-by: the sorted distinct original labels and, per label b, the
 * perturbations "label@g" in k[ptr[b] .. ptr[b + 1]). */
static int index_bases(const ps_dataset *d, ps_strlist *bases, int64_t **ptr, int64_t **k) {
  for (int64_t i = 0; i < d->base.n; i++) PS_CALL(ps_strlist_push(bases, d->base.items[i]));
  ps_strlist_sort_unique(bases);
  PS_ALLOC(*ptr, bases->n + 1);
  PS_ALLOC(*k, d->base.n);
  for (int64_t i = 0; i < d->base.n; i++) (*ptr)[ps_strlist_find_sorted(bases, d->base.items[i]) + 1]++;
  for (int64_t b = 0; b < bases->n; b++) (*ptr)[b + 1] += (*ptr)[b];
  int64_t *fill;
  PS_ALLOC(fill, bases->n + 1);
  memcpy(fill, *ptr, (size_t)(bases->n + 1) * sizeof *fill);
  for (int64_t i = 0; i < d->base.n; i++) (*k)[fill[ps_strlist_find_sorted(bases, d->base.items[i])]++] = i;
  free(fill);
  return PS_OK;
}

/* Target genes -> candidate regression genes (sorted gene indices). */
static int read_targets(const ps_targets_options *opt, ps_dataset *d, const ps_strmap *gene_index,
                        int32_t **candidates, int32_t *n_candidates) {
  ps_target_pairs raw;
  PS_CALL(ps_targets_read(opt->targets, &raw));
  int matched = check_targets_match(opt, &raw, d);
  if (matched) {
    ps_target_pairs_free(&raw);
    return matched;
  }
  uint8_t *used;
  PS_ALLOC(used, d->n_genes);
  PS_ALLOC(d->n_targets, d->design.n_perturbations);
  int64_t unknown = 0, *base_ptr = NULL, *base_k = NULL;
  const char *first_unknown = NULL;
  ps_strlist bases = {0};
  if (d->by_group) PS_CALL(index_bases(d, &bases, &base_ptr, &base_k));
  for (int64_t i = 0; i < raw.gene.n; i++) {
    int64_t g = ps_strmap_get(gene_index, raw.gene.items[i]);
    if (g < 0) {
      if (!unknown++) first_unknown = raw.gene.items[i];
      continue;
    }
    used[g] = 1;
    int64_t b = d->by_group ? ps_strlist_find_sorted(&bases, raw.perturbation.items[i]) : -1;
    if (b < 0) {
      PS_CALL(ps_strlist_push(&d->targets.perturbation, raw.perturbation.items[i]));
      PS_CALL(ps_strlist_push(&d->targets.gene, raw.gene.items[i]));
    }
    for (int64_t q = b >= 0 ? base_ptr[b] : 0; b >= 0 && q < base_ptr[b + 1]; q++) {
      /* --group-by: P's targets serve every "P@g" */
      PS_CALL(ps_strlist_push(&d->targets.perturbation, d->design.names.items[base_k[q]]));
      PS_CALL(ps_strlist_push(&d->targets.gene, raw.gene.items[i]));
    }
  }
  if (unknown)
    PS_FAIL(PS_ERR_INPUT, "%s: %lld target gene(s) are not genes of %s (first: '%s'); expected names from the var index",
            opt->targets, (long long)unknown, d->input, first_unknown);
  int32_t n = 0;
  for (int64_t g = 0; g < d->n_genes; g++) n += used[g];
  PS_ALLOC(*candidates, n);
  n = 0;
  for (int64_t g = 0; g < d->n_genes; g++)
    if (used[g]) (*candidates)[n++] = (int32_t)g;
  *n_candidates = n;
  free(used);
  free(base_ptr);
  free(base_k);
  ps_strlist_free(&bases);
  ps_target_pairs_free(&raw);
  return PS_OK;
}

static int targets_select(MPI_Comm comm, const ps_targets_options *opt, ps_progress *progress, ps_dataset *d) {
  free(d->targets_file);
  d->targets_file = NULL;
  d->targets_unused = opt->no_target_selection;
  if (opt->targets) {
    PS_ALLOC(d->targets_file, strlen(opt->targets) + 1);
    strcpy(d->targets_file, opt->targets);
    PS_CALL(ps_error_sync(comm, read_targets(opt, d, &d->gene_index, &d->candidates, &d->n_candidates)));
  } else if (opt->no_target_selection) { /* cv perturbations scheme: no targets, no regression genes */
    PS_ALLOC(d->n_targets, d->design.n_perturbations);
  } else {
    if (progress) ps_progress_update(progress, 0.6);
    double t0 = ps_wtime();
    int log_stage = ps_log_stage_push("targets");
    int err = ps_targets_select_cells(comm, opt, &d->block, d->block_keep, &d->gene_index, progress, d,
                                      &d->candidates, &d->n_candidates);
    ps_log_stage_pop(log_stage);
    PS_CALL(err);
    d->seconds_targets = ps_wtime() - t0;
    ps_dataset_part_peak(progress, "targets");
  }
  return PS_OK;
}

int ps_targets_select(MPI_Comm comm, const ps_targets_options *opt, ps_progress *progress, ps_dataset *d) {
  int err = targets_select(comm, opt, progress, d);
  if (err) ps_dataset_free(d);
  return err;
}
