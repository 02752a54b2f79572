/* Allocation that a test can make fail (tests/fault, the OOM tests): every
 * PS_ALLOC and ps_calloc / ps_malloc / ps_strdup goes through here, so "the n-th
 * allocation from now fails" reaches any module without compiling its source into
 * the test. Off (one compare) unless armed by ps_alloc_fail_after or by the fault
 * rule STAGE:oom[@RANK] (src/util/fault.c). */
#include "pertscore/util.h"

#include <stdlib.h>
#include <string.h>

static long fail_countdown = 0; /* 0: off; n > 0: the n-th counted allocation fails */

void ps_alloc_fail_after(long n) { fail_countdown = n > 0 ? n : 0; }

int ps_alloc_fail_pending(void) { return fail_countdown > 0; }

static int fails_now(void) { return fail_countdown > 0 && --fail_countdown == 0; }

void *ps_calloc(size_t n, size_t size) {
  if (fails_now()) return NULL;
  return calloc(n ? n : 1, size ? size : 1);
}

void *ps_malloc(size_t size) {
  if (fails_now()) return NULL;
  return malloc(size ? size : 1);
}

char *ps_strdup(const char *s) {
  if (fails_now()) return NULL;
  return strdup(s);
}
