/* Calibrated calls (SPEC.md section 10; pertscore/calibrate.h has the construction,
 * docs/method.md "Calibrated calls" the assumptions). The stage reuses the run's
 * verbs on subsets of cells: ps_targets_select with a keep map over the kept
 * expression, ps_ridge_fit_grid with a keep mask, ps_score_cells on designs that
 * carry only the held-out cells, and for the null cells blocks of replicated rows
 * (each null cell once per perturbation of the block, carrying only that one), so
 * memory stays bounded and the work is spread over the ranks holding the cells. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/calibrate.h"
#include "pertscore/de.h"

/* How the run chose its response, which each refit repeats on its cells. */
typedef struct {
  const ps_targets_options *t;
  const ps_regression_options *r;
  int qp_genes_own;
} refit_options;

#define CAL_SALT UINT64_C(0x63616c6962726174) /* "calibrat" */
#define PS_CAL_MIN_NULL 10                       /* null cells per fit, at least */
#define CAL_BLOCK_BYTES ((int64_t)64 << 20)    /* replicated null rows per block, per rank */

void ps_calibration_options_default(ps_calibration_options *o) {
  memset(o, 0, sizeof *o);
  o->enabled = 1;
  o->control_fraction = 0.5;
  o->seed = 1;
  o->fdr = 0.05;
}

void ps_calibration_free(ps_calibration *c) {
  if (!c) return;
  free(c->effect_pvalue), free(c->effect_fdr), free(c->effect_z), free(c->fit_z), free(c->n_heldout);
  free(c->ps_pvalue), free(c->role), free(c->heldout_score), free(c->null_score[0]), free(c->null_score[1]);
  memset(c, 0, sizeof *c);
}

typedef struct {
  int64_t i;
  double p;
} bh_item;

static int bh_cmp(const void *a, const void *b) {
  const bh_item *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

int ps_bh_adjust(const double *p, int64_t n, double *q) {
  bh_item *v;
  PS_ALLOC(v, n);
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++) {
    q[i] = NAN;
    if (!isnan(p[i])) v[m++] = (bh_item){i, p[i]};
  }
  qsort(v, (size_t)m, sizeof *v, bh_cmp);
  double run = 1.0;
  for (int64_t h = m - 1; h >= 0; h--) {
    double x = v[h].p * (double)m / (double)(h + 1);
    if (x < run) run = x;
    q[v[h].i] = run;
  }
  free(v);
  return PS_OK;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* first index with v[i] >= x in sorted v */
static int64_t lower_bound(const double *v, int64_t n, double x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (v[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* One stratum of a one-sided (greater) Wilcoxon rank-sum of x (n1) against sorted
 * null (n0): adds U - n1 n0 / 2 to *dev and its null variance with tie correction to
 * *var (R wilcox.test(exact = FALSE)); nothing when a side is empty. */
static int ranksum_add(const double *x, int64_t n1, const double *null, int64_t n0, double *dev, double *var) {
  if (n1 == 0 || n0 == 0) return PS_OK;
  double u = 0;
  for (int64_t i = 0; i < n1; i++) {
    int64_t below = lower_bound(null, n0, x[i]), upto = below;
    while (upto < n0 && null[upto] == x[i]) upto++;
    u += (double)below + 0.5 * (double)(upto - below);
  }
  double *all;
  int64_t n = n0 + n1;
  PS_ALLOC(all, n);
  memcpy(all, null, (size_t)n0 * sizeof *all);
  memcpy(all + n0, x, (size_t)n1 * sizeof *all);
  qsort(all, (size_t)n, sizeof *all, cmp_double);
  double ties = 0;
  for (int64_t a = 0, b; a < n; a = b) {
    for (b = a + 1; b < n && all[b] == all[a]; b++) {}
    double t = (double)(b - a);
    ties += t * t * t - t;
  }
  free(all);
  double N1 = (double)n1, N0 = (double)n0, N = (double)n;
  *var += N1 * N0 / 12.0 * ((N + 1.0) - ties / (N * (N - 1.0)));
  *dev += u - N1 * N0 / 2.0;
  return PS_OK;
}

/* The z of summed strata (one stratum: the plain rank-sum; with basal groups the
 * stratified sum of each group's U against its own null cells, whose null mean and
 * variance add): continuity correction towards 0, 0 without variance. */
static double ranksum_z(double dev, double var) {
  if (var <= 0) return 0.0;
  double d = dev > 0.5 ? dev - 0.5 : dev < -0.5 ? dev + 0.5 : 0.0;
  return d / sqrt(var);
}

/* Gather n local doubles of every rank, in rank order, into *all (allocated, *n_all). */
static int gather_doubles(MPI_Comm comm, const double *local, int64_t n, double **all, int64_t *n_all) {
  int size;
  MPI_Comm_size(comm, &size);
  int *counts, *displs;
  PS_ALLOC(counts, size);
  PS_ALLOC(displs, size);
  if (n > INT32_MAX) PS_FAIL(PS_ERR_SYSTEM, "calibration: %lld values are too many to exchange", (long long)n);
  int mine = (int)n;
  PS_CHECK_MPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; r++) {
    if (total > INT32_MAX) PS_FAIL(PS_ERR_SYSTEM, "calibration: too many values to exchange");
    displs[r] = (int)total;
    total += counts[r];
  }
  if (total > INT32_MAX) PS_FAIL(PS_ERR_SYSTEM, "calibration: %lld values are too many to exchange", (long long)total);
  PS_ALLOC(*all, total);
  PS_CHECK_MPI(MPI_Allgatherv(local, mine, MPI_DOUBLE, *all, counts, displs, MPI_DOUBLE, comm));
  *n_all = total;
  free(counts), free(displs);
  return PS_OK;
}

static int ps_error_mpi_ok(int code) { return code == MPI_SUCCESS ? PS_OK : ps_error_mpi(code, "MPI", __FILE__, __LINE__); }

/* ---------------------------------------------------------------- one fit's response */

static int exscan_total(MPI_Comm comm, int64_t mine, int64_t *before, int64_t *total) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  *before = 0;
  PS_CHECK_MPI(MPI_Exscan(&mine, before, 1, MPI_INT64_T, MPI_SUM, comm));
  if (rank == 0) *before = 0;
  *total = mine;
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, total, 1, MPI_INT64_T, MPI_SUM, comm));
  return PS_OK;
}

