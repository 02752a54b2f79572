/* The ridge tests' shared problem: a whole screen (design rows and sparse Y) built
 * the same on every rank, and each rank's contiguous block of it as the pipeline
 * hands it to the ridge. Header-only, with ps_test.h. */
#ifndef PS_TEST_RIDGE_PROBLEM_H
#define PS_TEST_RIDGE_PROBLEM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "pertscore/data.h"
#include "ps_test.h"

/* The whole problem, the same on every rank. */
typedef struct {
  int64_t *ptr;
  int32_t *ids;
  int64_t *yptr;
  int32_t *ygene;
  double *yval;
} global_problem;

static inline void global_problem_free(global_problem *g) {
  free(g->ptr), free(g->ids), free(g->yptr), free(g->ygene), free(g->yval);
}

/* This rank's contiguous block of cells, as the pipeline would hand it over. */
static inline void take_block(int32_t K, int32_t genes, const global_problem *g, int64_t begin, int64_t end,
                              ps_design *d, ps_csr *y) {
  memset(d, 0, sizeof *d);
  memset(y, 0, sizeof *y);
  d->n_perturbations = K;
  d->n_cells = end - begin;
  d->ptr = xcalloc((size_t)d->n_cells + 1, sizeof *d->ptr);
  d->ids = xcalloc((size_t)(g->ptr[end] - g->ptr[begin]), sizeof *d->ids);
  for (int64_t c = 0; c <= d->n_cells; c++) d->ptr[c] = g->ptr[begin + c] - g->ptr[begin];
  memcpy(d->ids, g->ids + g->ptr[begin], (size_t)d->ptr[d->n_cells] * sizeof *d->ids);
  y->n_rows = end - begin;
  y->n_cols = genes;
  int64_t nnz = g->yptr[end] - g->yptr[begin];
  y->indptr = xcalloc((size_t)y->n_rows + 1, sizeof *y->indptr);
  y->indices = xcalloc((size_t)nnz, sizeof *y->indices);
  y->data = xcalloc((size_t)nnz, sizeof *y->data);
  for (int64_t c = 0; c <= y->n_rows; c++) y->indptr[c] = g->yptr[begin + c] - g->yptr[begin];
  memcpy(y->indices, g->ygene + g->yptr[begin], (size_t)nnz * sizeof *y->indices);
  memcpy(y->data, g->yval + g->yptr[begin], (size_t)nnz * sizeof *y->data);
}

static inline int cmp_int32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static inline double max_abs(const double *v, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
  return m;
}

#endif
