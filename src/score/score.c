/* Per-cell perturbation scores and their rescaling (SPEC.md section 3).
 *
 * Every rank scores its own cells; the only communication is the per
 * perturbation maximum for the rescaling and two summary numbers.
 *
 * Layout choice for H and c: with B_k row k + 1 of beta and b0 the cell's basal row,
 * - a single-perturbation cell (MOI 1 screens): c = B_k . y_j - B_k . b0 (y_j sparse,
 *   O(nnz)) and H = ||B_k||^2, with B_k . b0 and ||B_k||^2 computed once for all K.
 *   Splitting c costs accuracy only when y_j is close to b0: the rounding is about
 *   1e-16 |B_k| |b0|, against a QP tolerance of 1e-6 (max |c| + lambda).
 * - a cell with d >= 2 perturbations: the dense residual r = y_j - b0 is formed once
 *   and H and c come together as the Gram matrix of [B_S; r] (qp_gram.c): at high
 *   MOI this product, not the QP, is the cost of a cell.
 * Nothing is allocated per cell. */
#include "pertscore/score.h"

#include "qp_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A perturbation is rescaled only if some cell reaches this raw PS (SPEC.md section 3). */
#define PS_RESCALE_MIN 0.01
/* Names listed in the "not rescaled" warning before "and N more". */
#define PS_WARN_NAMES 5

void ps_score_options_default(ps_score_options *o) {
  o->lambda = 0.01;
  o->upper = 3.0;
  o->rescale = 1;
  o->tolerance = 1e-6;
  o->gene_weights = 0;
  o->weights = NULL;
  o->own_ptr = NULL;
  o->own_cols = NULL;
  o->unscored = NULL;
}

void ps_scores_free(ps_scores *s) {
  if (!s) return;
  free(s->ps);
  free(s->max_raw);
  free(s->rescaled);
  free(s->weights);
  memset(s, 0, sizeof *s);
}

/* Scratch for the cell loop, allocated once. */
typedef struct {
  double *norm2;     /* K: ||B_k||^2 */
  double *dot_basal; /* K x G: B_k . b0 of each basal group (--control-by / --group-by) */
  double *hessian;   /* dmax x dmax */
  double *linear, *psi; /* dmax */
  /* cells with d >= 2 perturbations */
  const double **rows;  /* dmax + 1: B_S, then the residual */
  const double **next_rows; /* dmax: the next cell's B_S, fetched ahead */
  double *gram;         /* (dmax + 1)^2 */
  double *residual, *zero_row; /* N each */
} score_work;

static int check_inputs(const ps_design *design, const ps_csr *y, const ps_ridge *ridge,
                        const ps_score_options *opt) {
  if (!(opt->upper > 0.0) || !isfinite(opt->upper))
    PS_FAIL(PS_ERR_INPUT, "--upper must be a positive number, got %g", opt->upper);
  if (!(opt->lambda >= 0.0) || !isfinite(opt->lambda))
    PS_FAIL(PS_ERR_INPUT, "--lambda must be >= 0, got %g", opt->lambda);
  if (!(opt->tolerance > 0.0)) PS_FAIL(PS_ERR_INPUT, "QP tolerance must be positive, got %g", opt->tolerance);
  if (ridge->n_rows != design->n_perturbations + ps_design_n_basal(design))
    PS_FAIL(PS_ERR_SYSTEM, "ridge beta has %d rows, expected %d perturbations + %d basal", (int)ridge->n_rows,
            (int)design->n_perturbations, (int)ps_design_n_basal(design));
  if (y->n_rows != design->n_cells)
    PS_FAIL(PS_ERR_SYSTEM, "expression has %lld local rows but the design %lld cells", (long long)y->n_rows,
            (long long)design->n_cells);
  if (y->n_cols != ridge->n_genes)
    PS_FAIL(PS_ERR_SYSTEM, "expression has %lld columns but beta %d genes", (long long)y->n_cols,
            (int)ridge->n_genes);
  return PS_OK;
}

