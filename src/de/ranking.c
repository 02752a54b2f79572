/* Every perturbation's test of one gene from one ranking (SPEC.md section 1;
 * docs/method.md "One ranking per gene").
 *
 * Test k compares P_k with C_k = R + A_k - D_k (R the reference: controls, or all
 * analysed cells with --de-background others; A_k cells of X that carry a control
 * guide; D_k cells removed from R). Sorting the stored values of every cell that is in
 * some test once, and walking the blocks of equal values in ascending order, each test
 * sees its cells' values in order without a sort of its own:
 *   W_k = sum over P_k's cells of (#C_k < v + #C_k == v / 2)
 *       (the rank sum minus n1 (n1 + 1) / 2: P's ranks among themselves cancel),
 *   #C_k < v = #R < v + #A_k < v - #D_k < v, running counts of the walk,
 *   tie sum of P_k + C_k = T(R) + sum over blocks holding cells of test k of
 *       f(c_v + a_v - d_v + p_v) - f(c_v),   f(t) = t^3 - t,
 * and the zeros (never stored) are one block in closed form: with z_P, z_C the zeros
 * of P_k and C_k and n_C^- the stored negative values of C_k, W_k gains
 * z_C for each stored positive value of P_k and z_P (n_C^- + z_C / 2), the tie sum
 * f(z_C + z_P) - f(z_R). A gene then costs one radix sort of its stored values, one
 * pass over them with their cells' test memberships, and O(K) to finish the tests.
 *
 * Bit for bit ps_de_test_gene_ref on the same groups: W is a sum of half-integers and
 * the tie sums integers below 2^64 (exact in double / long double); T(R) is rounded to
 * double first as ps_de_ref stores it; the expm1 sums are the same compensated sums in
 * the same order (R's in ascending value order, the small groups' in the order given). */
#include "pertscore/de.h"

#include "de_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int64_t np, na, nd;          /* stored (nonzero) values of P, A, D */
  int64_t pos_p, pos_a, pos_d; /* of them > 0 */
  int64_t neg_a, neg_d;        /* of them < 0 (C's side) */
  int64_t below_a, below_d;    /* A's, D's values in blocks already walked */
  int64_t bp, ba, bd;          /* in the current block */
  double w;                    /* W over stored values, before the zero block */
  long double ties;            /* change of the tie sum over stored blocks */
  ps_de_dsum sp, sa, sd;       /* sums of expm1 */
} test_state;

typedef struct {
  int64_t nnz, pos, neg, below, b;
  long double ties; /* over stored blocks */
  ps_de_dsum sum;
} ref_state;

struct ps_de_rank_work {
  test_state *t;
  ref_state *r;
  int32_t *touched_t, *touched_r;
  uint8_t *mark_t, *mark_r;
  double *v, *e;
  int64_t *index;
  int32_t *c;
  int64_t cap;
};

int ps_de_rank_work_create(const ps_de_layout *L, ps_de_rank_work **out) {
  ps_de_rank_work *w;
  PS_ALLOC(w, 1);
  *out = w;
  PS_ALLOC(w->t, L->n_tests);
  PS_ALLOC(w->r, L->n_refs);
  PS_ALLOC(w->touched_t, L->n_tests);
  PS_ALLOC(w->touched_r, L->n_refs);
  PS_ALLOC(w->mark_t, L->n_tests);
  PS_ALLOC(w->mark_r, L->n_refs);
  return PS_OK;
}

void ps_de_rank_work_free(ps_de_rank_work *w) {
  if (!w) return;
  free(w->t), free(w->r), free(w->touched_t), free(w->touched_r), free(w->mark_t), free(w->mark_r);
  free(w->v), free(w->e), free(w->index), free(w->c);
  free(w);
}

static int reserve(ps_de_rank_work *w, int64_t n) {
  if (n <= w->cap) return PS_OK;
  free(w->v), free(w->e), free(w->index), free(w->c);
  w->cap = 0;
  PS_ALLOC(w->v, n);
  PS_ALLOC(w->e, n);
  PS_ALLOC(w->index, n);
  PS_ALLOC(w->c, n);
  w->cap = n;
  return PS_OK;
}

