/* The distributed dosage stage (SPEC.md section 5): perturbation k is fitted on
 * rank k % P from its cells' (own-gene value, PS) pairs and the control cells'
 * values of its own gene, gathered there with two Alltoallv; every rank then
 * holds the whole table (one Allreduce).
 *
 * Rank-count independence: the owner sorts a perturbation's cells by their
 * global index before fitting, so sums, ties in the deciles and the correlations
 * see the cells in one order on any number of ranks. The control values enter
 * only through their median and minimum (order-free). */
#include "pertscore/dosage.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *ps_dosage_table_status_name(int32_t status) {
  return status == PS_DOSAGE_NO_OWN_GENE ? "own gene not measured" : ps_dosage_status_name((ps_dosage_status)status);
}

void ps_dosage_table_free(ps_dosage_table *t) {
  if (!t) return;
  free(t->status);
  free(t->cls);
  free(t->crispri_efficient);
  free(t->n_cells);
  double **cols[] = {&t->ed50, &t->hill_b, &t->hill_c, &t->hill_d, &t->hill_e, &t->hill0, &t->hill1, &t->pcc,
                     &t->pcc_p, &t->scc, &t->scc_p, &t->cumulative_ps, &t->own_min, &t->own_control_median,
                     &t->bin_x, &t->bin_ps, &t->bin_count};
  for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) free(*cols[i]);
  memset(t, 0, sizeof *t);
}

/* One row of the packed table: the scalar fields, then n_bins x (x, ps, count). */
enum { F_STATUS, F_CLASS, F_CRISPRI, F_ED50, F_B, F_C, F_D, F_E, F_H0, F_H1, F_PCC, F_PCC_P, F_SCC, F_SCC_P, F_CUM,
       F_MIN, F_MEDIAN, N_FIELDS };

/* status: r->status, or PS_DOSAGE_NO_OWN_GENE (outside the enum, whose type may be unsigned) */
static void pack_result(const ps_dosage_result *r, int32_t status, int n_bins, double *row) {
  row[F_STATUS] = status;
  row[F_CLASS] = r->status == PS_DOSAGE_FITTED ? r->cls : PS_DOSAGE_CLASS_NONE;
  row[F_CRISPRI] = r->crispri_efficient;
  row[F_ED50] = r->ed50;
  row[F_B] = r->hill.b;
  row[F_C] = r->hill.c;
  row[F_D] = r->hill.d;
  row[F_E] = r->hill.e;
  row[F_H0] = r->hill0;
  row[F_H1] = r->hill1;
  row[F_PCC] = r->pearson.r;
  row[F_PCC_P] = r->pearson.p;
  row[F_SCC] = r->spearman.r;
  row[F_SCC_P] = r->spearman.p;
  row[F_CUM] = r->cumulative_ps;
  row[F_MIN] = r->expr_min;
  row[F_MEDIAN] = r->control_median;
  double *bins = row + N_FIELDS;
  for (int b = 0; b < n_bins; b++) {
    int have = b < r->bins.n_bins;
    bins[3 * b] = have ? r->bins.mean_x[b] : NAN;
    bins[3 * b + 1] = have ? r->bins.mean_ps[b] : NAN;
    bins[3 * b + 2] = have ? (double)r->bins.count[b] : NAN;
  }
}

/* A result with nothing to fit (no own gene, or no cells): NaN everywhere. */
static void empty_result(int64_t n, ps_dosage_result *r) {
  memset(r, 0, sizeof *r);
  r->status = PS_DOSAGE_TOO_FEW_CELLS;
  r->n_cells = n;
  r->ed50 = r->hill0 = r->hill1 = r->cumulative_ps = r->expr_min = r->control_median = NAN;
  r->hill.b = r->hill.c = r->hill.d = r->hill.e = r->hill.sse = NAN;
  r->pearson.r = r->pearson.p = r->spearman.r = r->spearman.p = NAN;
}

/* Own-gene value of local cell j for perturbation k (0 if not stored). */
static double own_value(const ps_csr *own, int64_t j, int32_t k) {
  int64_t lo = own->indptr[j], hi = own->indptr[j + 1];
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (own->indices[mid] < k) lo = mid + 1;
    else hi = mid;
  }
  return lo < own->indptr[j + 1] && own->indices[lo] == k ? own->data[lo] : 0.0;
}

/* Alltoallv of records of `width` doubles: count[r] records go to rank r, packed
 * in send by destination. On return *recv holds *n_recv records (caller frees). */