/* A fit's own regression genes and winsorized response over every local analysed
 * cell. The fit's target pairs and regression genes (indices into d->genes) are kept
 * for score options that depend on them (SPEC section 9's --qp-genes own and
 * --gene-weights work on the fit's genes, not the run's: derive them from here). */
typedef struct {
  ps_csr y;
  int own;                  /* y allocated here (else it is d->y) */
  ps_target_pairs targets;  /* the fit's selected pairs (empty with a targets file: the run's) */
  int32_t *regression_gene; /* y's columns as gene indices (NULL with a targets file: d->regression_gene) */
} fit_response;

static void fit_response_free(fit_response *r) {
  if (r->own) ps_csr_free(&r->y);
  ps_target_pairs_free(&r->targets);
  free(r->regression_gene);
  memset(r, 0, sizeof *r);
}

/* Target selection on the training cells (train[j] != 0), as ps_targets_select does on
 * all analysed cells; then regression genes and winsorizing caps from all analysed
 * cells (statistics that do not look at any cell's label). */
static int fit_targets(MPI_Comm comm, const refit_options *data_opt, const ps_dataset *d, const uint8_t *train,
                       fit_response *out, int32_t *n_regression) {
  const ps_design *D = &d->design;
  int64_t n_local = D->n_cells, n_train = 0;
  for (int64_t j = 0; j < n_local; j++) n_train += train[j] != 0;
  ps_dataset s; /* the training cells as a dataset: what ps_targets_select reads */
  memset(&s, 0, sizeof s);
  s.n_genes = d->n_genes;
  s.genes = d->genes;
  s.low_moi = d->low_moi;
  s.design.n_perturbations = D->n_perturbations;
  s.design.names = D->names;
  s.design.n_cells = n_train;
  s.design.n_groups = D->n_groups; /* basal groups: the training cells keep theirs */
  s.by_group = d->by_group;        /* --group-by: P@g tested against g's training controls */
  s.group_of = d->group_of;
  s.base = d->base;
  s.groups = d->groups;
  int64_t *keep = NULL, *ptr = NULL, before = 0, total = n_train;
  int32_t *ids = NULL, *top = NULL, *candidates = NULL, n_candidates = 0, *train_group = NULL;
  uint8_t *has_control = NULL;
  int64_t *expressed = NULL;
  int32_t *column_of = NULL;
  ps_strmap gene_index;
  memset(&gene_index, 0, sizeof gene_index);
  int err = PS_OK;
#define FT_ALLOC(p, n) do { if (!err && !((p) = calloc((size_t)(n) ? (size_t)(n) : 1, sizeof *(p)))) \
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "calibration: out of memory"); } while (0)
  FT_ALLOC(keep, n_local);
  FT_ALLOC(ptr, n_train + 1);
  FT_ALLOC(ids, D->ptr[n_local]);
  FT_ALLOC(top, n_train);
  FT_ALLOC(has_control, n_train);
  if (D->group) FT_ALLOC(train_group, n_train);
  if (!err) {
    int64_t t = 0;
    for (int64_t j = 0; j < n_local; j++) keep[j] = train[j] ? t++ : -1;
    t = 0;
    int64_t w = 0;
    for (int64_t j = 0; j < n_local; j++) {
      if (!train[j]) continue;
      ptr[t] = w;
      for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) ids[w++] = D->ids[p];
      top[t] = d->top_perturbation[j];
      has_control[t] = d->has_control_guide[j];
      if (train_group) train_group[t] = D->group[j];
      t++;
    }
    ptr[t] = w;
  }
  err = ps_error_sync(comm, err);
  if (!err) err = exscan_total(comm, n_train, &before, &total);
  if (err) goto done;
  s.design.ptr = ptr;
  s.design.ids = ids;
  s.top_perturbation = top;
  s.has_control_guide = has_control;
  s.design.group = train_group;
  s.n_analysed = total;
  s.analysed_offset = before;
  err = ps_strmap_init(&gene_index, d->n_genes);
  for (int64_t g = 0; g < d->genes.n && !err; g++) err = ps_strmap_put(&gene_index, d->genes.items[g], g);
  err = ps_error_sync(comm, err);
  if (err) goto done;
  err = ps_targets_select_cells(comm, data_opt->t, &d->expression, keep, &gene_index, NULL, &s, &candidates, &n_candidates);
  if (err) goto done;
  /* regression genes: y > 0 in at least min_gene_frac of the analysed cells */
  FT_ALLOC(column_of, d->n_genes);
  FT_ALLOC(expressed, n_candidates);
  if (!err) {
    for (int64_t g = 0; g < d->n_genes; g++) column_of[g] = -1;
    for (int32_t c = 0; c < n_candidates; c++) column_of[candidates[c]] = c;
    const ps_csr *x = &d->expression;
    for (int64_t j = 0; j < x->n_rows; j++)
      for (int64_t p = x->indptr[j]; p < x->indptr[j + 1]; p++)
        if (column_of[x->indices[p]] >= 0 && x->data[p] > 0) expressed[column_of[x->indices[p]]]++;
  }
  err = ps_error_sync(comm, err);
  if (!err) err = ps_allreduce_sum(comm, expressed, n_candidates, MPI_INT64_T, sizeof *expressed);
  if (err) goto done;
  int32_t n = 0;
  for (int64_t g = 0; g < d->n_genes; g++) column_of[g] = -1;
  for (int32_t c = 0; c < n_candidates; c++)
    if ((double)expressed[c] >= data_opt->r->min_gene_frac * (double)d->n_analysed) column_of[candidates[c]] = n++;
  *n_regression = n;
  if (n == 0) {
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                       "calibration: none of a refit's %d selected targets is expressed in %.3g of the analysed cells",
                       n_candidates, data_opt->r->min_gene_frac);
    goto done;
  }
  /* the response over the fit's genes, every local analysed cell */
  FT_ALLOC(out->regression_gene, n);
  if (!err)
    for (int64_t g = 0; g < d->n_genes; g++)
      if (column_of[g] >= 0) out->regression_gene[column_of[g]] = (int32_t)g;
  out->targets = s.targets;
  memset(&s.targets, 0, sizeof s.targets);
  const ps_csr *x = &d->expression;
  ps_csr *y = &out->y;
  out->own = 1;
  y->n_rows = x->n_rows;
  y->n_cols = n;
  int64_t nnz = 0;
  for (int64_t j = 0; j < x->n_rows; j++)
    for (int64_t p = x->indptr[j]; p < x->indptr[j + 1]; p++) nnz += column_of[x->indices[p]] >= 0;
  FT_ALLOC(y->indptr, x->n_rows + 1);
  FT_ALLOC(y->indices, nnz);
  FT_ALLOC(y->data, nnz);
  err = ps_error_sync(comm, err);
  if (err) goto done;
  int64_t w = 0;
  for (int64_t j = 0; j < x->n_rows; j++) {
    for (int64_t p = x->indptr[j]; p < x->indptr[j + 1]; p++) {
      int32_t c = column_of[x->indices[p]];
      if (c < 0) continue;
      y->indices[w] = c;
      y->data[w++] = x->data[p];
    }
    y->indptr[j + 1] = w;
  }
  if (!data_opt->r->no_winsorize && data_opt->r->winsor_quantile > 0 && data_opt->r->winsor_quantile < 1) {
    /* as the run: per (group, gene) over the group's cells with --group-by, else over all */
    const int32_t *row_group = d->by_group && D->group ? D->group : NULL;
    int32_t n_wg = row_group ? D->n_groups : 1;
    double *cap = calloc((size_t)n * (size_t)n_wg, sizeof *cap);
    int64_t *n_in = calloc((size_t)n_wg, sizeof *n_in);
    err = ps_error_sync(comm, cap && n_in ? PS_OK
                                          : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "calibration: out of memory"));
    if (!err) {
      for (int64_t j = 0; j < n_local; j++) n_in[row_group ? row_group[j] : 0]++;
      err = ps_allreduce_sum(comm, n_in, n_wg, MPI_INT64_T, sizeof *n_in);
    }
    if (!err) err = ps_winsor_caps_grouped(comm, y, row_group, n_wg, n_in, data_opt->r->winsor_quantile, cap);
    if (!err)
      for (int64_t j = 0; j < y->n_rows; j++) {
        const double *cj = cap + (int64_t)(row_group ? row_group[j] : 0) * n;
        for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++)
          if (y->data[p] > cj[y->indices[p]]) y->data[p] = cj[y->indices[p]];
      }
    free(cap), free(n_in);
  }