int ps_de_test_gene_layout(const ps_de_layout *L, const int32_t *cell, const double *value, int64_t nnz,
                           double min_pct, ps_de_rank_work *w, ps_de_gene *out, uint8_t *tested) {
  const int32_t K = L->n_tests;
  PS_CALL(reserve(w, nnz));
  memset(w->t, 0, (size_t)K * sizeof *w->t);
  memset(w->r, 0, (size_t)L->n_refs * sizeof *w->r);
  /* 1. the stored values of cells in some test, in the order given: counts and the
   *    small groups' sums (the order ps_de_test_gene_ref adds them in) */
  int64_t m = 0;
  for (int64_t i = 0; i < nnz; i++) {
    double v = value[i];
    int32_t c = cell[i];
    if (!isfinite(v)) PS_FAIL(PS_ERR_INPUT, "DE test: non-finite value %g of cell %d", v, c);
    if (c < 0 || c >= L->n_cells) PS_FAIL(PS_ERR_INPUT, "DE test: cell %d of %lld", c, (long long)L->n_cells);
    if (v == 0.0) continue; /* a stored zero is a zero */
    int32_t rf = L->in_ref[c];
    if (rf < 0 && L->role_ptr[c] == L->role_ptr[c + 1]) continue;
    double e = expm1(v);
    if (rf >= 0) {
      ref_state *r = &w->r[rf];
      r->nnz++, r->pos += v > 0, r->neg += v < 0;
    }
    for (int64_t q = L->role_ptr[c]; q < L->role_ptr[c + 1]; q++) {
      if (L->roles[q] < 0 || L->roles[q] / PS_DE_N_ROLES >= K)
        PS_FAIL(PS_ERR_INPUT, "DE test: cell %d has membership %d of %d tests", c, L->roles[q], K);
      test_state *t = &w->t[L->roles[q] / PS_DE_N_ROLES];
      switch (L->roles[q] % PS_DE_N_ROLES) {
        case PS_DE_ROLE_P: t->np++, t->pos_p += v > 0, ps_de_dsum_add(&t->sp, e); break;
        case PS_DE_ROLE_ADD: t->na++, t->pos_a += v > 0, t->neg_a += v < 0, ps_de_dsum_add(&t->sa, e); break;
        default: t->nd++, t->pos_d += v > 0, t->neg_d += v < 0, ps_de_dsum_add(&t->sd, e); break;
      }
    }
    w->v[m] = v, w->e[m] = e, w->c[m] = c;
    m++;
  }
  /* 2. one sort */
  if (ps_de_sort_values(w->v, m, w->index))
    PS_FAIL(PS_ERR_SYSTEM, "out of memory sorting %lld values of a gene", (long long)m);
  /* 3. the walk, one block of equal values at a time */
  for (int64_t i = 0, j; i < m; i = j) {
    const double v = w->v[i];
    int32_t nt = 0, nr = 0;
    for (j = i; j < m && w->v[j] == v; j++) {
      int64_t at = w->index[j];
      int32_t c = w->c[at];
      int32_t rf = L->in_ref[c];
      if (rf >= 0) {
        ref_state *r = &w->r[rf];
        r->b++;
        ps_de_dsum_add(&r->sum, w->e[at]); /* ascending, as ps_de_ref_build sums */
        if (!w->mark_r[rf]) w->mark_r[rf] = 1, w->touched_r[nr++] = rf;
      }
      for (int64_t q = L->role_ptr[c]; q < L->role_ptr[c + 1]; q++) {
        int32_t k = L->roles[q] / PS_DE_N_ROLES;
        test_state *t = &w->t[k];
        switch (L->roles[q] % PS_DE_N_ROLES) {
          case PS_DE_ROLE_P: t->bp++; break;
          case PS_DE_ROLE_ADD: t->ba++; break;
          default: t->bd++; break;
        }
        if (!w->mark_t[k]) w->mark_t[k] = 1, w->touched_t[nt++] = k;
      }
    }
    int err = PS_OK;
    for (int32_t x = 0; x < nt; x++) {
      int32_t k = w->touched_t[x];
      test_state *t = &w->t[k];
      const ref_state *r = &w->r[L->ref_of ? L->ref_of[k] : 0];
      int64_t equal = r->b + t->ba - t->bd, less = r->below + t->below_a - t->below_d;
      if (equal < 0) err = PS_ERR_INPUT;
      double k1 = (double)t->bp;
      t->w += k1 * (double)less + k1 * (double)equal / 2;
      if (equal + t->bp > 1 || r->b > 1) /* f(0) = f(1) = 0: most blocks of distinct values */
        t->ties += ps_de_tie_delta((double)r->b, (double)(equal + t->bp));
      t->below_a += t->ba, t->below_d += t->bd;
      t->bp = t->ba = t->bd = 0;
      w->mark_t[k] = 0;
    }
    for (int32_t x = 0; x < nr; x++) {
      ref_state *r = &w->r[w->touched_r[x]];
      double b = (double)r->b;
      if (r->b > 1) r->ties += (long double)b * b * b - b;
      r->below += r->b;
      r->b = 0;
      w->mark_r[w->touched_r[x]] = 0;
    }
    if (err)
      PS_FAIL(PS_ERR_INPUT, "DE test: cells removed from C with value %g are not in the reference group", v);
  }
  /* 4. each test: the zero block, pct, log2FC, p */
  for (int32_t k = 0; k < K; k++) {
    const test_state *t = &w->t[k];
    const int32_t rk = L->ref_of ? L->ref_of[k] : 0;
    const ref_state *r = &w->r[rk];
    const int64_t *size = L->size + (int64_t)PS_DE_N_ROLES * k;
    int64_t n1 = size[PS_DE_ROLE_P], n2 = L->ref_size[rk] + size[PS_DE_ROLE_ADD] - size[PS_DE_ROLE_REMOVE];
    tested[k] = 0;
    if (n1 < 1 || n2 < 1) continue;
    int64_t zr = L->ref_size[rk] - r->nnz, zp = n1 - t->np, zc = n2 - (r->nnz + t->na - t->nd);
    if (zr < 0 || zp < 0 || zc < 0)
      PS_FAIL(PS_ERR_INPUT, "DE test %d: more stored values than cells (reference %lld of %lld, P %lld of %lld, "
              "C %lld of %lld)", k, (long long)r->nnz, (long long)L->ref_size[rk], (long long)t->np, (long long)n1,
              (long long)(r->nnz + t->na - t->nd), (long long)n2);
    double pct1 = ps_de_round3((double)t->pos_p / (double)n1);
    double pct2 = ps_de_round3((double)(r->pos + t->pos_a - t->pos_d) / (double)n2);
    if (!(fmax(pct1, pct2) >= min_pct)) continue;
    ps_de_dsum sum_c = r->sum;
    ps_de_dsum_add(&sum_c, t->sa.hi), ps_de_dsum_add(&sum_c, t->sa.lo);
    ps_de_dsum_add(&sum_c, -t->sd.hi), ps_de_dsum_add(&sum_c, -t->sd.lo);
    double mean1 = (t->sp.hi + t->sp.lo) / (double)n1, mean2 = (sum_c.hi + sum_c.lo) / (double)n2;
    double neg_c = (double)(r->neg + t->neg_a - t->neg_d);
    double w_k = t->w + (double)t->pos_p * (double)zc + (double)zp * neg_c + (double)zp * (double)zc / 2;
    double fzr = (double)zr;
    long double ref_ties = r->ties + ((long double)fzr * fzr * fzr - fzr);
    long double ties = (long double)(double)ref_ties + t->ties + ps_de_tie_delta(fzr, (double)(zc + zp));
    out[k].pct1 = pct1;
    out[k].pct2 = pct2;
    out[k].log2fc = log2(mean1 + 1.0) - log2(mean2 + 1.0); /* as in ps_de_test_gene */
    out[k].p = ps_de_wilcoxon_p(n1, n2, w_k, (double)ties);
    tested[k] = 1;
  }
  return PS_OK;
}
