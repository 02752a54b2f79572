/* Progress lines on rank 0: stage, percent, elapsed; per-stage statistics on every rank. */
#include "pertscore/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double ps_wtime(void) { return MPI_Wtime(); }

double ps_cpu_seconds(void) {
  struct timespec t;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) != 0) return 0;
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double ps_peak_rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kib = 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) {
      kib = strtod(line + 6, NULL);
      break;
    }
  fclose(f);
  return kib * 1024.0;
}

void ps_peak_rss_reset(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w"); /* "5": reset the peak RSS (Linux >= 4.0) */
  if (!f) return;
  fputs("5", f);
  fclose(f);
}

/* Statistics of the open stage: seconds, peak RSS since its start, MPI traffic. */
static void stage_record(ps_progress *p, double seconds) {
  if (!p->in_stage || !p->stage) return;
  p->in_stage = 0;
  ps_log_stage_pop(p->log_stage_pushed);
  p->log_stage_pushed = 0;
  char name[96];
  ps_mpi_counts now;
  ps_mpi_counts_get(&now);
  double peak = ps_peak_rss_bytes();
  snprintf(name, sizeof name, "%s.seconds", p->stage);
  ps_stats_add(name, seconds);
  snprintf(name, sizeof name, "%s.cpu_seconds", p->stage);
  ps_stats_add(name, ps_cpu_seconds() - p->cpu_at_stage);
  snprintf(name, sizeof name, "%s.peak_rss_bytes", p->stage);
  ps_stats_max(name, peak);
  ps_stats_max("process.peak_rss_bytes", peak);
  snprintf(name, sizeof name, "%s.mpi_bytes", p->stage);
  ps_stats_add(name, now.bytes - p->mpi_at_stage.bytes);
  snprintf(name, sizeof name, "%s.mpi_calls", p->stage);
  ps_stats_add(name, now.calls - p->mpi_at_stage.calls);
  snprintf(name, sizeof name, "%s.mpi_p2p_bytes", p->stage);
  ps_stats_add(name, now.p2p_bytes - p->mpi_at_stage.p2p_bytes);
  /* with PERTSCORE_STATS, rewrite the file now: a benchmark stopped in a later stage keeps these */
  int rank = 0, up = 0;
  MPI_Initialized(&up);
  if (up) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (ps_stats_write_env(rank) != PS_OK) ps_error_clear(); /* statistics never fail a run */
}

void ps_progress_init(ps_progress *p, MPI_Comm comm, int quiet) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  memset(p, 0, sizeof *p);
  p->enabled = !quiet && rank == 0;
  p->t_start = p->t_stage = ps_wtime();
}

void ps_progress_stage(ps_progress *p, const char *stage) {
  stage_record(p, ps_wtime() - p->t_stage); /* a stage left open ends here */
  ps_stats_max("process.peak_rss_bytes", ps_peak_rss_bytes());
  ps_peak_rss_reset();
  ps_mpi_counts_get(&p->mpi_at_stage);
  p->cpu_at_stage = ps_cpu_seconds();
  p->in_stage = 1;
  p->stage = stage;
  p->log_stage_pushed = ps_log_stage_push(stage);
  p->t_stage = ps_wtime();
  p->last_percent = -1;
  if (p->enabled) {
    fprintf(stderr, "pertscore: %-8s   0%%  elapsed %7.1fs\n", stage, p->t_stage - p->t_start);
    fflush(stderr);
  }
}

void ps_progress_update(ps_progress *p, double fraction) {
  int percent = (int)(fraction * 100.0);
  if (!p->enabled || percent < p->last_percent + 10 || percent >= 100) return;
  p->last_percent = percent;
  double now = ps_wtime(), spent = now - p->t_stage;
  double eta = fraction > 0 ? spent * (1.0 - fraction) / fraction : 0.0;
  fprintf(stderr, "pertscore: %-8s %3d%%  elapsed %7.1fs  eta %6.1fs\n", p->stage, percent, now - p->t_start, eta);
  fflush(stderr);
}

double ps_progress_done(ps_progress *p) {
  double now = ps_wtime(), spent = now - p->t_stage;
  stage_record(p, spent);
  if (p->enabled) {
    fprintf(stderr, "pertscore: %-8s 100%%  elapsed %7.1fs  (stage %.2fs)\n", p->stage, now - p->t_start, spent);
    fflush(stderr);
  }
  return spent;
}