/* Ask the cache for cell j's beta rows now: at high MOI a cell's Gram product runs
 * at memory speed otherwise (qp_gram.c). */
static void prefetch_cell(const ps_design *design, int64_t j, const double *beta, int N, const double **rows) {
  int m = 0;
  for (int64_t p = design->ptr[j]; p < design->ptr[j + 1]; p++)
    if (design->ids[p] >= 0 && design->ids[p] < design->n_perturbations)
      rows[m++] = beta + (size_t)(design->ids[p] + 1) * N;
  ps_qp_prefetch_rows(m, rows, N);
}

/* The QPs of this rank's cells: raw PS into out->ps, per perturbation local maximum into
 * out->max_raw, local worst KKT and QP count into out->max_kkt / out->n_qp. */
static int score_local(const ps_design *design, const ps_csr *y, const ps_ridge *ridge,
                       const ps_score_options *opt, ps_progress *progress, ps_qp_solver *solver,
                       score_work *w, ps_scores *out) {
  const int32_t K = design->n_perturbations;
  const int N = ridge->n_genes;
  const int32_t n_basal = ps_design_n_basal(design);
  const double *beta = ridge->beta;
  for (int32_t k = 0; k < K; k++) {
    const double *bk = beta + (size_t)(k + 1) * N;
    w->norm2[k] = cblas_ddot(N, bk, 1, bk, 1);
    for (int32_t g = 0; g < n_basal; g++) /* B_0 is the cell's group row (SPEC section 3) */
      w->dot_basal[(size_t)k * n_basal + g] = cblas_ddot(N, bk, 1, beta + ps_design_basal_row(design, g) * N, 1);
  }
  const double upper = opt->upper, lambda = opt->lambda;
  double *h = w->hessian, *c = w->linear, *psi = w->psi;
  for (int64_t j = 0; j < design->n_cells; j++) {
    const int64_t begin = design->ptr[j];
    const int d = (int)(design->ptr[j + 1] - begin);
    if (progress && (j & 1023) == 0) ps_progress_update(progress, (double)j / (double)design->n_cells);
    if (d == 0) continue; /* control cell: no variables, PS = 0 by definition */
    const int32_t *set = design->ids + begin;
    const int32_t group = design->group ? design->group[j] : 0;
    const int64_t y0 = y->indptr[j], y1 = y->indptr[j + 1];
    for (int a = 0; a < d; a++)
      if (set[a] < 0 || set[a] >= K)
        PS_FAIL(PS_ERR_SYSTEM, "cell %lld carries perturbation id %d outside 0..%d", (long long)j, (int)set[a],
                (int)K - 1);
    if (d == 1) {
      const double *ba = beta + (size_t)(set[0] + 1) * N;
      double ca = 0.0;
      for (int64_t p = y0; p < y1; p++) ca += ba[y->indices[p]] * y->data[p];
      c[0] = ca - w->dot_basal[(size_t)set[0] * n_basal + group];
      h[0] = w->norm2[set[0]];
    } else {
      if (j + 1 < design->n_cells) prefetch_cell(design, j + 1, beta, N, w->next_rows);
      const double *b0 = beta + ps_design_basal_row(design, group) * N;
      for (int n = 0; n < N; n++) w->residual[n] = -b0[n];
      for (int64_t p = y0; p < y1; p++) w->residual[y->indices[p]] += y->data[p];
      for (int a = 0; a < d; a++) w->rows[a] = beta + (size_t)(set[a] + 1) * N;
      w->rows[d] = w->residual;
      ps_qp_gram(d + 1, w->rows, N, w->zero_row, w->gram);
      for (int a = 0; a < d; a++) {
        for (int b = 0; b < d; b++) h[a * d + b] = w->gram[a * (d + 1) + b];
        c[a] = w->gram[d * (d + 1) + a];
      }
    }
    PS_CALL(ps_qp_solve(solver, d, h, c, lambda, upper, psi));
    double kkt = ps_qp_kkt_residual(d, h, c, lambda, upper, psi);
    if (kkt > out->max_kkt) out->max_kkt = kkt;
    out->n_qp++;
    for (int a = 0; a < d; a++) {
      double raw = psi[a] / upper;
      out->ps[begin + a] = raw;
      if (raw > out->max_raw[set[a]]) out->max_raw[set[a]] = raw;
    }
  }
  return PS_OK;
}

