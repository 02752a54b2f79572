/* Writing the results file (DESIGN.md "Results file"), through the io module. */
#include "results_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ps_run_info_string(ps_run_info *info, const char *key, const char *value) {
  PS_CALL(ps_strlist_push(&info->keys, key));
  PS_CALL(ps_strlist_push(&info->values, value ? value : ""));
  return PS_OK;
}

int ps_run_info_number(ps_run_info *info, const char *key, double value) {
  if (info->number_keys.n >= (int64_t)(sizeof info->numbers / sizeof *info->numbers))
    PS_FAIL(PS_ERR_SYSTEM, "too many run parameters");
  info->numbers[info->number_keys.n] = value;
  PS_CALL(ps_strlist_push(&info->number_keys, key));
  return PS_OK;
}

void ps_run_info_free(ps_run_info *info) {
  ps_strlist_free(&info->keys);
  ps_strlist_free(&info->values);
  ps_strlist_free(&info->number_keys);
}

static int write_obs(MPI_Comm comm, ps_h5ad_writer *w, const ps_dataset *d, const ps_design *scored,
                     const ps_scores *s) {
  const ps_design *D = &d->design;
  int64_t n = D->n_cells;
  int32_t *role;
  int64_t *n_perturbations;
  char **labels;
  PS_ALLOC(role, n);
  PS_ALLOC(n_perturbations, n);
  PS_ALLOC(labels, n);
  for (int64_t j = 0; j < n; j++) {
    n_perturbations[j] = D->ptr[j + 1] - D->ptr[j];
    role[j] = n_perturbations[j] ? 1 : 0;
    size_t len = 1;
    for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) len += strlen(D->names.items[D->ids[p]]) + 1;
    PS_ALLOC(labels[j], len);
    for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) {
      if (p > D->ptr[j]) strcat(labels[j], ",");
      strcat(labels[j], D->names.items[D->ids[p]]);
    }
  }
  ps_strlist roles = {0};
  PS_CALL(ps_strlist_push(&roles, "control"));
  PS_CALL(ps_strlist_push(&roles, "perturbed"));
  ps_cell_columns cc; /* per-cell perturbation, guide, n_guides, ps (src/results/cells.c) */
  PS_CALL(ps_error_sync(comm, ps_cell_columns_build(comm, d, scored, s, NULL, &cc)));
  int64_t *n_guides;
  char **guide_units; /* parallel to guide: which unit (perturbation or control label) each guide is */
  PS_ALLOC(n_guides, n);
  PS_ALLOC(guide_units, n);
  for (int64_t j = 0; j < n; j++) {
    n_guides[j] = d->cell_n_guides ? d->cell_n_guides[j] : 0;
    guide_units[j] = d->cell_units && d->cell_units[j] ? d->cell_units[j] : "";
  }
  ps_column cols[] = {
      {.name = "role", .kind = PS_COL_CATEGORICAL, .codes = role, .categories = &roles},
      {.name = "perturbations", .kind = PS_COL_STRING, .strings = labels},
      {.name = "n_perturbations", .kind = PS_COL_I64, .i64 = n_perturbations},
      {.name = "perturbation", .kind = PS_COL_CATEGORICAL, .codes = cc.label_code, .categories = &cc.labels},
      {.name = "guide", .kind = PS_COL_CATEGORICAL, .codes = cc.guide_code, .categories = &cc.guides},
      {.name = "n_guides", .kind = PS_COL_I64, .i64 = n_guides},
      {.name = "guide_units", .kind = PS_COL_STRING, .strings = guide_units},
      {.name = "ps", .kind = PS_COL_F64, .f64 = cc.ps},
      {.name = "ps_perturbation", .kind = PS_COL_CATEGORICAL, .codes = cc.ps_code, .categories = &D->names},
      /* --control-by / --group-by: each cell's group, under the input's column name */
      {.name = d->group_column, .kind = PS_COL_CATEGORICAL, .codes = D->group, .categories = &d->groups},
  };
  int n_cols = d->group_column && D->group ? 10 : 9;
  PS_CALL(ps_h5ad_write_frame(w, "obs", d->cells.items, n, d->analysed_offset, d->n_analysed, cols, n_cols));
  for (int64_t j = 0; j < n; j++) free(labels[j]);
  free(labels);
  free(n_guides);
  free(guide_units);
  ps_cell_columns_free(&cc);
  free(role);
  free(n_perturbations);
  ps_strlist_free(&roles);
  return PS_OK;
}

