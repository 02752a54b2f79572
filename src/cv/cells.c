/* The cells scheme (SPEC.md section 7): folds of cells stratified by
 * perturbation; for every ridge lambda of a grid, beta on the training cells
 * and the held-out cells' prediction error B_0 + sum_k d_jk B_k against their
 * winsorized regression-gene response; the chosen lambda has the least pooled
 * held-out MSE; then the held-out cells' PS, scored with the fold's beta at that
 * lambda, against their full-data PS. docs/cv.md has the definitions.
 *
 * Parallel layout: the folds run one after the other, each on all ranks over
 * the cells where they are (data-parallel, as the main fit). A fold's training
 * cells are a mask over the local cells (ps_ridge_fit_grid's keep), so no copy
 * of the response is made: memory per rank is the main fit's plus a copy of X^T X
 * and X^T Y shares for the lambda grid and a few per-cell arrays. One X^T X and
 * X^T Y per fold serve the whole lambda grid. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"

void ps_cv_cells_result_free(ps_cv_cells_result *r) {
  if (!r) return;
  free(r->sse);
  free(r->sst);
  free(r->mse);
  free(r->r2);
  free(r->n_cells);
  free(r->ps_pearson);
  free(r->ps_n);
  free(r->cell_fold);
  memset(r, 0, sizeof *r);
}

static void dense_row(const ps_csr *y, int64_t j, double *row) {
  memset(row, 0, (size_t)y->n_cols * sizeof *row);
  for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++) row[y->indices[p]] = y->data[p];
}

/* Add value to the groups of held-out cell j: each perturbation it carries, or the
 * controls, and "all". base points at the (K + 2) groups of one (fold, lambda). */
static void add_groups(const ps_design *d, int64_t j, double *base, double value) {
  int32_t K = d->n_perturbations;
  if (d->ptr[j + 1] == d->ptr[j]) base[K] += value;
  for (int64_t p = d->ptr[j]; p < d->ptr[j + 1]; p++) base[d->ids[p]] += value;
  base[K + 1] += value;
}

/* Held-out SST around the training cells' per-gene mean, and the cell counts. */
static int fold_sst(MPI_Comm comm, const ps_design *d, const ps_csr *y, const int32_t *fold, int f,
                    ps_cv_cells_result *r) {
  int32_t N = r->n_genes, K = r->n_perturbations, GK = K + 2;
  double *ybar = calloc((size_t)N + 1, sizeof *ybar), *row = calloc((size_t)N + 1, sizeof *row),
         *count = calloc((size_t)GK, sizeof *count);
  int err = cv_alloc_sync(comm, ybar && row && count, "a fold's held-out sums");
  if (err) {
    free(ybar);
    free(row);
    free(count);
    return err;
  }
  int64_t n_train = 0;
  for (int64_t j = 0; j < y->n_rows; j++) {
    if (fold[j] == f) continue;
    n_train++;
    for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++) ybar[y->indices[p]] += y->data[p];
  }
  err = ps_allreduce_sum(comm, ybar, N, MPI_DOUBLE, sizeof *ybar);
  if (!err) err = ps_allreduce_sum(comm, &n_train, 1, MPI_INT64_T, sizeof n_train);
  if (err) { /* an MPI error: the buffers still go */
    free(ybar);
    free(row);
    free(count);
    return err;
  }
  for (int32_t n = 0; n < N; n++) ybar[n] = n_train ? ybar[n] / (double)n_train : 0.0;
  double *sst = r->sst + (int64_t)f * r->n_lambdas * GK;
  for (int64_t j = 0; j < y->n_rows; j++) {
    if (fold[j] != f) continue;
    dense_row(y, j, row);
    double s = 0;
    for (int32_t n = 0; n < N; n++) s += (row[n] - ybar[n]) * (row[n] - ybar[n]);
    add_groups(d, j, sst, s);
    add_groups(d, j, count, 1.0);
  }
  for (int l = 1; l < r->n_lambdas; l++) memcpy(sst + (int64_t)l * GK, sst, (size_t)GK * sizeof *sst);
  for (int32_t g = 0; g < GK; g++) r->n_cells[(int64_t)f * GK + g] += (int64_t)count[g];
  free(count);
  free(ybar);
  free(row);
  return PS_OK;
}