done:
#undef FT_ALLOC
  free(keep), free(ptr), free(ids), free(top), free(has_control), free(train_group), free(candidates), free(expressed),
      free(column_of);
  ps_strmap_free(&gene_index);
  ps_target_pairs_free(&s.targets);
  free(s.target_threshold);
  free(s.n_targets);
  return err;
}

/* ---------------------------------------------------------------- one fit */

/* SPEC section 9 in the refit: --qp-genes own over the fit's own targets (and its
 * perturbations left without targets unscored), --gene-weights from the fit's residuals
 * over all analysed cells with their own labels (one set of weights for the held-out and
 * the null cells of a fit, so both are scored by the same QP). */
static int fit_method(MPI_Comm comm, const refit_options *data_opt, const ps_dataset *d,
                      const fit_response *resp, int32_t n_regression, const ps_ridge *ridge, ps_score_options *score,
                      ps_score_genes *genes, double **weights) {
  memset(genes, 0, sizeof *genes);
  *weights = NULL;
  if (data_opt->qp_genes_own || data_opt->t->de.fdr > 0) {
    ps_dataset fit = *d; /* shallow: the refit's targets and regression genes over d's names */
    if (resp->regression_gene) {
      fit.targets = resp->targets;
      fit.regression_gene = resp->regression_gene;
      fit.n_regression = n_regression;
    }
    PS_CALL(ps_error_sync(comm, ps_score_genes_build(&fit, genes)));
    ps_score_genes_apply(genes, data_opt->qp_genes_own, data_opt->t->de.fdr > 0, score);
  }
  if (score->gene_weights && !score->weights) {
    PS_CALL(ps_score_gene_weights(comm, &d->design, &resp->y, ridge, weights));
    score->weights = *weights;
  }
  return PS_OK;
}