/* n_cells counts the cells carrying each perturbation; the PS sums run over the
 * scored entries (with --score-all-cells, every analysed cell). */
static int write_var(MPI_Comm comm, ps_h5ad_writer *w, const ps_dataset *d, const ps_design *scored,
                     const ps_scores *s) {
  const ps_design *D = &d->design;
  int32_t K = D->n_perturbations;
  int64_t *n_cells, *n_targets, *rescaled;
  double *ps_sum, *mean_ps;
  PS_ALLOC(n_cells, K);
  PS_ALLOC(n_targets, K);
  PS_ALLOC(rescaled, K);
  PS_ALLOC(ps_sum, K);
  PS_ALLOC(mean_ps, K);
  for (int64_t p = 0; p < D->ptr[D->n_cells]; p++) n_cells[D->ids[p]]++;
  int64_t *n_scored;
  PS_ALLOC(n_scored, K);
  for (int64_t p = 0; p < scored->ptr[scored->n_cells]; p++) {
    n_scored[scored->ids[p]]++;
    ps_sum[scored->ids[p]] += s->ps[p];
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, n_scored, K, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, n_cells, K, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, ps_sum, K, MPI_DOUBLE, MPI_SUM, comm));
  for (int32_t k = 0; k < K; k++) {
    n_targets[k] = d->n_targets ? d->n_targets[k] : 0;
    rescaled[k] = s->rescaled[k];
    mean_ps[k] = n_scored[k] ? ps_sum[k] / (double)n_scored[k] : 0.0;
  }
  ps_column cols[] = {
      {.name = "n_cells", .kind = PS_COL_I64, .i64 = n_cells},
      {.name = "n_targets", .kind = PS_COL_I64, .i64 = n_targets},
      {.name = "cumulative_score", .kind = PS_COL_F64, .f64 = ps_sum},
      {.name = "mean_ps", .kind = PS_COL_F64, .f64 = mean_ps},
      {.name = "max_raw_ps", .kind = PS_COL_F64, .f64 = s->max_raw},
      {.name = "rescaled", .kind = PS_COL_I64, .i64 = rescaled},
      /* SPEC section 1: the |log2FC| threshold each selection ended at (selected targets only) */
      {.name = "target_threshold", .kind = PS_COL_F64, .f64 = d->target_threshold},
  };
  int n_cols = d->target_threshold ? 7 : 6;
  /* --group-by: perturbation k is the pair (perturbation, group) */
  ps_column pair_cols[10];
  memcpy(pair_cols, cols, (size_t)n_cols * sizeof *cols);
  int any_unscored = 0; /* SPEC section 9: perturbations left without targets are not scored */
  int64_t *scored_flag;
  PS_ALLOC(scored_flag, K);
  for (int32_t k = 0; k < K; k++) {
    scored_flag[k] = !isnan(s->max_raw[k]);
    any_unscored |= !scored_flag[k];
  }
  if (any_unscored) pair_cols[n_cols++] = (ps_column){.name = "scored", .kind = PS_COL_I64, .i64 = scored_flag};
  if (d->by_group) {
    pair_cols[n_cols++] = (ps_column){.name = "perturbation", .kind = PS_COL_STRING, .strings = d->base.items};
    pair_cols[n_cols++] = (ps_column){.name = "group", .kind = PS_COL_CATEGORICAL, .codes = d->group_of,
                                      .categories = &d->groups};
  }
  int rank;
  MPI_Comm_rank(comm, &rank);
  PS_CALL(ps_h5ad_write_frame(w, "var", D->names.items, rank == 0 ? K : 0, 0, K, pair_cols, n_cols));
  free(n_cells);
  free(n_targets);
  free(rescaled);
  free(ps_sum);
  free(mean_ps);
  free(n_scored);
  free(scored_flag);
  return PS_OK;
}

