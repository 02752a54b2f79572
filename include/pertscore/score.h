/* pertscore/score.h: per-cell perturbation scores (SPEC.md section 3).
 *
 * For each analysed cell j with perturbation set S_j and residual r_j = y_j - B_0:
 *   minimize 1/2 || r_j - sum_{k in S_j} psi_k B_k ||^2 + lambda sum_k psi_k
 *   subject to 0 <= psi_k <= U,
 * i.e. the QP  1/2 psi^T H psi - c^T psi + lambda 1^T psi  with H = B_S B_S^T and
 * c = B_S r_j, solved by a direct active-set method with a KKT check, and by
 * PETSc/TAO for the cells where that check fails (src/score/qp.c). Raw PS = psi / U,
 * then rescaled per perturbation by its maximum over cells.
 * Statistics (ps_stats_*, per rank): qp.cells, qp.seconds, qp.fallback_cells (QPs
 * TAO solved), qp.max_kkt. */
#ifndef PERTSCORE_SCORE_H
#define PERTSCORE_SCORE_H

#include "pertscore/data.h"
#include "pertscore/ridge.h"

typedef struct {
  double lambda;    /* --lambda, default 0.01 (the paper) */
  double upper;     /* --upper U, default 3 (the reference scale_factor) */
  int rescale;      /* 0 with --no-rescale */
  double tolerance; /* relative projected-gradient tolerance of each QP */
} ps_score_options;

void ps_score_options_default(ps_score_options *o);

typedef struct {
  double *ps;        /* layout of design->ids: PS of local cell j for perturbation ids[ptr[j] + t] */
  double *max_raw;   /* K: maximum raw PS of each perturbation over all cells (all ranks) */
  uint8_t *rescaled; /* K: 1 if that perturbation was divided by its maximum */
  int32_t n_not_rescaled; /* perturbations whose maximum was below 0.01 (warned, left unscaled) */
  double max_kkt;    /* worst relative projected gradient over all cells (all ranks) */
  int64_t n_qp;      /* QPs solved over all ranks */
  int64_t n_tao;     /* of them, QPs the direct method left to TAO (all ranks) */
} ps_scores;

int ps_score_cells(MPI_Comm comm, const ps_design *design, const ps_csr *y, const ps_ridge *ridge,
                   const ps_score_options *opt, ps_progress *progress, ps_scores *out);
void ps_scores_free(ps_scores *s);

/* One QP of dimension dim (row-major dim x dim hessian), kept public for tests.
 * The direct active-set method first; TAO if its KKT residual misses the
 * tolerance. A solver caches its scratch and TAO objects per dimension, so solving
 * many cells does no per-cell allocation. */
typedef struct ps_qp_solver ps_qp_solver;
int ps_qp_solver_create(ps_qp_solver **out);
int ps_qp_solve(ps_qp_solver *solver, int dim, const double *hessian, const double *linear,
                double lambda, double upper, double *psi);
/* max_i |projected gradient_i| / max(1e-300, scale), where scale = max_i |c_i| + lambda
 * (the size of the gradient at psi = 0). */
double ps_qp_kkt_residual(int dim, const double *hessian, const double *linear, double lambda,
                          double upper, const double *psi);
void ps_qp_solver_destroy(ps_qp_solver **solver);
/* Relative KKT tolerance a solve must meet (default 1e-6); above it the QP goes
 * from the direct method to TAO, then to a second TAO method, then is reported as
 * an error. */
void ps_qp_solver_set_tolerance(ps_qp_solver *solver, double tolerance);
/* Solves so far, how many needed the second TAO method, total TAO iterations, and how
 * many answers the exact active-set finish moved (any pointer may be NULL). */
void ps_qp_solver_counts(const ps_qp_solver *solver, int64_t *n_solves, int64_t *n_fallback,
                         int64_t *n_iterations, int64_t *n_polished);
/* Solves the direct method handed to TAO (its KKT check failed). */
int64_t ps_qp_solver_tao_solves(const ps_qp_solver *solver);

#endif
