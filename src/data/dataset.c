/* Building the analysed dataset (SPEC.md sections 0, 1 last bullet, 2), two stage
 * verbs around the targets stage (src/de): ps_dataset_read: matrix block ->
 * log-normalized -> guide calls -> sparse design -> groups; ps_regression_prepare:
 * regression genes -> winsorized response. Nothing cells x perturbations or cells x genes
 * is ever dense; every rank keeps only its own cells. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "data_checks.h"
#include "pertscore/data.h"

void ps_dataset_options_default(ps_dataset_options *o) {
  memset(o, 0, sizeof *o);
  o->input_is = PS_INPUT_AUTO;
  o->min_guide_umi = 3;
}

void ps_regression_options_default(ps_regression_options *o) {
  memset(o, 0, sizeof *o);
  o->min_gene_frac = 0.01;
  o->winsor_quantile = 0.95;
}

void ps_dataset_free(ps_dataset *d) {
  if (!d) return;
  ps_strlist_free(&d->genes);
  ps_strlist_free(&d->cells);
  /* the per-cell strings before the design, whose free zeroes n_cells */
  for (int64_t j = 0; d->cell_guides && j < d->design.n_cells; j++) free(d->cell_guides[j]);
  for (int64_t j = 0; d->cell_units && j < d->design.n_cells; j++) free(d->cell_units[j]);
  ps_design_free(&d->design);
  free(d->has_control_guide);
  free(d->top_perturbation);
  free(d->cell_guides);
  free(d->cell_units);
  free(d->cell_n_guides);
  free(d->target_threshold);
  free(d->regression_gene);
  free(d->winsor_cap);
  ps_csr_free(&d->y);
  free(d->n_targets);
  ps_target_pairs_free(&d->targets);
  free(d->own_gene);
  ps_csr_free(&d->own);
  free(d->group_column);
  ps_strlist_free(&d->groups);
  ps_strlist_free(&d->base);
  free(d->group_of);
  ps_csr_free(&d->expression);
  free(d->input);
  free(d->targets_file);
  free(d->pseudo_label);
  ps_csr_free(&d->block);
  free(d->block_keep);
  ps_strmap_free(&d->gene_index);
  free(d->candidates);
  memset(d, 0, sizeof *d);
}

double ps_quantile_type7_sparse(const double *sorted_nonzero, int64_t n_nonzero, int64_t n, double prob) {
  if (n <= 0) return 0.0;
  double h = (double)(n - 1) * prob;
  int64_t lo = (int64_t)floor(h), zeros = n - n_nonzero;
  int64_t hi = lo + 1 < n ? lo + 1 : lo;
  double x_lo = lo < zeros ? 0.0 : sorted_nonzero[lo - zeros];
  double x_hi = hi < zeros ? 0.0 : sorted_nonzero[hi - zeros];
  return x_lo + (h - (double)lo) * (x_hi - x_lo);
}

/* Moves the k-th smallest of v[0, n) to v[k], smaller ones before it, larger after
 * (quickselect, median-of-three pivot): O(n) where a sort is O(n log n). */
