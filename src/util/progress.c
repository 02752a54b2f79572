/* Progress lines on rank 0: stage, percent, elapsed. */
#include "pertscore/util.h"

#include <stdio.h>
#include <string.h>

double ps_wtime(void) { return MPI_Wtime(); }

void ps_progress_init(ps_progress *p, MPI_Comm comm, int quiet) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  memset(p, 0, sizeof *p);
  p->enabled = !quiet && rank == 0;
  p->t_start = p->t_stage = ps_wtime();
}

void ps_progress_stage(ps_progress *p, const char *stage) {
  p->stage = stage;
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
  if (p->enabled) {
    fprintf(stderr, "pertscore: %-8s 100%%  elapsed %7.1fs  (stage %.2fs)\n", p->stage, now - p->t_start, spent);
    fflush(stderr);
  }
  return spent;
}
