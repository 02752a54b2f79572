/* The cells scheme (SPEC.md section 7): folds of cells stratified by
 * perturbation; for every ridge lambda of a grid, beta on the training cells
 * (ps_ridge_fit) and the held-out cells' prediction error B_0 + sum_k d_jk B_k
 * against their winsorized regression-gene response; the chosen lambda has the
 * least pooled held-out MSE; then the held-out cells' PS, scored with the fold's
 * beta at that lambda, against their full-data PS. docs/cv.md has the definitions.
 *
 * Data-parallel: every fold's fit and scoring use every rank, each on its own
 * cells (a fold per rank group would copy the training cells to every group). */
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

/* The local cells with (fold == f) == held_out: their design rows (names shared
 * with the full design, not owned), response rows and original indices. */
typedef struct {
  ps_design design;
  ps_csr y;
  int64_t *origin;
} cell_subset;

static void subset_free(cell_subset *s) {
  free(s->design.ptr);
  free(s->design.ids);
  ps_csr_free(&s->y);
  free(s->origin);
  memset(s, 0, sizeof *s);
}

static int subset_make(const ps_design *d, const ps_csr *y, const int32_t *fold, int f, int held_out, cell_subset *s) {
  memset(s, 0, sizeof *s);
  int64_t n = 0, n_ids = 0, nnz = 0;
  for (int64_t j = 0; j < d->n_cells; j++)
    if ((fold[j] == f) == held_out) {
      n++;
      n_ids += d->ptr[j + 1] - d->ptr[j];
      nnz += y->indptr[j + 1] - y->indptr[j];
    }
  s->design.n_perturbations = d->n_perturbations;
  s->design.names = d->names; /* shared: never freed through the subset */
  s->design.n_cells = n;
  PS_ALLOC(s->design.ptr, n + 1);
  PS_ALLOC(s->design.ids, n_ids);
  PS_ALLOC(s->origin, n);
  s->y.n_rows = n;
  s->y.n_cols = y->n_cols;
  PS_ALLOC(s->y.indptr, n + 1);
  PS_ALLOC(s->y.indices, nnz);
  PS_ALLOC(s->y.data, nnz);
  int64_t c = 0, w = 0, v = 0;
  for (int64_t j = 0; j < d->n_cells; j++) {
    if ((fold[j] == f) != held_out) continue;
    for (int64_t p = d->ptr[j]; p < d->ptr[j + 1]; p++) s->design.ids[w++] = d->ids[p];
    for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++) {
      s->y.indices[v] = y->indices[p];
      s->y.data[v++] = y->data[p];
    }
    s->origin[c++] = j;
    s->design.ptr[c] = w;
    s->y.indptr[c] = v;
  }
  return PS_OK;
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
static int fold_sst(MPI_Comm comm, const cell_subset *train, const cell_subset *test, int f,
                    ps_cv_cells_result *r) {
  int32_t N = r->n_genes, K = r->n_perturbations, GK = K + 2;
  double *ybar, *row;
  PS_ALLOC(ybar, N);
  PS_ALLOC(row, N);
  int64_t n_train = train->y.n_rows;
  for (int64_t p = 0; p < train->y.indptr[train->y.n_rows]; p++) ybar[train->y.indices[p]] += train->y.data[p];
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, ybar, N, MPI_DOUBLE, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &n_train, 1, MPI_INT64_T, MPI_SUM, comm));
  for (int32_t n = 0; n < N; n++) ybar[n] = n_train ? ybar[n] / (double)n_train : 0.0;
  double *sst = r->sst + (int64_t)f * r->n_lambdas * GK;
  double *count;
  PS_ALLOC(count, GK);
  for (int64_t j = 0; j < test->y.n_rows; j++) {
    dense_row(&test->y, j, row);
    double s = 0;
    for (int32_t n = 0; n < N; n++) s += (row[n] - ybar[n]) * (row[n] - ybar[n]);
    add_groups(&test->design, j, sst, s);
    add_groups(&test->design, j, count, 1.0);
  }
  for (int l = 1; l < r->n_lambdas; l++) memcpy(sst + (int64_t)l * GK, sst, (size_t)GK * sizeof *sst);
  for (int32_t g = 0; g < GK; g++) r->n_cells[(int64_t)f * GK + g] += (int64_t)count[g];
  free(count);
  free(ybar);
  free(row);
  return PS_OK;
}