typedef struct {
  MPI_Comm comm;
  const refit_options *data_opt;
  const ps_dataset *d;
  const ps_design *fit_design; /* d->design with the basal groups' intercept columns (ps_design_ridge_columns) */
  int32_t n_strata;            /* basal groups G, or 1: null cells are compared within their group */
  double ridge_lambda;
  ps_score_options score; /* the run's, raw PS (no rescaling) */
  const ps_calibration_options *opt;
  ps_progress *progress;
  ps_calibration *out;
  double *pvalue;   /* d->design layout */
  double *heldout;  /* d->design layout */
} cal_work;

static int32_t stratum_of(const cal_work *c, int64_t j) { return c->d->design.group ? c->d->design.group[j] : 0; }

/* Does null cell of group g stand for perturbation k? With --group-by only k's own
 * group (k = P@g), else every group (--control-by: each cell against its group's). */
static int null_relevant(const cal_work *c, int32_t k, int32_t g) {
  return !(c->d->by_group && c->d->group_of && c->n_strata > 1) || c->d->group_of[k] == g;
}

/* The local held-out entries of perturbations [k0, k0 + nb) (scores and codes
 * (k - k0) G + group), gathered over ranks; the stratified z of each against its
 * sorted nulls (null of code q: sorted[start[q] .. start[q + 1])); the local p-values
 * against the null cells of the cell's own group. */
static int block_tests(cal_work *c, int f, int32_t k0, int32_t nb, const double *sorted, const int64_t *start) {
  const ps_design *D = &c->d->design;
  int32_t K = D->n_perturbations, G = c->n_strata;
  int64_t n_mine = 0;
  for (int64_t j = 0; j < D->n_cells; j++)
    if (c->out->role[j] == PS_CAL_HALF_0 + (1 - f))
      for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) n_mine += D->ids[p] >= k0 && D->ids[p] < k0 + nb;
  double *score, *code, *all_score = NULL, *all_code = NULL, *x = NULL;
  PS_ALLOC(score, n_mine);
  PS_ALLOC(code, n_mine);
  int64_t m = 0, n_all = 0;
  for (int64_t j = 0; j < D->n_cells; j++)
    if (c->out->role[j] == PS_CAL_HALF_0 + (1 - f))
      for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) {
        int32_t k = D->ids[p];
        if (k < k0 || k >= k0 + nb) continue;
        int64_t q = (int64_t)(k - k0) * G + stratum_of(c, j), n0 = start[q + 1] - start[q];
        score[m] = c->heldout[p];
        code[m++] = (double)q;
        int64_t at_or_above = n0 - lower_bound(sorted + start[q], n0, c->heldout[p]);
        c->pvalue[p] = n0 > 0 ? (1.0 + (double)at_or_above) / (1.0 + (double)n0) : NAN;
      }
  PS_CALL(gather_doubles(c->comm, score, n_mine, &all_score, &n_all));
  PS_CALL(gather_doubles(c->comm, code, n_mine, &all_code, &n_all));
  PS_ALLOC(x, n_all);
  for (int32_t t = 0; t < nb; t++) {
    double dev = 0, var = 0;
    int64_t n_held = 0;
    for (int32_t g = 0; g < G; g++) {
      int64_t q = (int64_t)t * G + g, n1 = 0;
      for (int64_t i = 0; i < n_all; i++)
        if ((int64_t)all_code[i] == q) x[n1++] = all_score[i];
      PS_CALL(ranksum_add(x, n1, sorted + start[q], start[q + 1] - start[q], &dev, &var));
      n_held += n1;
    }
    c->out->fit_z[(int64_t)f * K + k0 + t] = ranksum_z(dev, var);
    c->out->n_heldout[(int64_t)f * K + k0 + t] = n_held;
  }
  free(score), free(code), free(all_score), free(all_code), free(x);
  return PS_OK;
}

