/* The FPR curve of SPEC.md section 4: PS of the pseudo cells for every lambda
 * of a grid, on one ridge fit.
 *
 * Why scoring the pseudo cells alone is exact (not an approximation):
 * - a pseudo cell carries only the pseudo perturbation, so its QP is
 *   1/2 || r_j - psi B_pseudo ||^2 + lambda psi, 0 <= psi <= U, with r_j = y_j - B_0:
 *   it reads beta rows 0 and pseudo only, and no other cell's data;
 * - the rescaling divides by the maximum raw PS over the cells carrying the
 *   perturbation, which are the pseudo cells and no others;
 * - FPR counts pseudo cells only.
 * So the scan builds a one-perturbation problem (the pseudo cells' design rows
 * and expression rows, beta rows 0 and pseudo) and calls ps_score_cells on it:
 * the same code, the same H and c, as the full run. Cost per lambda: one
 * 1-dimensional QP per pseudo cell (250 by default) instead of one per cell.
 *
 * Monotonicity: the 1-dimensional QP has the closed form
 * psi_j = clip((c_j - lambda) / h, 0, U) with h = ||B_pseudo||^2, so psi_j is
 * non-increasing in lambda, and so is the ratio psi_j / max psi: for c_j < c_max,
 * (c_j - lambda) / (c_max - lambda) decreases, and with psi_max = U a fixed
 * threshold U / 2 on a shrinking psi_j. When the maximum falls below 0.01 the
 * PS are left unscaled (<= 0.01), FPR = 0. FPR(lambda) is therefore
 * non-increasing in exact arithmetic; the QP tolerance (the exact 1-d finish
 * makes it ~1e-16 here) can only flip a cell whose ratio is within rounding of 0.5. */
#include "pertscore/lambda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ps_lambda_grid_log(double min, double max, int n, double **grid) {
  if (!(min > 0) || !(max >= min) || !isfinite(max))
    PS_FAIL(PS_ERR_INPUT, "a log-spaced lambda grid needs 0 < min <= max (got %g, %g)", min, max);
  if (n < 1 || (n == 1 && min != max))
    PS_FAIL(PS_ERR_INPUT, "a lambda grid from %g to %g needs at least 2 steps (got %d)", min, max, n);
  PS_ALLOC(*grid, n);
  double a = log10(min), b = log10(max);
  for (int i = 0; i < n; i++) (*grid)[i] = pow(10.0, a + (b - a) * (double)i / (double)(n > 1 ? n - 1 : 1));
  (*grid)[0] = min;
  (*grid)[n - 1] = max;
  return PS_OK;
}

void ps_lambda_curve_free(ps_lambda_curve *c) {
  if (!c) return;
  free(c->lambda);
  free(c->fpr);
  free(c->n_positive);
  free(c->max_raw);
  free(c->rescaled);
  memset(c, 0, sizeof *c);
}

int ps_lambda_choose(const ps_lambda_curve *c, double target_fpr) {
  for (int i = 0; i < c->n; i++)
    if (c->fpr[i] <= target_fpr) return i;
  return -1;
}

/* The pseudo cells of this rank as a one-perturbation problem. */
typedef struct {
  ps_design design; /* K = 1 */
  ps_csr y;
  ps_ridge ridge;   /* rows: intercept, pseudo; with basal groups (--control-by) then rows 1 + g, the
                     * intercept of group g >= 1 (ps_design_basal_row of the K = 1 design) */
} pseudo_problem;

static void pseudo_problem_free(pseudo_problem *q) {
  ps_design_free(&q->design);
  ps_csr_free(&q->y);
  ps_ridge_free(&q->ridge);
}

