/* The cells scheme (SPEC.md section 7): folds of cells stratified by
 * perturbation; for every ridge lambda of a grid, beta on the training cells
 * (ps_ridge_fit) and the held-out cells' prediction error B_0 + sum_k d_jk B_k
 * against their winsorized regression-gene response; the chosen lambda has the
 * least pooled held-out MSE; then the held-out cells' PS, scored with the fold's
 * beta at that lambda, against their full-data PS. docs/cv.md has the definitions.
 *
 * Parallel layout: a fold per rank group. The ranks split into min(P, F) groups
 * of contiguous ranks; group g takes folds g, g + groups, ... . A fold's fit needs
 * its training cells, i.e. nearly all cells, so every group gets a copy of all
 * analysed cells (design rows, response rows, folds), spread over its ranks: rank
 * i of a group of s ranks holds the cells of the ranks j with j mod s == i, in rank
 * order (one Alltoallv per array, each rank sending its rows once to every group).
 * Each (fold, lambda, group) sum is computed in exactly one group and summed over
 * all ranks at the end, so the tables do not depend on P beyond rounding. The
 * full-data beta and PS are computed once, data-parallel on all ranks, and the
 * full-data PS are sent to the groups' copies the same way. */
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

/* ---- a fold group's copy of the cells ---- */

/* The rank groups and where this rank's cells go: dest[g] = the rank of group g
 * that receives them (the group's (rank mod size)-th member). */
typedef struct {
  MPI_Comm group;    /* this rank's fold group */
  int n_groups, my_group, group_rank, group_size;
  int *dest;         /* n_groups */
} group_layout;

static int layout_make(MPI_Comm comm, int n_folds, group_layout *l) {
  memset(l, 0, sizeof *l);
  l->group = MPI_COMM_NULL;
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  l->n_groups = size < n_folds ? size : n_folds;
  l->my_group = (int)((int64_t)rank * l->n_groups / size);
  PS_CHECK_MPI(MPI_Comm_split(comm, l->my_group, rank, &l->group));
  PS_CHECK_MPI(MPI_Comm_rank(l->group, &l->group_rank));
  PS_CHECK_MPI(MPI_Comm_size(l->group, &l->group_size));
  l->dest = calloc((size_t)l->n_groups, sizeof *l->dest);
  int *first = calloc((size_t)l->n_groups, sizeof *first), *count = calloc((size_t)l->n_groups, sizeof *count);
  int err = cv_alloc_sync(comm, l->dest && first && count, "the fold group layout");
  if (err) {
    free(first);
    free(count);
    return err; /* the caller frees l */
  }
  for (int r = size - 1; r >= 0; r--) { /* group of rank r: r * groups / size, as above */
    int g = (int)((int64_t)r * l->n_groups / size);
    first[g] = r;
    count[g]++;
  }
  for (int g = 0; g < l->n_groups; g++) l->dest[g] = first[g] + rank % count[g];
  free(first);
  free(count);
  return PS_OK;
}

static void layout_free(group_layout *l) {
  if (l->group != MPI_COMM_NULL && l->n_groups) MPI_Comm_free(&l->group);
  free(l->dest);
  memset(l, 0, sizeof *l);
}

/* This rank's n items (of size bytes each, MPI type) to rank dest[g] of every group;
 * *recv gets the items of the ranks this rank receives from, in rank order. Every
 * destination reads the same send buffer. Collective. */