static void select_kth(double *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (hi > lo) {
    int64_t mid = lo + (hi - lo) / 2;
    double a = v[lo], b = v[mid], c = v[hi];
    double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] < pivot) i++;
      while (v[j] > pivot) j--;
      if (i <= j) {
        double t = v[i];
        v[i++] = v[j];
        v[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

/* ps_quantile_type7_sparse without sorting: only the two order statistics that the
 * type-7 interpolation reads are selected (v is reordered). */
static double quantile_type7_select(double *v, int64_t n_nonzero, int64_t n, double prob) {
  if (n <= 0) return 0.0;
  double h = (double)(n - 1) * prob;
  int64_t lo = (int64_t)floor(h), zeros = n - n_nonzero;
  int64_t hi = lo + 1 < n ? lo + 1 : lo;
  double x_lo = 0.0, x_hi = 0.0;
  if (lo >= zeros) {
    select_kth(v, n_nonzero, lo - zeros);
    x_lo = v[lo - zeros];
  }
  if (hi >= zeros) {
    int64_t k = hi - zeros;
    if (hi == lo) x_hi = x_lo;
    else if (lo >= zeros) { /* the next order statistic is the least value above position k - 1 */
      x_hi = v[k];
      for (int64_t i = k + 1; i < n_nonzero; i++)
        if (v[i] < x_hi) x_hi = v[i];
    } else {
      select_kth(v, n_nonzero, k);
      x_hi = v[k];
    }
  }
  return x_lo + (h - (double)lo) * (x_hi - x_lo);
}

/* SPEC section 0: counts (every stored value integral) become ln(1 + 1e4 x / total). */
static int normalize_with(MPI_Comm comm, ps_csr *x, int input_is, double scale, int *is_counts);
static int normalize_block(MPI_Comm comm, ps_csr *x, int input_is, int *is_counts) {
  return normalize_with(comm, x, input_is, 1e4, is_counts);
}

int ps_expression_normalize_scale(MPI_Comm comm, ps_csr *x, int input_is, double scale, int *is_counts) {
  if (!(scale > 0) || !isfinite(scale)) PS_FAIL(PS_ERR_INPUT, "normalization scale must be positive, got %g", scale);
  return normalize_with(comm, x, input_is, scale, is_counts);
}

/* ln(1 + scale x / total) for every stored value, row by row. Counts are mostly small
 * integers: a row's values 1 .. LUT_COUNTS - 1 are computed once per row (the same
 * expression, so the same bits), which takes most log1p calls out of the read stage. */
enum { LUT_COUNTS = 64 };
static void normalize_rows(ps_csr *x, double scale) {
  double lut[LUT_COUNTS];
  uint64_t have = 0; /* bit c: lut[c] holds the value for count c */
  for (int64_t r = 0; r < x->n_rows; r++) {
    double total = 0;
    for (int64_t p = x->indptr[r]; p < x->indptr[r + 1]; p++) total += x->data[p];
    if (total <= 0) continue;
    have = 0;
    for (int64_t p = x->indptr[r]; p < x->indptr[r + 1]; p++) {
      double v = x->data[p];
      if (v >= 1 && v < LUT_COUNTS && v == (double)(int)v) {
        int c = (int)v;
        if (!(have >> c & 1)) lut[c] = log1p(scale * v / total), have |= (uint64_t)1 << c;
        x->data[p] = lut[c];
      } else {
        x->data[p] = log1p(scale * v / total);
      }
    }
  }
}

static int normalize_with(MPI_Comm comm, ps_csr *x, int input_is, double scale, int *is_counts) {
  int integral = 1, all_integral = 1;
  int64_t nnz = ps_csr_nnz(x);
  for (int64_t i = 0; i < nnz && integral; i++) integral = x->data[i] == floor(x->data[i]);
  PS_CHECK_MPI(MPI_Allreduce(&integral, &all_integral, 1, MPI_INT, MPI_MIN, comm));
  *is_counts = input_is == PS_INPUT_COUNTS || (input_is == PS_INPUT_AUTO && all_integral);
  if (!*is_counts) return PS_OK;
  normalize_rows(x, scale);
  return PS_OK;
}

/* --scale median (SPEC section 9): the integrality check of normalize_block, then
 * s = the median total count over the analysed cells (keep[i] >= 0), then
 * ln(1 + s x / total). Runs once the design (keep) is known. */
static int normalize_median(MPI_Comm comm, ps_csr *x, const int64_t *keep, int input_is, int *is_counts,
                            double *scale) {
  int integral = 1, all_integral = 1;
  int64_t nnz = ps_csr_nnz(x);
  for (int64_t i = 0; i < nnz && integral; i++) integral = x->data[i] == floor(x->data[i]);
  PS_CHECK_MPI(MPI_Allreduce(&integral, &all_integral, 1, MPI_INT, MPI_MIN, comm));
  *is_counts = input_is == PS_INPUT_COUNTS || (input_is == PS_INPUT_AUTO && all_integral);
  *scale = 0;
  if (!*is_counts) return PS_OK;
  int size;
  MPI_Comm_size(comm, &size);
  int n_local = 0;
  for (int64_t r = 0; r < x->n_rows; r++) n_local += keep[r] >= 0;
  double *totals = NULL, *all = NULL;
  int *counts = NULL, *displs = NULL;
  PS_ALLOC(totals, n_local);
  PS_ALLOC(counts, size);
  PS_ALLOC(displs, size);
  int at = 0;
  for (int64_t r = 0; r < x->n_rows; r++) {
    if (keep[r] < 0) continue;
    double total = 0;
    for (int64_t p = x->indptr[r]; p < x->indptr[r + 1]; p++) total += x->data[p];
    totals[at++] = total;
  }
  PS_CHECK_MPI(MPI_Allgather(&n_local, 1, MPI_INT, counts, 1, MPI_INT, comm));
  int64_t n_all = 0;
  for (int r = 0; r < size; r++) {
    displs[r] = (int)n_all;
    n_all += counts[r];
  }
  PS_ALLOC(all, n_all);
  PS_CHECK_MPI(MPI_Allgatherv(totals, n_local, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, comm));
  double s = 1e4;
  if (n_all > 0) { /* R median: the middle value, or the mean of the two middle ones */
    int64_t h = (n_all - 1) / 2;
    select_kth(all, n_all, h);
    double lo = all[h], hi = lo;
    if (n_all % 2 == 0) {
      select_kth(all, n_all, h + 1);
      hi = all[h + 1];
    }
    s = 0.5 * (lo + hi);
  }
  free(totals), free(all), free(counts), free(displs);
  if (!(s > 0)) PS_FAIL(PS_ERR_INPUT, "--scale median: the median total count of the analysed cells is %g", s);
  *scale = s;
  normalize_rows(x, s);
  return PS_OK;
}

int ps_expression_normalize(MPI_Comm comm, ps_csr *x, int input_is, int *is_counts) {
  return normalize_block(comm, x, input_is, is_counts);
}

static int read_guide_calls(MPI_Comm comm, const ps_dataset_options *opt, const ps_matrix *m,
                            ps_guide_calls *calls) {
  if (opt->guide_column) {
    ps_strlist labels;
    PS_CALL(ps_h5ad_read_obs_column(comm, opt->input, opt->guide_column, m->cell_begin,
                                    m->cell_begin + m->x.n_rows, &labels));
    PS_CALL(ps_guides_from_labels(&labels, calls));
    ps_strlist_free(&labels);
    return PS_OK;
  }
  ps_strmap index;
  char key[1024];
  PS_CALL(ps_strmap_init(&index, m->cells.n));
  for (int64_t i = 0; i < m->cells.n; i++)
    PS_CALL(ps_strmap_put(&index, ps_cell_key(m->cells.items[i], key, sizeof key), i));
  int err = ps_guides_read_table(opt->guides, &index, calls);
  ps_strmap_free(&index);
  return err;
}

static const char *guide_source(const ps_dataset_options *opt) {
  return opt->guides ? opt->guides : opt->guide_column ? opt->guide_column : opt->input;
}

/* --unit guide: a non-control call's unit becomes its guide name. --perturbations:
 * calls of other perturbations are dropped, so a cell is analysed only if it
 * carries a chosen perturbation or a control guide (a cell left with control
 * guides only is a control cell, as in the reference's per-perturbation run). */
/* Keep calls [i, n) after the w kept so far, so that on a failure the list still owns
 * each string exactly once (ps_guide_calls_free frees the first n). */
static void close_calls(ps_guide_calls *calls, int64_t w, int64_t i) {
  for (; i < calls->n; i++, w++) {
    calls->cell[w] = calls->cell[i];
    calls->unit[w] = calls->unit[i];
    calls->guide[w] = calls->guide[i];
    calls->umi[w] = calls->umi[i];
  }
  calls->n = w;
}

static int restrict_calls(const ps_dataset_options *opt, ps_guide_calls *calls) {
  int64_t w = 0;
  for (int64_t i = 0; i < calls->n; i++) {
    int control = ps_strlist_find_sorted(&opt->controls, calls->unit[i]) >= 0 ||
                  ps_strlist_find_sorted(&opt->controls, calls->guide[i]) >= 0;
    if (control && ps_strlist_find_sorted(&opt->controls, calls->unit[i]) < 0) {
      char *unit = strdup(calls->guide[i]); /* control named by its guide: label it so */
      if (!unit) {
        close_calls(calls, w, i);
        PS_FAIL(PS_ERR_SYSTEM, "out of memory");
      }
      free(calls->unit[i]);
      calls->unit[i] = unit;
    }
    if (!control && opt->unit_guide) {
      char *unit = strdup(calls->guide[i]);
      if (!unit) {
        close_calls(calls, w, i);
        PS_FAIL(PS_ERR_SYSTEM, "out of memory");
      }
      free(calls->unit[i]);
      calls->unit[i] = unit;
    }
    if (!control && opt->perturbations.n && ps_strlist_find_sorted(&opt->perturbations, calls->unit[i]) < 0) {
      free(calls->unit[i]);
      free(calls->guide[i]);
      continue;
    }
    calls->cell[w] = calls->cell[i];
    calls->unit[w] = calls->unit[i];
    calls->guide[w] = calls->guide[i];
    calls->umi[w++] = calls->umi[i];
  }
  calls->n = w;
  return PS_OK;
}

/* The controls and --perturbations must be among the guide labels of the analysed cells. */
static int check_units(const ps_dataset_options *opt, const ps_strlist *all_units, const char *source) {
  for (int64_t c = 0; c < opt->controls.n; c++) {
    if (ps_strlist_find_sorted(all_units, opt->controls.items[c]) >= 0) continue;
    char known[512] = "";
    for (int64_t i = 0; i < all_units->n && strlen(known) < 400; i++) {
      strcat(known, i ? ", " : "");
      strncat(known, all_units->items[i], 100);
    }
    PS_FAIL(PS_ERR_INPUT, "%s: control label '%s' is not among the guide labels of the analysed cells (labels: %s%s)",
            source, opt->controls.items[c], known, all_units->n > 8 ? ", ..." : "");
  }
  for (int64_t p = 0; p < opt->perturbations.n; p++)
    if (ps_strlist_find_sorted(all_units, opt->perturbations.items[p]) < 0)
      PS_FAIL(PS_ERR_INPUT, "%s: --perturbations names '%s', which no analysed cell carries%s", source,
              opt->perturbations.items[p], opt->unit_guide ? " (with --unit guide, name guides)" : "");
  return PS_OK;
}

/* Check the controls exist and build the perturbation list (sorted union of every
 * non-control unit carried by some cell). On an error the lists built here are
 * freed; *perturbations is the caller's to free either way. */
static int collect_units(MPI_Comm comm, const ps_dataset_options *opt, const ps_guide_calls *calls,
                         ps_strlist *perturbations) {
  const char *source = guide_source(opt);
  memset(perturbations, 0, sizeof *perturbations);
  int64_t local = calls->n_rows_local, matched = 0, read = calls->n_rows_read;
  PS_CHECK_MPI(MPI_Allreduce(&local, &matched, 1, MPI_INT64_T, MPI_SUM, comm));
  if (matched == 0)
    PS_FAIL(PS_ERR_INPUT, "%s: none of the %lld guide rows names a cell of %s (compare the cell barcodes of both files)",
            source, (long long)read, opt->input);
  ps_strlist units = {0}, all_units = {0};
  int err = PS_OK;
  for (int64_t i = 0; !err && i < calls->n; i++) err = ps_strlist_push(&units, calls->unit[i]);
  if (!err) {
    ps_strlist_sort_unique(&units);
    err = ps_strlist_allgather_union(comm, &units, &all_units);
  }
  if (!err) err = check_units(opt, &all_units, source);
  for (int64_t i = 0; !err && i < all_units.n; i++)
    if (ps_strlist_find_sorted(&opt->controls, all_units.items[i]) < 0)
      err = ps_strlist_push(perturbations, all_units.items[i]);
  ps_strlist_free(&units);
  ps_strlist_free(&all_units);
  PS_CALL(err);
  if (perturbations->n == 0) PS_FAIL(PS_ERR_INPUT, "%s: every guide is a control; there is no perturbation to score", source);
  if (perturbations->n > INT32_MAX) PS_FAIL(PS_ERR_INPUT, "%s: too many perturbations", source);
  return PS_OK;
}

typedef struct {
  int64_t cell;
  int32_t id; /* perturbation id, or -1 for a control guide */
} cell_unit;

static int compare_cell_unit(const void *a, const void *b) {
  const cell_unit *x = a, *y = b;
  if (x->cell != y->cell) return x->cell < y->cell ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

/* Analysed cells carry at least one guide; a cell whose guides are all controls
 * is a control cell. keep[i] is the analysed position of block cell i, or -1. */
static int build_design(MPI_Comm comm, const ps_dataset_options *opt, const ps_guide_calls *calls,
                        int64_t n_block, ps_strlist *perturbations, int64_t *keep, ps_dataset *d) {
  cell_unit *cu;
  PS_ALLOC(cu, calls->n);
  for (int64_t i = 0; i < calls->n; i++) {
    cu[i].cell = calls->cell[i];
    cu[i].id = ps_strlist_find_sorted(&opt->controls, calls->unit[i]) >= 0
                   ? -1
                   : (int32_t)ps_strlist_find_sorted(perturbations, calls->unit[i]);
  }
  qsort(cu, (size_t)calls->n, sizeof *cu, compare_cell_unit);
  ps_design *D = &d->design;
  D->n_perturbations = (int32_t)perturbations->n;
  D->names = *perturbations;
  memset(perturbations, 0, sizeof *perturbations);
  for (int64_t i = 0; i < n_block; i++) keep[i] = -1;
  int64_t n_cells = 0, n_ids = 0, n_control = 0;
  for (int64_t i = 0; i < calls->n; i++) {
    if (i == 0 || cu[i].cell != cu[i - 1].cell) keep[cu[i].cell] = n_cells++;
    if (cu[i].id >= 0 && !(i > 0 && cu[i].cell == cu[i - 1].cell && cu[i].id == cu[i - 1].id)) n_ids++;
  }
  D->n_cells = n_cells;
  PS_ALLOC(D->ptr, n_cells + 1);
  PS_ALLOC(D->ids, n_ids);
  int64_t w = 0;
  for (int64_t i = 0; i < calls->n; i++) {
    int64_t row = keep[cu[i].cell];
    if (cu[i].id >= 0 && !(i > 0 && cu[i].cell == cu[i - 1].cell && cu[i].id == cu[i - 1].id)) D->ids[w++] = cu[i].id;
    D->ptr[row + 1] = w;
  }
  for (int64_t j = 0; j < n_cells; j++) {
    if (D->ptr[j + 1] < D->ptr[j]) D->ptr[j + 1] = D->ptr[j];
    if (D->ptr[j + 1] == D->ptr[j]) n_control++;
  }
  free(cu);
  d->n_analysed = n_cells;
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &d->n_analysed, 1, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(&n_control, &d->n_control, 1, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Exscan(&n_cells, &d->analysed_offset, 1, MPI_INT64_T, MPI_SUM, comm));
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) d->analysed_offset = 0;
  if (d->n_control == 0) {
    char labels[512] = "";
    for (int64_t c = 0; c < opt->controls.n; c++) {
      strcat(labels, c ? "," : "");
      strncat(labels, opt->controls.items[c], 200);
    }
    PS_FAIL(PS_ERR_INPUT, "%s: no control cells: no analysed cell carries only control guides (%s)",
            guide_source(opt), labels);
  }
  return PS_OK;
}

static int append_joined(char **s, const char *item) {
  size_t have = *s ? strlen(*s) : 0, add = strlen(item);
  char *t = realloc(*s, have + add + 2);
  if (!t) PS_FAIL(PS_ERR_SYSTEM, "out of memory");
  if (have) t[have++] = '+';
  memcpy(t + have, item, add + 1);
  *s = t;
  return PS_OK;
}

/* Each analysed cell's guides and their units as assigned ('+'-joined, call order). */
static int cell_assignments(const ps_guide_calls *calls, const int64_t *keep, ps_dataset *d) {
  int64_t n = d->design.n_cells;
  PS_ALLOC(d->cell_guides, n);
  PS_ALLOC(d->cell_units, n);
  PS_ALLOC(d->cell_n_guides, n);
  for (int64_t i = 0; i < calls->n; i++) {
    int64_t j = keep[calls->cell[i]];
    if (j < 0) continue;
    d->cell_n_guides[j]++;
    PS_CALL(append_joined(&d->cell_guides[j], calls->guide[i] ? calls->guide[i] : calls->unit[i]));
    PS_CALL(append_joined(&d->cell_units[j], calls->unit[i]));
  }
  return PS_OK;
}

/* What target selection needs beyond the design (SPEC sections 0-1): whether an
 * analysed cell has a control guide (the reference quirk), the perturbation of
 * its largest-UMI guide (ties: first unit label; -1 if it is a control), and
 * whether the screen is low MOI: the median non-control analysed cell carries
 * one guide, i.e. more than half of them carry exactly one. */
static int guide_facts(MPI_Comm comm, const ps_dataset_options *opt, const ps_guide_calls *calls, const int64_t *keep,
                       int64_t n_block, ps_dataset *d) {
  int64_t n = d->design.n_cells, *best, *n_guides;
  PS_ALLOC(d->has_control_guide, n);
  PS_ALLOC(d->top_perturbation, n);
  PS_ALLOC(best, n_block);
  PS_ALLOC(n_guides, n_block);
  for (int64_t i = 0; i < n_block; i++) best[i] = -1;
  for (int64_t i = 0; i < calls->n; i++) {
    int64_t c = calls->cell[i], b = best[c];
    n_guides[c]++;
    if (b < 0 || calls->umi[i] > calls->umi[b] ||
        (calls->umi[i] == calls->umi[b] && strcmp(calls->unit[i], calls->unit[b]) < 0))
      best[c] = i;
    if (keep[c] >= 0 && ps_strlist_find_sorted(&opt->controls, calls->unit[i]) >= 0) d->has_control_guide[keep[c]] = 1;
  }
  PS_CALL(cell_assignments(calls, keep, d));
  int64_t counts[2] = {0, 0}; /* non-control analysed cells with one guide, all of them */
  for (int64_t c = 0; c < n_block; c++) {
    int64_t j = keep[c];
    if (j < 0) continue;
    d->top_perturbation[j] = (int32_t)ps_strlist_find_sorted(&d->design.names, calls->unit[best[c]]);
    if (d->design.ptr[j + 1] == d->design.ptr[j]) continue; /* control cell */
    counts[0] += n_guides[c] == 1;
    counts[1]++;
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm));
  d->low_moi = 2 * counts[0] > counts[1];
  free(best);
  free(n_guides);
  return PS_OK;
}

/* Exact per-gene quantiles: Alltoallvs (a batch of genes each) move each regression
 * gene's nonzeros to the rank that owns the gene (gene n -> rank n % P), which selects
 * the order statistics. With
 * --group-by each (group, gene) is its own column c = group N + gene, over its
 * group's n_total[group] cells (row_group: each local row's group, NULL: all 0). */
static int winsor_caps(MPI_Comm comm, const ps_csr *y, const int32_t *row_group, int32_t n_groups,
                       const int64_t *n_total, double prob, double *caps) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t N = (int64_t)y->n_cols * n_groups, n_cols = y->n_cols;
  if (N > INT32_MAX) PS_FAIL(PS_ERR_SYSTEM, "winsorizing: %lld group x gene caps are too many", (long long)N);
  /* Columns go to rank column % P in batches of contiguous columns holding about
   * 1/WINSOR_BATCHES of the values (at least 2^16), so the exchange (16 B a value
   * each way) adds a fraction of y, not 3 times it. A column's values keep their
   * order, and the quantile depends on the values only: caps do not depend on P or
   * the batches. */
  enum { WINSOR_BATCHES = 32 };
  int64_t *local, *total;
  PS_ALLOC(local, N);
  PS_ALLOC(total, N);
  for (int64_t j = 0; j < y->n_rows; j++)
    for (int64_t p = y->indptr[j]; p < y->indptr[j + 1]; p++) local[(row_group ? row_group[j] : 0) * n_cols + y->indices[p]]++;
  PS_CHECK_MPI(MPI_Allreduce(local, total, (int)N, MPI_INT64_T, MPI_SUM, comm));
  int64_t all = 0;
  for (int64_t n = 0; n < N; n++) all += total[n];
  int64_t budget = (all + WINSOR_BATCHES - 1) / WINSOR_BATCHES;
  if (budget < ((int64_t)1 << 16)) budget = (int64_t)1 << 16;
  int *scount, *rcount, *sdispl, *rdispl, *fill;
  int64_t *count64;
  PS_ALLOC(scount, size);
  PS_ALLOC(rcount, size);
  PS_ALLOC(sdispl, size);
  PS_ALLOC(rdispl, size);
  PS_ALLOC(fill, size);
  PS_ALLOC(count64, size);
  MPI_Datatype pair; /* (column, value) */
  PS_CHECK_MPI(MPI_Type_contiguous(2, MPI_DOUBLE, &pair));
  PS_CHECK_MPI(MPI_Type_commit(&pair));
  /* rows whose genes ascend are read once overall: cursor[j] is the first value not yet sent */
  int ascending = 1;
  for (int64_t j = 0; j < y->n_rows && ascending; j++)
    for (int64_t p = y->indptr[j] + 1; p < y->indptr[j + 1] && ascending; p++) ascending = y->indices[p] >= y->indices[p - 1];
  int64_t *cursor = NULL;
  if (ascending) {
    PS_ALLOC(cursor, y->n_rows);
    for (int64_t j = 0; j < y->n_rows; j++) cursor[j] = y->indptr[j];
  }
  for (int64_t n = 0; n < N; n++) caps[n] = 0.0;
  for (int64_t c0 = 0, c1; c0 < N; c0 = c1) {
    int64_t in_batch = total[c0];
    for (c1 = c0 + 1; c1 < N && in_batch + total[c1] <= budget; c1++) in_batch += total[c1];
    int64_t s_total, r_total;
    for (int r = 0; r < size; r++) count64[r] = 0, fill[r] = 0;
    for (int64_t n = c0; n < c1; n++) count64[n % size] += local[n];
    PS_CALL(ps_exchange_counts(comm, count64, scount, sdispl, rcount, rdispl, &s_total, &r_total));
    /* send (column, value) as two doubles: columns are < 2^31, exact in a double */
    double *send, *recv;
    PS_ALLOC(send, 2 * s_total);
    for (int64_t j = 0; j < y->n_rows; j++) {
      int64_t base = (row_group ? row_group[j] : 0) * n_cols, p = cursor ? cursor[j] : y->indptr[j];
      for (; p < y->indptr[j + 1]; p++) {
        int64_t column = base + y->indices[p];
        if (column >= c1 && cursor) break; /* the rest is in later batches */
        if (column < c0 || column >= c1) continue;
        int r = (int)(column % size);
        int64_t at = sdispl[r] + fill[r]++;
        send[2 * at] = (double)column;
        send[2 * at + 1] = y->data[p];
      }
      if (cursor) cursor[j] = p;
    }
    PS_ALLOC(recv, 2 * r_total);
    PS_CHECK_MPI(MPI_Alltoallv(send, scount, sdispl, pair, recv, rcount, rdispl, pair, comm));
    free(send);
    /* bucket by column, take the quantile */
    int64_t width = c1 - c0, *start, *pos;
    double *values;
    PS_ALLOC(start, width + 1);
    PS_ALLOC(pos, width);
    PS_ALLOC(values, r_total);
    for (int64_t i = 0; i < r_total; i++) start[(int64_t)recv[2 * i] - c0 + 1]++;
    for (int64_t n = 0; n < width; n++) start[n + 1] += start[n];
    for (int64_t i = 0; i < r_total; i++) {
      int64_t n = (int64_t)recv[2 * i] - c0;
      values[start[n] + pos[n]++] = recv[2 * i + 1];
    }
    free(recv);
    for (int64_t n = c0 + ((rank - c0) % size + size) % size; n < c1; n += size)
      caps[n] = quantile_type7_select(values + start[n - c0], start[n - c0 + 1] - start[n - c0], n_total[n / n_cols], prob);
    free(start), free(pos), free(values);
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, caps, (int)N, MPI_DOUBLE, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Type_free(&pair));
  free(local), free(total), free(count64), free(cursor);
  free(fill), free(scount), free(rcount), free(sdispl), free(rdispl);
  return PS_OK;
}

