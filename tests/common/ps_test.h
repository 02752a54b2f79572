/* What every C test program shares: failure counting, a check of pertscore's return
 * codes, allocation that cannot fail quietly, and a deterministic random generator.
 * Header-only: each test is one translation unit.
 *
 * EXPECT counts a failure and goes on rather than jumping out of the test (as
 * cmocka's asserts do): on P ranks every rank must still reach the same
 * collectives, or one failed check would hang the others instead of failing. */
#ifndef PS_TEST_H
#define PS_TEST_H

#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "pertscore/util.h"

/* failed and made checks */
static int failures __attribute__((unused)) = 0, checks __attribute__((unused)) = 0;

/* This process's rank in MPI_COMM_WORLD while MPI runs, else 0: for messages. */
static inline int test_rank(void) {
  int started = 0, finished = 0, rank = 0;
  MPI_Initialized(&started);
  MPI_Finalized(&finished);
  if (started && !finished) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

#define EXPECT(cond, ...)                                                         \
  do {                                                                            \
    checks++;                                                                     \
    if (!(cond)) {                                                                \
      failures++;                                                                 \
      fprintf(stderr, "FAIL rank %d %s:%d: ", test_rank(), __FILE__, __LINE__);   \
      fprintf(stderr, __VA_ARGS__);                                               \
      fprintf(stderr, "\n");                                                      \
    }                                                                             \
  } while (0)

/* End the whole job now (every rank, under mpirun). */
static inline void test_abort(void) {
  int started = 0;
  MPI_Initialized(&started);
  if (started) MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1);
}

/* A pertscore call that must succeed: on failure print its message and where, and exit. */
#define CHECK_PS(expr)                                                                                   \
  do {                                                                                                   \
    int e_ = (expr);                                                                                     \
    if (e_) {                                                                                            \
      fprintf(stderr, "FAIL %s:%d: %s -> %s (at %s)\n", __FILE__, __LINE__, #expr, ps_error_message(), \
              ps_error_where());                                                                         \
      test_abort();                                                                                      \
    }                                                                                                    \
  } while (0)

static inline void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "FAIL: out of memory (%zu x %zu bytes)\n", n, size);
    test_abort();
  }
  return p;
}

/* xorshift64 uniform in (0, 1) and a Box-Muller normal: the same numbers on every
 * rank and every machine, so a test's data need no communication. */
static uint64_t test_rng_state __attribute__((unused)) = 0x9e3779b97f4a7c15ull;
static inline void test_rng_seed(uint64_t seed) { test_rng_state = seed; }
static inline double unif(void) {
  test_rng_state ^= test_rng_state << 13;
  test_rng_state ^= test_rng_state >> 7;
  test_rng_state ^= test_rng_state << 17;
  return ((test_rng_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static inline double normal(void) { return sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif()); }

#endif
