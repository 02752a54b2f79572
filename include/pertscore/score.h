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
  /* SPEC section 9 (--preset accurate); all off by default (the paper, bit for bit) */
  int gene_weights;        /* --gene-weights residual: the weighted QP, w from ps_score_gene_weights */
  const double *weights;   /* with gene_weights: N weights to use instead of computing them from the
                            * design passed to ps_score_cells (run --score-all-cells passes the fit's) */
  const int64_t *own_ptr;  /* --qp-genes own: K + 1 offsets into own_cols; NULL: every regression gene */
  const int32_t *own_cols; /* perturbation k's targets as regression-gene columns (sorted, distinct) */
  const uint8_t *unscored; /* K flags or NULL: a perturbation left without targets (--target-fdr) is not
                            * scored: its entries get PS NaN ("absent") and it is no variable of any QP */
} ps_score_options;

void ps_score_options_default(ps_score_options *o);

/* The arrays of the section 9 options for a dataset (own_ptr/own_cols: each
 * perturbation's targets among the regression genes; unscored: perturbations with
 * none). Fill them into a ps_score_options with ps_score_genes_apply; free with
 * ps_score_genes_free. Not collective (the dataset's targets are the same on every rank). */
typedef struct {
  int64_t *own_ptr;
  int32_t *own_cols;
  uint8_t *unscored;
  int32_t n_unscored;
} ps_score_genes;
int ps_score_genes_build(const ps_dataset *d, ps_score_genes *out);
/* own: --qp-genes own; skip: leave perturbations without targets unscored (--target-fdr
 * or own genes: either way they have no genes of their own). */
void ps_score_genes_apply(const ps_score_genes *g, int own, int skip, ps_score_options *opt);
void ps_score_genes_free(ps_score_genes *g);
/* Rank 0: "warning: N perturbations left without targets are not scored: A, B, ..." */
void ps_score_genes_warn(MPI_Comm comm, const ps_dataset *d, const ps_score_genes *g);

/* --gene-weights residual (SPEC section 9): v_g = mean over the design's cells of
 * (Y_jg - x_j^T B_g)^2 (x_j the cell's ridge row: its basal column and carried
 * perturbations), v_g <- max(v_g, 0.1 median(v)), w_g = (1/v_g) / mean(1/v).
 * w: N doubles (allocated), the same on every rank (sums over ranks: equal across
 * rank counts to rounding). Collective. */
int ps_score_gene_weights(MPI_Comm comm, const ps_design *design, const ps_csr *y, const ps_ridge *ridge, double **w);

typedef struct {
  double *ps;        /* layout of design->ids: PS of local cell j for perturbation ids[ptr[j] + t] */
  double *max_raw;   /* K: maximum raw PS of each perturbation over all cells (all ranks) */
  uint8_t *rescaled; /* K: 1 if that perturbation was divided by its maximum */
  int32_t n_not_rescaled; /* perturbations whose maximum was below 0.01 (warned, left unscaled) */
  double max_kkt;    /* worst relative projected gradient over all cells (all ranks) */
  int64_t n_qp;      /* QPs solved over all ranks */
  int64_t n_tao;     /* of them, QPs the direct method left to TAO (all ranks) */
  double *weights;   /* --gene-weights residual: the N gene weights used (NULL otherwise) */
  int64_t n_unscored_entries; /* entries left NaN: perturbations without targets (all ranks) */
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