/* Held-out squared error of beta fitted on the training cells, for every lambda. */
static int fold_errors(MPI_Comm comm, const cell_subset *train, const cell_subset *test, int f, ps_cv_cells_result *r) {
  int32_t N = r->n_genes, K = r->n_perturbations, GK = K + 2;
  double *row, *pred;
  PS_ALLOC(row, N);
  PS_ALLOC(pred, N);
  for (int l = 0; l < r->n_lambdas; l++) {
    ps_ridge B;
    PS_CALL(ps_error_sync(comm, ps_ridge_fit(comm, &train->design, &train->y, r->lambdas[l], &B)));
    double *sse = r->sse + ((int64_t)f * r->n_lambdas + l) * GK;
    for (int64_t j = 0; j < test->y.n_rows; j++) {
      memcpy(pred, B.beta, (size_t)N * sizeof *pred);
      for (int64_t p = test->design.ptr[j]; p < test->design.ptr[j + 1]; p++) {
        const double *bk = B.beta + ((int64_t)test->design.ids[p] + 1) * N;
        for (int32_t n = 0; n < N; n++) pred[n] += bk[n];
      }
      dense_row(&test->y, j, row);
      double s = 0;
      for (int32_t n = 0; n < N; n++) s += (row[n] - pred[n]) * (row[n] - pred[n]);
      add_groups(&test->design, j, sse, s);
    }
    ps_ridge_free(&B);
  }
  free(row);
  free(pred);
  return PS_OK;
}

/* Pearson per (fold, perturbation) and pooled of held-out PS x vs full-data PS y:
 * pairs are this rank's (fold, perturbation id, x, y). Two passes over the pairs. */
static int ps_stability(MPI_Comm comm, int64_t n_pairs, const int32_t *pair_fold, const int32_t *pair_id,
                        const double *x, const double *y, ps_cv_cells_result *r) {
  int F = r->n_folds;
  int32_t K = r->n_perturbations;
  int64_t cells = ((int64_t)F + 1) * (K + 1);
  double *sum, *cross;
  PS_ALLOC(sum, 2 * cells);   /* sum x, sum y */
  PS_ALLOC(cross, 3 * cells); /* centred xx, yy, xy */
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
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, r->ps_n, (int)cells, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, sum, (int)(2 * cells), MPI_DOUBLE, MPI_SUM, comm));
  for (int64_t i = 0; i < n_pairs; i++) {
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
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, cross, (int)(3 * cells), MPI_DOUBLE, MPI_SUM, comm));
  for (int64_t c = 0; c < cells; c++) {
    double sxx = cross[3 * c], syy = cross[3 * c + 1], sxy = cross[3 * c + 2];
    r->ps_pearson[c] = r->ps_n[c] >= 2 && sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
  }
  free(sum);
  free(cross);
  return PS_OK;
}

/* Held-out cells' raw PS with each fold's beta at the chosen lambda, paired with
 * their raw PS from the full-data beta. */
