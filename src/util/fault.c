/* Fault injection for the reliability tests (tests/fault, docs/reliability.md).
 *
 * SQLite-style: faults are injected on purpose at named points of the pipeline so
 * that a test can kill or stall a rank at a known stage instead of racing the
 * clock. Off unless PERTSCORE_FAULT is set; then it holds one or more
 * comma-separated rules
 *
 *   STAGE:ACTION[@RANK]     ACTION = sleep=SECONDS | kill | exit=CODE | oom[=N]
 *
 * e.g. PERTSCORE_FAULT=score:sleep=30 (every rank sleeps 30 s when it reaches the
 * "score" point) or PERTSCORE_FAULT=score:kill@1 (rank 1 sends itself SIGKILL).
 * "exit" leaves at once with _exit(CODE), without MPI_Finalize or cleanup, like a
 * crash that is not a signal. A rule that does not parse is reported and ignored.
 * STAGE:mpi-error (no rank) makes ps_fault_mpi_error's MPI call at STAGE fail on every
 * rank, to test that MPI errors come back through the one error path. "oom" makes
 * the rank's N-th (default first) counted allocation (PS_ALLOC, ps_calloc...) after STAGE fail, to
 * test that an allocation failure on one rank reaches every rank before a collective. */
#include "pertscore/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int world_rank(void) {
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

static void sleep_seconds(double seconds) {
  struct timespec left = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&left, &left) != 0) { /* EINTR: keep sleeping the rest */
  }
}

/* Apply one rule "STAGE:ACTION[@RANK]" if it names this stage and rank. */
static void apply_rule(char *rule, const char *stage, int rank) {
  char *colon = strchr(rule, ':');
  if (!colon) goto bad;
  *colon = '\0';
  if (strcmp(rule, stage) != 0) return;
  char *action = colon + 1, *at = strchr(action, '@'), *end;
  if (at) {
    *at = '\0';
    long only = strtol(at + 1, &end, 10);
    if (end == at + 1 || *end) goto bad;
    if (only != rank) return;
  }
  if (strncmp(action, "sleep=", 6) == 0) {
    double seconds = strtod(action + 6, &end);
    if (end == action + 6 || *end || !(seconds >= 0) || seconds > 86400) goto bad;
    fprintf(stderr, "pertscore: fault injection: rank %d sleeps %g s at '%s'\n", rank, seconds, stage);
    fflush(stderr);
    sleep_seconds(seconds);
    return;
  }
  if (strcmp(action, "kill") == 0) {
    fprintf(stderr, "pertscore: fault injection: rank %d sends itself SIGKILL at '%s'\n", rank, stage);
    fflush(stderr);
    raise(SIGKILL);
    return;
  }
  if (strcmp(action, "mpi-error") == 0) return; /* ps_fault_mpi_error's */
  if (strncmp(action, "oom", 3) == 0 && (action[3] == '\0' || action[3] == '=')) {
    long nth = action[3] ? strtol(action + 4, &end, 10) : 1;
    if (action[3] && (end == action + 4 || *end || nth < 1)) goto bad;
    fprintf(stderr, "pertscore: fault injection: rank %d fails allocation %ld after '%s'\n", rank, nth, stage);
    ps_alloc_fail_after(nth);
    return;
  }
  if (strncmp(action, "exit=", 5) == 0) {
    long code = strtol(action + 5, &end, 10);
    if (end == action + 5 || *end) goto bad;
    fprintf(stderr, "pertscore: fault injection: rank %d exits with %ld at '%s'\n", rank, code, stage);
    fflush(stderr);
    _exit((int)code);
  }
bad:
  fprintf(stderr, "pertscore: fault injection: ignoring malformed PERTSCORE_FAULT rule at '%s'\n", stage);
}

void ps_fault_point(const char *stage) {
  const char *spec = getenv("PERTSCORE_FAULT");
  if (!spec || !*spec) return;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", spec);
  int rank = world_rank();
  char *save = NULL;
  for (char *rule = strtok_r(buf, ",", &save); rule; rule = strtok_r(NULL, ",", &save)) apply_rule(rule, stage, rank);
}

int ps_fault_mpi_error(const char *stage, MPI_Comm comm) {
  const char *spec = getenv("PERTSCORE_FAULT");
  if (!spec || !*spec) return PS_OK;
  char buf[1024], rule[256];
  snprintf(buf, sizeof buf, "%s", spec);
  snprintf(rule, sizeof rule, "%s:mpi-error", stage);
  char *save = NULL;
  for (char *r = strtok_r(buf, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
    if (strcmp(r, rule) != 0) continue;
    if (world_rank() == 0) fprintf(stderr, "pertscore: fault injection: an MPI call with a negative count at '%s'\n", stage);
    int value = 0;
    /* a negative count is refused by MPI's argument check on every rank, before any message */
    PS_CHECK_MPI(MPI_Bcast(&value, -1, MPI_INT, 0, comm));
  }
  return PS_OK;
}
