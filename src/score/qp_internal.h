/* Internal to src/score: the exact active-set finish of a box QP (qp_polish.c). */
#ifndef PERTSCORE_SCORE_QP_INTERNAL_H
#define PERTSCORE_SCORE_QP_INTERNAL_H

/* Refine a feasible x (0 <= x <= upper) of min 1/2 x'Hx - c'x + lambda 1'x to the
 * exact optimum by primal active-set iterations started from the face x lies on.
 * work: d*d + 3*d doubles, iwork: 3*d ints (no allocation inside).
 * Returns the iterations used, or -1 if the iteration cap was reached (x is then
 * still feasible and no worse than the input in objective). */
int ps_qp_polish(int d, const double *h, const double *c, double lambda, double upper, double *x,
                 double *work, int *iwork);

#endif