static int exchange(MPI_Comm comm, int width, const int64_t *count, const double *send, double **recv,
                    int64_t *n_recv) {
  int size;
  MPI_Comm_size(comm, &size);
  int *sc, *sd, *rc, *rd;
  PS_ALLOC(sc, size);
  PS_ALLOC(sd, size);
  PS_ALLOC(rc, size);
  PS_ALLOC(rd, size);
  int64_t s_total = 0, r_total = 0, too_big = 0;
  for (int r = 0; r < size; r++) s_total += count[r];
  int64_t *rcount;
  PS_ALLOC(rcount, size);
  PS_CHECK_MPI(MPI_Alltoall(count, 1, MPI_INT64_T, rcount, 1, MPI_INT64_T, comm));
  for (int r = 0; r < size; r++) r_total += rcount[r];
  too_big = s_total * width > INT_MAX || r_total * width > INT_MAX;
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &too_big, 1, MPI_INT64_T, MPI_MAX, comm));
  if (too_big)
    PS_FAIL(PS_ERR_SYSTEM, "dosage: one rank would exchange more than 2^31 values (cells of its perturbations); "
            "use more ranks");
  for (int r = 0, s_at = 0, r_at = 0; r < size; r++) {
    sc[r] = (int)(count[r] * width);
    rc[r] = (int)(rcount[r] * width);
    sd[r] = s_at;
    rd[r] = r_at;
    s_at += sc[r];
    r_at += rc[r];
  }
  PS_ALLOC(*recv, r_total * width);
  PS_CHECK_MPI(MPI_Alltoallv(send, sc, sd, MPI_DOUBLE, *recv, rc, rd, MPI_DOUBLE, comm));
  *n_recv = r_total;
  free(sc);
  free(sd);
  free(rc);
  free(rd);
  free(rcount);
  return PS_OK;
}

/* Records of the X cells: (global index, perturbation, own-gene value, PS). */
enum { CELL_G, CELL_K, CELL_Y, CELL_PS, CELL_WIDTH };

static int compare_cell_record(const void *a, const void *b) {
  const double *p = a, *q = b;
  return (p[CELL_G] > q[CELL_G]) - (p[CELL_G] < q[CELL_G]);
}

static int gather_cells(MPI_Comm comm, const ps_dosage_input *in, double **recv, int64_t *n_recv) {
  int size;
  MPI_Comm_size(comm, &size);
  int64_t *count, *at;
  PS_ALLOC(count, size);
  PS_ALLOC(at, size + 1);
  for (int64_t p = 0; p < in->ptr[in->n_cells]; p++)
    if (in->own_gene[in->ids[p]] >= 0) count[in->ids[p] % size]++;
  for (int r = 0; r < size; r++) at[r + 1] = at[r] + count[r];
  double *send;
  PS_ALLOC(send, at[size] * CELL_WIDTH);
  for (int64_t j = 0; j < in->n_cells; j++)
    for (int64_t p = in->ptr[j]; p < in->ptr[j + 1]; p++) {
      int32_t k = in->ids[p];
      if (in->own_gene[k] < 0) continue;
      double *rec = send + CELL_WIDTH * at[k % size]++;
      rec[CELL_G] = (double)(in->index ? in->index[j] : in->first_index + j);
      rec[CELL_K] = k;
      rec[CELL_Y] = own_value(in->own, j, k);
      rec[CELL_PS] = in->ps[p];
    }
  int err = exchange(comm, CELL_WIDTH, count, send, recv, n_recv);
  free(send);
  free(count);
  free(at);
  return err;
}

/* Nonzero own-gene values of the control cells, (perturbation, value), for the
 * perturbations in need[]. */
static int gather_controls(MPI_Comm comm, const ps_dosage_input *in, const uint8_t *need, double **recv,
                           int64_t *n_recv) {
  int size;
  MPI_Comm_size(comm, &size);
  const ps_csr *own = in->own;
  int64_t *count, *at;
  PS_ALLOC(count, size);
  PS_ALLOC(at, size + 1);
  for (int64_t j = 0; j < in->n_cells; j++) {
    if (in->ptr[j + 1] > in->ptr[j]) continue; /* not a control cell */
    for (int64_t p = own->indptr[j]; p < own->indptr[j + 1]; p++)
      if (need[own->indices[p]] && own->data[p] != 0.0) count[own->indices[p] % size]++;
  }
  for (int r = 0; r < size; r++) at[r + 1] = at[r] + count[r];
  double *send;
  PS_ALLOC(send, 2 * at[size]);
  for (int64_t j = 0; j < in->n_cells; j++) {
    if (in->ptr[j + 1] > in->ptr[j]) continue;
    for (int64_t p = own->indptr[j]; p < own->indptr[j + 1]; p++) {
      int32_t k = own->indices[p];
      if (!need[k] || own->data[p] == 0.0) continue;
      double *rec = send + 2 * at[k % size]++;
      rec[0] = k;
      rec[1] = own->data[p];
    }
  }
  int err = exchange(comm, 2, count, send, recv, n_recv);
  free(send);
  free(count);
  free(at);
  return err;
}

