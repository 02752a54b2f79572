/* The cross-validation stage (SPEC.md section 7, docs/cv.md) on a dataset already
 * read: `pertscore cv` writes its own file, `pertscore run --cv` adds the same
 * tables to its results file. Gathers what each scheme needs beyond the dataset
 * (an external model's predictions, the perturbed genes), runs it and writes it.
 * Every gene's expression comes from the dataset (keep_expression), so the
 * input matrix is read once. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"
#include "pertscore/io.h"

int ps_cv_parse_ridge_lambdas(const char *option, const char *list, ps_cv_options *opt) {
  int n = 0;
  const char *at = list;
  while (*at) {
    if (n == 64) PS_FAIL(PS_ERR_INPUT, "%s takes 1 to 64 values (got more in '%s')", option, list);
    char *end;
    errno = 0;
    double v = strtod(at, &end);
    if (end == at || errno || (*end && *end != ','))
      PS_FAIL(PS_ERR_INPUT, "%s expects comma-separated numbers, got '%s'", option, list);
    if (!(v > 0) || !isfinite(v))
      PS_FAIL(PS_ERR_INPUT, "%s must all be > 0 (got %.*s)", option, (int)(end - at), at);
    opt->ridge_lambdas[n++] = v;
    at = *end ? end + 1 : end;
  }
  if (n == 0) PS_FAIL(PS_ERR_INPUT, "%s takes 1 to 64 values", option);
  opt->n_ridge_lambdas = n;
  return PS_OK;
}

void ps_cv_stage_result_free(ps_cv_stage_result *r) {
  if (!r) return;
  ps_cv_perturbation_result_free(&r->perturbations);
  ps_cv_cells_result_free(&r->cells);
  ps_strlist_free(&r->genes);
  memset(r, 0, sizeof *r);
}

/* An external model's predictions: rows named by an obs column, genes matched by
 * name. Evaluated genes = the input's genes that the predictions also have (input
 * order). Fills column_of (input gene -> evaluated gene or -1), the evaluated names,
 * and the replicated K x G_eval table. */
typedef struct {
  int32_t *column_of;
  ps_strlist genes;
  double *values;
  uint8_t *has;
  int64_t n_rows, n_unknown;
} predictions;

/* What read_predictions holds while it fills p: freed on every return. */
typedef struct {
  ps_matrix m;
  ps_strlist labels;
  ps_strmap pred_gene;
  int32_t *eval_of_pred;
  int64_t *count;
} predictions_work;

static int fill_predictions(MPI_Comm comm, const ps_cv_stage_input *in, const ps_dataset *d, predictions *p,
                            predictions_work *w) {
  int32_t K = d->design.n_perturbations;
  const char *column = in->predictions_column ? in->predictions_column : "perturbation";
  ps_matrix *mp = &w->m;
  PS_CALL(ps_error_sync(comm, ps_h5ad_read_matrix(comm, in->predictions, NULL, mp)));
  const ps_matrix m = *mp; /* read only below; w->m keeps the ownership */
  PS_CALL(ps_error_sync(comm, ps_h5ad_read_obs_column(comm, in->predictions, column, m.cell_begin,
                                                      m.cell_begin + m.x.n_rows, &w->labels)));
  const ps_strlist labels = w->labels;
  ps_strmap *pred_gene = &w->pred_gene;
  PS_CALL(ps_strmap_init(pred_gene, m.genes.n));
  for (int64_t g = 0; g < m.genes.n; g++) PS_CALL(ps_strmap_put(pred_gene, m.genes.items[g], g));
  PS_ALLOC(w->eval_of_pred, m.genes.n);
  int32_t *eval_of_pred = w->eval_of_pred;
  for (int64_t g = 0; g < m.genes.n; g++) eval_of_pred[g] = -1;
  PS_ALLOC(p->column_of, d->n_genes);
  for (int64_t g = 0; g < d->n_genes; g++) {
    int64_t q = ps_strmap_get(pred_gene, d->genes.items[g]);
    p->column_of[g] = -1;
    if (q < 0) continue;
    eval_of_pred[q] = p->column_of[g] = (int32_t)p->genes.n;
    PS_CALL(ps_strlist_push(&p->genes, d->genes.items[g]));
  }
  ps_strmap_free(pred_gene);
  if (p->genes.n < 2)
    PS_FAIL(PS_ERR_INPUT, "%s: only %lld of its %lld genes are genes of %s; match the var names", in->predictions,
            (long long)p->genes.n, (long long)m.genes.n, in->data->input);
  int64_t G = p->genes.n;
  PS_ALLOC(p->values, (int64_t)K * G);
  PS_ALLOC(p->has, K);
  PS_ALLOC(w->count, K);
  int64_t *count = w->count;
  for (int64_t i = 0; i < m.x.n_rows; i++) {
    int64_t k = ps_strlist_find_sorted(&d->design.names, labels.items[i]);
    if (k < 0) {
      p->n_unknown++;
      continue;
    }
    count[k]++;
    for (int64_t q = m.x.indptr[i]; q < m.x.indptr[i + 1]; q++)
      if (eval_of_pred[m.x.indices[q]] >= 0) p->values[k * G + eval_of_pred[m.x.indices[q]]] = m.x.data[q];
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, count, K, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &p->n_unknown, 1, MPI_INT64_T, MPI_SUM, comm));
  for (int32_t k = 0; k < K; k++) {
    if (count[k] > 1)
      PS_FAIL(PS_ERR_INPUT, "%s: perturbation '%s' has %lld rows; give one row per perturbation", in->predictions,
              d->design.names.items[k], (long long)count[k]);
    p->has[k] = count[k] == 1;
    p->n_rows += count[k];
  }
  /* each row lives on one rank: the sum replicates the table */
  PS_CALL(ps_allreduce_sum(comm, p->values, (int64_t)K * G, MPI_DOUBLE, sizeof(double)));
  return PS_OK;
}

