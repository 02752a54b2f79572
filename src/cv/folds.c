/* Fold assignment (SPEC.md section 7): deterministic for a seed and the same on
 * any number of ranks. Draws come from the counter-based RNG keyed by what they
 * assign (a perturbation list, a stratum and block of positions), never by rank. */
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"

/* Salts keep the draws of different uses apart under one --seed. */
#define SALT_PERTURBATION_FOLDS UINT64_C(0x63762d7065727466) /* "cv-pertf" */
#define SALT_CELL_FOLDS UINT64_C(0x63762d63656c6c66)         /* "cv-cellf" */

/* Uniform integer in [0, n) without modulo bias. */
static uint64_t uniform_below(ps_rng *r, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
  do x = ps_rng_next(r);
  while (x >= limit);
  return x % n;
}

int ps_cv_permutation_folds(int64_t n, int n_folds, uint64_t seed, int32_t *fold) {
  if (n_folds < 1) PS_FAIL(PS_ERR_INPUT, "cv: the number of folds must be >= 1");
  int64_t *pi;
  PS_ALLOC(pi, n);
  for (int64_t i = 0; i < n; i++) pi[i] = i;
  ps_rng r = ps_rng_make(seed ^ SALT_PERTURBATION_FOLDS, 0);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)uniform_below(&r, (uint64_t)(i + 1)), t = pi[i];
    pi[i] = pi[j];
    pi[j] = t;
  }
  for (int64_t i = 0; i < n; i++) fold[i] = (int32_t)(pi[i] % n_folds);
  free(pi);
  return PS_OK;
}

/* Slot of position p of a stratum: blocks of n_slots positions, a permutation of
 * the slots per block drawn from stream (stratum), counter at the block's start. */
static int32_t slot_of(uint64_t key_seed, int32_t stratum, int64_t p, int n_slots, int32_t *perm) {
  int64_t block = p / n_slots;
  ps_rng r = ps_rng_make(key_seed, (uint64_t)stratum);
  r.counter = (uint64_t)block * (uint64_t)n_slots;
  for (int s = 0; s < n_slots; s++) perm[s] = s;
  for (int s = n_slots - 1; s > 0; s--) {
    int j = (int)uniform_below(&r, (uint64_t)(s + 1));
    int32_t t = perm[s];
    perm[s] = perm[j];
    perm[j] = t;
  }
  return perm[p % n_slots];
}

int cv_alloc_sync(MPI_Comm comm, int ok, const char *what) {
  int err = ok ? PS_OK : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory allocating %s", what);
  return ps_error_sync(comm, err);
}

int ps_cv_stratified_slots(MPI_Comm comm, int64_t n_local, const int32_t *stratum, int32_t n_strata, int n_slots,
                           uint64_t seed, uint64_t salt, int32_t *slot) {
  if (n_slots < 1) PS_FAIL(PS_ERR_INPUT, "cv: need at least one slot");
  int rank;
  MPI_Comm_rank(comm, &rank);
  int64_t *count = calloc((size_t)n_strata + 1, sizeof *count);
  int64_t *before = calloc((size_t)n_strata + 1, sizeof *before);
  int32_t *perm = calloc((size_t)n_slots, sizeof *perm);
  int err = cv_alloc_sync(comm, count && before && perm, "the fold strata");
  if (err) {
    free(count);
    free(before);
    free(perm);
    return err;
  }
  int bad = 0;
  for (int64_t i = 0; i < n_local; i++) {
    if (stratum[i] < 0 || stratum[i] >= n_strata) bad = 1;
    else count[stratum[i]]++;
  }
  PS_CHECK_MPI(MPI_Exscan(count, before, n_strata, MPI_INT64_T, MPI_SUM, comm));
  if (bad) PS_FAIL(PS_ERR_SYSTEM, "cv: a stratum is out of range [0, %d)", n_strata);
  if (rank == 0) memset(before, 0, (size_t)n_strata * sizeof *before);
  uint64_t key_seed = seed ^ salt;
  for (int64_t i = 0; i < n_local; i++) slot[i] = slot_of(key_seed, stratum[i], before[stratum[i]]++, n_slots, perm);
  free(count);
  free(before);
  free(perm);
  return PS_OK;
}

int ps_cv_cell_folds(MPI_Comm comm, const ps_design *design, const int32_t *top_perturbation, int n_folds,
                     uint64_t seed, int32_t *fold) {
  int32_t K = design->n_perturbations, *stratum = calloc((size_t)design->n_cells + 1, sizeof *stratum);
  PS_CALL(cv_alloc_sync(comm, stratum != NULL, "the cells' fold strata"));
  for (int64_t j = 0; j < design->n_cells; j++) {
    if (design->ptr[j + 1] == design->ptr[j]) stratum[j] = K; /* control cells */
    else if (top_perturbation && top_perturbation[j] >= 0) stratum[j] = top_perturbation[j];
    else stratum[j] = design->ids[design->ptr[j]];
  }
  int err = ps_cv_stratified_slots(comm, design->n_cells, stratum, K + 1, n_folds, seed, SALT_CELL_FOLDS, fold);
  free(stratum);
  return ps_error_sync(comm, err); /* a rank's bad stratum stops every rank before the group layout */
}