/* The basal rows of B (or of its p-values), one per basal group in group order
 * (pertscore/data.h ps_design_basal_row), as a G x N matrix. */
static int write_basal(ps_h5ad_writer *w, const ps_dataset *d, const double *rows, int32_t N, const char *name) {
  int32_t G = ps_design_n_basal(&d->design);
  double *basal;
  PS_ALLOC(basal, (int64_t)G * N);
  for (int32_t g = 0; g < G; g++)
    memcpy(basal + (int64_t)g * N, rows + ps_design_basal_row(&d->design, g) * N, (size_t)N * sizeof *basal);
  int err = ps_h5ad_write_dense(w, name, basal, G, N);
  free(basal);
  return err;
}

static int write_uns(ps_h5ad_writer *w, const ps_dataset *d, const ps_ridge *ridge, const ps_scores *s,
                     const ps_run_info *info) {
  char name[512];
  PS_CALL(ps_h5ad_write_string(w, "uns/pertscore/version", PS_VERSION));
  for (int64_t i = 0; i < info->keys.n; i++) {
    snprintf(name, sizeof name, "uns/pertscore/parameters/%s", info->keys.items[i]);
    PS_CALL(ps_h5ad_write_string(w, name, info->values.items[i]));
  }
  for (int64_t i = 0; i < info->number_keys.n; i++) {
    snprintf(name, sizeof name, "uns/pertscore/parameters/%s", info->number_keys.items[i]);
    PS_CALL(ps_h5ad_write_scalar(w, name, info->numbers[i]));
  }
  char **genes;
  PS_ALLOC(genes, d->n_regression);
  for (int32_t n = 0; n < d->n_regression; n++) genes[n] = d->genes.items[d->regression_gene[n]];
  PS_CALL(ps_h5ad_write_strings(w, "uns/pertscore/regression_genes", genes, d->n_regression));
  free(genes);
  PS_CALL(write_basal(w, d, ridge->beta, ridge->n_genes, "uns/pertscore/basal"));
  if (s->weights) /* SPEC section 9: --gene-weights residual */
    PS_CALL(ps_h5ad_write_dense(w, "uns/pertscore/gene_weights", s->weights, 1, ridge->n_genes));
  PS_CALL(ps_h5ad_write_dense(w, "uns/pertscore/winsor_cap", d->winsor_cap, d->n_winsor_groups > 1 ? d->n_winsor_groups : 1,
                              d->n_regression));
  if (d->group_column) { /* rows of basal (and of winsor_cap with --group-by) follow these groups */
    PS_CALL(ps_h5ad_write_strings(w, "uns/pertscore/groups", d->groups.items, d->groups.n));
    PS_CALL(ps_h5ad_write_string(w, "uns/pertscore/group_column", d->group_column));
    PS_CALL(ps_h5ad_write_string(w, "uns/pertscore/group_mode", d->by_group ? "group-by" : "control-by"));
  }
  PS_CALL(ps_h5ad_write_strings(w, "uns/pertscore/targets/perturbation", d->targets.perturbation.items,
                                d->targets.perturbation.n));
  PS_CALL(ps_h5ad_write_strings(w, "uns/pertscore/targets/gene", d->targets.gene.items, d->targets.gene.n));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/qp/max_kkt_residual", s->max_kkt));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/qp/n_solved", (double)s->n_qp));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/pertscore/n_control_cells", (double)d->n_control));
  return PS_OK;
}

int ps_results_write(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                     const ps_ridge *ridge, const double *pvalues, const ps_scores *scores, const ps_run_info *info) {
  return ps_results_write_extra(comm, path, d, scored, ridge, pvalues, scores, info, NULL, 0);
}