/* Columns of the analysed rows restricted to the regression genes. */
static int extract_response(const ps_csr *x, const int64_t *keep, int64_t n_analysed_local, const int32_t *column_of,
                            int32_t n_columns, ps_csr *y) {
  y->n_rows = n_analysed_local;
  y->n_cols = n_columns;
  PS_ALLOC(y->indptr, n_analysed_local + 1);
  int64_t nnz = 0;
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    for (int64_t p = x->indptr[i]; p < x->indptr[i + 1]; p++) nnz += column_of[x->indices[p]] >= 0;
  }
  PS_ALLOC(y->indices, nnz);
  PS_ALLOC(y->data, nnz);
  int64_t w = 0;
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    for (int64_t p = x->indptr[i]; p < x->indptr[i + 1]; p++) {
      int32_t c = column_of[x->indices[p]];
      if (c < 0) continue;
      y->indices[w] = c;
      y->data[w++] = x->data[p];
    }
    y->indptr[keep[i] + 1] = w;
  }
  return PS_OK;
}

/* The same, taken over from x in place (values move only forward: y is a subsequence
 * of x in block order) and shrunk, so y never coexists with a full copy of the block;
 * x is left empty. */
static int extract_response_in_place(ps_csr *x, const int64_t *keep, int64_t n_analysed_local,
                                     const int32_t *column_of, int32_t n_columns, ps_csr *y) {
  if (!x->indptr) PS_ALLOC(x->indptr, 1); /* an empty block: still a valid 0-row matrix */
  int64_t rows = 0, w = 0;
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    int64_t begin = x->indptr[i], end = x->indptr[i + 1];
    x->indptr[rows++] = w; /* rows <= i: entries already read */
    for (int64_t p = begin; p < end; p++) {
      int32_t c = column_of[x->indices[p]];
      if (c < 0) continue;
      x->indices[w] = c;
      x->data[w++] = x->data[p];
    }
  }
  x->indptr[rows] = w;
  if (rows != n_analysed_local)
    PS_FAIL(PS_ERR_SYSTEM, "response rows: %lld analysed rows in the block, expected %lld", (long long)rows,
            (long long)n_analysed_local);
  /* give the dropped tail back (a failed shrink keeps the larger block, still valid) */
  int32_t *indices = realloc(x->indices, (size_t)(w ? w : 1) * sizeof *indices);
  if (indices) x->indices = indices;
  double *data = realloc(x->data, (size_t)(w ? w : 1) * sizeof *data);
  if (data) x->data = data;
  int64_t *indptr = realloc(x->indptr, (size_t)(rows + 1) * sizeof *indptr);
  if (indptr) x->indptr = indptr;
  *y = *x;
  y->n_rows = rows;
  y->n_cols = n_columns;
  memset(x, 0, sizeof *x);
  return PS_OK;
}