typedef struct {
  int64_t *ptr; /* per owned perturbation t = k / P: records [ptr[t], ptr[t + 1]) */
  double *rec;  /* reordered records */
} buckets;

/* Group records (of `width` doubles, perturbation in field kfield) by owned slot k / P. */
static int bucket(const double *recv, int64_t n, int width, int kfield, int size, int64_t n_owned, buckets *b) {
  PS_ALLOC(b->ptr, n_owned + 1);
  PS_ALLOC(b->rec, n * width);
  int64_t *fill;
  PS_ALLOC(fill, n_owned);
  for (int64_t i = 0; i < n; i++) b->ptr[(int64_t)recv[i * width + kfield] / size + 1]++;
  for (int64_t t = 0; t < n_owned; t++) b->ptr[t + 1] += b->ptr[t];
  for (int64_t i = 0; i < n; i++) {
    int64_t t = (int64_t)recv[i * width + kfield] / size;
    memcpy(b->rec + (b->ptr[t] + fill[t]++) * width, recv + i * width, (size_t)width * sizeof *recv);
  }
  free(fill);
  return PS_OK;
}

static int fit_owned(MPI_Comm comm, const ps_dosage_input *in, const ps_dosage_options *opt, const int64_t *n_cells,
                     int64_t n_control, const buckets *cells, const buckets *controls, ps_hill_solver *solver,
                     ps_progress *progress, int W, double *table) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t most = 0, n_owned = 0;
  for (int32_t k = rank; k < in->n_perturbations; k += size, n_owned++)
    if (n_cells[k] > most) most = n_cells[k];
  double *own, *ps, *control;
  PS_ALLOC(own, most);
  PS_ALLOC(ps, most);
  PS_ALLOC(control, n_control);
  ps_dosage_result r;
  int err = PS_OK;
  int64_t t = 0;
  for (int32_t k = rank; k < in->n_perturbations && !err; k += size, t++) {
    int64_t n = cells->ptr[t + 1] - cells->ptr[t];
    if (in->own_gene[k] < 0 || n == 0) {
      empty_result(n, &r);
    } else {
      double *rec = cells->rec + CELL_WIDTH * cells->ptr[t];
      qsort(rec, (size_t)n, CELL_WIDTH * sizeof *rec, compare_cell_record);
      for (int64_t i = 0; i < n; i++) {
        own[i] = rec[CELL_WIDTH * i + CELL_Y];
        ps[i] = rec[CELL_WIDTH * i + CELL_PS];
      }
      /* controls: the nonzeros that came, the rest of the n_control are zeros */
      int64_t nz = controls->ptr[t + 1] - controls->ptr[t];
      for (int64_t i = 0; i < n_control; i++) control[i] = i < nz ? controls->rec[2 * (controls->ptr[t] + i) + 1] : 0.0;
      err = ps_dosage_fit_one(own, ps, n, control, n_control, opt, solver, &r);
    }
    pack_result(&r, in->own_gene[k] < 0 ? PS_DOSAGE_NO_OWN_GENE : (int32_t)r.status, opt->n_bins,
                table + (int64_t)k * W);
    if (progress && t % 16 == 0) ps_progress_update(progress, (double)t / (double)(n_owned ? n_owned : 1));
  }
  free(own);
  free(ps);
  free(control);
  return err;
}