static void predictions_free(predictions *p);

static int read_predictions(MPI_Comm comm, const ps_cv_stage_input *in, const ps_dataset *d, predictions *p) {
  memset(p, 0, sizeof *p);
  predictions_work w;
  memset(&w, 0, sizeof w);
  int err = fill_predictions(comm, in, d, p, &w);
  ps_matrix_free(&w.m);
  ps_strlist_free(&w.labels);
  ps_strmap_free(&w.pred_gene);
  free(w.eval_of_pred);
  free(w.count);
  if (err) predictions_free(p);
  return err;
}

static void predictions_free(predictions *p) {
  free(p->column_of);
  ps_strlist_free(&p->genes);
  free(p->values);
  free(p->has);
  memset(p, 0, sizeof *p);
}

/* The perturbed gene of each perturbation: the gene named like the perturbation
 * (with --unit guide, like the guide's unit, e.g. CD81_sg2 -> CD81), among the
 * evaluated genes; -1 when it is not measured. */
static int perturbed_genes(int unit_guide, const ps_dataset *d, const ps_strlist *genes, int64_t *own) {
  ps_strmap index;
  PS_CALL(ps_strmap_init(&index, genes->n));
  for (int64_t g = 0; g < genes->n; g++) PS_CALL(ps_strmap_put(&index, genes->items[g], g));
  char unit[1024];
  for (int32_t k = 0; k < d->design.n_perturbations; k++) {
    const char *name = d->design.names.items[k];
    if (unit_guide) {
      ps_guide_unit(name, unit, sizeof unit);
      name = unit;
    }
    own[k] = ps_strmap_get(&index, name);
  }
  ps_strmap_free(&index);
  return PS_OK;
}

/* Held-out perturbations the predictions file has no row for: a warning with their
 * count and first names (every model is then compared on the perturbations all models
 * predict, ps_cv_perturbation_result.compared), or an error with --strict. The same on
 * every rank (the result is replicated). */