static int held_out_scores(MPI_Comm comm, const ps_design *design, const ps_csr *y, const ps_cv_options *opt,
                           ps_progress *progress, ps_cv_cells_result *r) {
  ps_score_options so = opt->score;
  so.rescale = 0; /* raw PS: a held-out set's maximum is not the full data's (docs/cv.md) */
  double lambda = r->lambdas[r->chosen];
  ps_ridge full_beta;
  ps_scores full;
  PS_CALL(ps_error_sync(comm, ps_ridge_fit(comm, design, y, lambda, &full_beta)));
  PS_CALL(ps_error_sync(comm, ps_score_cells(comm, design, y, &full_beta, &so, NULL, &full)));
  ps_ridge_free(&full_beta);
  int64_t n_entries = design->ptr[design->n_cells];
  int32_t *pair_fold, *pair_id;
  double *x, *yv;
  PS_ALLOC(pair_fold, n_entries);
  PS_ALLOC(pair_id, n_entries);
  PS_ALLOC(x, n_entries);
  PS_ALLOC(yv, n_entries);
  int64_t n_pairs = 0;
  for (int f = 0; f < r->n_folds; f++) {
    cell_subset train, test;
    PS_CALL(subset_make(design, y, r->cell_fold, f, 0, &train));
    PS_CALL(subset_make(design, y, r->cell_fold, f, 1, &test));
    ps_ridge B;
    ps_scores s;
    PS_CALL(ps_error_sync(comm, ps_ridge_fit(comm, &train.design, &train.y, lambda, &B)));
    PS_CALL(ps_error_sync(comm, ps_score_cells(comm, &test.design, &test.y, &B, &so, NULL, &s)));
    for (int64_t j = 0; j < test.design.n_cells; j++) {
      int64_t o = test.origin[j];
      for (int64_t t = 0; t < test.design.ptr[j + 1] - test.design.ptr[j]; t++) {
        pair_fold[n_pairs] = f;
        pair_id[n_pairs] = test.design.ids[test.design.ptr[j] + t];
        x[n_pairs] = s.ps[test.design.ptr[j] + t];
        yv[n_pairs++] = full.ps[design->ptr[o] + t];
      }
    }
    ps_scores_free(&s);
    ps_ridge_free(&B);
    subset_free(&train);
    subset_free(&test);
    if (progress) ps_progress_update(progress, 0.8 + 0.2 * (double)(f + 1) / r->n_folds);
  }
  PS_CALL(ps_stability(comm, n_pairs, pair_fold, pair_id, x, yv, r));
  ps_scores_free(&full);
  free(pair_fold);
  free(pair_id);
  free(x);
  free(yv);
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
  PS_ALLOC(out->sse, cells);
  PS_ALLOC(out->sst, cells);
  PS_ALLOC(out->mse, cells);
  PS_ALLOC(out->r2, cells);
  PS_ALLOC(out->n_cells, ((int64_t)F + 1) * GK);
  PS_ALLOC(out->ps_pearson, ((int64_t)F + 1) * (K + 1));
  PS_ALLOC(out->ps_n, ((int64_t)F + 1) * (K + 1));
  PS_ALLOC(out->cell_fold, design->n_cells);
  PS_CALL(ps_cv_cell_folds(comm, design, top_perturbation, F, opt->seed, out->cell_fold));

  double t0 = ps_wtime();
  for (int f = 0; f < F; f++) {
    cell_subset train, test;
    PS_CALL(subset_make(design, y, out->cell_fold, f, 0, &train));
    PS_CALL(subset_make(design, y, out->cell_fold, f, 1, &test));
    PS_CALL(fold_sst(comm, &train, &test, f, out));
    PS_CALL(fold_errors(comm, &train, &test, f, out));
    subset_free(&train);
    subset_free(&test);
    if (progress) ps_progress_update(progress, 0.8 * (double)(f + 1) / F);
  }
  /* fold F pools the folds; then sum over ranks */
  for (int f = 0; f < F; f++) {
    for (int64_t i = 0; i < (int64_t)L * GK; i++) {
      out->sse[(int64_t)F * L * GK + i] += out->sse[(int64_t)f * L * GK + i];
      out->sst[(int64_t)F * L * GK + i] += out->sst[(int64_t)f * L * GK + i];
    }
    for (int32_t g = 0; g < GK; g++) out->n_cells[(int64_t)F * GK + g] += out->n_cells[(int64_t)f * GK + g];
  }
  PS_CALL(cv_allreduce_sum(comm, out->sse, cells, MPI_DOUBLE, sizeof(double)));
  PS_CALL(cv_allreduce_sum(comm, out->sst, cells, MPI_DOUBLE, sizeof(double)));
  PS_CALL(cv_allreduce_sum(comm, out->n_cells, ((int64_t)F + 1) * GK, MPI_INT64_T, sizeof(int64_t)));
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
  out->seconds[0] = ps_wtime() - t0;
  t0 = ps_wtime();
  PS_CALL(held_out_scores(comm, design, y, opt, progress, out));
  out->seconds[1] = ps_wtime() - t0;
  return PS_OK;
}