/* A fold's held-out cells against the fits of its lambda grid (ps_ridge_each). */
typedef struct {
  const ps_design *design;
  const ps_csr *y;
  const int32_t *fold;
  int f;
  ps_cv_cells_result *r;
  double *row, *pred; /* N each */
} fold_errors;

static int add_errors(void *ctx, int l, ps_ridge *B) {
  fold_errors *e = ctx;
  const ps_design *d = e->design;
  int32_t N = e->r->n_genes, GK = e->r->n_perturbations + 2;
  double *sse = e->r->sse + ((int64_t)e->f * e->r->n_lambdas + l) * GK;
  for (int64_t j = 0; j < e->y->n_rows; j++) {
    if (e->fold[j] != e->f) continue;
    /* B_0 of the cell's basal group (--control-by: rows K + g, ps_design_basal_row) */
    const int32_t group = d->group ? d->group[j] : 0;
    memcpy(e->pred, B->beta + (int64_t)ps_design_basal_row(d, group) * N, (size_t)N * sizeof *e->pred);
    for (int64_t p = d->ptr[j]; p < d->ptr[j + 1]; p++) {
      const double *bk = B->beta + ((int64_t)d->ids[p] + 1) * N;
      for (int32_t n = 0; n < N; n++) e->pred[n] += bk[n];
    }
    dense_row(e->y, j, e->row);
    double s = 0;
    for (int32_t n = 0; n < N; n++) s += (e->row[n] - e->pred[n]) * (e->row[n] - e->pred[n]);
    add_groups(d, j, sse, s);
  }
  return PS_OK;
}

/* Held-out squared error of beta fitted on the training cells (keep), for every lambda. */
static int fold_lambda_errors(MPI_Comm comm, const ps_design *d, const ps_design *fit, const ps_csr *y,
                              const int32_t *fold, const uint8_t *keep, int f, ps_cv_cells_result *r) {
  fold_errors e = {d, y, fold, f, r, NULL, NULL};
  e.row = calloc((size_t)r->n_genes + 1, sizeof *e.row);
  e.pred = calloc((size_t)r->n_genes + 1, sizeof *e.pred);
  int err = cv_alloc_sync(comm, e.row && e.pred, "a fold's predictions");
  if (!err) err = ps_ridge_fit_grid(comm, fit, y, keep, r->n_lambdas, r->lambdas, add_errors, &e);
  free(e.row);
  free(e.pred);
  return err;
}

/* Pearson per (fold, perturbation) and pooled of held-out PS x vs full-data PS y:
 * pairs are this rank's (fold, perturbation id, x, y). Two passes over the pairs. */
static int ps_stability(MPI_Comm comm, int64_t n_pairs, const int32_t *pair_fold, const int32_t *pair_id,
                        const double *x, const double *y, ps_cv_cells_result *r) {
  int F = r->n_folds;
  int32_t K = r->n_perturbations;
  int64_t cells = ((int64_t)F + 1) * (K + 1);
  double *sum = calloc((size_t)(2 * cells), sizeof *sum);     /* sum x, sum y */
  double *cross = calloc((size_t)(3 * cells), sizeof *cross); /* centred xx, yy, xy */
  int err = cv_alloc_sync(comm, sum && cross, "the held-out score correlations");
  if (err) {
    free(sum);
    free(cross);
    return err;
  }
  int64_t at[4];
  for (int64_t i = 0; i < n_pairs; i++) {
    at[0] = (int64_t)pair_fold[i] * (K + 1) + pair_id[i];
    at[1] = (int64_t)pair_fold[i] * (K + 1) + K;
    at[2] = (int64_t)F * (K + 1) + pair_id[i];
    at[3] = (int64_t)F * (K + 1) + K;
    for (int c = 0; c < 4; c++) {
      r->ps_n[at[c]]++;
      sum[2 * at[c]] += x[i];
      sum[2 * at[c] + 1] += y[i];
    }
  }
  /* Chunked sums (the counts are int64: (F + 1)(K + 1) is not bounded by an int); on an MPI error the buffers still go. */
  err = ps_allreduce_sum(comm, r->ps_n, cells, MPI_INT64_T, sizeof *r->ps_n);
  if (!err) err = ps_allreduce_sum(comm, sum, 2 * cells, MPI_DOUBLE, sizeof *sum);
  for (int64_t i = 0; i < n_pairs && !err; i++) {
    at[0] = (int64_t)pair_fold[i] * (K + 1) + pair_id[i];
    at[1] = (int64_t)pair_fold[i] * (K + 1) + K;
    at[2] = (int64_t)F * (K + 1) + pair_id[i];
    at[3] = (int64_t)F * (K + 1) + K;
    for (int c = 0; c < 4; c++) {
      double n = (double)r->ps_n[at[c]];
      double dx = x[i] - sum[2 * at[c]] / n, dy = y[i] - sum[2 * at[c] + 1] / n;
      cross[3 * at[c]] += dx * dx;
      cross[3 * at[c] + 1] += dy * dy;
      cross[3 * at[c] + 2] += dx * dy;
    }
  }
  if (!err) err = ps_allreduce_sum(comm, cross, 3 * cells, MPI_DOUBLE, sizeof *cross);
  for (int64_t c = 0; c < cells && !err; c++) {
    double sxx = cross[3 * c], syy = cross[3 * c + 1], sxy = cross[3 * c + 2];
    r->ps_pearson[c] = r->ps_n[c] >= 2 && sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
  }
  free(sum);
  free(cross);
  return err;
}

