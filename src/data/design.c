/* The sparse design D (SPEC.md section 2): per-cell perturbation lists. */
#include "pertscore/data.h"

#include <stdlib.h>
#include <string.h>

void ps_design_free(ps_design *d) {
  if (!d) return;
  ps_strlist_free(&d->names);
  free(d->ptr);
  free(d->ids);
  memset(d, 0, sizeof *d);
}

int32_t ps_design_max_per_cell(const ps_design *d) {
  int64_t most = 0;
  for (int64_t j = 0; j < d->n_cells; j++)
    if (d->ptr[j + 1] - d->ptr[j] > most) most = d->ptr[j + 1] - d->ptr[j];
  return (int32_t)most;
}
