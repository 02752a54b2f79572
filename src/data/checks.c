/* Likely mistakes in the inputs that would otherwise run to exit 0 with plausible
 * output (issue 16): perturbations left without targets (the targets file naming no
 * analysed perturbation is src/de/targets_stage.c's), a control label that is one guide of a
 * gene whose other guides are scored, guide rows naming no cell of the matrix,
 * and --input-is contradicting the values (warnings with counts and names). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_checks.h"

#define PS_CHECK_NAMES 5 /* names listed in a message before ", ..." */

static int rank_of(MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  return rank;
}

/* "a, b, c, ..." of the first PS_CHECK_NAMES items (those with keep[i] != 0 when keep). */
static void list_names(char *buf, size_t size, char *const *items, int64_t n, const uint8_t *keep) {
  size_t used = 0;
  int listed = 0;
  buf[0] = '\0';
  for (int64_t i = 0; i < n && used < size; i++) {
    if (keep && !keep[i]) continue;
    if (listed == PS_CHECK_NAMES) {
      snprintf(buf + used, size - used, ", ...");
      return;
    }
    used += (size_t)snprintf(buf + used, size - used, "%s%s", listed ? ", " : "", items[i]);
    listed++;
  }
}

void ps_check_warn_no_targets(MPI_Comm comm, const ps_dataset *d) {
  if (!d->targets_file || !d->n_targets || d->targets_unused || rank_of(comm) != 0) return;
  const ps_design *D = &d->design;
  const char *pseudo = d->pseudo_label; /* pertscore lambda's: no targets file names it */
  uint8_t *none = calloc((size_t)D->n_perturbations + 1, 1);
  if (!none) return;
  int64_t n_none = 0;
  for (int32_t k = 0; k < D->n_perturbations; k++) {
    if (d->n_targets[k] > 0 || (pseudo && strcmp(D->names.items[k], pseudo) == 0)) continue;
    none[k] = 1;
    n_none++;
  }
  if (n_none) {
    char names[1024];
    list_names(names, sizeof names, D->names.items, D->n_perturbations, none);
    fprintf(stderr,
            "pertscore: warning: %lld of %d perturbation%s have no target gene among the regression genes "
            "(missing from %s, or targets not measured / too rarely expressed): %s; their PS is 0\n",
            (long long)n_none, D->n_perturbations, D->n_perturbations == 1 ? "" : "s", d->targets_file, names);
    fflush(stderr);
  }
  free(none);
}

int ps_check_control_guides(MPI_Comm comm, const ps_dataset_options *opt, const ps_guide_calls *calls) {
  /* pass 1: controls named by a guide whose unit is not a control ("guide\tunit") */
  ps_strlist pairs = {0}, all_pairs = {0};
  for (int64_t i = 0; i < calls->n; i++) {
    if (ps_strlist_find_sorted(&opt->controls, calls->unit[i]) >= 0) continue;
    if (ps_strlist_find_sorted(&opt->controls, calls->guide[i]) < 0) continue;
    char pair[2048];
    snprintf(pair, sizeof pair, "%s\t%s", calls->guide[i], calls->unit[i]);
    PS_CALL(ps_strlist_push(&pairs, pair));
  }
  ps_strlist_sort_unique(&pairs);
  PS_CALL(ps_strlist_allgather_union(comm, &pairs, &all_pairs));
  ps_strlist_free(&pairs);
  if (all_pairs.n == 0) return PS_OK;
  /* pass 2: the other guides of those units that stay perturbations ("unit\tguide") */
  ps_strlist units = {0}, others = {0}, all_others = {0};
  for (int64_t i = 0; i < all_pairs.n; i++) PS_CALL(ps_strlist_push(&units, strchr(all_pairs.items[i], '\t') + 1));
  ps_strlist_sort_unique(&units);
  for (int64_t i = 0; i < calls->n; i++) {
    if (ps_strlist_find_sorted(&units, calls->unit[i]) < 0) continue;
    if (ps_strlist_find_sorted(&opt->controls, calls->guide[i]) >= 0) continue;
    int chosen = opt->perturbations.n == 0;
    for (int64_t p = 0; p < opt->perturbations.n && !chosen; p++)
      chosen = strcmp(opt->perturbations.items[p], opt->unit_guide ? calls->guide[i] : calls->unit[i]) == 0;
    if (!chosen) continue;
    char pair[2048];
    snprintf(pair, sizeof pair, "%s\t%s", calls->unit[i], calls->guide[i]);
    PS_CALL(ps_strlist_push(&others, pair));
  }
  ps_strlist_sort_unique(&others);
  PS_CALL(ps_strlist_allgather_union(comm, &others, &all_others));
  ps_strlist_free(&others);
  for (int64_t i = 0; i < all_pairs.n && rank_of(comm) == 0; i++) {
    char *tab = strchr(all_pairs.items[i], '\t');
    const char *unit = tab + 1;
    char list[1024] = "";
    size_t used = 0, ulen = strlen(unit);
    int64_t n_other = 0;
    for (int64_t q = 0; q < all_others.n; q++) {
      if (strncmp(all_others.items[q], unit, ulen) != 0 || all_others.items[q][ulen] != '\t') continue;
      if (n_other++ < PS_CHECK_NAMES && used < sizeof list)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", n_other > 1 ? ", " : "",
                                 all_others.items[q] + ulen + 1);
    }
    if (n_other == 0) continue;
    fprintf(stderr,
            "pertscore: warning: --control %.*s is one guide of '%s', whose %lld other guide%s (%s%s) are scored "
            "as the perturbation '%s'; only the cells of %.*s are controls. To take every guide of '%s' as "
            "control give --control %s\n",
            (int)(tab - all_pairs.items[i]), all_pairs.items[i], unit, (long long)n_other, n_other == 1 ? "" : "s",
            list, n_other > PS_CHECK_NAMES ? ", ..." : "", opt->unit_guide ? "(each guide)" : unit,
            (int)(tab - all_pairs.items[i]), all_pairs.items[i], unit, unit);
    fflush(stderr);
  }
  ps_strlist_free(&units);
  ps_strlist_free(&all_others);
  ps_strlist_free(&all_pairs);
  return PS_OK;
}

