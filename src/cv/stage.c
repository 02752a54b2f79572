/* The cross-validation stage (SPEC.md section 7, docs/cv.md) on a dataset already
 * read: `pertscore cv` writes its own file, `pertscore run --cv` adds the same
 * tables to its results file. Gathers what each scheme needs beyond the dataset
 * (every gene's expression, an external model's predictions, the perturbed genes),
 * runs it and writes it. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"
#include "pertscore/io.h"

int ps_cv_parse_ridge_lambdas(const char *list, ps_cv_options *opt) {
  int n = 0;
  const char *at = list;
  while (*at) {
    if (n == 64) PS_FAIL(PS_ERR_INPUT, "--ridge-lambdas takes 1 to 64 values (got more in '%s')", list);
    char *end;
    errno = 0;
    double v = strtod(at, &end);
    if (end == at || errno || (*end && *end != ','))
      PS_FAIL(PS_ERR_INPUT, "--ridge-lambdas expects comma-separated numbers, got '%s'", list);
    if (!(v > 0) || !isfinite(v)) PS_FAIL(PS_ERR_INPUT, "--ridge-lambdas must all be > 0 (got %.*s)", (int)(end - at), at);
    opt->ridge_lambdas[n++] = v;
    at = *end ? end + 1 : end;
  }
  if (n == 0) PS_FAIL(PS_ERR_INPUT, "--ridge-lambdas takes 1 to 64 values");
  opt->n_ridge_lambdas = n;
  return PS_OK;
}

void ps_cv_stage_result_free(ps_cv_stage_result *r) {
  if (!r) return;
  ps_cv_perturbation_result_free(&r->perturbations);
  ps_cv_cells_result_free(&r->cells);
  memset(r, 0, sizeof *r);
}

/* All genes of the analysed cells, log-normalized exactly as ps_dataset_read does
 * (SPEC section 0). ps_dataset_read keeps only the regression genes, so the matrix
 * is read a second time; the blocks are the same (the split depends on the file
 * only), and the analysed cells are a subsequence of the block in block order,
 * matched by name. */
static int read_all_genes(MPI_Comm comm, const ps_dataset_options *data, const ps_dataset *d, ps_csr *x) {
  ps_matrix m;
  PS_CALL(ps_read_expression(comm, data->input, data->layer, &m));
  int err = PS_OK;
  if (m.n_cells != d->n_cells_input || m.n_genes != d->n_genes)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: the matrix changed between two reads", data->input);
  memset(x, 0, sizeof *x);
  int64_t n = d->design.n_cells, nnz = 0, j = 0;
  int64_t *row;
  PS_ALLOC(row, n);
  for (int64_t i = 0; i < m.x.n_rows && j < n && !err; i++)
    if (strcmp(m.cells.items[i], d->cells.items[j]) == 0) {
      row[j++] = i;
      nnz += m.x.indptr[i + 1] - m.x.indptr[i];
    }
  if (!err && j != n)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: %lld of this rank's %lld analysed cells were not found "
                       "in its block on the second read", data->input, (long long)(n - j), (long long)n);
  PS_CALL(ps_error_sync(comm, err));
  x->n_rows = n;
  x->n_cols = m.n_genes;
  PS_ALLOC(x->indptr, n + 1);
  PS_ALLOC(x->indices, nnz);
  PS_ALLOC(x->data, nnz);
  int64_t w = 0;
  for (j = 0; j < n; j++) {
    int64_t i = row[j];
    double total = 0;
    for (int64_t p = m.x.indptr[i]; p < m.x.indptr[i + 1]; p++) total += m.x.data[p];
    for (int64_t p = m.x.indptr[i]; p < m.x.indptr[i + 1]; p++) {
      x->indices[w] = m.x.indices[p];
      x->data[w++] = d->is_counts && total > 0 ? log1p(1e4 * m.x.data[p] / total) : m.x.data[p];
    }
    x->indptr[j + 1] = w;
  }
  free(row);
  ps_matrix_free(&m);
  return PS_OK;
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