/* Null cells of fit f scored for perturbations [k0, k0 + nb): each local null cell
 * once per perturbation it stands for (null_relevant), carrying it alone, with its
 * group's intercept; the scores of all ranks sorted per code (k - k0) G + group
 * (*sorted, segment q from (*start)[q]). null_before: the global position of this
 * rank's first null cell of fit f (for the recorded scores). */
static int null_block(cal_work *c, int f, const ps_csr *y, const ps_ridge *ridge, const int64_t *null_cells,
                      int64_t n_null_local, int64_t null_before, int32_t k0, int32_t nb, double **sorted,
                      int64_t **start) {
  const ps_design *D = &c->d->design;
  int32_t K = D->n_perturbations, G = c->n_strata;
  int64_t rows = 0, nnz = 0;
  for (int64_t i = 0; i < n_null_local; i++)
    for (int32_t t = 0; t < nb; t++)
      if (null_relevant(c, k0 + t, stratum_of(c, null_cells[i]))) {
        rows++;
        nnz += y->indptr[null_cells[i] + 1] - y->indptr[null_cells[i]];
      }
  ps_design nd = {.n_perturbations = K, .names = D->names, .n_cells = rows, .n_groups = D->n_groups};
  ps_csr yr = {.n_rows = rows, .n_cols = y->n_cols};
  double *code = NULL, *where = NULL;
  int err = PS_OK;
  nd.ptr = calloc((size_t)rows + 1, sizeof *nd.ptr);
  nd.ids = calloc((size_t)rows + 1, sizeof *nd.ids);
  if (D->group) nd.group = calloc((size_t)rows + 1, sizeof *nd.group);
  yr.indptr = calloc((size_t)rows + 1, sizeof *yr.indptr);
  yr.indices = calloc((size_t)nnz + 1, sizeof *yr.indices);
  yr.data = calloc((size_t)nnz + 1, sizeof *yr.data);
  code = calloc((size_t)rows + 1, sizeof *code);
  where = calloc((size_t)rows + 1, sizeof *where);
  if (!nd.ptr || !nd.ids || (D->group && !nd.group) || !yr.indptr || !yr.indices || !yr.data || !code || !where)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "calibration: out of memory for a block of null rows");
  if (!err) {
    int64_t r = 0, w = 0;
    for (int64_t i = 0; i < n_null_local; i++) {
      int32_t g = stratum_of(c, null_cells[i]);
      for (int32_t t = 0; t < nb; t++) {
        if (!null_relevant(c, k0 + t, g)) continue;
        nd.ids[r] = k0 + t;
        nd.ptr[r + 1] = r + 1;
        if (nd.group) nd.group[r] = g;
        code[r] = (double)((int64_t)t * G + g);
        where[r] = (double)((null_before + i) * K + k0 + t);
        for (int64_t p = y->indptr[null_cells[i]]; p < y->indptr[null_cells[i] + 1]; p++) {
          yr.indices[w] = y->indices[p];
          yr.data[w++] = y->data[p];
        }
        yr.indptr[r + 1] = w;
        r++;
      }
    }
  }
  ps_scores ns = {0};
  err = ps_error_sync(c->comm, err);
  if (!err) err = ps_score_cells(c->comm, &nd, &yr, ridge, &c->score, NULL, &ns);
  free(nd.ptr), free(nd.ids), free(nd.group), ps_csr_free(&yr);
  double *all = NULL, *all_code = NULL, *all_where = NULL;
  int64_t n_all = 0;
  if (!err) err = gather_doubles(c->comm, ns.ps, rows, &all, &n_all);
  if (!err) err = gather_doubles(c->comm, code, rows, &all_code, &n_all);
  if (!err && c->out->null_score[f]) err = gather_doubles(c->comm, where, rows, &all_where, &n_all);
  ps_scores_free(&ns);
  free(code), free(where);
  int64_t nq = (int64_t)nb * G, *st = NULL, *fill = NULL;
  double *sv = NULL;
  if (!err) {
    st = calloc((size_t)nq + 1, sizeof *st);
    fill = calloc((size_t)nq + 1, sizeof *fill);
    sv = malloc((size_t)(n_all ? n_all : 1) * sizeof *sv);
    if (!st || !fill || !sv) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "calibration: out of memory for null scores");
  }
  if (!err) {
    for (int64_t i = 0; i < n_all; i++) st[(int64_t)all_code[i] + 1]++;
    for (int64_t q = 0; q < nq; q++) st[q + 1] += st[q], fill[q] = st[q];
    for (int64_t i = 0; i < n_all; i++) {
      sv[fill[(int64_t)all_code[i]]++] = all[i];
      if (all_where) c->out->null_score[f][(int64_t)all_where[i]] = all[i];
    }
    for (int64_t q = 0; q < nq; q++) qsort(sv + st[q], (size_t)(st[q + 1] - st[q]), sizeof *sv, cmp_double);
  }
  free(all), free(all_code), free(all_where), free(fill);
  if (err) {
    free(st), free(sv);
    return err;
  }
  *sorted = sv;
  *start = st;
  return PS_OK;
}

