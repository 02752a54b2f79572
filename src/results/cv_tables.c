/* The cross-validation results (docs/cv.md "Output"): a valid .h5ad whose
 * tables are AnnData data frames under uns/cv, and a TSV summary, of a finished
 * cv stage (pertscore/cv.h). Everything written here is replicated on every rank
 * (rank 0 writes the rows), except the cells scheme's obs, which each rank writes
 * for its own cells. Through the io module only. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/io.h"
#include "pertscore/results.h"

/* ---- text ---- */

typedef struct {
  char *data;
  int64_t len, cap;
  int failed; /* out of memory: the text is incomplete (write_text syncs this) */
} text;

static int text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int text_add(text *t, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->data ? t->data + t->len : NULL, t->data ? (size_t)(t->cap - t->len) : 0, fmt, ap);
    va_end(ap);
    if (t->data && t->len + n < t->cap) {
      t->len += n;
      return PS_OK;
    }
    int64_t cap = t->cap ? 2 * t->cap : 1 << 14;
    while (cap < t->len + n + 1) cap *= 2;
    char *grown = t->failed ? NULL : realloc(t->data, (size_t)cap);
    if (!grown) { /* not an error of this rank alone: write_text tells every rank */
      t->failed = 1;
      return PS_OK;
    }
    t->data = grown;
    t->cap = cap;
  }
}

/* TSV numbers are %.6g (the results file keeps full precision); NaN is written as
 * NA (R, pandas read it). */
static int text_number(text *t, double v) { return isnan(v) ? text_add(t, "\tNA") : text_add(t, "\t%.6g", v); }

/* Rank 0's text into path (collective). */
static int write_text(MPI_Comm comm, const char *path, const text *t) {
  PS_CALL(ps_error_sync(comm, t->failed ? ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__,
                                                       "out of memory writing %s", path)
                                        : PS_OK));
  int rank;
  MPI_Comm_rank(comm, &rank);
  return ps_text_write_ordered(comm, path, rank == 0 ? t->data : "", rank == 0 ? t->len : 0);
}

/* ---- small helpers for replicated frames ---- */

static int write_replicated_frame(MPI_Comm comm, ps_h5ad_writer *w, const char *name, char **index, int64_t n,
                                  const ps_column *cols, int n_cols) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  return ps_h5ad_write_frame(w, name, index, rank == 0 ? n : 0, 0, n, cols, n_cols);
}

static int write_info(ps_h5ad_writer *w, const char *scheme, const ps_run_info *info) {
  char name[512];
  PS_CALL(ps_h5ad_write_string(w, "uns/cv/scheme", scheme));
  PS_CALL(ps_h5ad_write_string(w, "uns/cv/version", PS_VERSION));
  for (int64_t i = 0; i < info->keys.n; i++) {
    snprintf(name, sizeof name, "uns/cv/parameters/%s", info->keys.items[i]);
    PS_CALL(ps_h5ad_write_string(w, name, info->values.items[i]));
  }
  for (int64_t i = 0; i < info->number_keys.n; i++) {
    snprintf(name, sizeof name, "uns/cv/parameters/%s", info->number_keys.items[i]);
    PS_CALL(ps_h5ad_write_scalar(w, name, info->numbers[i]));
  }
  return PS_OK;
}

/* A new file, or the results file opened for update with its old uns/cv removed. */
static int open_target(MPI_Comm comm, const char *path, int where, ps_h5ad_writer **w) {
  if (where == PS_CV_NEW_FILE) return ps_h5ad_create(comm, path, w);
  PS_CALL(ps_h5ad_open_update(comm, path, w));
  return ps_h5ad_remove(*w, "uns/cv");
}