static int write_extra(ps_h5ad_writer *w, const ps_results_extra *e) {
  switch (e->kind) {
    case PS_EXTRA_ARRAY: return ps_h5ad_write_dense(w, e->name, e->values, 1, e->n);
    case PS_EXTRA_SCALAR: return ps_h5ad_write_scalar(w, e->name, e->values[0]);
    case PS_EXTRA_STRING: return ps_h5ad_write_string(w, e->name, e->text ? e->text : "");
  }
  PS_FAIL(PS_ERR_SYSTEM, "unknown kind of results entry %s", e->name);
}

int ps_results_write_extra(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                           const ps_ridge *ridge, const double *pvalues, const ps_scores *scores,
                           const ps_run_info *info, const ps_results_extra *extra, int n_extra) {
  ps_h5ad_writer *w;
  PS_CALL(ps_h5ad_create(comm, path, &w));
  /* X = PS: the scored design's sparsity pattern, values from the scores */
  ps_csr x = {.n_rows = scored->n_cells, .n_cols = scored->n_perturbations, .indptr = scored->ptr,
              .indices = scored->ids, .data = scores->ps};
  PS_CALL(ps_h5ad_write_csr(w, "X", &x, d->analysed_offset, d->n_analysed, 0));
  PS_CALL(write_obs(comm, w, d, scored, scores));
  PS_CALL(write_var(comm, w, d, scored, scores));
  /* varm: perturbation rows of B and of its permutation p-values (row 0, the
   * intercept, goes to uns/pertscore/basal and basal_pvalue) */
  int32_t K = d->design.n_perturbations, N = ridge->n_genes;
  PS_CALL(ps_h5ad_write_dense(w, "varm/beta", ridge->beta + N, K, N));
  if (pvalues) {
    PS_CALL(ps_h5ad_write_dense(w, "varm/pvalue", pvalues + N, K, N));
    PS_CALL(write_basal(w, d, pvalues, N, "uns/pertscore/basal_pvalue"));
  }
  PS_CALL(write_uns(w, d, ridge, scores, info));
  for (int i = 0; i < n_extra; i++) PS_CALL(write_extra(w, &extra[i]));
  PS_CALL(ps_h5ad_close(&w));
  return PS_OK;
}

/* ---------------------------------------------------------------- dosage (SPEC section 5) */