static int unpack_table(const double *table, int W, int32_t K, int n_bins, ps_dosage_table *out) {
  out->n_perturbations = K;
  out->n_bins = n_bins;
  PS_ALLOC(out->status, K);
  PS_ALLOC(out->cls, K);
  PS_ALLOC(out->crispri_efficient, K);
  double **cols[] = {&out->ed50, &out->hill_b, &out->hill_c, &out->hill_d, &out->hill_e, &out->hill0, &out->hill1,
                     &out->pcc, &out->pcc_p, &out->scc, &out->scc_p, &out->cumulative_ps, &out->own_min,
                     &out->own_control_median};
  const int fields[] = {F_ED50, F_B, F_C, F_D, F_E, F_H0, F_H1, F_PCC, F_PCC_P, F_SCC, F_SCC_P, F_CUM, F_MIN, F_MEDIAN};
  for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) PS_ALLOC(*cols[i], K);
  PS_ALLOC(out->bin_x, (int64_t)K * n_bins);
  PS_ALLOC(out->bin_ps, (int64_t)K * n_bins);
  PS_ALLOC(out->bin_count, (int64_t)K * n_bins);
  for (int32_t k = 0; k < K; k++) {
    const double *row = table + (int64_t)k * W;
    out->status[k] = (int32_t)row[F_STATUS];
    out->cls[k] = (int32_t)row[F_CLASS];
    out->crispri_efficient[k] = (int32_t)row[F_CRISPRI];
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) (*cols[i])[k] = row[fields[i]];
    for (int b = 0; b < n_bins; b++) {
      out->bin_x[(int64_t)k * n_bins + b] = row[N_FIELDS + 3 * b];
      out->bin_ps[(int64_t)k * n_bins + b] = row[N_FIELDS + 3 * b + 1];
      out->bin_count[(int64_t)k * n_bins + b] = row[N_FIELDS + 3 * b + 2];
    }
    out->n_with_own_gene += out->status[k] != PS_DOSAGE_NO_OWN_GENE;
    out->n_fitted += out->status[k] == PS_DOSAGE_FITTED;
    out->n_buffered += out->cls[k] == PS_DOSAGE_BUFFERED;
    out->n_sensitive += out->cls[k] == PS_DOSAGE_SENSITIVE;
    out->n_crispri_efficient += out->crispri_efficient[k] != 0;
  }
  return PS_OK;
}

int ps_dosage_stage(MPI_Comm comm, const ps_dosage_input *in, const ps_dosage_options *opt, ps_progress *progress,
                    ps_dosage_table *out) {
  memset(out, 0, sizeof *out);
  PS_CALL(ps_dosage_options_check(opt));
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int32_t K = in->n_perturbations;
  /* cells per perturbation and control cells, over all ranks */
  int64_t *n_cells;
  PS_ALLOC(n_cells, K);
  int64_t n_control = 0;
  for (int64_t j = 0; j < in->n_cells; j++) {
    n_control += in->ptr[j + 1] == in->ptr[j];
    for (int64_t p = in->ptr[j]; p < in->ptr[j + 1]; p++) n_cells[in->ids[p]]++;
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, n_cells, K, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &n_control, 1, MPI_INT64_T, MPI_SUM, comm));
  if (n_control == 0) PS_FAIL(PS_ERR_INPUT, "dosage: no control cells (the own-gene normalization needs them)");
  uint8_t *need; /* control values travel only for perturbations that can reach the fit */
  PS_ALLOC(need, K);
  for (int32_t k = 0; k < K; k++) need[k] = in->own_gene[k] >= 0 && n_cells[k] >= opt->min_cells;

  double *recv_cells = NULL, *recv_controls = NULL;
  int64_t n_recv_cells = 0, n_recv_controls = 0;
  PS_CALL(gather_cells(comm, in, &recv_cells, &n_recv_cells));
  PS_CALL(gather_controls(comm, in, need, &recv_controls, &n_recv_controls));
  int64_t n_owned = rank < K ? (K - 1 - rank) / size + 1 : 0;
  buckets cells = {0}, controls = {0};
  PS_CALL(bucket(recv_cells, n_recv_cells, CELL_WIDTH, CELL_K, size, n_owned, &cells));
  PS_CALL(bucket(recv_controls, n_recv_controls, 2, 0, size, n_owned, &controls));
  free(recv_cells);
  free(recv_controls);

  const int W = N_FIELDS + 3 * opt->n_bins;
  double *table;
  PS_ALLOC(table, (int64_t)K * W); /* zeros: the owner's row plus zeros from the others is exact */
  ps_hill_solver *solver = NULL;
  int err = ps_hill_solver_create(opt->n_bins >= 4 ? opt->n_bins : 4, &solver);
  if (!err) err = fit_owned(comm, in, opt, n_cells, n_control, &cells, &controls, solver, progress, W, table);
  int64_t counts[4] = {0, 0, 0, 0};
  if (solver) ps_hill_solver_counts(solver, &counts[0], &counts[1], &counts[2], &counts[3]);
  ps_hill_solver_destroy(&solver);
  PS_CALL(ps_error_sync(comm, err));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, table, (int)((int64_t)K * W), MPI_DOUBLE, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, counts, 4, MPI_INT64_T, MPI_SUM, comm));
  PS_CALL(unpack_table(table, W, K, opt->n_bins, out));
  PS_ALLOC(out->n_cells, K);
  memcpy(out->n_cells, n_cells, (size_t)K * sizeof *n_cells);
  out->n_control = n_control;
  out->hill_fits = counts[0];
  out->hill_solves = counts[1];
  out->hill_fallback = counts[2];
  out->hill_iterations = counts[3];
  free(table);
  free(need);
  free(n_cells);
  free(cells.ptr);
  free(cells.rec);
  free(controls.ptr);
  free(controls.rec);
  return PS_OK;
}