static void free_strings(char **s, int64_t n) {
  if (!s) return;
  for (int64_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

/* Labels that could not be allocated on any rank (missing > 0): every rank's error,
 * before the collective write that would otherwise wait for the failed rank. */
static int sync_missing(MPI_Comm comm, int64_t missing) {
  return ps_error_sync(comm, missing ? ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__,
                                                    "out of memory formatting %lld table labels", (long long)missing)
                                     : PS_OK);
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return ps_strdup(buf);
}

/* ---------------------------------------------------------------- perturbations scheme */

static int model_used(const ps_cv_perturbation_result *r, int model) {
  return model != PS_CV_MODEL_PREDICTIONS || r->has_predictions;
}

/* A frame at path with one row per held-out perturbation and used model (index
 * "P|model", columns perturbation, fold, model, then value_names[m] =
 * table[(k * PS_CV_N_MODELS + model) * n_values + m]): uns/cv/metrics and uns/cv/pereggrn. */
static int write_per_perturbation(MPI_Comm comm, ps_h5ad_writer *w, const char *path, const ps_strlist *names,
                                  const ps_cv_perturbation_result *r, const double *table, int n_values,
                                  const char *const *value_names) {
  int64_t n = 0;
  for (int32_t k = 0; k < r->n_perturbations; k++)
    if (r->fold[k] >= 0)
      for (int model = 0; model < PS_CV_N_MODELS; model++) n += model_used(r, model);
  char **index, **pert, **model_name;
  int64_t *fold;
  double *values;
  ps_column *cols;
  int64_t missing = 0;
  PS_ALLOC_SYNC(comm, index, n);
  PS_ALLOC_SYNC(comm, pert, n);
  PS_ALLOC_SYNC(comm, model_name, n);
  PS_ALLOC_SYNC(comm, fold, n);
  PS_ALLOC_SYNC(comm, values, n * n_values);
  PS_ALLOC_SYNC(comm, cols, 3 + n_values);
  int64_t row = 0;
  for (int32_t k = 0; k < r->n_perturbations; k++) {
    if (r->fold[k] < 0) continue;
    for (int model = 0; model < PS_CV_N_MODELS; model++) {
      if (!model_used(r, model)) continue;
      index[row] = format("%s|%s", names->items[k], ps_cv_model_names[model]);
      pert[row] = ps_strdup(names->items[k]);
      model_name[row] = ps_strdup(ps_cv_model_names[model]);
      missing += (!index[row] || !pert[row] || !model_name[row]);
      fold[row] = r->fold[k];
      for (int m = 0; m < n_values; m++)
        values[(int64_t)m * n + row] = table[((int64_t)k * PS_CV_N_MODELS + model) * n_values + m];
      row++;
    }
  }
  cols[0] = (ps_column){.name = "perturbation", .kind = PS_COL_STRING, .strings = pert};
  cols[1] = (ps_column){.name = "fold", .kind = PS_COL_I64, .i64 = fold};
  cols[2] = (ps_column){.name = "model", .kind = PS_COL_STRING, .strings = model_name};
  for (int m = 0; m < n_values; m++)
    cols[3 + m] = (ps_column){.name = value_names[m], .kind = PS_COL_F64, .f64 = values + (int64_t)m * n};
  PS_CALL(sync_missing(comm, missing));
  PS_CALL(write_replicated_frame(comm, w, path, index, n, cols, 3 + n_values));
  free_strings(index, n);
  free_strings(pert, n);
  free_strings(model_name, n);
  free(fold);
  free(values);
  free(cols);
  return PS_OK;
}

/* Summary rows: every fold then "all", every model used. */
static int summary_rows(const ps_cv_perturbation_result *r, int64_t *n) {
  *n = 0;
  for (int model = 0; model < PS_CV_N_MODELS; model++) *n += model_used(r, model);
  *n *= r->n_folds + 1;
  return PS_OK;
}

static int write_summary(MPI_Comm comm, ps_h5ad_writer *w, const char *tsv, const ps_cv_perturbation_result *r) {
  int F = r->n_folds;
  int64_t cells = ((int64_t)F + 1) * PS_CV_N_MODELS * PS_CV_N_METRICS, n;
  double *mean;
  int64_t *count;
  PS_ALLOC_SYNC(comm, mean, cells);
  PS_ALLOC_SYNC(comm, count, cells);
  PS_CALL(ps_cv_summarize(r, mean, &count[0]));
  PS_CALL(summary_rows(r, &n));
  char **index, **fold, **model_name;
  int64_t *n_pert, *n_comp, *n_metric;
  double *values;
  PS_ALLOC_SYNC(comm, index, n);
  PS_ALLOC_SYNC(comm, fold, n);
  PS_ALLOC_SYNC(comm, model_name, n);
  PS_ALLOC_SYNC(comm, n_pert, n);
  PS_ALLOC_SYNC(comm, n_comp, n);
  PS_ALLOC_SYNC(comm, values, n * PS_CV_N_METRICS);
  PS_ALLOC_SYNC(comm, n_metric, n * PS_CV_N_METRICS);
  char count_names[PS_CV_N_METRICS][64];
  int64_t missing = 0;
  text t = {0};
  PS_CALL(text_add(&t, "fold\tmodel\tn_perturbations"));
  for (int m = 0; m < PS_CV_N_METRICS; m++) PS_CALL(text_add(&t, "\t%s", ps_cv_metric_names[m]));
  PS_CALL(text_add(&t, "\tn_compared"));
  for (int m = 0; m < PS_CV_N_METRICS; m++) {
    snprintf(count_names[m], sizeof count_names[m], "n_%s", ps_cv_metric_names[m]);
    PS_CALL(text_add(&t, "\t%s", count_names[m]));
  }
  PS_CALL(text_add(&t, "\n"));
  int64_t row = 0;
  for (int f = 0; f <= F; f++)
    for (int model = 0; model < PS_CV_N_MODELS; model++) {
      if (!model_used(r, model)) continue;
      int64_t base = ((int64_t)f * PS_CV_N_MODELS + model) * PS_CV_N_METRICS;
      fold[row] = f == F ? ps_strdup("all") : format("%d", f);
      model_name[row] = ps_strdup(ps_cv_model_names[model]);
      index[row] = format("%s|%s", fold[row] ? fold[row] : "", ps_cv_model_names[model]);
      missing += (!index[row] || !fold[row] || !model_name[row]);
      /* held-out perturbations of the fold (the MSE is defined wherever the model predicts) */
      int64_t held = 0;
      for (int32_t k = 0; k < r->n_perturbations; k++) held += r->fold[k] >= 0 && (f == F || r->fold[k] == f);
      n_pert[row] = held;
      PS_CALL(text_add(&t, "%s\t%s\t%lld", fold[row] ? fold[row] : "", model_name[row] ? model_name[row] : "",
                       (long long)held));
      for (int m = 0; m < PS_CV_N_METRICS; m++) {
        values[(int64_t)m * n + row] = mean[base + m];
        PS_CALL(text_number(&t, mean[base + m]));
      }
      /* compared: held out and predicted by every model; n_<metric>: those the mean is over */
      int64_t comp = 0;
      for (int32_t k = 0; k < r->n_perturbations; k++)
        comp += r->fold[k] >= 0 && (f == F || r->fold[k] == f) && (!r->compared || r->compared[k]);
      n_comp[row] = comp;
      PS_CALL(text_add(&t, "\t%lld", (long long)comp));
      for (int m = 0; m < PS_CV_N_METRICS; m++) {
        n_metric[(int64_t)m * n + row] = count[base + m];
        PS_CALL(text_add(&t, "\t%lld", (long long)count[base + m]));
      }
      PS_CALL(text_add(&t, "\n"));
      row++;
    }
  ps_column cols[4 + 2 * PS_CV_N_METRICS] = {
      {.name = "fold", .kind = PS_COL_STRING, .strings = fold},
      {.name = "model", .kind = PS_COL_STRING, .strings = model_name},
      {.name = "n_perturbations", .kind = PS_COL_I64, .i64 = n_pert},
  };
  for (int m = 0; m < PS_CV_N_METRICS; m++)
    cols[3 + m] = (ps_column){.name = ps_cv_metric_names[m], .kind = PS_COL_F64, .f64 = values + (int64_t)m * n};
  cols[3 + PS_CV_N_METRICS] = (ps_column){.name = "n_compared", .kind = PS_COL_I64, .i64 = n_comp};
  for (int m = 0; m < PS_CV_N_METRICS; m++)
    cols[4 + PS_CV_N_METRICS + m] =
        (ps_column){.name = count_names[m], .kind = PS_COL_I64, .i64 = n_metric + (int64_t)m * n};
  PS_CALL(sync_missing(comm, missing));
  PS_CALL(write_replicated_frame(comm, w, "uns/cv/summary", index, n, cols, 4 + 2 * PS_CV_N_METRICS));
  if (tsv) PS_CALL(write_text(comm, tsv, &t));
  free(t.data);
  free_strings(index, n);
  free_strings(fold, n);
  free_strings(model_name, n);
  free(n_pert);
  free(n_comp);
  free(n_metric);
  free(values);
  free(mean);
  free(count);
  return PS_OK;
}

static int write_fold_table(MPI_Comm comm, ps_h5ad_writer *w, const ps_cv_perturbation_result *r) {
  int F = r->n_folds;
  char **index;
  int64_t *n_train, *n_test, *n_pcs, missing = 0;
  PS_ALLOC_SYNC(comm, index, F);
  PS_ALLOC_SYNC(comm, n_train, F);
  PS_ALLOC_SYNC(comm, n_test, F);
  PS_ALLOC_SYNC(comm, n_pcs, F);
  for (int f = 0; f < F; f++) {
    index[f] = format("%d", f);
    missing += (!index[f]);
    n_train[f] = r->n_train[f];
    n_pcs[f] = r->n_pcs[f];
  }
  for (int32_t k = 0; k < r->n_perturbations; k++)
    if (r->fold[k] >= 0) n_test[r->fold[k]]++;
  ps_column cols[] = {
      {.name = "n_train", .kind = PS_COL_I64, .i64 = n_train},
      {.name = "n_test", .kind = PS_COL_I64, .i64 = n_test},
      {.name = "n_pcs", .kind = PS_COL_I64, .i64 = n_pcs},
  };
  PS_CALL(sync_missing(comm, missing));
  PS_CALL(write_replicated_frame(comm, w, "uns/cv/folds", index, F, cols, 3));
  free_strings(index, F);
  free(n_train);
  free(n_test);
  free(n_pcs);
  return PS_OK;
}

/* uns/cv/pereggrn (per held-out perturbation and model) and uns/cv/pereggrn_summary
 * (per model, over all folds: the mean over the compared perturbations and its count,
 * n_<metric>): PEREGGRN's conventions, docs/cv.md. Collective (rank 0 writes). */
static int write_pereggrn(MPI_Comm comm, ps_h5ad_writer *w, const ps_strlist *names,
                          const ps_cv_perturbation_result *r) {
  const int NP = PS_CV_N_PEREGGRN;
  int64_t n_models = 0;
  for (int model = 0; model < PS_CV_N_MODELS; model++) n_models += model_used(r, model);
  PS_CALL(write_per_perturbation(comm, w, "uns/cv/pereggrn", names, r, r->pereggrn, NP, ps_cv_pereggrn_names));
  double *sum; /* per model and measure, over the compared held-out perturbations */
  int64_t *count;
  PS_ALLOC_SYNC(comm, sum, PS_CV_N_MODELS * NP);
  PS_ALLOC_SYNC(comm, count, PS_CV_N_MODELS * NP);
  for (int32_t k = 0; k < r->n_perturbations; k++) {
    if (r->fold[k] < 0 || (r->compared && !r->compared[k])) continue;
    for (int model = 0; model < PS_CV_N_MODELS; model++)
      for (int m = 0; model_used(r, model) && m < NP; m++) {
        double v = r->pereggrn[((int64_t)k * PS_CV_N_MODELS + model) * NP + m];
        if (isnan(v)) continue;
        sum[model * NP + m] += v;
        count[model * NP + m]++;
      }
  }
  /* the summary: one row per model */
  int64_t row = 0, missing = 0;
  char **sindex, count_names[PS_CV_N_PEREGGRN][64];
  double *means;
  int64_t *ns;
  PS_ALLOC_SYNC(comm, sindex, n_models);
  PS_ALLOC_SYNC(comm, means, n_models * NP);
  PS_ALLOC_SYNC(comm, ns, n_models * NP);
  for (int model = 0; model < PS_CV_N_MODELS; model++) {
    if (!model_used(r, model)) continue;
    sindex[row] = ps_strdup(ps_cv_model_names[model]);
    missing += (!sindex[row]);
    for (int m = 0; m < NP; m++) {
      int64_t c = count[model * NP + m];
      means[(int64_t)m * n_models + row] = c ? sum[model * NP + m] / (double)c : NAN;
      ns[(int64_t)m * n_models + row] = c;
    }
    row++;
  }
  ps_column scols[2 * PS_CV_N_PEREGGRN];
  for (int m = 0; m < NP; m++) {
    snprintf(count_names[m], sizeof count_names[m], "n_%s", ps_cv_pereggrn_names[m]);
    scols[m] = (ps_column){.name = ps_cv_pereggrn_names[m], .kind = PS_COL_F64, .f64 = means + (int64_t)m * n_models};
    scols[NP + m] = (ps_column){.name = count_names[m], .kind = PS_COL_I64, .i64 = ns + (int64_t)m * n_models};
  }
  PS_CALL(sync_missing(comm, missing));
  PS_CALL(write_replicated_frame(comm, w, "uns/cv/pereggrn_summary", sindex, n_models, scols, 2 * NP));
  free_strings(sindex, n_models);
  free(means);
  free(ns);
  free(sum);
  free(count);
  return PS_OK;
}

/* uns/cv/halves: every analysed cell's group (its perturbation, "control", or "" when
 * it carries two or more and is left out) and split half (-1 when left out), so that the
 * split-half ceiling can be recomputed from the file. Collective. */
static int write_halves(MPI_Comm comm, ps_h5ad_writer *w, const ps_dataset *d, const ps_cv_perturbation_result *r) {
  const ps_design *D = &d->design;
  int64_t n = r->n_local_cells;
  if (n != D->n_cells || n != d->cells.n)
    PS_FAIL(PS_ERR_SYSTEM, "cv: %lld split halves for %lld cells", (long long)n, (long long)D->n_cells);
  int64_t *half;
  char **group;
  PS_ALLOC_SYNC(comm, half, n > 0 ? n : 1);
  PS_ALLOC_SYNC(comm, group, n > 0 ? n : 1);
  for (int64_t j = 0; j < n; j++) {
    int64_t ids = D->ptr[j + 1] - D->ptr[j];
    half[j] = r->cell_half[j];
    group[j] = ids > 1 ? "" : ids == 1 ? D->names.items[D->ids[D->ptr[j]]] : "control";
  }
  ps_column cols[] = {
      {.name = "group", .kind = PS_COL_STRING, .strings = group},
      {.name = "half", .kind = PS_COL_I64, .i64 = half},
  };
  int err = ps_h5ad_write_frame(w, "uns/cv/halves", d->cells.items, n, d->analysed_offset, d->n_analysed, cols, 2);
  free(half);
  free(group);
  return err;
}

/* The perturbations scheme's tables (obs = perturbations, var = evaluated genes,
 * uns/cv/..., the run's parameters in uns/cv/parameters) and the per-fold,
 * per-model summary into tsv; with d (the dataset the scheme ran on; may be NULL)
 * uns/cv/halves, each analysed cell's group and split half. Collective. */
static int write_perturbations(MPI_Comm comm, const char *path, int where, const char *tsv, const ps_dataset *d,
                               const ps_strlist *perturbations, const ps_strlist *genes,
                               const ps_cv_perturbation_result *r, const ps_cv_options *opt,
                               const ps_run_info *info) {
  int32_t K = r->n_perturbations;
  int64_t G = r->n_genes;
  int add = where == PS_CV_ADD_TO_RESULTS;
  ps_h5ad_writer *w;
  ps_fault_point("cv-write"); /* tests/fault/oom_sync.sh: an allocation failing on one rank */
  PS_CALL(open_target(comm, path, where, &w));
  PS_CALL(write_info(w, "perturbations", info)); /* first: it creates uns/cv, the parent of uns/cv/obs */
  /* obs = perturbations, var = evaluated genes */
  int64_t *fold, *n_cells, *compared;
  char **own;
  PS_ALLOC_SYNC(comm, fold, K);
  PS_ALLOC_SYNC(comm, n_cells, K);
  PS_ALLOC_SYNC(comm, compared, K);
  PS_ALLOC_SYNC(comm, own, K);
  for (int32_t k = 0; k < K; k++) {
    fold[k] = r->fold[k];
    compared[k] = r->compared ? r->compared[k] : r->fold[k] >= 0;
    n_cells[k] = r->n_cells[k];
    own[k] = r->own_gene[k] >= 0 ? genes->items[r->own_gene[k]] : "";
  }
  ps_column obs_cols[] = {
      {.name = "fold", .kind = PS_COL_I64, .i64 = fold},
      {.name = "n_cells", .kind = PS_COL_I64, .i64 = n_cells},
      {.name = "perturbed_gene", .kind = PS_COL_STRING, .strings = own},
      {.name = "compared", .kind = PS_COL_I64, .i64 = compared},
  };
  PS_CALL(write_replicated_frame(comm, w, add ? "uns/cv/obs" : "obs", perturbations->items, K, obs_cols, 4));
  PS_CALL(write_replicated_frame(comm, w, add ? "uns/cv/var" : "var", genes->items, G, NULL, 0));
  free(fold);
  free(n_cells);
  free(compared);
  free(own);
  PS_CALL(ps_h5ad_write_scalar(w, "uns/cv/n_control_cells", (double)r->n_cells[K]));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/cv/n_cells_multiple", (double)r->n_multiple));
  PS_CALL(ps_h5ad_write_dense(w, "uns/cv/control_mean", r->control_mean, 1, G));
  PS_CALL(write_fold_table(comm, w, r));
  PS_CALL(write_per_perturbation(comm, w, "uns/cv/metrics", perturbations, r, r->metrics, PS_CV_N_METRICS,
                                 ps_cv_metric_names));
  PS_CALL(write_summary(comm, w, tsv, r));
  if (d && r->cell_half) PS_CALL(write_halves(comm, w, d, r));
  if (r->pereggrn) PS_CALL(write_pereggrn(comm, w, perturbations, r));
  if (r->has_predictions) {
    PS_CALL(ps_h5ad_write_scalar(w, "uns/cv/n_prediction_rows_ignored", (double)r->n_predictions_ignored));
    PS_CALL(ps_h5ad_write_scalar(w, "uns/cv/n_predictions_missing", (double)r->n_predictions_missing));
  }
  if (opt->keep_predictions && r->observed && r->predicted && !add) { /* a results file's X is its PS */
    /* X = observed deltas; layers/<model> = each model's predicted deltas (NaN where none) */
    PS_CALL(ps_h5ad_write_dense(w, "X", r->observed, K, G));
    char name[256];
    for (int model = 0; model < PS_CV_MODEL_CEILING; model++) {
      if (!model_used(r, model)) continue;
      snprintf(name, sizeof name, "layers/%s", ps_cv_model_names[model]);
      PS_CALL(ps_h5ad_write_dense(w, name, r->predicted + (int64_t)model * K * G, K, G));
    }
  }
  PS_CALL(ps_h5ad_close(&w));
  return PS_OK;
}

/* ---------------------------------------------------------------- cells scheme */

static const char *group_name(const ps_dataset *d, int32_t g) {
  int32_t K = d->design.n_perturbations;
  return g < K ? d->design.names.items[g] : (g == K ? "control" : "all");
}

/* The cells scheme's tables (obs = analysed cells with their fold, var =
 * perturbations) and the lambda curve summary into tsv. Collective. */
static int write_cells(MPI_Comm comm, const char *path, int where, const char *tsv, const ps_dataset *d,
                       const ps_cv_cells_result *r, const ps_cv_options *opt, const ps_run_info *info) {
  int F = r->n_folds, L = r->n_lambdas;
  int32_t K = r->n_perturbations, GK = K + 2;
  int add = where == PS_CV_ADD_TO_RESULTS;
  ps_h5ad_writer *w;
  ps_fault_point("cv-write");
  PS_CALL(open_target(comm, path, where, &w));
  PS_CALL(write_info(w, "cells", info)); /* first: it creates uns/cv, the parent of uns/cv/obs */
  /* obs = analysed cells and their fold */
  int64_t *cell_fold;
  PS_ALLOC_SYNC(comm, cell_fold, d->design.n_cells);
  for (int64_t j = 0; j < d->design.n_cells; j++) cell_fold[j] = r->cell_fold[j];
  ps_column obs_col = {.name = "fold", .kind = PS_COL_I64, .i64 = cell_fold};
  PS_CALL(ps_h5ad_write_frame(w, add ? "uns/cv/obs" : "obs", d->cells.items, d->design.n_cells, d->analysed_offset,
                              d->n_analysed, &obs_col, 1));
  free(cell_fold);
  /* var = perturbations: pooled held-out error at the chosen lambda and PS stability */
  double *mse, *r2, *pearson;
  int64_t *n_cells;
  PS_ALLOC_SYNC(comm, mse, K);
  PS_ALLOC_SYNC(comm, r2, K);
  PS_ALLOC_SYNC(comm, pearson, K);
  PS_ALLOC_SYNC(comm, n_cells, K);
  for (int32_t k = 0; k < K; k++) {
    int64_t i = ((int64_t)F * L + r->chosen) * GK + k;
    mse[k] = r->mse[i];
    r2[k] = r->r2[i];
    n_cells[k] = r->n_cells[(int64_t)F * GK + k];
    pearson[k] = r->ps_pearson[(int64_t)F * (K + 1) + k];
  }
  ps_column var_cols[] = {
      {.name = "n_cells", .kind = PS_COL_I64, .i64 = n_cells},
      {.name = "heldout_mse", .kind = PS_COL_F64, .f64 = mse},
      {.name = "heldout_r2", .kind = PS_COL_F64, .f64 = r2},
      {.name = "ps_pearson", .kind = PS_COL_F64, .f64 = pearson},
  };
  PS_CALL(write_replicated_frame(comm, w, add ? "uns/cv/var" : "var", d->design.names.items, K, var_cols, 4));
  free(mse);
  free(r2);
  free(pearson);
  free(n_cells);
  PS_CALL(ps_h5ad_write_scalar(w, "uns/cv/chosen_ridge_lambda", r->lambdas[r->chosen]));
  PS_CALL(ps_h5ad_write_dense(w, "uns/cv/ridge_lambdas", r->lambdas, 1, L));
  char **regression;
  PS_ALLOC_SYNC(comm, regression, d->n_regression);
  for (int32_t n = 0; n < d->n_regression; n++) regression[n] = d->genes.items[d->regression_gene[n]];
  PS_CALL(ps_h5ad_write_strings(w, "uns/cv/regression_genes", regression, d->n_regression));
  free(regression);

  /* lambda curve: (fold, lambda) over all held-out cells, and the TSV */
  int64_t n = ((int64_t)F + 1) * L;
  char **index, **fold;
  double *lambda, *curve_mse, *curve_r2;
  int64_t *curve_n, *chosen, missing = 0;
  PS_ALLOC_SYNC(comm, index, n);
  PS_ALLOC_SYNC(comm, fold, n);
  PS_ALLOC_SYNC(comm, lambda, n);
  PS_ALLOC_SYNC(comm, curve_mse, n);
  PS_ALLOC_SYNC(comm, curve_r2, n);
  PS_ALLOC_SYNC(comm, curve_n, n);
  PS_ALLOC_SYNC(comm, chosen, n);
  text t = {0};
  PS_CALL(text_add(&t, "fold\tridge_lambda\tn_cells\tmse\tr2\tchosen\n"));
  for (int f = 0; f <= F; f++)
    for (int l = 0; l < L; l++) {
      int64_t row = (int64_t)f * L + l, i = row * GK + K + 1;
      fold[row] = f == F ? ps_strdup("all") : format("%d", f);
      index[row] = format("%s|%.6g", fold[row] ? fold[row] : "", r->lambdas[l]);
      missing += (!fold[row] || !index[row]);
      lambda[row] = r->lambdas[l];
      curve_mse[row] = r->mse[i];
      curve_r2[row] = r->r2[i];
      curve_n[row] = r->n_cells[(int64_t)f * GK + K + 1];
      chosen[row] = l == r->chosen;
      PS_CALL(text_add(&t, "%s\t%.6g\t%lld", fold[row] ? fold[row] : "", lambda[row], (long long)curve_n[row]));
      PS_CALL(text_number(&t, curve_mse[row]));
      PS_CALL(text_number(&t, curve_r2[row]));
      PS_CALL(text_add(&t, "\t%lld\n", (long long)chosen[row]));
    }
  ps_column curve_cols[] = {
      {.name = "fold", .kind = PS_COL_STRING, .strings = fold},
      {.name = "ridge_lambda", .kind = PS_COL_F64, .f64 = lambda},
      {.name = "n_cells", .kind = PS_COL_I64, .i64 = curve_n},
      {.name = "mse", .kind = PS_COL_F64, .f64 = curve_mse},
      {.name = "r2", .kind = PS_COL_F64, .f64 = curve_r2},
      {.name = "chosen", .kind = PS_COL_I64, .i64 = chosen},
  };
  PS_CALL(sync_missing(comm, missing));
  PS_CALL(write_replicated_frame(comm, w, "uns/cv/lambda_curve", index, n, curve_cols, 6));
  if (tsv) PS_CALL(write_text(comm, tsv, &t));
  free(t.data);
  free_strings(index, n);
  free_strings(fold, n);
  free(lambda);
  free(curve_mse);
  free(curve_r2);
  free(curve_n);
  free(chosen);

  /* per group: (fold, lambda, group) */
  n = ((int64_t)F + 1) * L * GK;
  char **group, **gfold;
  double *glambda;
  int64_t *gn;
  PS_ALLOC_SYNC(comm, index, n);
  PS_ALLOC_SYNC(comm, group, n);
  PS_ALLOC_SYNC(comm, gfold, n);
  PS_ALLOC_SYNC(comm, glambda, n);
  PS_ALLOC_SYNC(comm, gn, n);
  for (int f = 0; f <= F; f++)
    for (int l = 0; l < L; l++)
      for (int32_t g = 0; g < GK; g++) {
        int64_t row = ((int64_t)f * L + l) * GK + g;
        gfold[row] = f == F ? ps_strdup("all") : format("%d", f);
        group[row] = ps_strdup(group_name(d, g));
        index[row] = format("%s|%.6g|%s", gfold[row] ? gfold[row] : "", r->lambdas[l], group_name(d, g));
        missing += (!gfold[row] || !group[row] || !index[row]);
        glambda[row] = r->lambdas[l];
        gn[row] = r->n_cells[(int64_t)f * GK + g];
      }
  ps_column group_cols[] = {
      {.name = "fold", .kind = PS_COL_STRING, .strings = gfold},
      {.name = "ridge_lambda", .kind = PS_COL_F64, .f64 = glambda},
      {.name = "group", .kind = PS_COL_STRING, .strings = group},
      {.name = "n_cells", .kind = PS_COL_I64, .i64 = gn},
      {.name = "mse", .kind = PS_COL_F64, .f64 = r->mse},
      {.name = "r2", .kind = PS_COL_F64, .f64 = r->r2},
  };
  PS_CALL(sync_missing(comm, missing));
  PS_CALL(write_replicated_frame(comm, w, "uns/cv/groups", index, n, group_cols, 6));
  free_strings(index, n);
  free_strings(group, n);
  free_strings(gfold, n);
  free(glambda);
  free(gn);

  /* PS stability at the chosen lambda: (fold, perturbation or "all") */
  n = ((int64_t)F + 1) * (K + 1);
  char **pfold, **pname;
  PS_ALLOC_SYNC(comm, index, n);
  PS_ALLOC_SYNC(comm, pfold, n);
  PS_ALLOC_SYNC(comm, pname, n);
  for (int f = 0; f <= F; f++)
    for (int32_t k = 0; k <= K; k++) {
      int64_t row = (int64_t)f * (K + 1) + k;
      pfold[row] = f == F ? ps_strdup("all") : format("%d", f);
      pname[row] = ps_strdup(k < K ? d->design.names.items[k] : "all");
      index[row] = format("%s|%s", pfold[row] ? pfold[row] : "", k < K ? d->design.names.items[k] : "all");
      missing += (!pfold[row] || !pname[row] || !index[row]);
    }
  ps_column ps_cols[] = {
      {.name = "fold", .kind = PS_COL_STRING, .strings = pfold},
      {.name = "perturbation", .kind = PS_COL_STRING, .strings = pname},
      {.name = "n", .kind = PS_COL_I64, .i64 = r->ps_n},
      {.name = "pearson", .kind = PS_COL_F64, .f64 = r->ps_pearson},
  };
  PS_CALL(sync_missing(comm, missing));
  PS_CALL(write_replicated_frame(comm, w, "uns/cv/ps_stability", index, n, ps_cols, 4));
  free_strings(index, n);
  free_strings(pfold, n);
  free_strings(pname, n);
  (void)opt;
  PS_CALL(ps_h5ad_close(&w));
  return PS_OK;
}

/* ---------------------------------------------------------------- the stage's tables */

int ps_results_write_cv(MPI_Comm comm, const ps_dataset *d, const ps_cv_stage_result *r, const ps_cv_options *opt,
                        const char *path, int where, const char *tsv, ps_run_info *info) {
  if (r->scheme == PS_CV_SCHEME_PERTURBATIONS) {
    const ps_cv_perturbation_result *p = &r->perturbations;
    PS_CALL(ps_run_info_number(info, "seconds_pseudobulk", p->seconds[0]));
    PS_CALL(ps_run_info_number(info, "seconds_ceiling", p->seconds[1]));
    PS_CALL(ps_run_info_number(info, "seconds_folds", p->seconds[2]));
    return ps_error_sync(comm, write_perturbations(comm, path, where, tsv, d, &d->design.names, &r->genes, p, opt,
                                                   info));
  }
  PS_CALL(ps_run_info_number(info, "seconds_lambda_grid", r->cells.seconds[0]));
  PS_CALL(ps_run_info_number(info, "seconds_ps", r->cells.seconds[1]));
  return ps_error_sync(comm, write_cells(comm, path, where, tsv, d, &r->cells, opt, info));
}