static int read_predictions(MPI_Comm comm, const ps_cv_stage_input *in, const ps_dataset *d, predictions *p) {
  memset(p, 0, sizeof *p);
  int32_t K = d->design.n_perturbations;
  const char *column = in->predictions_column ? in->predictions_column : "perturbation";
  ps_matrix m;
  PS_CALL(ps_error_sync(comm, ps_h5ad_read_matrix(comm, in->predictions, NULL, &m)));
  ps_strlist labels;
  PS_CALL(ps_error_sync(comm, ps_h5ad_read_obs_column(comm, in->predictions, column, m.cell_begin,
                                                      m.cell_begin + m.x.n_rows, &labels)));
  ps_strmap pred_gene;
  PS_CALL(ps_strmap_init(&pred_gene, m.genes.n));
  for (int64_t g = 0; g < m.genes.n; g++) PS_CALL(ps_strmap_put(&pred_gene, m.genes.items[g], g));
  int32_t *eval_of_pred;
  PS_ALLOC(eval_of_pred, m.genes.n);
  for (int64_t g = 0; g < m.genes.n; g++) eval_of_pred[g] = -1;
  PS_ALLOC(p->column_of, d->n_genes);
  for (int64_t g = 0; g < d->n_genes; g++) {
    int64_t q = ps_strmap_get(&pred_gene, d->genes.items[g]);
    p->column_of[g] = -1;
    if (q < 0) continue;
    eval_of_pred[q] = p->column_of[g] = (int32_t)p->genes.n;
    PS_CALL(ps_strlist_push(&p->genes, d->genes.items[g]));
  }
  ps_strmap_free(&pred_gene);
  if (p->genes.n < 2)
    PS_FAIL(PS_ERR_INPUT, "%s: only %lld of its %lld genes are genes of %s; match the var names", in->predictions,
            (long long)p->genes.n, (long long)m.genes.n, in->data->input);
  int64_t G = p->genes.n;
  int64_t *count;
  PS_ALLOC(p->values, (int64_t)K * G);
  PS_ALLOC(p->has, K);
  PS_ALLOC(count, K);
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
  PS_CALL(cv_allreduce_sum(comm, p->values, (int64_t)K * G, MPI_DOUBLE, sizeof(double)));
  free(count);
  free(eval_of_pred);
  ps_strlist_free(&labels);
  ps_matrix_free(&m);
  return PS_OK;
}

static void predictions_free(predictions *p) {
  free(p->column_of);
  ps_strlist_free(&p->genes);
  free(p->values);
  free(p->has);
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

static int stage_perturbations(MPI_Comm comm, const ps_dataset *d, const ps_cv_stage_input *in,
                               const ps_cv_options *opt, const char *path, int where, const char *tsv,
                               ps_run_info *info, ps_progress *progress, ps_cv_stage_result *out) {
  ps_csr x;
  PS_CALL(read_all_genes(comm, in->data, d, &x));
  predictions pred = {0};
  const ps_strlist *genes = &d->genes;
  if (in->predictions) {
    PS_CALL(read_predictions(comm, in, d, &pred));
    genes = &pred.genes;
    out->prediction_rows = pred.n_rows;
    out->prediction_unknown = pred.n_unknown;
  }
  out->n_genes = genes->n;
  int64_t *own;
  PS_ALLOC(own, d->design.n_perturbations);
  PS_CALL(perturbed_genes(in->data->unit_guide, d, genes, own));
  ps_cv_perturbation_input pin = {.design = &d->design, .x = &x, .column_of = pred.column_of, .n_genes = genes->n,
                                  .own_gene = own, .predictions = pred.values, .has_prediction = pred.has};
  ps_cv_perturbation_result *r = &out->perturbations;
  PS_CALL(ps_error_sync(comm, ps_cv_perturbations(comm, &pin, opt, r)));
  ps_csr_free(&x);
  if (progress) ps_progress_update(progress, 0.9);
  PS_CALL(ps_run_info_number(info, "seconds_pseudobulk", r->seconds[0]));
  PS_CALL(ps_run_info_number(info, "seconds_ceiling", r->seconds[1]));
  PS_CALL(ps_run_info_number(info, "seconds_folds", r->seconds[2]));
  PS_CALL(ps_error_sync(comm, ps_cv_write_perturbations(comm, path, where, tsv, &d->design.names, genes, r, opt, info)));
  predictions_free(&pred);
  free(own);
  return PS_OK;
}

int ps_cv_stage(MPI_Comm comm, const ps_dataset *d, const ps_cv_stage_input *in, const ps_cv_options *opt,
                const char *path, int where, const char *tsv, ps_run_info *info, ps_progress *progress,
                ps_cv_stage_result *out) {
  memset(out, 0, sizeof *out);
  out->scheme = opt->scheme;
  if (opt->scheme == PS_CV_SCHEME_PERTURBATIONS)
    return stage_perturbations(comm, d, in, opt, path, where, tsv, info, progress, out);
  if (opt->scheme != PS_CV_SCHEME_CELLS) PS_FAIL(PS_ERR_INPUT, "cv: unknown scheme %d", opt->scheme);
  if (in->predictions) PS_FAIL(PS_ERR_INPUT, "cv: --predictions applies to --scheme perturbations");
  ps_cv_cells_result *r = &out->cells;
  PS_CALL(ps_error_sync(comm, ps_cv_cells(comm, &d->design, d->top_perturbation, &d->y, opt, progress, r)));
  PS_CALL(ps_run_info_number(info, "seconds_lambda_grid", r->seconds[0]));
  PS_CALL(ps_run_info_number(info, "seconds_ps", r->seconds[1]));
  return ps_error_sync(comm, ps_cv_write_cells(comm, path, where, tsv, d, r, opt, info));
}
