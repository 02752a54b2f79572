/* Internal to src/de. */
#ifndef PERTSCORE_DE_INTERNAL_H
#define PERTSCORE_DE_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "pertscore/de.h"

/* A batch of this rank's genes (targets_select.c: owners balanced by nonzeros):
 * per local gene lg, the analysed cells where it is nonzero, ascending, and the
 * values there. */
typedef struct {
  int64_t n_genes; /* owned */
  int64_t *ptr;    /* n_genes + 1 */
  int32_t *cell;   /* global analysed index */
  double *value;
} ps_gene_shard;

void ps_gene_shard_free(ps_gene_shard *s);

/* Sort n finite doubles ascending (-0.0 comes out as 0.0 above a few hundred values,
 * where it is a radix sort; below, qsort); with index (may be NULL), index[i] = the
 * position v[i] had before the sort. 0, or -1 when out of memory (sort.c). */
int ps_de_sort_values(double *v, int64_t n, int64_t *index);

/* f(c) - f(r) for f(t) = t^3 - t, factored so that a small change of a large
 * tie block (the zeros) does not cancel; exact in long double below 2^64. */
static inline long double ps_de_tie_delta(double r, double c) {
  long double lr = r, lc = c;
  return (lc - lr) * (lc * lc + lc * lr + lr * lr - 1);
}

/* Compensated (Neumaier) sum kept as an unevaluated pair hi + lo: with
 * --de-background others the controls' sum is (all cells) - P, and when P holds
 * almost all of the expression a long double difference is mostly rounding. */
typedef struct {
  double hi, lo;
} ps_de_dsum;

static inline void ps_de_dsum_add(ps_de_dsum *s, double x) {
  double t = s->hi + x;
  s->lo += fabs(s->hi) >= fabs(x) ? (s->hi - t) + x : (x - t) + s->hi;
  s->hi = t;
}

#endif
