/* Internal to src/score: the exact active-set finish of a box QP (qp_polish.c). */
#ifndef PERTSCORE_SCORE_QP_INTERNAL_H
#define PERTSCORE_SCORE_QP_INTERNAL_H

/* Refine a feasible x (0 <= x <= upper) of min 1/2 x'Hx - c'x + lambda 1'x to the
 * exact optimum by primal active-set iterations started from the face x lies on.
 * work: d*d + 3*d doubles, iwork: 3*d ints (no allocation inside).
 * max_iterations: the cap, 0 for the default 4 d + 10 (a face is visited at most
 * once, and in practice 1-3 faces are).
 * Returns the iterations used, or -1 if the iteration cap was reached (x is then
 * still feasible and no worse than the input in objective). */
int ps_qp_polish(int d, const double *h, const double *c, double lambda, double upper, double *x,
                 double *work, int *iwork, int max_iterations);

/* g = the m x m Gram matrix (row-major, full) of rows[0..m), each n long: with rows
 * B_S and last the residual r, g holds H = B_S B_S^T and, in its last row, c = B_S r.
 * zero_row: n zeros (stands in for the missing partner when m is odd). qp_gram.c. */
void ps_qp_gram(int m, const double *const *rows, int n, const double *zero_row, double *g);
/* Hint the cache to fetch rows[0..m) (n doubles each) soon; no effect on results. */
void ps_qp_prefetch_rows(int m, const double *const *rows, int n);

/* The cell loop of SPEC section 9 (score_method.c): the QP of cell j over G_j (its
 * perturbations' targets with --qp-genes own, else every regression gene), weighted by
 * w (NULL: all 1), perturbations in opt->unscored left out (their entries NaN). Fills
 * out->ps (raw), out->max_raw (local), out->max_kkt, out->n_qp, out->n_unscored_entries. */
#include "pertscore/score.h"
int ps_score_local_method(const ps_design *design, const ps_csr *y, const ps_ridge *ridge, const ps_score_options *opt,
                          const double *w, ps_progress *progress, ps_qp_solver *solver, ps_scores *out);
/* 1 when any section 9 scoring option is set (the general cell loop runs). */
int ps_score_method_active(const ps_score_options *opt);

#endif