static int predictions_coverage(MPI_Comm comm, const ps_cv_stage_input *in, const ps_dataset *d,
                                const predictions *pred, const ps_cv_options *opt, ps_cv_perturbation_result *r) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  r->n_predictions_ignored = pred->n_unknown;
  r->n_predictions_missing = 0;
  char names[512] = "";
  size_t len = 0;
  int listed = 0;
  for (int32_t k = 0; k < r->n_perturbations; k++) {
    if (r->fold[k] < 0 || pred->has[k]) continue;
    r->n_predictions_missing++;
    if (listed < 5) {
      int w = snprintf(names + len, sizeof names - len, "%s%s", listed ? ", " : "", d->design.names.items[k]);
      if (w > 0 && (size_t)w < sizeof names - len) len += (size_t)w;
      listed++;
    }
  }
  int64_t miss = r->n_predictions_missing;
  if (!miss) return PS_OK;
  const char *more = miss > listed ? ", ..." : "";
  if (opt->strict_predictions)
    PS_FAIL(PS_ERR_INPUT, "cv: --predictions %s has no row for %lld held-out perturbation(s) (%s%s); --strict "
            "refuses to compare the models on the others", in->predictions, (long long)miss, names, more);
  if (rank == 0)
    fprintf(stderr, "pertscore cv: warning: --predictions %s has no row for %lld held-out perturbation(s) (%s%s); "
            "every model is compared on the %lld perturbation(s) all models predict (--strict refuses)\n",
            in->predictions, (long long)miss, names, more, (long long)r->n_compared);
  return PS_OK;
}

static int stage_perturbations(MPI_Comm comm, const ps_dataset *d, const ps_cv_stage_input *in,
                               const ps_cv_options *opt, ps_progress *progress, ps_cv_stage_result *out) {
  /* every gene of the analysed cells, kept by ps_dataset_read (keep_expression):
   * the matrix is read once */
  int missing = d->expression.indptr == NULL || d->expression.n_rows != d->design.n_cells;
  if (missing)
    PS_FAIL(PS_ERR_SYSTEM, "cv: the perturbations scheme needs the dataset read with keep_expression "
            "(ps_dataset_options; every gene of the analysed cells)");
  predictions pred = {0};
  int64_t *own = NULL;
  int err = in->predictions ? read_predictions(comm, in, d, &pred) : PS_OK;
  const ps_strlist *genes = in->predictions ? &pred.genes : &d->genes;
  if (!err && in->predictions) {
    out->prediction_rows = pred.n_rows;
    out->prediction_unknown = pred.n_unknown;
  }
  out->n_genes = genes->n;
  for (int64_t g = 0; !err && g < genes->n; g++) err = ps_strlist_push(&out->genes, genes->items[g]);
  if (!err && !(own = calloc(d->design.n_perturbations ? (size_t)d->design.n_perturbations : 1, sizeof *own)))
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory (cv: %d perturbed genes)",
                       (int)d->design.n_perturbations);
  if (!err) err = perturbed_genes(in->data->unit_guide, d, genes, own);
  if (!err) {
    ps_cv_perturbation_input pin = {.design = &d->design, .x = &d->expression, .column_of = pred.column_of,
                                    .n_genes = genes->n, .own_gene = own, .predictions = pred.values,
                                    .has_prediction = pred.has, .progress = progress};
    err = ps_error_sync(comm, ps_cv_perturbations(comm, &pin, opt, &out->perturbations));
  }
  if (!err && in->predictions) err = predictions_coverage(comm, in, d, &pred, opt, &out->perturbations);
  predictions_free(&pred);
  free(own);
  return err;
}

int ps_cv_stage_run(MPI_Comm comm, const ps_dataset *d, const ps_cv_stage_input *in, const ps_cv_options *opt,
                    ps_progress *progress, ps_cv_stage_result *out) {
  memset(out, 0, sizeof *out);
  out->scheme = opt->scheme;
  if (opt->scheme == PS_CV_SCHEME_PERTURBATIONS) {
    int err = ps_error_sync(comm, stage_perturbations(comm, d, in, opt, progress, out));
    if (err) ps_cv_stage_result_free(out); /* a failed stage leaves nothing to free */
    return err;
  }
  if (opt->scheme != PS_CV_SCHEME_CELLS) PS_FAIL(PS_ERR_INPUT, "cv: unknown scheme %d", opt->scheme);
  if (in->predictions) PS_FAIL(PS_ERR_INPUT, "cv: --predictions applies to --scheme perturbations");
  return ps_error_sync(comm, ps_cv_cells(comm, &d->design, d->top_perturbation, &d->y, opt, progress, &out->cells));
}

void ps_cv_dataset_options(int scheme, int no_targets, ps_targets_options *targets, ps_regression_options *regression) {
  if (scheme != PS_CV_SCHEME_PERTURBATIONS) return;
  regression->keep_expression = 1;
  if (no_targets) targets->no_target_selection = 1;
}