/* The pairs (fold, perturbation, held-out PS, full-data PS) of this rank's cells. */
typedef struct {
  int64_t n;
  int32_t *fold, *id;
  double *x, *y;
} score_pairs;

static void score_pairs_free(score_pairs *p) {
  free(p->fold);
  free(p->id);
  free(p->x);
  free(p->y);
  memset(p, 0, sizeof *p);
}

/* The design of fold f's held-out cells over all local cells: a training cell's
 * row is empty, and an empty row is scored as a control cell (PS = 0, no QP), so
 * scoring it solves the held-out cells' QPs only and reads y in place. names
 * and group are borrowed from d: free ptr and ids only. Rank-local. */
static int held_out_design(const ps_design *d, const int32_t *fold, int f, ps_design *t) {
  *t = *d;
  t->ptr = NULL;
  t->ids = NULL;
  PS_ALLOC(t->ptr, d->n_cells + 1);
  PS_ALLOC(t->ids, d->ptr[d->n_cells] - d->ptr[0]);
  int64_t at = 0;
  for (int64_t j = 0; j < d->n_cells; j++) {
    if (fold[j] == f)
      for (int64_t e = d->ptr[j]; e < d->ptr[j + 1]; e++) t->ids[at++] = d->ids[e];
    t->ptr[j + 1] = at;
  }
  return PS_OK;
}

/* Fold f's training fit at lambda, the held-out cells scored with it; their
 * scores become pairs with their full-data scores. */
static int fold_scores(MPI_Comm comm, const ps_design *d, const ps_design *fit, const ps_csr *y, const int32_t *fold,
                       uint8_t *keep, int f,
                       double lambda, const ps_score_options *so, const ps_scores *full, score_pairs *pairs) {
  for (int64_t j = 0; j < d->n_cells; j++) keep[j] = fold[j] != f;
  ps_ridge B;
  ps_scores s;
  ps_design test = *d;
  memset(&B, 0, sizeof B);
  memset(&s, 0, sizeof s);
  test.ptr = NULL;
  test.ids = NULL;
  int err = ps_ridge_fit_grid(comm, fit, y, keep, 1, &lambda, ps_ridge_each_keep, &B);
  if (!err) err = ps_error_sync(comm, held_out_design(d, fold, f, &test));
  if (!err) err = ps_error_sync(comm, ps_score_cells(comm, &test, y, &B, so, NULL, &s));
  for (int64_t j = 0; j < d->n_cells && !err; j++) {
    if (fold[j] != f) continue;
    for (int64_t t = 0; t < d->ptr[j + 1] - d->ptr[j]; t++) {
      pairs->fold[pairs->n] = f;
      pairs->id[pairs->n] = d->ids[d->ptr[j] + t];
      pairs->x[pairs->n] = s.ps[test.ptr[j] + t];
      pairs->y[pairs->n++] = full->ps[d->ptr[j] + t];
    }
  }
  free(test.ptr);
  free(test.ids);
  ps_scores_free(&s);
  ps_ridge_free(&B);
  return err;
}