/* Fit f selected no target gene (or none expressed in --min-gene-frac of the cells): it
 * holds no evidence. Its held-out cells get ps_pvalue 1 and p_f(k) = 1 (z = -inf), so the
 * effect p-value is the other fit's with the Bonferroni factor kept (still valid). */
static int empty_fit(cal_work *c, int f) {
  const ps_design *D = &c->d->design;
  int32_t K = D->n_perturbations;
  int rank;
  MPI_Comm_rank(c->comm, &rank);
  int64_t *held, n_null = 0;
  PS_ALLOC(held, K);
  for (int64_t j = 0; j < D->n_cells; j++) {
    n_null += c->out->role[j] == PS_CAL_NULL_0 + f;
    if (c->out->role[j] == PS_CAL_HALF_0 + (1 - f))
      for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) {
        held[D->ids[p]]++;
        c->pvalue[p] = 1.0;
        c->heldout[p] = NAN;
      }
  }
  int err = ps_allreduce_sum(c->comm, held, K, MPI_INT64_T, sizeof *held);
  if (!err) err = ps_allreduce_sum(c->comm, &n_null, 1, MPI_INT64_T, sizeof n_null);
  if (!err) {
    for (int32_t k = 0; k < K; k++) {
      c->out->fit_z[(int64_t)f * K + k] = held[k] > 0 ? -INFINITY : 0.0;
      c->out->n_heldout[(int64_t)f * K + k] = held[k];
    }
    c->out->n_null[f] = n_null;
    c->out->n_regression[f] = 0;
    if (rank == 0)
      fprintf(stderr, "pertscore: warning: calibration: refit %d (on half of the cells) selected no target gene; "
              "its %s held-out cells get ps_pvalue 1 and the effect tests rest on the other refit\n", f,
              "perturbed");
  }
  free(held);
  return err;
}

static int run_fit(cal_work *c, int f) {
  const ps_dataset *d = c->d;
  const ps_design *D = &d->design;
  int32_t K = D->n_perturbations;
  int64_t n_local = D->n_cells;
  uint8_t *train;
  PS_ALLOC(train, n_local);
  for (int64_t j = 0; j < n_local; j++)
    train[j] = c->out->role[j] == PS_CAL_CONTROL_FIT || c->out->role[j] == PS_CAL_HALF_0 + f;
  fit_response resp = {0};
  int err = PS_OK;
  if (c->data_opt->t->targets) {
    resp.y = d->y;
    c->out->n_regression[f] = d->n_regression;
  } else {
    err = fit_targets(c->comm, c->data_opt, d, train, &resp, &c->out->n_regression[f]);
    if (err == PS_ERR_INPUT) { /* no target in this refit (same outcome on every rank: after collectives) */
      ps_error_clear();
      fit_response_free(&resp);
      free(train);
      return empty_fit(c, f);
    }
  }
  ps_ridge ridge = {0};
  if (!err)
    err = ps_ridge_fit_grid(c->comm, c->fit_design, &resp.y, train, 1, &c->ridge_lambda, ps_ridge_each_keep, &ridge);
  free(train);
  if (err) {
    fit_response_free(&resp);
    return err;
  }
  if (c->progress) ps_progress_update(c->progress, 0.2 + 0.4 * f);
  /* the held-out perturbed cells, with the run's QP */
  ps_design hd = {.n_perturbations = K, .names = D->names, .n_cells = n_local, .n_groups = D->n_groups, .group = D->group};
  hd.ptr = calloc((size_t)n_local + 1, sizeof *hd.ptr);
  hd.ids = calloc((size_t)D->ptr[n_local] + 1, sizeof *hd.ids);
  int64_t *null_cells = calloc((size_t)n_local + 1, sizeof *null_cells), n_null_local = 0;
  if (!hd.ptr || !hd.ids || !null_cells) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "calibration: out of memory");
  if (!err) {
    int64_t w = 0;
    for (int64_t j = 0; j < n_local; j++) {
      if (c->out->role[j] == PS_CAL_HALF_0 + (1 - f))
        for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) hd.ids[w++] = D->ids[p];
      if (c->out->role[j] == PS_CAL_NULL_0 + f) null_cells[n_null_local++] = j;
      hd.ptr[j + 1] = w;
    }
  }
  ps_scores hs = {0};
  err = ps_error_sync(c->comm, err);
  ps_score_options run_score = c->score; /* restored after this fit */
  ps_score_genes genes = {0};
  double *weights = NULL;
  if (!err) err = fit_method(c->comm, c->data_opt, d, &resp, c->out->n_regression[f], &ridge, &c->score, &genes,
                             &weights);
  if (!err) err = ps_score_cells(c->comm, &hd, &resp.y, &ridge, &c->score, NULL, &hs);
  if (!err)
    for (int64_t j = 0; j < n_local; j++)
      for (int64_t p = D->ptr[j], q = hd.ptr[j]; q < hd.ptr[j + 1]; p++, q++) c->heldout[p] = hs.ps[q];
  ps_scores_free(&hs);
  free(hd.ptr), free(hd.ids);
  /* the null cells, in blocks of perturbations: the replicated rows of a block stay
   * within CAL_BLOCK_BYTES on every rank */
  int64_t per_k = 0;
  for (int64_t i = 0; i < n_null_local && !err; i++)
    per_k += 40 + 12 * (resp.y.indptr[null_cells[i] + 1] - resp.y.indptr[null_cells[i]]);
  if (!err) err = ps_error_mpi_ok(MPI_Allreduce(MPI_IN_PLACE, &per_k, 1, MPI_INT64_T, MPI_MAX, c->comm));
  int64_t null_before = 0, null_total = 0;
  if (!err) err = exscan_total(c->comm, n_null_local, &null_before, &null_total);
  if (!err) c->out->n_null[f] = null_total;
  int32_t kb = per_k > 0 ? (int32_t)(CAL_BLOCK_BYTES / per_k) : K;
  if (kb < 1) kb = 1;
  if (kb > K) kb = K;
  for (int32_t k0 = 0; k0 < K && !err; k0 += kb) {
    int32_t nb = K - k0 < kb ? K - k0 : kb;
    double *sorted = NULL;
    int64_t *start = NULL;
    err = null_block(c, f, &resp.y, &ridge, null_cells, n_null_local, null_before, k0, nb, &sorted, &start);
    if (!err) err = ps_error_sync(c->comm, block_tests(c, f, k0, nb, sorted, start));
    free(sorted), free(start);
    if (c->progress) ps_progress_update(c->progress, 0.2 + 0.4 * f + 0.4 * (double)(k0 + nb) / K);
  }
  free(null_cells);
  c->score = run_score;
  ps_score_genes_free(&genes);
  free(weights);
  ps_ridge_free(&ridge);
  fit_response_free(&resp);
  return err;
}

