/* The pseudo perturbation of SPEC.md section 4: random control cells relabelled
 * so that the false-positive rate of PS can be measured on cells that are
 * known to be unperturbed.
 *
 * Choice, identical on any number of ranks: the M_c control cells are numbered
 * in analysed order (rank 0's block, then rank 1's, ...; analysed order is the
 * input order), every rank draws the same m of those numbers with Floyd's
 * algorithm (m draws, O(m) memory, never O(M_c) per rank), and each rank marks
 * its own. Reference difference: scmageck_best_lambda samples its 250 cells from
 * every cell of the object, although its comment says non-targeting controls;
 * SPEC.md says control cells, and only those are unperturbed for sure. */
#include "pertscore/lambda.h"

#include <stdlib.h>
#include <string.h>

/* "pseudo!!": keeps this stream apart from the permutations' and the simulator's. */
#define PS_PSEUDO_STREAM UINT64_C(0x70736575646f2121)

/* Uniform integer in [0, n), unbiased (rejection as in ps_ridge_permutation). */
static uint64_t uniform_below(ps_rng *g, uint64_t n) {
  uint64_t floor_ = (0 - n) % n, x; /* 2^64 mod n */
  do x = ps_rng_next(g);
  while (x < floor_);
  return x % n;
}

/* Open-addressing set of int64 >= 0 (empty slots are -1). */
typedef struct {
  int64_t *slot;
  uint64_t mask;
} int_set;

static int set_init(int_set *s, int64_t expected) {
  uint64_t cap = 16;
  while (cap < 2 * (uint64_t)expected + 1) cap <<= 1;
  PS_ALLOC(s->slot, cap);
  for (uint64_t i = 0; i < cap; i++) s->slot[i] = -1;
  s->mask = cap - 1;
  return PS_OK;
}

/* Insert v; returns 1 if it was new. */
static int set_insert(int_set *s, int64_t v) {
  uint64_t h = ((uint64_t)v * UINT64_C(0x9e3779b97f4a7c15)) & s->mask;
  while (s->slot[h] >= 0) {
    if (s->slot[h] == v) return 0;
    h = (h + 1) & s->mask;
  }
  s->slot[h] = v;
  return 1;
}

static int compare_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Floyd: for j = n - m .. n - 1 draw t in [0, j]; take t, or j if t is taken.
 * Every m-subset is equally likely. Out: the m indices, sorted. */
static int sample_controls(uint64_t seed, int64_t n, int64_t m, int64_t *chosen) {
  ps_rng g = ps_rng_make(seed ^ PS_PSEUDO_STREAM, 0);
  int_set s = {0};
  PS_CALL(set_init(&s, m));
  int64_t w = 0;
  for (int64_t j = n - m; j < n; j++) {
    int64_t t = (int64_t)uniform_below(&g, (uint64_t)j + 1);
    int64_t pick = set_insert(&s, t) ? t : j;
    if (pick == j) set_insert(&s, j);
    chosen[w++] = pick;
  }
  free(s.slot);
  qsort(chosen, (size_t)m, sizeof *chosen, compare_i64);
  return PS_OK;
}

/* Position of label among the sorted names (where it would be inserted). */
static int32_t insert_position(const ps_strlist *names, const char *label) {
  int32_t p = 0;
  while (p < names->n && strcmp(names->items[p], label) < 0) p++;
  return p;
}

void ps_pseudo_options_default(ps_pseudo_options *o) { memset(o, 0, sizeof *o); }

int ps_pseudo_relabel(MPI_Comm comm, const ps_pseudo_options *opt, const ps_strlist *controls, ps_dataset *d) {
  const char *label = opt->pseudo_label ? opt->pseudo_label : PS_LAMBDA_PSEUDO_LABEL;
  const int64_t m = opt->pseudo_cells;
  ps_design *D = &d->design;
  if (m <= 0) return PS_OK;
  if (!*label) PS_FAIL(PS_ERR_INPUT, "--pseudo-label must not be empty");
  if (ps_strlist_find_sorted(&D->names, label) >= 0 || ps_strlist_find_sorted(controls, label) >= 0)
    PS_FAIL(PS_ERR_INPUT, "--pseudo-label '%s' is already a label of the screen; choose another one", label);
  /* Controls are needed on both sides: the pseudo cells' DE test and the intercept
   * are measured against the control cells that remain. */
  if (d->n_control < m + PS_LAMBDA_MIN_CONTROLS)
    PS_FAIL(PS_ERR_INPUT, "--pseudo-cells %lld: the screen has %lld control cells and at least %d must remain "
            "controls (so at most %lld can be relabelled); lower --pseudo-cells",
            (long long)m, (long long)d->n_control, PS_LAMBDA_MIN_CONTROLS,
            (long long)(d->n_control > PS_LAMBDA_MIN_CONTROLS ? d->n_control - PS_LAMBDA_MIN_CONTROLS : 0));
  int64_t *chosen;
  PS_ALLOC(chosen, m);
  PS_CALL(sample_controls(opt->pseudo_seed, d->n_control, m, chosen));

  /* this rank's first global control index */
  int64_t local_controls = 0, control_offset = 0;
  for (int64_t j = 0; j < D->n_cells; j++) local_controls += D->ptr[j + 1] == D->ptr[j];
  PS_CHECK_MPI(MPI_Exscan(&local_controls, &control_offset, 1, MPI_INT64_T, MPI_SUM, comm));
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) control_offset = 0;

  const int32_t p = insert_position(&D->names, label);
  int64_t n_ids = D->ptr[D->n_cells], *ptr;
  int32_t *ids;
  PS_ALLOC(ptr, D->n_cells + 1);
  PS_ALLOC(ids, n_ids + local_controls); /* at most one id per relabelled control */
  int64_t w = 0, c = control_offset, n_pseudo = 0;
  for (int64_t j = 0; j < D->n_cells; j++) {
    if (D->ptr[j + 1] == D->ptr[j]) { /* control cell: relabelled if chosen */
      if (bsearch(&c, chosen, (size_t)m, sizeof *chosen, compare_i64)) {
        ids[w++] = p;
        d->has_control_guide[j] = 0;
        d->top_perturbation[j] = p;
        n_pseudo++;
      }
      c++;
    } else { /* ids above the new one shift; order within the cell is kept */
      for (int64_t q = D->ptr[j]; q < D->ptr[j + 1]; q++) ids[w++] = D->ids[q] >= p ? D->ids[q] + 1 : D->ids[q];
      if (d->top_perturbation[j] >= p) d->top_perturbation[j]++;
    }
    ptr[j + 1] = w;
  }
  free(chosen);
  free(D->ptr);
  free(D->ids);
  D->ptr = ptr;
  D->ids = ids;

  ps_strlist names = {0};
  for (int32_t k = 0; k <= D->n_perturbations; k++) {
    const char *name = k < p ? D->names.items[k] : k == p ? label : D->names.items[k - 1];
    PS_CALL(ps_strlist_push(&names, name));
  }
  ps_strlist_free(&D->names);
  D->names = names;
  D->n_perturbations++;

  int64_t total = 0;
  PS_CHECK_MPI(MPI_Allreduce(&n_pseudo, &total, 1, MPI_INT64_T, MPI_SUM, comm));
  if (total != m) /* every chosen index is < n_control, and the ranks' controls partition them */
    PS_FAIL(PS_ERR_SYSTEM, "relabelled %lld control cells, expected %lld", (long long)total, (long long)m);
  d->n_control -= m;
  PS_ALLOC(d->pseudo_label, strlen(label) + 1);
  strcpy(d->pseudo_label, label);
  return PS_OK;
}
