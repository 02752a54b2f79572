/* pertscore/data.h: the distributed dataset (SPEC.md sections 0 and 2).
 *
 * Every rank holds a contiguous block of the analysed cells: their expression
 * over the regression genes (winsorized), and their perturbation lists (the
 * sparse design D; nothing cells x perturbations is ever dense). */
#ifndef PERTSCORE_DATA_H
#define PERTSCORE_DATA_H

#include "pertscore/util.h"

/* Sparse design: per local cell, the sorted ids (0..K-1) of the perturbations it
 * carries. The intercept (control) column is implicit: every cell has it. */
typedef struct {
  int32_t n_perturbations; /* K, global */
  ps_strlist names;        /* K perturbation labels, sorted, identical on all ranks */
  int64_t n_cells;         /* local analysed cells */
  int64_t *ptr;            /* n_cells + 1 */
  int32_t *ids;            /* ptr[n_cells] perturbation ids */
} ps_design;

void ps_design_free(ps_design *d);
/* Largest number of perturbations any local cell carries. */
int32_t ps_design_max_per_cell(const ps_design *d);

#endif