static int send_to_groups(MPI_Comm comm, const group_layout *l, const void *items, int64_t n, MPI_Datatype type,
                          size_t size, void **recv, int64_t *n_recv) {
  int P;
  MPI_Comm_size(comm, &P);
  int *scount = calloc((size_t)P, sizeof *scount), *sdispl = calloc((size_t)P, sizeof *sdispl),
      *rcount = calloc((size_t)P, sizeof *rcount), *rdispl = calloc((size_t)P, sizeof *rdispl);
  int err = cv_alloc_sync(comm, scount && sdispl && rcount && rdispl, "the fold groups' send counts");
  if (err) {
    free(scount);
    free(sdispl);
    free(rcount);
    free(rdispl);
    return err;
  }
  int too_many = n > INT_MAX, any_too_many;
  for (int g = 0; g < l->n_groups; g++) scount[l->dest[g]] = too_many ? 0 : (int)n;
  PS_CHECK_MPI(MPI_Allreduce(&too_many, &any_too_many, 1, MPI_INT, MPI_MAX, comm));
  if (any_too_many) PS_FAIL(PS_ERR_INPUT, "cv: a rank holds more than %d entries to send to the fold groups; use more ranks", INT_MAX);
  PS_CHECK_MPI(MPI_Alltoall(scount, 1, MPI_INT, rcount, 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < P; r++) {
    rdispl[r] = (int)total;
    total += rcount[r];
  }
  too_many = total > INT_MAX;
  PS_CHECK_MPI(MPI_Allreduce(&too_many, &any_too_many, 1, MPI_INT, MPI_MAX, comm));
  if (any_too_many)
    PS_FAIL(PS_ERR_INPUT, "cv: a fold group's share of the cells exceeds %d entries on one rank; use more ranks", INT_MAX);
  char *out = malloc(total ? (size_t)total * size : 1);
  PS_CALL(cv_alloc_sync(comm, out != NULL, "the fold group's copy of the cells"));
  PS_CHECK_MPI(MPI_Alltoallv(items, scount, sdispl, type, out, rcount, rdispl, type, comm));
  *recv = out;
  *n_recv = total;
  free(scount);
  free(sdispl);
  free(rcount);
  free(rdispl);
  return PS_OK;
}

/* The group's copy of every analysed cell: design rows (names shared with the
 * full design), response rows and folds. */
typedef struct {
  ps_design design;
  ps_csr y;
  int32_t *fold;
} group_cells;

static void group_cells_free(group_cells *c) {
  free(c->design.ptr);
  free(c->design.ids);
  ps_csr_free(&c->y);
  free(c->fold);
  memset(c, 0, sizeof *c);
}

static int group_cells_make(MPI_Comm comm, const group_layout *l, const ps_design *d, const ps_csr *y,
                            const int32_t *fold, group_cells *c) {
  memset(c, 0, sizeof *c);
  /* per cell: its number of perturbations, of response nonzeros, and its fold */
  int64_t n = d->n_cells, *head, *got, n_got, n_ids, n_indices, nnz;
  void *buf;
  head = malloc((size_t)(3 * n + 1) * sizeof *head);
  PS_CALL(cv_alloc_sync(comm, head != NULL, "the cells' sizes for the fold groups"));
  for (int64_t j = 0; j < n; j++) {
    head[3 * j] = d->ptr[j + 1] - d->ptr[j];
    head[3 * j + 1] = y->indptr[j + 1] - y->indptr[j];
    head[3 * j + 2] = fold[j];
  }
  PS_CALL(send_to_groups(comm, l, head, 3 * n, MPI_INT64_T, sizeof(int64_t), &buf, &n_got));
  got = buf;
  free(head);
  int64_t m = n_got / 3;
  c->design.n_perturbations = d->n_perturbations;
  c->design.names = d->names; /* shared: never freed through the copy */
  c->design.n_cells = m;
  c->y.n_rows = m;
  c->y.n_cols = y->n_cols;
  c->design.ptr = calloc((size_t)m + 1, sizeof *c->design.ptr);
  c->y.indptr = calloc((size_t)m + 1, sizeof *c->y.indptr);
  c->fold = calloc((size_t)m + 1, sizeof *c->fold);
  int err = cv_alloc_sync(comm, c->design.ptr && c->y.indptr && c->fold, "the fold group's copy of the cells");
  if (err) {
    free(got);
    return err; /* the caller frees c */
  }
  for (int64_t j = 0; j < m; j++) {
    c->design.ptr[j + 1] = c->design.ptr[j] + got[3 * j];
    c->y.indptr[j + 1] = c->y.indptr[j] + got[3 * j + 1];
    c->fold[j] = (int32_t)got[3 * j + 2];
  }
  free(got);
  PS_CALL(send_to_groups(comm, l, d->ids, d->ptr[n], MPI_INT32_T, sizeof(int32_t), &buf, &n_ids));
  c->design.ids = buf;
  PS_CALL(send_to_groups(comm, l, y->indices, y->indptr[n], MPI_INT32_T, sizeof(int32_t), &buf, &n_indices));
  c->y.indices = buf;
  PS_CALL(send_to_groups(comm, l, y->data, y->indptr[n], MPI_DOUBLE, sizeof(double), &buf, &nnz));
  c->y.data = buf;
  if (n_ids != c->design.ptr[m] || n_indices != c->y.indptr[m] || nnz != c->y.indptr[m])
    PS_FAIL(PS_ERR_SYSTEM, "cv: the fold group's copy of the cells is inconsistent");
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
  double *ybar = calloc((size_t)N + 1, sizeof *ybar), *row = calloc((size_t)N + 1, sizeof *row),
         *count = calloc((size_t)GK, sizeof *count);
  int err = cv_alloc_sync(comm, ybar && row && count, "a fold's held-out sums");
  if (err) {
    free(ybar);
    free(row);
    free(count);
    return err;
  }
  int64_t n_train = train->y.n_rows;
  for (int64_t p = 0; p < train->y.indptr[train->y.n_rows]; p++) ybar[train->y.indices[p]] += train->y.data[p];
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, ybar, N, MPI_DOUBLE, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &n_train, 1, MPI_INT64_T, MPI_SUM, comm));
  for (int32_t n = 0; n < N; n++) ybar[n] = n_train ? ybar[n] / (double)n_train : 0.0;
  double *sst = r->sst + (int64_t)f * r->n_lambdas * GK;
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
  double *row = calloc((size_t)N + 1, sizeof *row), *pred = calloc((size_t)N + 1, sizeof *pred);
  int err = cv_alloc_sync(comm, row && pred, "a fold's predictions");
  for (int l = 0; l < r->n_lambdas && !err; l++) {
    ps_ridge B;
    err = ps_error_sync(comm, ps_ridge_fit(comm, &train->design, &train->y, r->lambdas[l], &B));
    if (err) break;
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
 * their raw PS from the full-data beta. The full-data fit and scores run on all
 * ranks over their own cells; the scores then go to the groups' copies. */
static int held_out_scores(MPI_Comm comm, const group_layout *l, const group_cells *c, const ps_design *design,
                           const ps_csr *y, const ps_cv_options *opt, ps_progress *progress, ps_cv_cells_result *r) {
  ps_score_options so = opt->score;
  so.rescale = 0; /* raw PS: a held-out set's maximum is not the full data's (docs/cv.md) */
  double lambda = r->lambdas[r->chosen];
  ps_ridge full_beta;
  ps_scores full;
  PS_CALL(ps_error_sync(comm, ps_ridge_fit(comm, design, y, lambda, &full_beta)));
  PS_CALL(ps_error_sync(comm, ps_score_cells(comm, design, y, &full_beta, &so, NULL, &full)));
  ps_ridge_free(&full_beta);
  void *buf;
  int64_t n_full;
  PS_CALL(send_to_groups(comm, l, full.ps, design->ptr[design->n_cells], MPI_DOUBLE, sizeof(double),
                         &buf, &n_full));
  double *full_ps = buf; /* per design entry of the group's copy */
  ps_scores_free(&full);
  int64_t n_entries = c->design.ptr[c->design.n_cells];
  int32_t *pair_fold = calloc((size_t)n_entries + 1, sizeof *pair_fold);
  int32_t *pair_id = calloc((size_t)n_entries + 1, sizeof *pair_id);
  double *x = calloc((size_t)n_entries + 1, sizeof *x), *yv = calloc((size_t)n_entries + 1, sizeof *yv);
  int err = cv_alloc_sync(comm, pair_fold && pair_id && x && yv, "the held-out score pairs");
  int64_t n_pairs = 0;
  for (int f = l->my_group; f < r->n_folds && !err; f += l->n_groups) {
    cell_subset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    err = subset_make(&c->design, &c->y, c->fold, f, 0, &train);
    if (!err) err = subset_make(&c->design, &c->y, c->fold, f, 1, &test);
    err = ps_error_sync(l->group, err); /* the group's fit below is collective */
    ps_ridge B;
    ps_scores s;
    memset(&B, 0, sizeof B);
    memset(&s, 0, sizeof s);
    if (!err) err = ps_error_sync(l->group, ps_ridge_fit(l->group, &train.design, &train.y, lambda, &B));
    if (!err) err = ps_error_sync(l->group, ps_score_cells(l->group, &test.design, &test.y, &B, &so, NULL, &s));
    for (int64_t j = 0; j < test.design.n_cells && !err; j++) {
      int64_t o = test.origin[j];
      for (int64_t t = 0; t < test.design.ptr[j + 1] - test.design.ptr[j]; t++) {
        pair_fold[n_pairs] = f;
        pair_id[n_pairs] = test.design.ids[test.design.ptr[j] + t];
        x[n_pairs] = s.ps[test.design.ptr[j] + t];
        yv[n_pairs++] = full_ps[c->design.ptr[o] + t];
      }
    }
    ps_scores_free(&s); /* both zeroed above: freed whichever step failed */
    ps_ridge_free(&B);
    subset_free(&train);
    subset_free(&test);
    if (progress) ps_progress_update(progress, 0.8 + 0.2 * (double)(f + 1) / r->n_folds);
  }
  err = ps_error_sync(comm, err); /* a group's failure stops every group before the next collective */
  if (!err) err = ps_stability(comm, n_pairs, pair_fold, pair_id, x, yv, r);
  free(full_ps);
  free(pair_fold);
  free(pair_id);
  free(x);
  free(yv);
  return err;
}

/* The lambda grid on this rank's group: every fold of the group, every lambda. */
static int group_folds(const group_layout *l, const group_cells *c, ps_progress *progress, ps_cv_cells_result *r) {
  int err = PS_OK;
  for (int f = l->my_group; f < r->n_folds && !err; f += l->n_groups) {
    cell_subset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    err = subset_make(&c->design, &c->y, c->fold, f, 0, &train);
    if (!err) err = subset_make(&c->design, &c->y, c->fold, f, 1, &test);
    err = ps_error_sync(l->group, err); /* fold_sst is collective on the group */
    if (!err) err = fold_sst(l->group, &train, &test, f, r);
    if (!err) err = fold_errors(l->group, &train, &test, f, r);
    err = ps_error_sync(l->group, err); /* the group's next fold is collective again */
    subset_free(&train);
    subset_free(&test);
    if (progress) ps_progress_update(progress, 0.8 * (double)(f + 1) / r->n_folds);
  }
  return err;
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
  group_layout layout;
  group_cells copy;
  memset(&copy, 0, sizeof copy);
  int err = layout_make(comm, F, &layout);
  if (err) {
    layout_free(&layout);
    return err;
  }
  err = group_cells_make(comm, &layout, design, y, out->cell_fold, &copy);
  if (!err) err = ps_error_sync(comm, group_folds(&layout, &copy, progress, out));
  if (err) {
    group_cells_free(&copy);
    layout_free(&layout);
    return err;
  }
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
  out->seconds[0] = ps_wtime() - t0;
  t0 = ps_wtime();
  err = held_out_scores(comm, &layout, &copy, design, y, opt, progress, out);
  out->seconds[1] = ps_wtime() - t0;
  group_cells_free(&copy);
  layout_free(&layout);
  return err;
}
