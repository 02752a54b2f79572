/* Named counters for benchmarks: a small linear table (a run records a few dozen). */
#include "pertscore/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STATS_MAX = 256, STATS_NAME = 64 };

static struct {
  char name[STATS_NAME];
  double value;
} stats[STATS_MAX];
static int n_stats;

static double *stats_slot(const char *name) {
  for (int i = 0; i < n_stats; i++)
    if (strcmp(stats[i].name, name) == 0) return &stats[i].value;
  if (n_stats == STATS_MAX) return NULL; /* a full table drops new names rather than fail a run */
  snprintf(stats[n_stats].name, STATS_NAME, "%s", name);
  stats[n_stats].value = 0;
  return &stats[n_stats++].value;
}

void ps_stats_add(const char *name, double value) {
  double *v = stats_slot(name);
  if (v) *v += value;
}

void ps_stats_max(const char *name, double value) {
  double *v = stats_slot(name);
  if (v && value > *v) *v = value;
}

void ps_stats_set(const char *name, double value) {
  double *v = stats_slot(name);
  if (v) *v = value;
}

double ps_stats_get(const char *name) {
  for (int i = 0; i < n_stats; i++)
    if (strcmp(stats[i].name, name) == 0) return stats[i].value;
  return 0;
}

void ps_stats_clear(void) { n_stats = 0; }

int ps_stats_write_env(int rank) {
  const char *prefix = getenv("PERTSCORE_STATS");
  if (!prefix || !*prefix) return PS_OK;
  /* whole-process figures: peak RSS (stages reset it, so also the largest stage peak) and MPI totals */
  ps_stats_max("process.peak_rss_bytes", ps_peak_rss_bytes());
  ps_mpi_counts mpi;
  ps_mpi_counts_get(&mpi);
  ps_stats_set("process.mpi_bytes", mpi.bytes);
  ps_stats_set("process.mpi_calls", mpi.calls);
  ps_stats_set("process.mpi_p2p_bytes", mpi.p2p_bytes);
  char path[4096];
  snprintf(path, sizeof path, "%s.rank%d.json", prefix, rank);
  FILE *f = fopen(path, "w");
  if (!f) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot write the statistics file (PERTSCORE_STATS)", path);
  fprintf(f, "{\"rank\": %d", rank);
  for (int i = 0; i < n_stats; i++) fprintf(f, ",\n \"%s\": %.17g", stats[i].name, stats[i].value);
  fprintf(f, "}\n");
  if (fclose(f) != 0) PS_FAIL(PS_ERR_SYSTEM, "%s: write failed", path);
  return PS_OK;
}