int ps_check_guide_rows(MPI_Comm comm, const ps_dataset_options *opt, const ps_guide_calls *calls,
                        ps_dataset *d) {
  d->n_guide_rows = calls->n_rows_read;
  d->n_guide_rows_unmatched = 0;
  if (!opt->guides || calls->n_rows_read == 0) return PS_OK;
  int64_t n = calls->n_rows_read;
  uint8_t *matched = calloc((size_t)n, 1);
  if (!matched) PS_FAIL(PS_ERR_SYSTEM, "out of memory checking the guide rows");
  int64_t have = calls->row_capacity < n ? calls->row_capacity : n;
  if (have > 0) memcpy(matched, calls->row_matched, (size_t)have);
  const int64_t piece = INT64_C(1) << 30;
  for (int64_t off = 0; off < n; off += piece) {
    int count = (int)(n - off < piece ? n - off : piece);
    if (MPI_Allreduce(MPI_IN_PLACE, matched + off, count, MPI_UINT8_T, MPI_BOR, comm) != MPI_SUCCESS) {
      free(matched);
      PS_FAIL(PS_ERR_SYSTEM, "MPI_Allreduce of the matched guide rows failed");
    }
  }
  int64_t unmatched = 0;
  for (int64_t i = 0; i < n; i++) unmatched += !matched[i];
  d->n_guide_rows_unmatched = unmatched;
  if (unmatched && rank_of(comm) == 0) {
    ps_strlist examples = {0};
    char list[1024] = "";
    if (ps_guides_unmatched_examples(opt->guides, matched, n, 3, &examples) == PS_OK)
      list_names(list, sizeof list, examples.items, examples.n, NULL);
    ps_strlist_free(&examples);
    fprintf(stderr,
            "pertscore: warning: %lld of %lld guide rows of %s name no cell of %s (e.g. %s%s); they are ignored "
            "(compare the cell barcodes of both files)\n",
            (long long)unmatched, (long long)n, opt->guides, opt->input, list, unmatched > 3 ? ", ..." : "");
    fflush(stderr);
  }
  free(matched);
  return PS_OK;
}

int ps_check_input_is(MPI_Comm comm, const ps_dataset_options *opt, const ps_csr *x) {
  if (opt->input_is == PS_INPUT_AUTO) return PS_OK;
  int64_t nnz = ps_csr_nnz(x), counts[2] = {0, nnz}; /* non-integral values, stored values */
  double example = -1, max = 0;
  for (int64_t i = 0; i < nnz; i++) {
    double v = x->data[i];
    if (v > max) max = v;
    if (v != floor(v) && !counts[0]++) example = v;
  }
  struct {
    double v;
    int rank;
  } ex = {example, rank_of(comm)}, any; /* some rank's first non-integral value */
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &max, 1, MPI_DOUBLE, MPI_MAX, comm));
  PS_CHECK_MPI(MPI_Allreduce(&ex, &any, 1, MPI_DOUBLE_INT, MPI_MAXLOC, comm));
  if (rank_of(comm) != 0 || counts[1] == 0) return PS_OK;
  const char *what = opt->layer ? opt->layer : "X";
  if (opt->input_is == PS_INPUT_COUNTS && counts[0] > 0)
    fprintf(stderr,
            "pertscore: warning: --input-is counts, but %lld of the %lld stored values of %s (%s) are not whole "
            "numbers (e.g. %.6g; largest %.6g): this looks log-normalized; they are normalized again as counts. "
            "Drop --input-is or use --input-is lognorm\n",
            (long long)counts[0], (long long)counts[1], opt->input, what, any.v, max);
  else if (opt->input_is == PS_INPUT_LOGNORM && counts[0] == 0)
    fprintf(stderr,
            "pertscore: warning: --input-is lognorm, but every one of the %lld stored values of %s (%s) is a whole "
            "number (largest %.6g): these look like counts, used as they are. Drop --input-is or use "
            "--input-is counts\n",
            (long long)counts[1], opt->input, what, max);
  fflush(stderr);
  return PS_OK;
}