static int check_columns(const ps_csr *y) {
  int64_t nnz = ps_csr_nnz(y);
  for (int64_t p = 0; p < nnz; p++)
    if (y->indices[p] < 0 || y->indices[p] >= y->n_cols)
      PS_FAIL(PS_ERR_SYSTEM, "expression column index %d outside 0..%lld", (int)y->indices[p],
              (long long)y->n_cols - 1);
  return PS_OK;
}

/* Everything rank-local: checks, allocation, the cell loop. */
static int score_rank(const ps_design *design, const ps_csr *y, const ps_ridge *ridge, const ps_score_options *opt,
                      const double *weights, ps_progress *progress, ps_scores *out) {
  const int32_t K = design->n_perturbations;
  PS_CALL(check_inputs(design, y, ridge, opt));
  PS_CALL(check_columns(y));
  PS_ALLOC(out->ps, design->ptr[design->n_cells]);
  PS_ALLOC(out->max_raw, K);
  PS_ALLOC(out->rescaled, K);

  int dmax = ps_design_max_per_cell(design);
  score_work w = {0};
  ps_qp_solver *solver = NULL;
  int err = PS_OK;
  w.norm2 = calloc((size_t)K + 1, sizeof *w.norm2);
  w.dot_basal = calloc((size_t)K * ps_design_n_basal(design) + 1, sizeof *w.dot_basal);
  w.hessian = calloc((size_t)dmax * dmax + 1, sizeof *w.hessian);
  w.linear = calloc((size_t)dmax + 1, sizeof *w.linear);
  w.psi = calloc((size_t)dmax + 1, sizeof *w.psi);
  w.rows = calloc((size_t)dmax + 2, sizeof *w.rows);
  w.next_rows = calloc((size_t)dmax + 1, sizeof *w.next_rows);
  w.gram = calloc((size_t)(dmax + 1) * (dmax + 1), sizeof *w.gram);
  w.residual = calloc((size_t)ridge->n_genes + 1, sizeof *w.residual);
  w.zero_row = calloc((size_t)ridge->n_genes + 1, sizeof *w.zero_row);
  if (!w.norm2 || !w.dot_basal || !w.hessian || !w.linear || !w.psi || !w.rows || !w.next_rows || !w.gram ||
      !w.residual || !w.zero_row)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory for QP scratch (%d perturbations per cell)",
                       dmax);
  if (!err) err = ps_qp_solver_create(&solver);
  if (!err) {
    ps_qp_solver_set_tolerance(solver, opt->tolerance);
    err = ps_score_method_active(opt) /* SPEC section 9 (score_method.c) */
              ? ps_score_local_method(design, y, ridge, opt, weights, progress, solver, out)
              : score_local(design, y, ridge, opt, progress, solver, &w, out);
    out->n_tao = ps_qp_solver_tao_solves(solver);
  }
  ps_qp_solver_destroy(&solver);
  free(w.norm2);
  free(w.dot_basal);
  free(w.hessian);
  free(w.linear);
  free(w.psi);
  free(w.rows);
  free(w.next_rows);
  free(w.gram);
  free(w.residual);
  free(w.zero_row);
  if (err) return ps_error_trace(err, __FILE__, __LINE__);
  return PS_OK;
}