static int write_dosage_var(ps_h5ad_writer *w, int rank, const ps_dosage_table *t) {
  int32_t K = t->n_perturbations;
  int32_t *status_code, *class_code;
  int64_t *crispri;
  PS_ALLOC(status_code, K);
  PS_ALLOC(class_code, K);
  PS_ALLOC(crispri, K);
  ps_strlist statuses = {0}, classes = {0};
  for (int s = 0; s < PS_DOSAGE_N_STATUS_NAMES - 1; s++)
    PS_CALL(ps_strlist_push(&statuses, ps_dosage_table_status_name(s)));
  PS_CALL(ps_strlist_push(&statuses, ps_dosage_table_status_name(PS_DOSAGE_NO_OWN_GENE)));
  PS_CALL(ps_strlist_push(&classes, "buffered"));
  PS_CALL(ps_strlist_push(&classes, "sensitive"));
  PS_CALL(ps_strlist_push(&classes, "none"));
  for (int32_t k = 0; k < K; k++) {
    status_code[k] = t->status[k] == PS_DOSAGE_NO_OWN_GENE ? PS_DOSAGE_N_STATUS_NAMES - 1 : t->status[k];
    class_code[k] = t->cls[k] == PS_DOSAGE_BUFFERED ? 0 : t->cls[k] == PS_DOSAGE_SENSITIVE ? 1 : 2;
    crispri[k] = t->crispri_efficient[k];
  }
  ps_column cols[] = {
      {.name = "ed50", .kind = PS_COL_F64, .f64 = t->ed50},
      {.name = "hill_b", .kind = PS_COL_F64, .f64 = t->hill_b},
      {.name = "hill_c", .kind = PS_COL_F64, .f64 = t->hill_c},
      {.name = "hill_d", .kind = PS_COL_F64, .f64 = t->hill_d},
      {.name = "hill_e", .kind = PS_COL_F64, .f64 = t->hill_e},
      {.name = "hill_0", .kind = PS_COL_F64, .f64 = t->hill0},
      {.name = "hill_1", .kind = PS_COL_F64, .f64 = t->hill1},
      {.name = "dosage_class", .kind = PS_COL_CATEGORICAL, .codes = class_code, .categories = &classes},
      {.name = "dosage_status", .kind = PS_COL_CATEGORICAL, .codes = status_code, .categories = &statuses},
      {.name = "pcc", .kind = PS_COL_F64, .f64 = t->pcc},
      {.name = "pcc_p", .kind = PS_COL_F64, .f64 = t->pcc_p},
      {.name = "scc", .kind = PS_COL_F64, .f64 = t->scc},
      {.name = "scc_p", .kind = PS_COL_F64, .f64 = t->scc_p},
      {.name = "crispri_efficient", .kind = PS_COL_I64, .i64 = crispri},
      {.name = "own_min", .kind = PS_COL_F64, .f64 = t->own_min},
      {.name = "own_control_median", .kind = PS_COL_F64, .f64 = t->own_control_median},
  };
  PS_CALL(ps_h5ad_frame_set_columns(w, "var", NULL, rank == 0 ? K : 0, 0, K, cols, (int)(sizeof cols / sizeof *cols)));
  ps_strlist_free(&statuses);
  ps_strlist_free(&classes);
  free(status_code);
  free(class_code);
  free(crispri);
  return PS_OK;
}

int ps_results_add_dosage(MPI_Comm comm, const char *path, const ps_dosage_table *t, const ps_dosage_options *opt,
                          double seconds, const char *command) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  ps_h5ad_writer *w;
  PS_CALL(ps_h5ad_open_update(comm, path, &w));
  PS_CALL(write_dosage_var(w, rank, t));
  PS_CALL(ps_h5ad_remove(w, "uns/pertscore/dosage"));
  int32_t K = t->n_perturbations, B = t->n_bins;
  PS_CALL(ps_h5ad_write_dense(w, "uns/pertscore/dosage/bin_x", t->bin_x, K, B));
  PS_CALL(ps_h5ad_write_dense(w, "uns/pertscore/dosage/bin_ps", t->bin_ps, K, B));
  PS_CALL(ps_h5ad_write_dense(w, "uns/pertscore/dosage/bin_count", t->bin_count, K, B));
  const struct {
    const char *name;
    double value;
  } numbers[] = {
      {"min_cells", (double)opt->min_cells}, {"n_bins", opt->n_bins}, {"min_bins", opt->min_bins},
      {"min_drop", opt->min_drop}, {"ed50_split", opt->ed50_split}, {"crispri_r", opt->crispri_r},
      {"crispri_p", opt->crispri_p}, {"n_control_cells", (double)t->n_control},
      {"n_with_own_gene", (double)t->n_with_own_gene}, {"n_fitted", (double)t->n_fitted},
      {"n_buffered", (double)t->n_buffered}, {"n_sensitive", (double)t->n_sensitive},
      {"n_crispri_efficient", (double)t->n_crispri_efficient}, {"hill_fits", (double)t->hill_fits},
      {"hill_fallback", (double)t->hill_fallback}, {"seconds", seconds},
  };
  char name[256];
  for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++) {
    snprintf(name, sizeof name, "uns/pertscore/dosage/%s", numbers[i].name);
    PS_CALL(ps_h5ad_write_scalar(w, name, numbers[i].value));
  }
  if (command) PS_CALL(ps_h5ad_write_string(w, "uns/pertscore/dosage/command", command));
  PS_CALL(ps_h5ad_close(&w));
  return PS_OK;
}
