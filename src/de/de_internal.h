/* Internal to src/de. */
#ifndef PERTSCORE_DE_INTERNAL_H
#define PERTSCORE_DE_INTERNAL_H

#include <stdint.h>

/* Sort n finite doubles ascending (-0.0 comes out as 0.0 above a few hundred values,
 * where it is a radix sort; below, qsort); with index (may be NULL), index[i] = the
 * position v[i] had before the sort. 0, or -1 when out of memory (sort.c). */
int ps_de_sort_values(double *v, int64_t n, int64_t *index);

#endif