/* Held-out cells' raw PS with each fold's beta at the chosen lambda, paired with
 * their raw PS from the full-data beta. */
static int held_out_scores(MPI_Comm comm, const ps_design *d, const ps_design *fit, const ps_csr *y, uint8_t *keep,
                           const ps_cv_options *opt, ps_progress *progress, ps_cv_cells_result *r) {
  ps_score_options so = opt->score;
  so.rescale = 0; /* raw PS: a held-out set's maximum is not the full data's (docs/cv.md) */
  double lambda = r->lambdas[r->chosen];
  ps_ridge full_beta;
  ps_scores full;
  memset(&full, 0, sizeof full);
  PS_CALL(ps_error_sync(comm, ps_ridge_fit(comm, fit, y, lambda, &full_beta)));
  int err = ps_error_sync(comm, ps_score_cells(comm, d, y, &full_beta, &so, NULL, &full));
  ps_ridge_free(&full_beta);
  if (err) return err;
  int64_t n_entries = d->ptr[d->n_cells];
  score_pairs pairs = {0, calloc((size_t)n_entries + 1, sizeof(int32_t)), calloc((size_t)n_entries + 1, sizeof(int32_t)),
                       calloc((size_t)n_entries + 1, sizeof(double)), calloc((size_t)n_entries + 1, sizeof(double))};
  err = cv_alloc_sync(comm, pairs.fold && pairs.id && pairs.x && pairs.y, "the held-out score pairs");
  for (int f = 0; f < r->n_folds && !err; f++) {
    err = fold_scores(comm, d, fit, y, r->cell_fold, keep, f, lambda, &so, &full, &pairs);
    if (progress) ps_progress_update(progress, 0.8 + 0.2 * (double)(f + 1) / r->n_folds);
  }
  if (!err) err = ps_stability(comm, pairs.n, pairs.fold, pairs.id, pairs.x, pairs.y, r);
  ps_scores_free(&full);
  score_pairs_free(&pairs);
  return err;
}

/* Every fold: its training mask, held-out SST and the lambda grid's errors. */
static int all_folds(MPI_Comm comm, const ps_design *d, const ps_design *fit, const ps_csr *y, uint8_t *keep,
                     ps_progress *progress, ps_cv_cells_result *r) {
  for (int f = 0; f < r->n_folds; f++) {
    for (int64_t j = 0; j < d->n_cells; j++) keep[j] = r->cell_fold[j] != f;
    PS_CALL(fold_sst(comm, d, y, r->cell_fold, f, r));
    PS_CALL(fold_lambda_errors(comm, d, fit, y, r->cell_fold, keep, f, r));
    if (progress) ps_progress_update(progress, 0.8 * (double)(f + 1) / r->n_folds);
  }
  return PS_OK;
}

/* Fold F pools the folds; then the sums over ranks, MSE, R^2 and the chosen lambda. */
static int pool_tables(MPI_Comm comm, ps_cv_cells_result *out) {
  int F = out->n_folds, L = out->n_lambdas;
  int32_t K = out->n_perturbations, GK = K + 2;
  int64_t cells = ((int64_t)F + 1) * L * GK;
  /* fold F pools the folds; then sum over ranks */
  for (int f = 0; f < F; f++) {
    for (int64_t i = 0; i < (int64_t)L * GK; i++) {
      out->sse[(int64_t)F * L * GK + i] += out->sse[(int64_t)f * L * GK + i];
      out->sst[(int64_t)F * L * GK + i] += out->sst[(int64_t)f * L * GK + i];
    }
    for (int32_t g = 0; g < GK; g++) out->n_cells[(int64_t)F * GK + g] += out->n_cells[(int64_t)f * GK + g];
  }
  PS_CALL(ps_allreduce_sum(comm, out->sse, cells, MPI_DOUBLE, sizeof(double)));
  PS_CALL(ps_allreduce_sum(comm, out->sst, cells, MPI_DOUBLE, sizeof(double)));
  PS_CALL(ps_allreduce_sum(comm, out->n_cells, ((int64_t)F + 1) * GK, MPI_INT64_T, sizeof(int64_t)));
  for (int f = 0; f <= F; f++)
    for (int l = 0; l < L; l++)
      for (int32_t g = 0; g < GK; g++) {
        int64_t i = ((int64_t)f * L + l) * GK + g, n = out->n_cells[(int64_t)f * GK + g];
        out->mse[i] = n ? out->sse[i] / ((double)n * out->n_genes) : NAN;
        out->r2[i] = n && out->sst[i] > 0 ? 1.0 - out->sse[i] / out->sst[i] : NAN;
      }
  out->chosen = 0;
  for (int l = 1; l < L; l++)
    if (out->mse[((int64_t)F * L + l) * GK + K + 1] < out->mse[((int64_t)F * L + out->chosen) * GK + K + 1])
      out->chosen = l;
  return PS_OK;
}

