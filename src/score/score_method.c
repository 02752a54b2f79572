/* The scoring options of SPEC.md section 9 (--preset accurate): the QP of a cell over
 * its own perturbations' targets (--qp-genes own), genes weighted by the inverse of
 * their residual variance (--gene-weights residual), and perturbations left without
 * targets (--target-fdr) not scored.
 *
 * For cell j with scored perturbations S (d of them), genes G_j and weights w:
 *   H_ab = sum_{g in G_j} w_g B_ag B_bg,  c_a = sum_{g in G_j} w_g B_ag (y_jg - b0_g)
 * and the same box QP as section 3 (ps_qp_solve): 1/2 psi'H psi - c'psi + lambda 1'psi,
 * which is 1/2 sum_g w_g (r_g - sum_a psi_a B_ag)^2 + lambda sum psi up to a constant,
 * so the KKT check of section 3 on (H, c) is the KKT check of the weighted problem.
 * Per cell: the cell's expression is scattered into a dense row (and cleared after),
 * the gene set built by marking (own genes), then O(|G_j| d^2). Nothing is allocated
 * per cell. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/score.h"
#include "qp_internal.h"

int ps_score_method_active(const ps_score_options *opt) {
  return opt->gene_weights || opt->weights || opt->own_ptr || opt->unscored;
}

void ps_score_genes_free(ps_score_genes *g) {
  if (!g) return;
  free(g->own_ptr);
  free(g->own_cols);
  free(g->unscored);
  memset(g, 0, sizeof *g);
}

static int compare_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int ps_score_genes_build(const ps_dataset *d, ps_score_genes *out) {
  memset(out, 0, sizeof *out);
  const int32_t K = d->design.n_perturbations;
  ps_strmap regression = {0};
  int err = ps_strmap_init(&regression, d->n_regression > 0 ? d->n_regression : 1);
  for (int32_t n = 0; n < d->n_regression && !err; n++)
    err = ps_strmap_put(&regression, d->genes.items[d->regression_gene[n]], n);
  int64_t n_pairs = d->targets.gene.n;
  out->own_ptr = calloc((size_t)K + 1, sizeof *out->own_ptr);
  out->own_cols = calloc((size_t)n_pairs + 1, sizeof *out->own_cols);
  out->unscored = calloc((size_t)K + 1, sizeof *out->unscored);
  int64_t *at = calloc((size_t)K + 1, sizeof *at);
  int32_t *pk = calloc((size_t)n_pairs + 1, sizeof *pk), *pc = calloc((size_t)n_pairs + 1, sizeof *pc);
  if (!err && (!out->own_ptr || !out->own_cols || !out->unscored || !at || !pk || !pc))
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory for the targets of %d perturbations", (int)K);
  for (int64_t i = 0; i < n_pairs && !err; i++) {
    pk[i] = (int32_t)ps_strlist_find_sorted(&d->design.names, d->targets.perturbation.items[i]);
    pc[i] = (int32_t)ps_strmap_get(&regression, d->targets.gene.items[i]);
    if (pk[i] >= 0 && pc[i] >= 0) out->own_ptr[pk[i] + 1]++;
  }
  for (int32_t k = 0; k < K && !err; k++) out->own_ptr[k + 1] += out->own_ptr[k];
  if (!err) memcpy(at, out->own_ptr, (size_t)K * sizeof *at);
  for (int64_t i = 0; i < n_pairs && !err; i++)
    if (pk[i] >= 0 && pc[i] >= 0) out->own_cols[at[pk[i]]++] = pc[i];
  for (int32_t k = 0; k < K && !err; k++) {
    int64_t b = out->own_ptr[k], e = out->own_ptr[k + 1];
    qsort(out->own_cols + b, (size_t)(e - b), sizeof *out->own_cols, compare_i32);
    int64_t m = b; /* distinct (a targets file may list a pair twice) */
    for (int64_t q = b; q < e; q++)
      if (q == b || out->own_cols[q] != out->own_cols[q - 1]) out->own_cols[m++] = out->own_cols[q];
    if (m != e) err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "perturbation %s lists a target gene twice",
                                   d->design.names.items[k]);
    out->unscored[k] = e == b;
    out->n_unscored += e == b;
  }
  free(at), free(pk), free(pc);
  ps_strmap_free(&regression);
  if (err) ps_score_genes_free(out);
  return err;
}