/* Rank 0: one line naming (some of) the perturbations left unscaled. */
static void warn_not_rescaled(const ps_design *design, const ps_scores *s) {
  char line[1024];
  size_t used = (size_t)snprintf(line, sizeof line,
                                 "pertscore: warning: %d perturbation%s with maximum raw PS below %.2g, "
                                 "left unscaled: ",
                                 (int)s->n_not_rescaled, s->n_not_rescaled == 1 ? "" : "s", PS_RESCALE_MIN);
  int listed = 0;
  for (int32_t k = 0; k < design->n_perturbations && listed < PS_WARN_NAMES; k++) {
    if (s->rescaled[k]) continue;
    const char *name = k < design->names.n ? design->names.items[k] : "?";
    if (used < sizeof line)
      used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", listed ? ", " : "", name);
    listed++;
  }
  if (s->n_not_rescaled > listed && used < sizeof line)
    snprintf(line + used, sizeof line - used, " and %d more", (int)(s->n_not_rescaled - listed));
  fprintf(stderr, "%s\n", line);
  fflush(stderr);
}

int ps_score_cells(MPI_Comm comm, const ps_design *design, const ps_csr *y, const ps_ridge *ridge,
                   const ps_score_options *opt, ps_progress *progress, ps_scores *out) {
  memset(out, 0, sizeof *out);
  double start = MPI_Wtime();
  double start_cpu = ps_cpu_seconds(); /* on a shared machine wall time also counts other jobs' */
  const double *weights = opt->weights;
  if (opt->gene_weights && !weights) { /* SPEC section 9: from this design's residuals */
    PS_CALL(ps_error_sync(comm, check_inputs(design, y, ridge, opt)));
    PS_CALL(ps_score_gene_weights(comm, design, y, ridge, &out->weights));
    weights = out->weights;
  } else if (weights) {
    PS_ALLOC(out->weights, ridge->n_genes > 0 ? ridge->n_genes : 1);
    memcpy(out->weights, weights, (size_t)ridge->n_genes * sizeof *weights);
  }
  int err = ps_error_sync(comm, score_rank(design, y, ridge, opt, weights, progress, out));
  if (err) {
    ps_scores_free(out);
    return ps_error_trace(err, __FILE__, __LINE__);
  }
  const int32_t K = design->n_perturbations;
  /* this rank's share, before the sums over ranks (tools/bench) */
  ps_stats_add("qp.cells", (double)out->n_qp);
  ps_stats_add("qp.seconds", MPI_Wtime() - start);
  ps_stats_add("qp.cpu_seconds", ps_cpu_seconds() - start_cpu);
  ps_stats_add("qp.fallback_cells", (double)out->n_tao);
  ps_stats_max("qp.max_kkt", out->max_kkt);
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, out->max_raw, K, MPI_DOUBLE, MPI_MAX, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &out->max_kkt, 1, MPI_DOUBLE, MPI_MAX, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &out->n_qp, 1, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &out->n_tao, 1, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &out->n_unscored_entries, 1, MPI_INT64_T, MPI_SUM, comm));

  /* n_not_rescaled counts maxima below the threshold whether or not --no-rescale is set;
   * the warning is only worth printing when rescaling was asked for. */
  for (int32_t k = 0; k < K; k++) {
    if (opt->unscored && opt->unscored[k]) { /* not scored (SPEC section 9): nothing to rescale or warn */
      out->rescaled[k] = 0;
      out->max_raw[k] = NAN;
      continue;
    }
    int big = out->max_raw[k] >= PS_RESCALE_MIN;
    out->rescaled[k] = (uint8_t)(opt->rescale && big);
    if (!big) out->n_not_rescaled++;
  }
  if (opt->rescale) {
    for (int64_t j = 0; j < design->n_cells; j++)
      for (int64_t p = design->ptr[j]; p < design->ptr[j + 1]; p++) {
        int32_t k = design->ids[p];
        if (out->rescaled[k]) out->ps[p] /= out->max_raw[k]; /* the maximal cell gets exactly 1 */
      }
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (rank == 0 && out->n_not_rescaled > 0) warn_not_rescaled(design, out);
  }
  if (progress) ps_progress_update(progress, 1.0);
  return PS_OK;
}
