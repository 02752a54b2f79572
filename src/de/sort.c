/* Ascending sort of a gene's values (DE, SPEC.md section 1).
 *
 * Why not qsort: the reference summary of every gene sorts all of the gene's stored
 * values over the analysed cells (ps_de_ref_build; ~530,000 per gene on the
 * jurkat-genome screen), and with the per-perturbation work reduced to rank sums
 * (complement.c) that sort was ~70% of the target stage. An LSD radix sort on the
 * IEEE bits (mapped so that unsigned order is numeric order) does it in a few
 * linear passes; passes over digits that every key shares are skipped (log-normalized
 * values share most exponent bits). */
#include "de_internal.h"

#include <stdlib.h>
#include <string.h>

enum { DIGIT_BITS = 11, N_DIGITS = 6, BUCKETS = 1 << DIGIT_BITS, SMALL = 256 };

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Unsigned key in numeric order: negative values flip all bits, others set the sign bit. */
static uint64_t key_of(double v) {
  uint64_t b;
  if (v == 0.0) v = 0.0; /* -0.0 sorts as 0.0 */
  memcpy(&b, &v, sizeof b);
  return (b >> 63) ? ~b : b | (UINT64_C(1) << 63);
}

static double value_of(uint64_t k) {
  uint64_t b = (k >> 63) ? k & ~(UINT64_C(1) << 63) : ~k;
  double v;
  memcpy(&v, &b, sizeof v);
  return v;
}

typedef struct {
  double v;
  int64_t i;
} indexed_value;

static int cmp_indexed(const void *a, const void *b) {
  double x = ((const indexed_value *)a)->v, y = ((const indexed_value *)b)->v;
  return (x > y) - (x < y);
}

/* Below SMALL values qsort is faster than the radix passes. */
static int sort_small(double *v, int64_t n, int64_t *index) {
  if (!index) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return 0;
  }
  indexed_value *t = malloc((size_t)(n ? n : 1) * sizeof *t);
  if (!t) return -1;
  for (int64_t i = 0; i < n; i++) t[i] = (indexed_value){v[i], i};
  qsort(t, (size_t)n, sizeof *t, cmp_indexed);
  for (int64_t i = 0; i < n; i++) v[i] = t[i].v, index[i] = t[i].i;
  free(t);
  return 0;
}

int ps_de_sort_values(double *v, int64_t n, int64_t *index) {
  if (n < SMALL) return sort_small(v, n, index);
  uint64_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
  int64_t *count = calloc((size_t)N_DIGITS * BUCKETS, sizeof *count);
  /* the positions travel with the keys only when the caller wants them */
  int64_t *ai = index ? malloc((size_t)n * sizeof *ai) : NULL, *bi = index ? malloc((size_t)n * sizeof *bi) : NULL;
  if (!a || !b || !count || (index && (!ai || !bi))) {
    free(a), free(b), free(count), free(ai), free(bi);
    return -1;
  }
  for (int64_t i = 0; i < n; i++) { /* keys, and all digit histograms in one pass */
    uint64_t k = key_of(v[i]);
    a[i] = k;
    if (ai) ai[i] = i;
    for (int d = 0; d < N_DIGITS; d++) count[d * BUCKETS + ((k >> (d * DIGIT_BITS)) & (BUCKETS - 1))]++;
  }
  for (int d = 0; d < N_DIGITS; d++) {
    int64_t *c = count + d * BUCKETS;
    int skip = 0;
    for (int x = 0; x < BUCKETS && !skip; x++) skip = c[x] == n; /* every key has this digit */
    if (skip) continue;
    int64_t at = 0;
    for (int x = 0; x < BUCKETS; x++) {
      int64_t t = c[x];
      c[x] = at;
      at += t;
    }
    if (ai) {
      for (int64_t i = 0; i < n; i++) {
        int64_t to = c[(a[i] >> (d * DIGIT_BITS)) & (BUCKETS - 1)]++;
        b[to] = a[i];
        bi[to] = ai[i];
      }
      int64_t *ti = ai;
      ai = bi, bi = ti;
    } else {
      for (int64_t i = 0; i < n; i++) b[c[(a[i] >> (d * DIGIT_BITS)) & (BUCKETS - 1)]++] = a[i];
    }
    uint64_t *t = a;
    a = b, b = t;
  }
  for (int64_t i = 0; i < n; i++) v[i] = value_of(a[i]);
  if (ai) memcpy(index, ai, (size_t)n * sizeof *index);
  free(a), free(b), free(count), free(ai), free(bi);
  return 0;
}