static int pseudo_problem_build(const ps_dataset *d, const ps_ridge *ridge, int32_t id, const char *label,
                                pseudo_problem *q) {
  const ps_design *D = &d->design;
  const ps_csr *y = &d->y;
  memset(q, 0, sizeof *q);
  int64_t n = 0, nnz = 0;
  for (int64_t j = 0; j < D->n_cells; j++) {
    int64_t begin = D->ptr[j], count = D->ptr[j + 1] - begin;
    int carries = 0;
    for (int64_t t = 0; t < count; t++) carries |= D->ids[begin + t] == id;
    if (!carries) continue;
    if (count != 1) /* ps_pseudo_relabel makes them so; the exactness argument needs it */
      PS_FAIL(PS_ERR_SYSTEM, "pseudo cell %lld carries %lld perturbations, expected 1", (long long)j, (long long)count);
    n++;
    nnz += y->indptr[j + 1] - y->indptr[j];
  }
  q->design.n_perturbations = 1;
  PS_CALL(ps_strlist_push(&q->design.names, label));
  q->design.n_cells = n;
  int32_t B = ps_design_n_basal(D);
  q->design.n_groups = D->n_groups;
  if (B > 1) PS_ALLOC(q->design.group, n + 1);
  PS_ALLOC(q->design.ptr, n + 1);
  PS_ALLOC(q->design.ids, n); /* all zero: the pseudo perturbation is id 0 here */
  q->y.n_rows = n;
  q->y.n_cols = y->n_cols;
  PS_ALLOC(q->y.indptr, n + 1);
  PS_ALLOC(q->y.indices, nnz);
  PS_ALLOC(q->y.data, nnz);
  int64_t row = 0, w = 0;
  for (int64_t j = 0; j < D->n_cells; j++) {
    if (!(D->ptr[j + 1] - D->ptr[j] == 1 && D->ids[D->ptr[j]] == id)) continue;
    for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++, w++) {
      q->y.indices[w] = y->indices[p];
      q->y.data[w] = y->data[p];
    }
    if (B > 1) q->design.group[row] = D->group[j];
    row++;
    q->design.ptr[row] = row;
    q->y.indptr[row] = w;
  }
  const int32_t N = ridge->n_genes;
  q->ridge.n_rows = 1 + B;
  q->ridge.n_genes = N;
  q->ridge.lambda = ridge->lambda;
  PS_ALLOC(q->ridge.beta, (1 + (int64_t)B) * N);
  memcpy(q->ridge.beta, ridge->beta, (size_t)N * sizeof *ridge->beta);
  memcpy(q->ridge.beta + N, ridge->beta + (size_t)(id + 1) * N, (size_t)N * sizeof *ridge->beta);
  for (int32_t g = 1; g < B; g++) /* the groups' intercepts, from row K + g of the full fit */
    memcpy(q->ridge.beta + (size_t)(1 + g) * N, ridge->beta + (size_t)ps_design_basal_row(D, g) * N,
           (size_t)N * sizeof *ridge->beta);
  return PS_OK;
}

static int curve_alloc(ps_lambda_curve *c, const double *grid, int n) {
  c->n = n;
  PS_ALLOC(c->lambda, n);
  PS_ALLOC(c->fpr, n);
  PS_ALLOC(c->n_positive, n);
  PS_ALLOC(c->max_raw, n);
  PS_ALLOC(c->rescaled, n);
  memcpy(c->lambda, grid, (size_t)n * sizeof *grid);
  return PS_OK;
}

/* One lambda: raw PS from ps_score_cells (rescale off, so that a maximum below
 * 0.01 does not warn once per lambda), then the rescaling ps_score_cells would
 * have done: it rescales iff asked and the maximum reached 0.01, which is
 * exactly n_not_rescaled == 0 for a single perturbation; the division is the
 * same operation, so the PS are the same bits. */