/* in_place: y is taken from x's arrays (extract_response_in_place), x is left empty. */
static int select_regression_genes(MPI_Comm comm, const ps_regression_options *opt, ps_csr *x, const int64_t *keep,
                                   const int32_t *candidates, int32_t n_candidates, int in_place, ps_dataset *d) {
  int32_t *column_of;
  PS_ALLOC(column_of, d->n_genes);
  for (int64_t g = 0; g < d->n_genes; g++) column_of[g] = -1;
  for (int32_t c = 0; c < n_candidates; c++) column_of[candidates[c]] = c;
  int64_t *expressed;
  PS_ALLOC(expressed, n_candidates);
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    for (int64_t p = x->indptr[i]; p < x->indptr[i + 1]; p++)
      if (column_of[x->indices[p]] >= 0 && x->data[p] > 0) expressed[column_of[x->indices[p]]]++;
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, expressed, n_candidates, MPI_INT64_T, MPI_SUM, comm));
  int32_t n = 0;
  PS_ALLOC(d->regression_gene, n_candidates);
  for (int64_t g = 0; g < d->n_genes; g++) column_of[g] = -1;
  for (int32_t c = 0; c < n_candidates; c++)
    if ((double)expressed[c] >= opt->min_gene_frac * (double)d->n_analysed) {
      column_of[candidates[c]] = n;
      d->regression_gene[n++] = candidates[c];
    }
  d->n_regression = n;
  free(expressed);
  if (n == 0)
    PS_FAIL(PS_ERR_INPUT, "%s: none of the %d target genes is expressed (y > 0) in at least %.3g of the analysed cells",
            d->targets_file ? d->targets_file : "selected targets", n_candidates, opt->min_gene_frac);
  if (in_place)
    PS_CALL(extract_response_in_place(x, keep, d->design.n_cells, column_of, n, &d->y));
  else
    PS_CALL(extract_response(x, keep, d->design.n_cells, column_of, n, &d->y));
  free(column_of);
  return PS_OK;
}

