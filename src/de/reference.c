/* Many DE tests of one gene against one large group (SPEC.md section 1).
 *
 * The control group (or, with --de-background others, every analysed cell) is
 * the same for all K perturbations of a gene, and it is the large side: merging
 * it anew for each perturbation would cost O(K nnz_C) per gene. Instead it is
 * summarized once as distinct values with cumulative counts, and each test walks
 * only the small groups (P, cells added to or removed from C), asking the
 * summary by binary search:
 *   W = sum over P's cells of (#C < v + #C == v / 2)   (= rank sum - n1 (n1 + 1) / 2)
 *   sum(t^3 - t) = that of C + for each distinct v of P, f(c_v + p_v) - f(c_v)
 * so a test costs O((nnz_P + nnz_add + nnz_remove) log nnz_C). */
#include "pertscore/de.h"

#include "de_internal.h"

#include <math.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef ps_de_dsum dsum;
#define dsum_add ps_de_dsum_add
#define tie_delta ps_de_tie_delta

/* Ascending walk over the distinct values of a sorted list plus `zeros` implicit zeros. */
typedef struct {
  const double *v;
  int64_t nnz, i, zeros;
} cursor;

static int cursor_peek(const cursor *c, double *v) {
  if (c->zeros > 0 && (c->i == c->nnz || c->v[c->i] >= 0)) {
    *v = 0.0;
    return 1;
  }
  if (c->i == c->nnz) return 0;
  *v = c->v[c->i];
  return 1;
}

/* Cells equal to v, consumed. */
static int64_t cursor_take(cursor *c, double v) {
  int64_t k = 0;
  while (c->i < c->nnz && c->v[c->i] == v) c->i++, k++;
  if (v == 0.0) k += c->zeros, c->zeros = 0;
  return k;
}

/* First index of sorted a[0..n) with a[i] >= v (strict = 0) or a[i] > v (strict = 1). */
static int64_t bound(const double *a, int64_t n, double v, int strict) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < v || (strict && a[mid] == v)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Cells of a sorted group (nnz values + zeros) below v and equal to v. */
static void count_group(const double *a, int64_t nnz, int64_t zeros, double v, int64_t *less, int64_t *equal) {
  int64_t lo = bound(a, nnz, v, 0), hi = bound(a, nnz, v, 1);
  *less = lo + (v > 0 ? zeros : 0);
  *equal = hi - lo + (v == 0 ? zeros : 0);
}

static void count_ref(const ps_de_ref *r, double v, int64_t *less, int64_t *equal) {
  int64_t k = bound(r->values, r->n_distinct, v, 0);
  *less = r->below[k];
  *equal = (k < r->n_distinct && r->values[k] == v) ? r->below[k + 1] - r->below[k] : 0;
}

static int check_group(const ps_de_group *g, const char *what) {
  if (g->n < 0 || g->nnz < 0 || g->nnz > g->n)
    PS_FAIL(PS_ERR_INPUT, "DE test: group %s has %lld stored values for %lld cells", what,
            (long long)g->nnz, (long long)g->n);
  for (int64_t i = 0; i < g->nnz; i++)
    if (!isfinite(g->values[i])) PS_FAIL(PS_ERR_INPUT, "DE test: non-finite value %g in group %s", g->values[i], what);
  return PS_OK;
}

int ps_de_ref_build(const ps_de_group *g, ps_de_ref *ref) { return ps_de_ref_build_ranks(g, ref, NULL); }

/* rank != NULL: the sort carries each value's position, and a walk of the sorted values
 * beside the distinct ones hands out the average ranks (no search per value). */
int ps_de_ref_build_ranks(const ps_de_group *g, ps_de_ref *ref, double *rank) {
  *ref = (ps_de_ref){0};
  PS_CALL(check_group(g, "reference"));
  double *sorted, *values;
  int64_t *below, *index = NULL;
  PS_ALLOC(sorted, g->nnz);
  if (rank) PS_ALLOC(index, g->nnz);
  for (int64_t i = 0; i < g->nnz; i++) sorted[i] = g->values[i];
  if (ps_de_sort_values(sorted, g->nnz, index)) { /* index only with rank */
    free(sorted), free(index);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory sorting a DE reference of %lld values", (long long)g->nnz);
  }
  values = malloc((size_t)(g->nnz + 1) * sizeof *values);
  below = malloc((size_t)(g->nnz + 2) * sizeof *below);
  if (!values || !below) {
    free(sorted), free(values), free(below), free(index);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory: DE reference of %lld values", (long long)g->nnz);
  }
  cursor c = {sorted, g->nnz, 0, g->n - g->nnz};
  int64_t k = 0, pos = 0;
  double v;
  long double ties = 0; /* as in ps_de_test_gene */
  while (cursor_peek(&c, &v)) {
    double t = (double)cursor_take(&c, v);
    values[k] = v;
    below[k++] = pos;
    pos += (int64_t)t;
    ties += (long double)t * t * t - t;
  }
  below[k] = pos;
  if (rank)
    for (int64_t i = 0, at = 0; i < g->nnz; i++) {
      while (values[at] < sorted[i]) at++; /* sorted[i] is one of values[], both ascending */
      rank[index[i]] = (double)below[at] + 0.5 * (double)(below[at + 1] - below[at] + 1);
    }
  free(index);
  dsum sum = {0, 0};
  int64_t positive = 0;
  for (int64_t i = 0; i < g->nnz; i++) dsum_add(&sum, expm1(sorted[i])), positive += sorted[i] > 0;
  free(sorted);
  *ref = (ps_de_ref){g->n, k, values, below, positive, (double)ties, {sum.hi, sum.lo}};
  return PS_OK;
}