static int score_one(MPI_Comm comm, const pseudo_problem *q, const ps_score_options *base, double lambda,
                     ps_lambda_curve *c, int i) {
  ps_score_options o = *base;
  o.lambda = lambda;
  o.rescale = 0;
  ps_scores s;
  PS_CALL(ps_score_cells(comm, &q->design, &q->y, &q->ridge, &o, NULL, &s));
  int rescale = base->rescale && s.n_not_rescaled == 0;
  int64_t positive = 0;
  for (int64_t p = 0; p < q->design.n_cells; p++) {
    double ps = rescale ? s.ps[p] / s.max_raw[0] : s.ps[p];
    positive += ps > PS_LAMBDA_POSITIVE_PS;
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &positive, 1, MPI_INT64_T, MPI_SUM, comm));
  c->n_positive[i] = positive;
  c->fpr[i] = (double)positive / (double)c->n_pseudo;
  c->max_raw[i] = s.max_raw[0];
  c->rescaled[i] = (uint8_t)rescale;
  if (s.max_kkt > c->max_kkt) c->max_kkt = s.max_kkt;
  c->n_qp += s.n_qp;
  ps_scores_free(&s);
  return PS_OK;
}

int ps_lambda_scan(MPI_Comm comm, const ps_dataset *d, const ps_ridge *ridge, const char *pseudo_label,
                   const double *grid, int n, const ps_score_options *base, ps_progress *progress,
                   ps_lambda_curve *out) {
  memset(out, 0, sizeof *out);
  const char *label = pseudo_label ? pseudo_label : PS_LAMBDA_PSEUDO_LABEL;
  int64_t id = ps_strlist_find_sorted(&d->design.names, label);
  if (id < 0) PS_FAIL(PS_ERR_SYSTEM, "the dataset has no pseudo perturbation '%s' (ps_pseudo_relabel not run?)", label);
  for (int i = 0; i < n; i++)
    if (!(grid[i] >= 0) || !isfinite(grid[i]) || (i > 0 && !(grid[i] > grid[i - 1])))
      PS_FAIL(PS_ERR_INPUT, "lambda grid: values must be finite, >= 0 and ascending (value %d is %g)", i + 1, grid[i]);
  out->pseudo_id = (int32_t)id;
  pseudo_problem q;
  int err = ps_error_sync(comm, pseudo_problem_build(d, ridge, (int32_t)id, label, &q));
  if (!err) err = curve_alloc(out, grid, n);
  if (!err) {
    out->n_pseudo = q.design.n_cells;
    int rc = MPI_Allreduce(MPI_IN_PLACE, &out->n_pseudo, 1, MPI_INT64_T, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) err = ps_error_mpi(rc, "MPI_Allreduce", __FILE__, __LINE__);
    else if (out->n_pseudo == 0) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "no pseudo cells to score");
  }
  /* SPEC section 9: the pseudo perturbation's own genes and scored flag, as id 0 of the
   * one-perturbation problem (the gene weights are the full fit's, given in base) */
  ps_score_options one = *base;
  int64_t own_ptr[2] = {0, 0};
  uint8_t unscored = 0;
  if (base->own_ptr) {
    own_ptr[1] = base->own_ptr[id + 1] - base->own_ptr[id];
    one.own_ptr = own_ptr;
    one.own_cols = base->own_cols + base->own_ptr[id];
  }
  if (base->unscored) {
    unscored = base->unscored[id];
    one.unscored = &unscored;
  }
  for (int i = 0; i < n && !err; i++) {
    err = score_one(comm, &q, &one, grid[i], out, i);
    if (progress) ps_progress_update(progress, (double)(i + 1) / (double)n);
  }
  pseudo_problem_free(&q);
  if (err) {
    ps_lambda_curve_free(out);
    return ps_error_trace(err, __FILE__, __LINE__);
  }
  return PS_OK;
}

int ps_lambda_fpr_of(MPI_Comm comm, const ps_design *d, const ps_scores *s, int32_t pseudo_id, double *fpr) {
  int64_t counts[2] = {0, 0}; /* positives, pseudo cells */
  for (int64_t p = 0; p < d->ptr[d->n_cells]; p++)
    if (d->ids[p] == pseudo_id) {
      counts[0] += s->ps[p] > PS_LAMBDA_POSITIVE_PS;
      counts[1]++;
    }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm));
  *fpr = counts[1] ? (double)counts[0] / (double)counts[1] : 0.0;
  return PS_OK;
}