static void count_targets(ps_dataset *d) {
  ps_strmap regression;
  if (ps_strmap_init(&regression, d->n_regression)) return;
  for (int32_t n = 0; n < d->n_regression; n++) ps_strmap_put(&regression, d->genes.items[d->regression_gene[n]], n);
  for (int64_t i = 0; i < d->targets.gene.n; i++) {
    int64_t k = ps_strlist_find_sorted(&d->design.names, d->targets.perturbation.items[i]);
    if (k >= 0 && ps_strmap_get(&regression, d->targets.gene.items[i]) >= 0) d->n_targets[k]++;
  }
  ps_strmap_free(&regression);
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Cell names must be unique over all ranks (guides are matched by name). Each
 * name's hash goes to rank hash % P, which looks for repeats; a repeated hash is
 * then confirmed on the names themselves, so a hash collision is no false alarm. */
static int check_unique_cells(MPI_Comm comm, const char *path, const ps_strlist *cells) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int *scount, *rcount, *sdispl, *rdispl, *fill;
  PS_ALLOC(scount, size);
  PS_ALLOC(rcount, size);
  PS_ALLOC(sdispl, size);
  PS_ALLOC(rdispl, size);
  PS_ALLOC(fill, size);
  uint64_t *hashes, *send;
  PS_ALLOC(hashes, cells->n);
  PS_ALLOC(send, cells->n);
  for (int64_t i = 0; i < cells->n; i++) scount[(hashes[i] = name_hash(cells->items[i])) % (uint64_t)size]++;
  PS_CHECK_MPI(MPI_Alltoall(scount, 1, MPI_INT, rcount, 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; r++) {
    sdispl[r] = r ? sdispl[r - 1] + scount[r - 1] : 0;
    rdispl[r] = (int)total;
    total += rcount[r];
  }
  for (int64_t i = 0; i < cells->n; i++) {
    int r = (int)(hashes[i] % (uint64_t)size);
    send[sdispl[r] + fill[r]++] = hashes[i];
  }
  uint64_t *recv;
  PS_ALLOC(recv, total);
  PS_CHECK_MPI(MPI_Alltoallv(send, scount, sdispl, MPI_UINT64_T, recv, rcount, rdispl, MPI_UINT64_T, comm));
  qsort(recv, (size_t)total, sizeof *recv, compare_u64);
  uint64_t repeated = 0, any = 0;
  for (int64_t i = 1; i < total && !repeated; i++)
    if (recv[i] == recv[i - 1]) repeated = recv[i];
  PS_CHECK_MPI(MPI_Allreduce(&repeated, &any, 1, MPI_UINT64_T, MPI_MAX, comm));
  int err = PS_OK;
  if (any) { /* gather the names with that hash and compare them */
    ps_strlist mine = {0}, all = {0};
    int64_t n_mine = 0, n_all = 0;
    for (int64_t i = 0; i < cells->n; i++)
      if (hashes[i] == any) {
        PS_CALL(ps_strlist_push(&mine, cells->items[i]));
        n_mine++;
      }
    PS_CHECK_MPI(MPI_Allreduce(&n_mine, &n_all, 1, MPI_INT64_T, MPI_SUM, comm));
    PS_CALL(ps_strlist_allgather_union(comm, &mine, &all));
    if (all.n < n_all) /* fewer distinct names than names: a real repeat */
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                         "%s: cell name '%s' appears twice in the obs index; names must be unique", path,
                         all.items[0]);
    ps_strlist_free(&mine);
    ps_strlist_free(&all);
  }
  free(scount);
  free(rcount);
  free(sdispl);
  free(rdispl);
  free(fill);
  free(hashes);
  free(send);
  free(recv);
  return err;
}