int ps_cv_cells(MPI_Comm comm, const ps_design *design, const int32_t *top_perturbation, const ps_csr *y,
                const ps_cv_options *opt, ps_progress *progress, ps_cv_cells_result *out) {
  memset(out, 0, sizeof *out);
  int F = opt->n_folds, L = opt->n_ridge_lambdas;
  int32_t K = design->n_perturbations, GK = K + 2;
  if (F < 2) PS_FAIL(PS_ERR_INPUT, "cv: --folds must be at least 2 (got %d)", F);
  if (L < 1 || L > 64) PS_FAIL(PS_ERR_INPUT, "cv: give 1 to 64 ridge lambdas (got %d)", L);
  for (int l = 0; l < L; l++)
    if (!(opt->ridge_lambdas[l] > 0)) PS_FAIL(PS_ERR_INPUT, "cv: ridge lambdas must be > 0 (got %g)", opt->ridge_lambdas[l]);
  out->n_perturbations = K;
  out->n_folds = F;
  out->n_lambdas = L;
  memcpy(out->lambdas, opt->ridge_lambdas, (size_t)L * sizeof *out->lambdas);
  out->n_genes = (int32_t)y->n_cols;
  int64_t cells = ((int64_t)F + 1) * L * GK;
  out->sse = calloc((size_t)cells, sizeof *out->sse);
  out->sst = calloc((size_t)cells, sizeof *out->sst);
  out->mse = calloc((size_t)cells, sizeof *out->mse);
  out->r2 = calloc((size_t)cells, sizeof *out->r2);
  out->n_cells = calloc((size_t)(F + 1) * (size_t)GK, sizeof *out->n_cells);
  out->ps_pearson = calloc((size_t)(F + 1) * (size_t)(K + 1), sizeof *out->ps_pearson);
  out->ps_n = calloc((size_t)(F + 1) * (size_t)(K + 1), sizeof *out->ps_n);
  out->cell_fold = calloc((size_t)design->n_cells + 1, sizeof *out->cell_fold);
  PS_CALL(cv_alloc_sync(comm, out->sse && out->sst && out->mse && out->r2 && out->n_cells && out->ps_pearson &&
                               out->ps_n && out->cell_fold, "the cross-validation tables")); /* caller frees out */
  PS_CALL(ps_cv_cell_folds(comm, design, top_perturbation, F, opt->seed, out->cell_fold));

  double t0 = ps_wtime();
  /* --control-by: every fit (folds and full data) with one intercept column per basal
   * group, as run's (ps_design_ridge_columns); predictions and scores read the cell's
   * group row */
  ps_design with_groups = {0};
  int grouped = design->n_groups > 1;
  int err = grouped ? ps_error_sync(comm, ps_design_ridge_columns(design, &with_groups)) : PS_OK;
  const ps_design *fit = grouped ? &with_groups : design;
  uint8_t *keep = err ? NULL : malloc((size_t)design->n_cells + 1);
  if (!err) err = cv_alloc_sync(comm, keep != NULL, "the training-cell mask");
  if (!err) err = all_folds(comm, design, fit, y, keep, progress, out);
  if (!err) err = pool_tables(comm, out);
  if (err) {
    free(keep);
    ps_design_free(&with_groups);
    return err;
  }
  out->seconds[0] = ps_wtime() - t0;
  t0 = ps_wtime();
  err = held_out_scores(comm, design, fit, y, keep, opt, progress, out);
  out->seconds[1] = ps_wtime() - t0;
  free(keep);
  ps_design_free(&with_groups);
  return err;
}