void ps_de_ref_free(ps_de_ref *ref) {
  if (!ref) return;
  free(ref->values);
  free(ref->below);
  *ref = (ps_de_ref){0};
}

/* Sorted copy of a group's stored values into dst; returns positive count and sum of expm1. */
static void sorted_copy(const ps_de_group *g, double *dst, int64_t *positive, dsum *sum) {
  *positive = 0;
  *sum = (dsum){0, 0};
  for (int64_t i = 0; i < g->nnz; i++) {
    dst[i] = g->values[i];
    *positive += dst[i] > 0;
    dsum_add(sum, expm1(dst[i]));
  }
  qsort(dst, (size_t)g->nnz, sizeof *dst, cmp_double);
}

int ps_de_test_gene_ref(const ps_de_group *p, const ps_de_ref *ref, const ps_de_group *add,
                        const ps_de_group *remove, ps_de_work *work, ps_de_gene *out) {
  static const double empty_values[1] = {0};
  const ps_de_group none = {empty_values, 0, 0};
  if (!add) add = &none;
  if (!remove) remove = &none;
  PS_CALL(check_group(p, "P"));
  PS_CALL(check_group(add, "added to C"));
  PS_CALL(check_group(remove, "removed from C"));
  int64_t n1 = p->n, n2 = ref->n + add->n - remove->n;
  if (n1 < 1 || n2 < 1)
    PS_FAIL(PS_ERR_INPUT, "DE test needs at least one cell in each group (have %lld and %lld)",
            (long long)n1, (long long)n2);
  PS_CALL(ps_de_work_reserve(work, p->nnz + add->nnz + remove->nnz));
  double *sp = work->buf, *sa = sp + p->nnz, *sr = sa + add->nnz;
  int64_t pos_p, pos_a, pos_r;
  dsum sum_p, sum_a, sum_r;
  sorted_copy(p, sp, &pos_p, &sum_p);
  sorted_copy(add, sa, &pos_a, &sum_a);
  sorted_copy(remove, sr, &pos_r, &sum_r);
  int64_t za = add->n - add->nnz, zr = remove->n - remove->nnz;

  out->pct1 = ps_de_round3((double)pos_p / (double)n1);
  out->pct2 = ps_de_round3((double)(ref->n_positive + pos_a - pos_r) / (double)n2);
  dsum sum_c = {ref->sum_expm1[0], ref->sum_expm1[1]};
  dsum_add(&sum_c, sum_a.hi), dsum_add(&sum_c, sum_a.lo);
  dsum_add(&sum_c, -sum_r.hi), dsum_add(&sum_c, -sum_r.lo);
  double mean1 = (sum_p.hi + sum_p.lo) / (double)n1;
  double mean2 = (sum_c.hi + sum_c.lo) / (double)n2;
  out->log2fc = log2(mean1 + 1.0) - log2(mean2 + 1.0); /* as in ps_de_test_gene */

  /* Ties of C = ref + add - remove: only values of add or remove change a block. */
  long double ties = ref->tie_sum;
  double v;
  cursor ca = {sa, add->nnz, 0, za}, cr = {sr, remove->nnz, 0, zr};
  for (;;) {
    double va, vr;
    int ha = cursor_peek(&ca, &va), hr = cursor_peek(&cr, &vr);
    if (!ha && !hr) break;
    v = !ha ? vr : (!hr ? va : fmin(va, vr));
    int64_t less, r;
    count_ref(ref, v, &less, &r);
    int64_t c = r + cursor_take(&ca, v) - cursor_take(&cr, v);
    if (c < 0)
      PS_FAIL(PS_ERR_INPUT, "DE test: cells removed from C with value %g are not in the reference group", v);
    ties += tie_delta((double)r, (double)c);
  }

  /* P against C, one distinct value of P at a time. */
  double w = 0;
  cursor cp = {sp, p->nnz, 0, n1 - p->nnz};
  while (cursor_peek(&cp, &v)) {
    double k = (double)cursor_take(&cp, v);
    int64_t rl, re, al, ae, dl, de;
    count_ref(ref, v, &rl, &re);
    count_group(sa, add->nnz, za, v, &al, &ae);
    count_group(sr, remove->nnz, zr, v, &dl, &de);
    double less = (double)(rl + al - dl), equal = (double)(re + ae - de);
    w += k * less + k * equal / 2;
    ties += tie_delta(equal, equal + k);
  }
  out->p = ps_de_wilcoxon_p(n1, n2, w, (double)ties);
  return PS_OK;
}