/* (data.h) The stage's own peak (STAGE.peak_rss_bytes) keeps the maximum. */
void ps_dataset_part_peak(const ps_progress *progress, const char *part) {
  if (!progress || !progress->stage) return;
  char name[96];
  double peak = ps_peak_rss_bytes();
  snprintf(name, sizeof name, "%s.%s_peak_rss_bytes", progress->stage, part);
  ps_stats_max(name, peak);
  snprintf(name, sizeof name, "%s.peak_rss_bytes", progress->stage);
  ps_stats_max(name, peak);
  ps_peak_rss_reset();
}

/* --keep-expression: the block's analysed rows, compacted in place (they are a
 * subsequence in block order, so no row is overwritten before it is moved) and
 * handed over, so keeping them costs no copy; x is left empty. */
static int keep_analysed_rows(ps_csr *x, const int64_t *keep, ps_csr *out) {
  if (!x->indptr) PS_ALLOC(x->indptr, 1); /* an empty block: still a valid 0-row matrix */
  int64_t rows = 0, w = 0;
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    int64_t begin = x->indptr[i], end = x->indptr[i + 1];
    memmove(x->indices + w, x->indices + begin, (size_t)(end - begin) * sizeof *x->indices);
    memmove(x->data + w, x->data + begin, (size_t)(end - begin) * sizeof *x->data);
    x->indptr[rows] = w;
    w += end - begin;
    rows++;
  }
  x->indptr[rows] = w;
  *out = *x;
  out->n_rows = rows;
  memset(x, 0, sizeof *x);
  return PS_OK;
}