/* ---------------------------------------------------------------- the stage */

int ps_calibrate(MPI_Comm comm, const ps_targets_options *targets_opt, const ps_regression_options *regression_opt,
                 int qp_genes_own, const ps_dataset *d, const ps_design *scored, double ridge_lambda,
                 const ps_score_options *score_opt, const ps_calibration_options *opt, ps_progress *progress,
                 ps_calibration *out) {
  const refit_options refit = {targets_opt, regression_opt, qp_genes_own}, *data_opt = &refit;
  memset(out, 0, sizeof *out);
  double t0 = MPI_Wtime();
  const ps_design *D = &d->design;
  int32_t K = D->n_perturbations;
  int64_t n_local = D->n_cells;
  if (!data_opt->t->targets && d->expression.n_rows != n_local)
    PS_FAIL(PS_ERR_SYSTEM, "calibration: the expression of the analysed cells was not kept (keep_expression)");
  if (!(opt->control_fraction > 0 && opt->control_fraction < 1))
    PS_FAIL(PS_ERR_INPUT, "--calibration-controls must be in (0, 1), got %g", opt->control_fraction);
  out->n_perturbations = K;
  out->fdr = opt->fdr;
  PS_ALLOC(out->effect_pvalue, K);
  PS_ALLOC(out->effect_fdr, K);
  PS_ALLOC(out->effect_z, K);
  PS_ALLOC(out->fit_z, 2 * (int64_t)K);
  PS_ALLOC(out->n_heldout, 2 * (int64_t)K);
  PS_ALLOC(out->role, n_local);
  /* roles from (seed, global analysed position): the same split on any number of ranks.
   * With basal groups each group's controls are split so (the draw does not look at the
   * group), and each group needs its own null cells: a cell is compared with the null
   * cells of its group only. */
  int32_t G = D->group && D->n_groups > 1 ? D->n_groups : 1;
  int64_t *count;
  PS_ALLOC(count, 5 * (int64_t)G + 5);
  for (int64_t j = 0; j < n_local; j++) {
    ps_rng g = ps_rng_make(opt->seed ^ CAL_SALT, (uint64_t)(d->analysed_offset + j));
    double u = ps_rng_uniform(&g);
    if (D->ptr[j + 1] == D->ptr[j])
      out->role[j] = u < opt->control_fraction ? (u < opt->control_fraction / 2 ? PS_CAL_NULL_0 : PS_CAL_NULL_1)
                                               : PS_CAL_CONTROL_FIT;
    else
      out->role[j] = u < 0.5 ? PS_CAL_HALF_0 : PS_CAL_HALF_1;
    count[out->role[j] + 1]++;
    if (G > 1) count[5 + 5 * (int64_t)D->group[j] + out->role[j] + 1]++;
  }
  PS_CALL(ps_allreduce_sum(comm, count, 5 * (int64_t)G + 5, MPI_INT64_T, sizeof *count));
  if (count[PS_CAL_NULL_0 + 1] < PS_CAL_MIN_NULL || count[PS_CAL_NULL_1 + 1] < PS_CAL_MIN_NULL || count[0] < 2) {
    long long n0 = count[PS_CAL_NULL_0 + 1], n1 = count[PS_CAL_NULL_1 + 1], nf = count[0];
    free(count);
    PS_FAIL(PS_ERR_INPUT, "calibration: %lld control cells are too few to hold out a null (%lld, %lld) and keep "
            "%lld for the fits (at least %d null cells per fit; raise --calibration-controls or use --no-calibration)",
            (long long)d->n_control, n0, n1, nf, PS_CAL_MIN_NULL);
  }
  for (int32_t g = 0; g < G && G > 1; g++) {
    const int64_t *cg = count + 5 + 5 * (int64_t)g;
    if (cg[PS_CAL_NULL_0 + 1] < PS_CAL_MIN_NULL || cg[PS_CAL_NULL_1 + 1] < PS_CAL_MIN_NULL || cg[0] < 2) {
      long long n0 = cg[PS_CAL_NULL_0 + 1], n1 = cg[PS_CAL_NULL_1 + 1], nf = cg[0];
      free(count);
      PS_FAIL(PS_ERR_INPUT, "calibration: group '%s' of obs column '%s' has %lld control cells, too few to hold out "
              "a null within the group (%lld, %lld) and keep %lld for the fits (at least %d null cells per fit; "
              "raise --calibration-controls or use --no-calibration)", d->groups.n > g ? d->groups.items[g] : "?",
              d->group_column ? d->group_column : "?", n0 + n1 + nf, n0, n1, nf, PS_CAL_MIN_NULL);
    }
  }
  int64_t n_null_total[2] = {count[PS_CAL_NULL_0 + 1], count[PS_CAL_NULL_1 + 1]};
  free(count);
  double *pvalue, *heldout;
  PS_ALLOC(pvalue, D->ptr[n_local]);
  PS_ALLOC(heldout, D->ptr[n_local]);
  ps_design with_groups = {0}; /* --control-by / --group-by: one intercept column per group, as the run's fit */
  if (D->n_groups > 1) PS_CALL(ps_error_sync(comm, ps_design_ridge_columns(D, &with_groups)));
  cal_work c = {.comm = comm, .data_opt = data_opt, .d = d, .fit_design = D->n_groups > 1 ? &with_groups : D,
                .n_strata = G, .ridge_lambda = ridge_lambda, .score = *score_opt,
                .opt = opt, .progress = progress, .out = out, .pvalue = pvalue, .heldout = heldout};
  c.score.rescale = 0;
  if (opt->record) { /* NaN where a null cell stands for no k (--group-by: other groups' perturbations) */
    for (int f = 0; f < 2; f++) {
      PS_ALLOC(out->null_score[f], n_null_total[f] * K);
      for (int64_t i = 0; i < n_null_total[f] * K; i++) out->null_score[f][i] = NAN;
    }
  }
  int err = PS_OK;
  for (int f = 0; f < 2 && !err; f++) err = run_fit(&c, f);
  ps_design_free(&with_groups);
  if (err) {
    free(pvalue), free(heldout);
    return err;
  }
  /* effect p-values: Bonferroni over the fits that held out cells of k. The two fits'
   * z are positively correlated under the null (fit 0's direction comes from H_0 and
   * scores H_1, fit 1 the reverse: both contain <H_0, H_1>), so Stouffer's
   * (z_0 + z_1) / sqrt 2 would be anti-conservative; min(1, 2 min(p_0, p_1)) is valid
   * whatever their dependence. effect_z is the larger z. */
  for (int32_t k = 0; k < K; k++) {
    double zmax = -INFINITY;
    int n = 0;
    for (int f = 0; f < 2; f++)
      if (out->n_heldout[(int64_t)f * K + k] > 0) {
        if (out->fit_z[(int64_t)f * K + k] > zmax) zmax = out->fit_z[(int64_t)f * K + k];
        n++;
      }
    out->effect_z[k] = n ? zmax : NAN;
    double p = n ? n * 0.5 * erfc(zmax / sqrt(2.0)) : NAN;
    out->effect_pvalue[k] = p > 1 ? 1 : p;
  }
  PS_CALL(ps_bh_adjust(out->effect_pvalue, K, out->effect_fdr));
  for (int32_t k = 0; k < K; k++) out->n_called += out->effect_fdr[k] < opt->fdr;
  /* per-cell p-values in the scored design's layout */
  PS_ALLOC(out->ps_pvalue, scored->ptr[scored->n_cells]);
  if (opt->record) PS_ALLOC(out->heldout_score, scored->ptr[scored->n_cells]);
  for (int64_t j = 0; j < scored->n_cells; j++)
    for (int64_t q = scored->ptr[j]; q < scored->ptr[j + 1]; q++) {
      out->ps_pvalue[q] = NAN;
      if (out->heldout_score) out->heldout_score[q] = NAN;
      for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++)
        if (D->ids[p] == scored->ids[q]) {
          out->ps_pvalue[q] = pvalue[p];
          if (out->heldout_score) out->heldout_score[q] = heldout[p];
        }
    }
  int64_t entries[2] = {0};
  for (int64_t p = 0; p < D->ptr[n_local]; p++) entries[0]++, entries[1] += pvalue[p] < opt->fdr;
  free(pvalue), free(heldout);
  PS_CALL(ps_allreduce_sum(comm, entries, 2, MPI_INT64_T, sizeof *entries));
  out->n_entries = entries[0];
  out->n_entries_significant = entries[1];
  out->seconds = MPI_Wtime() - t0;
  if (progress) ps_progress_update(progress, 1.0);
  return PS_OK;
}