void ps_score_genes_apply(const ps_score_genes *g, int own, int skip, ps_score_options *opt) {
  opt->own_ptr = own ? g->own_ptr : NULL;
  opt->own_cols = own ? g->own_cols : NULL;
  opt->unscored = (own || skip) && g->n_unscored > 0 ? g->unscored : NULL;
}

void ps_score_genes_warn(MPI_Comm comm, const ps_dataset *d, const ps_score_genes *g) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0 || g->n_unscored == 0) return;
  char line[1024];
  int used = 0, listed = 0;
  for (int32_t k = 0; k < d->design.n_perturbations && listed < 5; k++)
    if (g->unscored[k] && used < (int)sizeof line)
      used += snprintf(line + used, sizeof line - used, "%s%s", listed++ ? ", " : "", d->design.names.items[k]);
  fprintf(stderr, "pertscore: warning: %d of %d perturbation%s left without targets (no gene at the target FDR) "
          "%s not scored (PS absent, NaN): %s%s\n", (int)g->n_unscored, (int)d->design.n_perturbations,
          d->design.n_perturbations == 1 ? "" : "s", g->n_unscored == 1 ? "is" : "are", line,
          g->n_unscored > listed ? ", ..." : "");
  fflush(stderr);
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int ps_score_gene_weights(MPI_Comm comm, const ps_design *design, const ps_csr *y, const ps_ridge *ridge, double **w) {
  const int N = ridge->n_genes;
  const int32_t K = design->n_perturbations;
  *w = NULL;
  double *v = calloc((size_t)N + 1, sizeof *v), *r = calloc((size_t)N + 1, sizeof *r);
  if (!v || !r) {
    free(v), free(r);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory for %d gene weights", N);
  }
  int err = PS_OK;
  for (int64_t j = 0; j < design->n_cells && !err; j++) {
    const int32_t group = design->group ? design->group[j] : 0;
    const double *b0 = ridge->beta + (size_t)ps_design_basal_row(design, group) * N;
    for (int n = 0; n < N; n++) r[n] = -b0[n];
    for (int64_t p = design->ptr[j]; p < design->ptr[j + 1]; p++) {
      int32_t k = design->ids[p];
      if (k < 0 || k >= K) {
        err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "cell %lld carries perturbation id %d outside 0..%d",
                           (long long)j, (int)k, (int)K - 1);
        break;
      }
      const double *bk = ridge->beta + (size_t)(k + 1) * N;
      for (int n = 0; n < N; n++) r[n] -= bk[n];
    }
    for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++) r[y->indices[p]] += y->data[p];
    for (int n = 0; n < N; n++) v[n] += r[n] * r[n];
  }
  free(r);
  err = ps_error_sync(comm, err);
  if (err) {
    free(v);
    return ps_error_trace(err, __FILE__, __LINE__);
  }
  int64_t M = design->n_cells;
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &M, 1, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, N, MPI_DOUBLE, MPI_SUM, comm));
  if (M < 1 || N < 1) {
    for (int n = 0; n < N; n++) v[n] = 1.0;
    *w = v;
    return PS_OK;
  }
  for (int n = 0; n < N; n++) v[n] /= (double)M;
  double *sorted = malloc((size_t)N * sizeof *sorted);
  if (!sorted) {
    free(v);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory for %d gene weights", N);
  }
  memcpy(sorted, v, (size_t)N * sizeof *sorted);
  qsort(sorted, (size_t)N, sizeof *sorted, compare_double);
  double median = N % 2 ? sorted[N / 2] : 0.5 * (sorted[N / 2 - 1] + sorted[N / 2]);
  free(sorted);
  double floor_v = 0.1 * median, mean_inv = 0.0;
  if (!(floor_v > 0)) { /* every residual zero (a degenerate toy): equal weights */
    for (int n = 0; n < N; n++) v[n] = 1.0;
    *w = v;
    return PS_OK;
  }
  for (int n = 0; n < N; n++) {
    if (!(v[n] >= floor_v)) v[n] = floor_v;
    v[n] = 1.0 / v[n];
    mean_inv += v[n];
  }
  mean_inv /= (double)N;
  for (int n = 0; n < N; n++) v[n] /= mean_inv;
  *w = v;
  return PS_OK;
}

