/* The one error path (STYLE.md: PETSc-like checking macros). */
#include "pertscore/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char error_message[4096];
static char error_where[1024];
static char cleanup_paths[4][4096]; /* OUTPUT.partial and its sibling partials (the TSV summaries) */
static int n_cleanup_paths = 0;

int ps_error_set(int code, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(error_message, sizeof error_message, fmt, ap);
  va_end(ap);
  snprintf(error_where, sizeof error_where, "%s:%d", file, line);
  return code;
}

int ps_error_trace(int code, const char *file, int line) {
  size_t used = strlen(error_where);
  if (used + 8 < sizeof error_where)
    snprintf(error_where + used, sizeof error_where - used, " <- %s:%d", file, line);
  return code;
}

const char *ps_error_message(void) { return error_message; }
const char *ps_error_where(void) { return error_where; }
void ps_error_clear(void) { error_message[0] = error_where[0] = '\0'; }

int ps_error_mpi(int mpi_code, const char *call, const char *file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(mpi_code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", mpi_code);
  return ps_error_set(PS_ERR_SYSTEM, file, line, "MPI call failed (%s): %s", text, call);
}

int ps_error_sync(MPI_Comm comm, int err) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int mine = err ? rank : size, first = size;
  if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) return PS_ERR_SYSTEM;
  if (first == size) return PS_OK;
  int code = err;
  MPI_Bcast(&code, 1, MPI_INT, first, comm);
  MPI_Bcast(error_message, (int)sizeof error_message, MPI_CHAR, first, comm);
  MPI_Bcast(error_where, (int)sizeof error_where, MPI_CHAR, first, comm);
  return code;
}

void ps_cleanup_register(const char *path) {
  if (n_cleanup_paths < 4) snprintf(cleanup_paths[n_cleanup_paths++], sizeof cleanup_paths[0], "%s", path);
}
void ps_cleanup_unregister(void) { n_cleanup_paths = 0; }

void ps_die(MPI_Comm comm, int err, int collective) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  for (int i = 0; i < n_cleanup_paths; i++) unlink(cleanup_paths[i]);
  if (!collective || rank == 0) {
    fprintf(stderr, "pertscore: error: %s\n", error_message);
    if (getenv("PERTSCORE_DEBUG")) fprintf(stderr, "pertscore:   at %s\n", error_where);
    fflush(stderr);
  }
  if (collective) {
    MPI_Barrier(comm);
    MPI_Finalize();
    exit(err ? err : 1);
  }
  MPI_Abort(comm, err ? err : 1);
  exit(err ? err : 1);
}