/* What ps_dataset_read holds while it builds d: freed on every return (an early
 * error return included), so a failed read leaves nothing behind. */
typedef struct {
  ps_matrix m;
  ps_guide_calls calls;
  ps_strlist perturbations;
  int64_t *keep;
} read_work;

static void read_work_free(read_work *w) {
  ps_matrix_free(&w->m);
  ps_guide_calls_free(&w->calls);
  ps_strlist_free(&w->perturbations);
  free(w->keep);
  memset(w, 0, sizeof *w);
}

static int dataset_read(MPI_Comm comm, const ps_dataset_options *opt, ps_progress *progress, ps_dataset *d,
                        read_work *w) {
  if (opt->controls.n == 0) PS_FAIL(PS_ERR_INPUT, "no control label given (--control LABEL[,LABEL...])");
  ps_input_format format;
  PS_CALL(ps_input_sniff(comm, opt->input, &format));
  int guides_in_matrix = format == PS_FORMAT_TENX && !opt->guides && !opt->guide_column;
  if (!opt->guides && !opt->guide_column && !guides_in_matrix)
    PS_FAIL(PS_ERR_INPUT, "no guide assignment given (--guides FILE, --guide-column NAME, or a 10x .h5 with guide capture)");
  if (opt->guard) { /* the memory guard, before anything is loaded: the shape from the metadata */
    int64_t shape[3];
    PS_CALL(ps_input_shape(comm, opt->input, format == PS_FORMAT_TENX ? NULL : opt->layer, shape));
    d->n_cells_input = shape[0];
    d->n_genes = shape[1];
    d->nnz_input = shape[2];
    if (shape[0] > 0) PS_CALL(opt->guard(comm, d, PS_DATASET_GUARD_SHAPE, opt->guard_context));
  }
  ps_matrix *m = &w->m;
  ps_guide_calls *calls = &w->calls;
  double t_matrix = ps_wtime(); /* read.matrix_seconds, read.normalize_seconds: against the file (tools/bench) */
  if (format == PS_FORMAT_TENX) {
    if (opt->layer) PS_FAIL(PS_ERR_INPUT, "%s: --layer applies to .h5ad input, not to a 10x .h5", opt->input);
    PS_CALL(ps_error_sync(comm, ps_tenx_read(comm, opt->input, opt->min_guide_umi, m, guides_in_matrix ? calls : NULL)));
  } else {
    PS_CALL(ps_error_sync(comm, ps_h5ad_read_matrix(comm, opt->input, opt->layer, m)));
  }
  ps_stats_add("read.matrix_seconds", ps_wtime() - t_matrix);
  if (progress) ps_progress_update(progress, 0.5);
  d->n_cells_input = m->n_cells;
  d->n_genes = m->n_genes;
  d->nnz_input = m->x.indptr[m->x.n_rows]; /* what the blocks hold (10x: the expression features only) */
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &d->nnz_input, 1, MPI_INT64_T, MPI_SUM, comm));
  PS_CALL(check_unique_cells(comm, opt->input, &m->cells));
  PS_CALL(ps_check_input_is(comm, opt, &m->x));
  if (!opt->scale_median) { /* --scale median needs the analysed cells: after the design */
    double t_norm = ps_wtime();
    PS_CALL(normalize_block(comm, &m->x, opt->input_is, &d->is_counts));
    ps_stats_add("read.normalize_seconds", ps_wtime() - t_norm);
    d->scale = d->is_counts ? 1e4 : 0;
  }
  if (!guides_in_matrix) PS_CALL(ps_error_sync(comm, read_guide_calls(comm, opt, m, calls)));
  PS_CALL(ps_error_sync(comm, ps_check_control_guides(comm, opt, calls)));
  PS_CALL(ps_error_sync(comm, restrict_calls(opt, calls))); /* an allocation failure on one rank is every rank's */
  PS_CALL(ps_groups_subset_calls(comm, opt, m, calls)); /* cv / lambda --group-by: one group's cells */
  PS_CALL(ps_error_sync(comm, collect_units(comm, opt, calls, &w->perturbations)));
  PS_CALL(ps_error_sync(comm, ps_check_guide_rows(comm, opt, calls, d)));
  PS_ALLOC(w->keep, m->x.n_rows);
  int64_t *keep = w->keep;
  PS_CALL(ps_error_sync(comm, build_design(comm, opt, calls, m->x.n_rows, &w->perturbations, keep, d)));
  PS_CALL(ps_error_sync(comm, guide_facts(comm, opt, calls, keep, m->x.n_rows, d)));
  PS_CALL(ps_groups_assign(comm, opt, m, keep, d)); /* --control-by / --group-by (SPEC sections 2, 6) */
  ps_guide_calls_free(calls);
  if (opt->scale_median) {
    PS_CALL(normalize_median(comm, &m->x, keep, opt->input_is, &d->is_counts, &d->scale));
    int rank;
    MPI_Comm_rank(comm, &rank);
    if (!d->is_counts && rank == 0)
      fprintf(stderr, "pertscore: warning: --scale median applies to count input; %s is taken as log-normalized "
              "and used as it is\n", opt->input);
  }
  if (opt->guard) /* the design is known: before target selection */
    PS_CALL(opt->guard(comm, d, PS_DATASET_GUARD_DESIGN, opt->guard_context));
  for (int64_t i = 0; i < m->x.n_rows; i++) /* analysed names in analysed order (block order is kept) */
    if (keep[i] >= 0) PS_CALL(ps_strlist_push(&d->cells, m->cells.items[i]));
  ps_strmap *gene_index = &d->gene_index;
  PS_CALL(ps_strmap_init(gene_index, m->n_genes));
  for (int64_t g = 0; g < m->genes.n; g++) {
    if (ps_strmap_get(gene_index, m->genes.items[g]) >= 0)
      PS_CALL(ps_error_sync(comm, ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                                              "%s: gene name '%s' appears twice in the var index; names must be unique",
                                              opt->input, m->genes.items[g])));
    PS_CALL(ps_strmap_put(gene_index, m->genes.items[g], g));
  }
  d->genes = m->genes;
  memset(&m->genes, 0, sizeof m->genes);
  PS_ALLOC(d->input, strlen(opt->input) + 1);
  strcpy(d->input, opt->input);
  d->unit_guide = opt->unit_guide;
  ps_dataset_part_peak(progress, "matrix");
  /* the block stays for the targets, own-gene and regression stages */
  d->block = m->x;
  memset(&m->x, 0, sizeof m->x);
  d->block_keep = w->keep;
  w->keep = NULL;
  return PS_OK;
}