int ps_score_local_method(const ps_design *design, const ps_csr *y, const ps_ridge *ridge, const ps_score_options *opt,
                          const double *w, ps_progress *progress, ps_qp_solver *solver, ps_scores *out) {
  const int32_t K = design->n_perturbations;
  const int N = ridge->n_genes;
  const double *beta = ridge->beta;
  const int dmax = ps_design_max_per_cell(design);
  double *dense = calloc((size_t)N + 1, sizeof *dense);   /* the cell's y, then cleared */
  uint8_t *mark = calloc((size_t)N + 1, sizeof *mark);    /* G_j membership (own genes) */
  int32_t *genes = malloc(((size_t)N + 1) * sizeof *genes);
  double *h = malloc(((size_t)dmax * dmax + 1) * sizeof *h), *c = malloc(((size_t)dmax + 1) * sizeof *c);
  double *psi = malloc(((size_t)dmax + 1) * sizeof *psi);
  int *var = malloc(((size_t)dmax + 1) * sizeof *var); /* scored positions within the cell's list */
  const double **rows = malloc(((size_t)dmax + 1) * sizeof *rows);
  double *wr = malloc(((size_t)N + 1) * sizeof *wr);   /* w_g r_g over G_j, compacted */
  int err = PS_OK;
  if (!dense || !mark || !genes || !h || !c || !psi || !var || !rows || !wr)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory for QP scratch (%d genes)", N);
  for (int64_t j = 0; j < design->n_cells && !err; j++) {
    const int64_t begin = design->ptr[j];
    const int dall = (int)(design->ptr[j + 1] - begin);
    if (progress && (j & 1023) == 0) ps_progress_update(progress, (double)j / (double)design->n_cells);
    if (dall == 0) continue;
    const int32_t *set = design->ids + begin;
    int d = 0;
    for (int a = 0; a < dall; a++) {
      if (set[a] < 0 || set[a] >= K) {
        err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "cell %lld carries perturbation id %d outside 0..%d",
                           (long long)j, (int)set[a], (int)K - 1);
        break;
      }
      if (opt->unscored && opt->unscored[set[a]]) {
        out->ps[begin + a] = NAN;
        out->n_unscored_entries++;
      } else {
        var[d++] = a;
      }
    }
    if (err) break;
    if (d == 0) continue;
    /* G_j */
    int n_genes = 0;
    if (opt->own_ptr) {
      for (int a = 0; a < d; a++) {
        int32_t k = set[var[a]];
        for (int64_t q = opt->own_ptr[k]; q < opt->own_ptr[k + 1]; q++)
          if (!mark[opt->own_cols[q]]) {
            mark[opt->own_cols[q]] = 1;
            genes[n_genes++] = opt->own_cols[q];
          }
      }
      for (int t = 0; t < n_genes; t++) mark[genes[t]] = 0;
    } else {
      for (int n = 0; n < N; n++) genes[n] = n;
      n_genes = N;
    }
    const int32_t group = design->group ? design->group[j] : 0;
    const double *b0 = beta + (size_t)ps_design_basal_row(design, group) * N;
    for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++) dense[y->indices[p]] = y->data[p];
    for (int t = 0; t < n_genes; t++) {
      int32_t g = genes[t];
      wr[t] = (w ? w[g] : 1.0) * (dense[g] - b0[g]);
    }
    for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++) dense[y->indices[p]] = 0.0;
    for (int a = 0; a < d; a++) rows[a] = beta + (size_t)(set[var[a]] + 1) * N;
    for (int a = 0; a < d; a++) {
      const double *ba = rows[a];
      double ca = 0.0;
      for (int t = 0; t < n_genes; t++) ca += ba[genes[t]] * wr[t];
      c[a] = ca;
      for (int b = 0; b <= a; b++) {
        const double *bb = rows[b];
        double hab = 0.0;
        if (w)
          for (int t = 0; t < n_genes; t++) hab += w[genes[t]] * ba[genes[t]] * bb[genes[t]];
        else
          for (int t = 0; t < n_genes; t++) hab += ba[genes[t]] * bb[genes[t]];
        h[a * d + b] = h[b * d + a] = hab;
      }
    }
    if ((err = ps_qp_solve(solver, d, h, c, opt->lambda, opt->upper, psi))) break;
    double kkt = ps_qp_kkt_residual(d, h, c, opt->lambda, opt->upper, psi);
    if (kkt > out->max_kkt) out->max_kkt = kkt;
    out->n_qp++;
    for (int a = 0; a < d; a++) {
      double raw = psi[a] / opt->upper;
      out->ps[begin + var[a]] = raw;
      if (raw > out->max_raw[set[var[a]]]) out->max_raw[set[var[a]]] = raw;
    }
  }
  free(dense), free(mark), free(genes), free(h), free(c), free(psi), free(var), free(rows), free(wr);
  if (err) return ps_error_trace(err, __FILE__, __LINE__);
  return PS_OK;
}
