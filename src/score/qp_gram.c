/* The small dense system of one cell's QP (SPEC.md section 3): H = B_S B_S^T and
 * c = B_S r in one pass, as the Gram matrix of the rows [B_S; r].
 *
 * Why a kernel of its own: at genome scale (jurkat: |S| ~ 13, N = 374 genes) this
 * is ~40,000 multiply-adds per cell against a few hundred for the QP itself, and
 * pairs of perturbations almost never repeat across cells (18,595^2 / 2 pairs for
 * 586,000 x 78 uses), so nothing can be precomputed but the rows' norms. Rows are
 * taken where they lie in beta (no gather copy); 2 x 2 tiles of rows with four
 * independent partial sums per dot keep loads at one per multiply-add and let the
 * compiler use SIMD registers without reassociating a sum (plain C, no -ffast-math).
 * The four partial sums make the result differ from a sequential dot by rounding
 * only (1e-16 relative to |B_a| |B_b|).
 *
 * Measured (tools/bench/qp_bench.c, jurkat shape): compiled for plain x86-64 (SSE2)
 * the kernel does ~2.4 G multiply-adds/s; an AVX2 clone of the same C code, chosen
 * at load time (GCC target_clones), ~2.7x more, with bit-identical results (same
 * four lanes, same order of additions; no FMA, which would round differently). At
 * that rate the rows' trip from memory shows (beta is 55 MB at jurkat scale and
 * each cell reads 13 random rows): ps_qp_prefetch_rows lets the caller ask for the
 * next cell's rows while it works on this one (+30% in the same measurement). */
#include "qp_internal.h"

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PS_GRAM_CLONES __attribute__((target_clones("avx2", "default")))
#define PS_GRAM_INLINE inline __attribute__((always_inline)) /* compiled into each clone */
#else
#define PS_GRAM_CLONES
#define PS_GRAM_INLINE inline
#endif

/* Dots of rows (a0, a1) with rows (b0, b1) over n entries; out[2 i + j] = a_i . b_j. */
static PS_GRAM_INLINE void tile_2x2(const double *a0, const double *a1, const double *b0, const double *b1, int n, double *out) {
  double s00[4] = {0}, s01[4] = {0}, s10[4] = {0}, s11[4] = {0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; l++) {
      s00[l] += a0[i + l] * b0[i + l];
      s01[l] += a0[i + l] * b1[i + l];
      s10[l] += a1[i + l] * b0[i + l];
      s11[l] += a1[i + l] * b1[i + l];
    }
  for (; i < n; i++) {
    s00[0] += a0[i] * b0[i];
    s01[0] += a0[i] * b1[i];
    s10[0] += a1[i] * b0[i];
    s11[0] += a1[i] * b1[i];
  }
  out[0] = (s00[0] + s00[1]) + (s00[2] + s00[3]);
  out[1] = (s01[0] + s01[1]) + (s01[2] + s01[3]);
  out[2] = (s10[0] + s10[1]) + (s10[2] + s10[3]);
  out[3] = (s11[0] + s11[1]) + (s11[2] + s11[3]);
}

PS_GRAM_CLONES void ps_qp_gram(int m, const double *const *rows, int n, const double *zero_row, double *g) {
  double t[4];
  for (int a = 0; a < m; a += 2) {
    const double *a0 = rows[a], *a1 = a + 1 < m ? rows[a + 1] : zero_row;
    for (int b = 0; b <= a; b += 2) {
      const double *b0 = rows[b], *b1 = b + 1 < m ? rows[b + 1] : zero_row;
      tile_2x2(a0, a1, b0, b1, n, t);
      g[(size_t)a * m + b] = g[(size_t)b * m + a] = t[0];
      if (b + 1 < m) g[(size_t)a * m + b + 1] = g[(size_t)(b + 1) * m + a] = t[1];
      if (a + 1 < m) {
        g[(size_t)(a + 1) * m + b] = g[(size_t)b * m + a + 1] = t[2];
        if (b + 1 < m) g[(size_t)(a + 1) * m + b + 1] = g[(size_t)(b + 1) * m + a + 1] = t[3];
      }
    }
  }
}

void ps_qp_prefetch_rows(int m, const double *const *rows, int n) {
#if defined(__GNUC__)
  for (int a = 0; a < m; a++)
    for (int i = 0; i < n; i += 8) __builtin_prefetch(rows[a] + i, 0, 3); /* 8 doubles: one cache line */
#else
  (void)m, (void)rows, (void)n;
#endif
}
