/* P against every other cell of the reference (SPEC.md section 1, --de-background others).
 *
 * With --de-background others (high MOI), C = the analysed cells not carrying X, so
 * P and C together are all analysed cells, the same set for every perturbation.
 * Then one ranking of a gene serves all K tests:
 *   rank sum of P = sum over P's cells of their average rank among all cells,
 *   tie correction = that of all cells (shared by every perturbation),
 *   pct2 and mean2 = totals over all cells minus P's,
 * so a perturbation's test costs O(its cells) and a gene's K tests O(nnz x MOI)
 * together, where ps_de_test_gene_ref would sort P and C's removed cells anew for
 * each perturbation (O(K x n1 log n1) per gene). Measured on a simulated 60,000-cell x
 * 374-gene x 1,860-perturbation screen at Poisson MOI 13, 2 ranks: the target stage
 * took 12.4 CPU-s per rank that way and 2.6 CPU-s this way (identical targets), 1.3
 * with the radix sort of sort.c for the one sort per gene that remains, 0.9 with the
 * ranks handed out by that sort (ps_de_ref_build_ranks) instead of a search per value.
 * The results equal ps_de_test_gene_ref(P, all, NULL, remove = P) bit for bit when P's
 * values are added in the same order: W is a sum of half-integers (exact), the tie sum
 * is exact integer arithmetic in long double, and the expm1 sums are the same
 * compensated sums. */
#include "pertscore/de.h"

#include <math.h>

/* Index of v in the reference's distinct values, or -1. */
static int64_t find_value(const ps_de_ref *ref, double v) {
  int64_t lo = 0, hi = ref->n_distinct;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (ref->values[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo < ref->n_distinct && ref->values[lo] == v ? lo : -1;
}

double ps_de_ref_rank(const ps_de_ref *ref, double v) {
  int64_t i = find_value(ref, v);
  if (i < 0) return NAN;
  return (double)ref->below[i] + 0.5 * (double)(ref->below[i + 1] - ref->below[i] + 1);
}

void ps_de_sums_add(ps_de_sums *s, double value, double rank, double expm1_value) {
  s->nnz++;
  s->positive += value > 0;
  s->rank_sum += rank;
  /* Neumaier, as ps_de_test_gene_ref's sums */
  double t = s->sum_expm1[0] + expm1_value;
  s->sum_expm1[1] += fabs(s->sum_expm1[0]) >= fabs(expm1_value) ? (s->sum_expm1[0] - t) + expm1_value
                                                                 : (expm1_value - t) + s->sum_expm1[0];
  s->sum_expm1[0] = t;
}

static void sum_add(double *hi, double *lo, double x) {
  double t = *hi + x;
  *lo += fabs(*hi) >= fabs(x) ? (*hi - t) + x : (x - t) + *hi;
  *hi = t;
}

int ps_de_test_gene_complement(const ps_de_sums *p, int64_t n1, const ps_de_ref *ref, ps_de_gene *out) {
  int64_t n2 = ref->n - n1;
  if (n1 < 1 || n2 < 1 || p->nnz > n1 || p->positive > ref->n_positive)
    PS_FAIL(PS_ERR_INPUT, "DE test against the other cells: %lld cells (%lld stored values) of %lld in all",
            (long long)n1, (long long)p->nnz, (long long)ref->n);
  double rank_sum = p->rank_sum;
  if (n1 > p->nnz) { /* P's unstored cells are zeros: the zero block's average rank */
    double zero_rank = ps_de_ref_rank(ref, 0.0);
    if (isnan(zero_rank))
      PS_FAIL(PS_ERR_INPUT, "DE test against the other cells: P has zeros but the cells in all have none");
    rank_sum += (double)(n1 - p->nnz) * zero_rank;
  }
  if (isnan(rank_sum)) PS_FAIL(PS_ERR_INPUT, "DE test against the other cells: a value of P is not among all cells");
  out->pct1 = ps_de_round3((double)p->positive / (double)n1);
  out->pct2 = ps_de_round3((double)(ref->n_positive - p->positive) / (double)n2);
  double hi = ref->sum_expm1[0], lo = ref->sum_expm1[1];
  sum_add(&hi, &lo, -p->sum_expm1[0]);
  sum_add(&hi, &lo, -p->sum_expm1[1]);
  double mean1 = (p->sum_expm1[0] + p->sum_expm1[1]) / (double)n1;
  double mean2 = (hi + lo) / (double)n2;
  out->log2fc = log2(mean1 + 1.0) - log2(mean2 + 1.0); /* as in ps_de_test_gene */
  double w = rank_sum - 0.5 * (double)n1 * (double)(n1 + 1);
  out->p = ps_de_wilcoxon_p(n1, n2, w, ref->tie_sum);
  return PS_OK;
}