int ps_dataset_read(MPI_Comm comm, const ps_dataset_options *opt, ps_progress *progress, ps_dataset *d) {
  memset(d, 0, sizeof *d);
  read_work w;
  memset(&w, 0, sizeof w);
  int err = dataset_read(comm, opt, progress, d, &w);
  read_work_free(&w);
  if (err) ps_dataset_free(d);
  return err;
}

static int regression_prepare(MPI_Comm comm, const ps_regression_options *opt, ps_progress *progress, ps_dataset *d) {
  ps_strmap_free(&d->gene_index);
  int regression = d->targets_file || !d->targets_unused;
  if (regression) {
    /* the block is needed after this only for --keep-expression */
    PS_CALL(ps_error_sync(comm, select_regression_genes(comm, opt, &d->block, d->block_keep, d->candidates,
                                                        d->n_candidates, !opt->keep_expression, d)));
  } else {
    PS_ALLOC(d->regression_gene, 1);
    d->y.n_rows = d->design.n_cells;
    PS_ALLOC(d->y.indptr, d->y.n_rows + 1);
    PS_ALLOC(d->y.indices, 1);
    PS_ALLOC(d->y.data, 1);
  }
  free(d->candidates);
  d->candidates = NULL;
  d->n_candidates = 0;
  if (opt->keep_expression) PS_CALL(keep_analysed_rows(&d->block, d->block_keep, &d->expression));
  free(d->block_keep);
  d->block_keep = NULL;
  ps_csr_free(&d->block);
  /* SPEC section 2: winsorized over the analysed cells; with --group-by over each group's */
  d->n_winsor_groups = d->by_group ? d->design.n_groups : 1;
  const int32_t *row_group = d->by_group ? d->design.group : NULL;
  int64_t *n_in_group;
  PS_ALLOC(n_in_group, d->n_winsor_groups);
  for (int64_t j = 0; j < d->design.n_cells; j++) n_in_group[row_group ? row_group[j] : 0]++;
  int err = PS_OK; /* n_in_group is freed on every path */
  if (MPI_Allreduce(MPI_IN_PLACE, n_in_group, d->n_winsor_groups, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "MPI_Allreduce failed (cells per winsorizing group)");
  size_t n_caps = (size_t)((int64_t)d->n_winsor_groups * d->n_regression);
  if (!err && !(d->winsor_cap = ps_calloc(n_caps, sizeof *d->winsor_cap)))
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory allocating %zu x %zu bytes", n_caps,
                       sizeof *d->winsor_cap);
  if (!err) err = winsor_caps(comm, &d->y, row_group, d->n_winsor_groups, n_in_group, opt->winsor_quantile, d->winsor_cap);
  free(n_in_group);
  PS_CALL(err);
  if (opt->no_winsorize) /* SPEC section 9: no clipping; the caps recorded as +inf */
    for (int64_t i = 0; i < (int64_t)d->n_winsor_groups * d->n_regression; i++) d->winsor_cap[i] = INFINITY;
  for (int64_t j = 0; j < d->y.n_rows && !opt->no_winsorize; j++) {
    const double *cap = d->winsor_cap + (int64_t)(row_group ? row_group[j] : 0) * d->n_regression;
    for (int64_t p = d->y.indptr[j]; p < d->y.indptr[j + 1]; p++)
      if (d->y.data[p] > cap[d->y.indices[p]]) d->y.data[p] = cap[d->y.indices[p]];
  }
  count_targets(d);
  ps_check_warn_no_targets(comm, d);
  ps_dataset_part_peak(progress, "regression");
  return PS_OK;
}

int ps_regression_prepare(MPI_Comm comm, const ps_regression_options *opt, ps_progress *progress, ps_dataset *d) {
  int err = regression_prepare(comm, opt, progress, d);
  if (err) ps_dataset_free(d);
  return err;
}

/* The per-gene type-7 quantile caps of y over n_total cells (all ranks), for the
 * calibration stage's refits (src/calibrate). Collective. */
int ps_winsor_caps(MPI_Comm comm, const ps_csr *y, int64_t n_total, double prob, double *caps) {
  return winsor_caps(comm, y, NULL, 1, &n_total, prob, caps);
}
int ps_winsor_caps_grouped(MPI_Comm comm, const ps_csr *y, const int32_t *row_group, int32_t n_groups,
                           const int64_t *n_total, double prob, double *caps) {
  return winsor_caps(comm, y, row_group, n_groups, n_total, prob, caps);
}
