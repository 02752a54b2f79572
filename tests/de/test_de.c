/* Unit test of target-gene selection (SPEC.md section 1).
 *
 * Check 1: ps_de_test_gene and the reference-group path (controls; controls plus
 *   added cells; all cells minus P) against R on the committed cases of
 *   wilcoxon_cases.tsv (made by make_expected.R): p of wilcox.test(exact = FALSE)
 *   and log2FC to 1e-10 relative, pct exactly; each case is fed in three sparse
 *   forms (zeros dropped, all values stored, some zeros stored explicitly).
 *   Then the paths against each other on random genes up to 20000 cells.
 * Check 2: ps_de_select on constructed per-gene results: the adaptive threshold
 *   (1, 2 and 3 selections), the max_targets cap with its tie rules, the min_pct
 *   filter and the exclusion of the perturbed gene. */
#include "pertscore/de.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

#ifndef DE_CASES
#error "DE_CASES must name wilcoxon_cases.tsv"
#endif

/* ---------------- check 1: one gene against R ---------------- */

static double rel_err(double got, double want) {
  if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0 : INFINITY;
  if (want == got) return 0;
  return fabs(got - want) / fabs(want);
}

/* Parse "a,b,c" into a malloc'ed array; returns the count. */
static int64_t parse_list(char *s, double **out) {
  int64_t n = 1;
  for (char *c = s; *c; c++) n += *c == ',';
  double *v = malloc((size_t)n * sizeof *v);
  int64_t i = 0;
  for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) v[i++] = strtod(tok, NULL);
  *out = v;
  return i;
}

/* Sparse form of a dense group: mode 0 drops every zero, mode 1 stores all
 * values, mode 2 stores every other zero explicitly. */
static int64_t sparsify(const double *dense, int64_t n, int mode, double *sparse) {
  int64_t k = 0, zeros = 0;
  for (int64_t i = 0; i < n; i++) {
    if (dense[i] != 0 || mode == 1 || (mode == 2 && zeros++ % 2 == 0)) sparse[k++] = dense[i];
  }
  return k;
}

enum { N_PATHS = 5 };
static const char *path_name[N_PATHS] = {"ps_de_test_gene", "ref (controls)", "ref + add (quirk)",
                                         "ref - remove (others)", "complement (others, ranked once)"};

/* One gene through path k on a sparse form (mode) of dense x (P) and y (C). */
static ps_de_gene run_path(int k, int mode, const double *x, int64_t n1, const double *y, int64_t n2,
                           ps_de_work *work) {
  double *sx = malloc((size_t)n1 * sizeof *sx), *sy = malloc((size_t)(n1 + n2) * sizeof *sy);
  int64_t k1 = sparsify(x, n1, mode, sx);
  ps_de_group p = {sx, k1, n1};
  ps_de_gene g;
  ps_de_ref ref;
  if (k == 0) {
    CHECK_PS(ps_de_test_gene(sx, k1, n1, sy, sparsify(y, n2, mode, sy), n2, work, &g));
  } else if (k == 1) {
    ps_de_group c = {sy, sparsify(y, n2, mode, sy), n2};
    CHECK_PS(ps_de_ref_build(&c, &ref));
    CHECK_PS(ps_de_test_gene_ref(&p, &ref, NULL, NULL, work, &g));
  } else if (k == 2) { /* C split: its first third arrives as cells added to the controls */
    int64_t na = n2 / 3, ka = sparsify(y, na, mode, sy);
    ps_de_group add = {sy, ka, na}, c = {sy + ka, sparsify(y + na, n2 - na, mode, sy + ka), n2 - na};
    CHECK_PS(ps_de_ref_build(&c, &ref));
    CHECK_PS(ps_de_test_gene_ref(&p, &ref, &add, NULL, work, &g));
  } else if (k == 3) { /* background "others": reference = P and C together, P removed */
    int64_t ka = sparsify(x, n1, mode, sy);
    ps_de_group all = {sy, ka + sparsify(y, n2, mode, sy + ka), n1 + n2};
    CHECK_PS(ps_de_ref_build(&all, &ref));
    CHECK_PS(ps_de_test_gene_ref(&p, &ref, NULL, &p, work, &g));
  } else { /* the same background, from P's ranks among all cells (src/de/complement.c) */
    int64_t ka = sparsify(x, n1, mode, sy);
    ps_de_group all = {sy, ka + sparsify(y, n2, mode, sy + ka), n1 + n2};
    double *rank = malloc((size_t)(all.nnz + 1) * sizeof *rank);
    CHECK_PS(ps_de_ref_build_ranks(&all, &ref, rank)); /* P's stored values come first in all */
    ps_de_sums sums = {0};
    for (int64_t i = 0; i < all.nnz; i++) /* the ranks from the sort are the ones a search finds */
      EXPECT(rank[i] == ps_de_ref_rank(&ref, sy[i]), "rank of value %lld (%g): %.17g, search %.17g", (long long)i,
             sy[i], rank[i], ps_de_ref_rank(&ref, sy[i]));
    for (int64_t i = 0; i < k1; i++) ps_de_sums_add(&sums, sx[i], rank[i], expm1(sx[i]));
    CHECK_PS(ps_de_test_gene_complement(&sums, n1, &ref, &g));
    free(rank);
  }
  if (k > 0) ps_de_ref_free(&ref);
  free(sx);
  free(sy);
  return g;
}

static void check_against_r(void) {
  FILE *f = fopen(DE_CASES, "r");
  if (!f) {
    fprintf(stderr, "FAIL: cannot open %s\n", DE_CASES);
    exit(1);
  }
  char *line = NULL;
  size_t cap = 0;
  ps_de_work work = {0};
  int n_cases = 0;
  double max_p[N_PATHS] = {0}, max_fc[N_PATHS] = {0};
  char worst_p[N_PATHS][64] = {{0}}, worst_fc[N_PATHS][64] = {{0}};
  for (int row = 0; getline(&line, &cap, f) > 0; row++) {
    if (row == 0) continue; /* header */
    line[strcspn(line, "\n")] = 0;
    char *field[9];
    int nf = 0;
    for (char *s = line, *tab; nf < 9; s = tab + 1) {
      field[nf++] = s;
      if (!(tab = strchr(s, '\t'))) break;
      *tab = 0;
    }
    if (nf != 9) {
      fprintf(stderr, "FAIL: %s row %d has %d fields\n", DE_CASES, row, nf);
      exit(1);
    }
    const char *name = field[0];
    int64_t n1 = atoll(field[1]), n2 = atoll(field[2]);
    double want_p = strtod(field[3], NULL), want_fc = strtod(field[4], NULL);
    double want_pct1 = strtod(field[5], NULL), want_pct2 = strtod(field[6], NULL);
    double *x, *y;
    EXPECT(parse_list(field[7], &x) == n1, "%s: x has not %lld values", name, (long long)n1);
    EXPECT(parse_list(field[8], &y) == n2, "%s: y has not %lld values", name, (long long)n2);
    for (int k = 0; k < N_PATHS; k++) {
      for (int mode = 0; mode < 3; mode++) {
        ps_de_gene g = run_path(k, mode, x, n1, y, n2, &work);
        double ep = rel_err(g.p, want_p), ef = rel_err(g.log2fc, want_fc);
        EXPECT(ep <= 1e-10, "%s (%s, mode %d): p %.17g, R %.17g (rel %.3g)", name, path_name[k], mode, g.p,
               want_p, ep);
        EXPECT(ef <= 1e-10, "%s (%s, mode %d): log2FC %.17g, R %.17g (rel %.3g)", name, path_name[k], mode,
               g.log2fc, want_fc, ef);
        EXPECT(g.pct1 == want_pct1 && g.pct2 == want_pct2, "%s (%s): pct %.17g %.17g, R %.17g %.17g", name,
               path_name[k], g.pct1, g.pct2, want_pct1, want_pct2);
        if (ep > max_p[k]) max_p[k] = ep, snprintf(worst_p[k], sizeof worst_p[k], "%s", name);
        if (ef > max_fc[k]) max_fc[k] = ef, snprintf(worst_fc[k], sizeof worst_fc[k], "%s", name);
      }
    }
    free(x);
    free(y);
    n_cases++;
  }
  free(line);
  fclose(f);
  ps_de_work_free(&work);
  EXPECT(n_cases >= 40, "only %d cases read from %s", n_cases, DE_CASES);
  printf("check 1: %d cases x 3 sparse forms; max relative error vs R:\n", n_cases);
  for (int k = 0; k < N_PATHS; k++)
    printf("  %-22s p %.3g (%s), log2FC %.3g (%s)\n", path_name[k], max_p[k], max_p[k] > 0 ? worst_p[k] : "-",
           max_fc[k], max_fc[k] > 0 ? worst_fc[k] : "-");
}

/* Check 1b: the reference-group paths agree with ps_de_test_gene on random
 * genes shaped like single-cell data (mostly zeros, rounded values: many ties),
 * sizes up to 20000, some negative values. */
static void check_reference_random(void) {
  test_rng_seed(0x2545f4914f6cdd1dull);
  ps_de_work work = {0};
  double max_p = 0, max_fc = 0;
  int n_small = 0, n_nan = 0;
  enum { CASES = 400 };
  for (int c = 0; c < CASES; c++) {
    int64_t n1 = 1 + (int64_t)(unif() * (c % 4 ? 60 : 2000)), n2 = 1 + (int64_t)(unif() * (c % 2 ? 300 : 20000));
    double pzero = unif(), shift = c % 5 == 0 ? 0.5 : 0, scale = c % 3 ? 10 : 1e6;
    double *x = malloc((size_t)n1 * sizeof *x), *y = malloc((size_t)n2 * sizeof *y);
    for (int64_t i = 0; i < n1 + n2; i++) {
      double v = unif() < pzero ? 0 : round(scale * (unif() * 3 - shift)) / scale;
      if (i < n1) x[i] = v * 1.2;
      else y[i - n1] = v;
    }
    ps_de_gene want = run_path(0, c % 3, x, n1, y, n2, &work);
    n_small += want.p < 1e-3;
    n_nan += isnan(want.p);
    ps_de_gene others = run_path(3, c % 3, x, n1, y, n2, &work);
    for (int k = 1; k < N_PATHS; k++) {
      ps_de_gene g = run_path(k, c % 3, x, n1, y, n2, &work);
      if (k == 4) /* the same sums in the same order: the same bits (isnan: all tied) */
        EXPECT((g.p == others.p || (isnan(g.p) && isnan(others.p))) && g.log2fc == others.log2fc &&
                   g.pct1 == others.pct1 && g.pct2 == others.pct2,
               "random case %d: complement p %.17g log2FC %.17g, ref - remove p %.17g log2FC %.17g", c, g.p,
               g.log2fc, others.p, others.log2fc);
      double ep = rel_err(g.p, want.p), df = fabs(g.log2fc - want.log2fc);
      EXPECT(ep <= 1e-12 && df <= 1e-12 * fabs(want.log2fc) + 1e-15 && g.pct1 == want.pct1 && g.pct2 == want.pct2,
             "random case %d (%s): p %.17g vs %.17g, log2FC %.17g vs %.17g", c, path_name[k], g.p, want.p,
             g.log2fc, want.log2fc);
      if (ep > max_p) max_p = ep;
      if (df > max_fc) max_fc = df;
    }
    free(x);
    free(y);
  }
  /* Removing cells the reference does not hold is an input error. */
  double r[2] = {1.0, 2.0}, bad[1] = {3.0};
  ps_de_group ref_g = {r, 2, 5}, p = {r, 1, 2}, remove = {bad, 1, 1};
  ps_de_ref ref;
  ps_de_gene g;
  CHECK_PS(ps_de_ref_build(&ref_g, &ref));
  EXPECT(ps_de_test_gene_ref(&p, &ref, NULL, &remove, &work, &g) == PS_ERR_INPUT, "foreign removal accepted");
  ps_error_clear();
  /* ... and so is a complement test with a value, or zeros, the reference lacks, or no cell left in C */
  ps_de_sums foreign = {0}, all_cells = {0};
  ps_de_sums_add(&foreign, 3.0, ps_de_ref_rank(&ref, 3.0), expm1(3.0));
  EXPECT(isnan(ps_de_ref_rank(&ref, 3.0)), "rank of a value not in the reference: %g", ps_de_ref_rank(&ref, 3.0));
  EXPECT(ps_de_test_gene_complement(&foreign, 1, &ref, &g) == PS_ERR_INPUT, "foreign value accepted");
  ps_error_clear();
  EXPECT(ps_de_test_gene_complement(&all_cells, 5, &ref, &g) == PS_ERR_INPUT, "empty C accepted");
  ps_error_clear();
  ps_de_ref nozero;
  ps_de_group nz = {r, 2, 2};
  CHECK_PS(ps_de_ref_build(&nz, &nozero));
  EXPECT(ps_de_test_gene_complement(&all_cells, 1, &nozero, &g) == PS_ERR_INPUT, "zeros absent from reference accepted");
  ps_error_clear();
  ps_de_ref_free(&nozero);
  ps_de_ref_free(&ref);
  ps_de_work_free(&work);
  printf("check 1b: %d random genes (%d with p < 1e-3, %d all tied), reference paths vs ps_de_test_gene:\n"
         "  max relative error of p %.3g, max absolute error of log2FC %.3g\n",
         CASES, n_small, n_nan, max_p, max_fc);
}

/* Check 1c: every test of a gene from one ranking (ps_de_test_gene_layout) against the
 * per-test path (ps_de_ref_build + ps_de_test_gene_ref on each test's groups, bit for
 * bit) and against ps_de_test_gene on the explicit groups (1e-12), on random layouts:
 * 1-3 references (--group-by), controls with added cells (the quirk) or all cells with
 * removed ones (--de-background others, low and high MOI), heavy ties, mostly zeros,
 * negative values, stored zeros, cells in any order. */
static void check_layout_random(void) {
  test_rng_seed(0x9d2c5680a1b2c3d4ull);
  enum { CASES = 300 };
  double max_p = 0, max_fc = 0;
  int64_t n_tested = 0, n_small = 0, n_nan = 0;
  ps_de_work work = {0};
  for (int c = 0; c < CASES; c++) {
    int64_t N = 2 + (int64_t)(unif() * (c % 7 == 0 ? 20000 : 600));
    int32_t K = 1 + (int32_t)(unif() * 12), R = c % 3 == 0 ? 1 + (int32_t)(unif() * 3) : 1;
    int others = c % 2; /* 0: controls as reference (+ quirk cells), 1: all cells, P removed */
    int high_moi = c % 4 == 1;
    int32_t *ref_of = malloc((size_t)K * sizeof *ref_of), *in_ref = malloc((size_t)N * sizeof *in_ref);
    int64_t *ref_size = calloc((size_t)R, sizeof *ref_size), *size = calloc((size_t)3 * K, sizeof *size);
    int64_t *role_ptr = calloc((size_t)N + 1, sizeof *role_ptr);
    int32_t *roles = malloc((size_t)N * 8 * sizeof *roles);
    for (int32_t k = 0; k < K; k++) ref_of[k] = (int32_t)(unif() * R);
    int64_t nr = 0;
    for (int64_t j = 0; j < N; j++) {
      int32_t group = (int32_t)(unif() * R);
      int n_guides = unif() < 0.2 ? 0 : 1 + (int)(unif() * (high_moi ? 3 : 1.5));
      in_ref[j] = others || n_guides == 0 ? group : -1;
      int32_t top = -1;
      for (int gi = 0; gi < n_guides; gi++) {
        int32_t k = (int32_t)(unif() * K);
        if (ref_of[k] != group) continue; /* a cell is tested within its own group */
        int dup = 0;
        for (int64_t q = role_ptr[j]; q < nr; q++) dup |= roles[q] / 3 == k;
        if (dup) continue;
        if (others) {
          roles[nr++] = 3 * k + PS_DE_ROLE_REMOVE;
          if (high_moi || top < 0) roles[nr++] = 3 * k + PS_DE_ROLE_P, top = k;
        } else {
          roles[nr++] = 3 * k + (unif() < 0.1 ? PS_DE_ROLE_ADD : PS_DE_ROLE_P);
        }
      }
      role_ptr[j + 1] = nr;
      if (in_ref[j] >= 0) ref_size[in_ref[j]]++;
      for (int64_t q = role_ptr[j]; q < nr; q++) size[roles[q]]++;
    }
    /* one gene: dense values, then a stored form */
    double pzero = unif(), shift = c % 5 == 0 ? 0.5 : 0, scale = c % 3 ? 4 : 1e6;
    double *dense = malloc((size_t)N * sizeof *dense), *value = malloc((size_t)N * sizeof *value);
    int32_t *cell = malloc((size_t)N * sizeof *cell);
    int64_t nnz = 0;
    for (int64_t j = 0; j < N; j++) {
      int in_p = 0; /* an effect in P: more often expressed, higher */
      for (int64_t q = role_ptr[j]; q < role_ptr[j + 1]; q++) in_p += roles[q] % 3 == PS_DE_ROLE_P;
      double effect = c % 3 == 1 ? 0 : 0.6 * in_p;
      dense[j] = unif() < pzero / (1 + effect) ? 0 : round(scale * (unif() * 3 * (1 + effect) - shift)) / scale;
      if (dense[j] != 0 || unif() < 0.05) cell[nnz] = (int32_t)j, value[nnz++] = dense[j];
    }
    if (c % 5 == 2) /* any order */
      for (int64_t i = nnz - 1; i > 0; i--) {
        int64_t t = (int64_t)(unif() * (double)(i + 1));
        int32_t tc = cell[i];
        double tv = value[i];
        cell[i] = cell[t], value[i] = value[t], cell[t] = tc, value[t] = tv;
      }
    /* one reference: ref_of may be NULL */
    const ps_de_layout Lc = {K, R, ref_size, R == 1 && c % 4 < 2 ? NULL : ref_of, size, N, role_ptr, roles, in_ref};
    ps_de_rank_work *rw;
    CHECK_PS(ps_de_rank_work_create(&Lc, &rw));
    ps_de_gene *got = malloc((size_t)K * sizeof *got);
    uint8_t *tested = malloc((size_t)K);
    double min_pct = c % 4 == 3 ? 0.1 : -1;
    CHECK_PS(ps_de_test_gene_layout(&Lc, cell, value, nnz, min_pct, rw, got, tested));
    /* per test: its groups in the stored order, and dense */
    double *gv[4], *gd[2];
    for (int i = 0; i < 4; i++) gv[i] = malloc((size_t)(nnz + 1) * sizeof *gv[i]);
    for (int i = 0; i < 2; i++) gd[i] = malloc((size_t)N * sizeof *gd[i]);
    for (int32_t k = 0; k < K; k++) {
      int32_t rk = ref_of[k];
      int64_t n[4] = {0}, dn[2] = {0}; /* 0 P, 1 add, 2 remove, 3 reference */
      for (int64_t i = 0; i < nnz; i++) {
        int32_t j = cell[i];
        if (in_ref[j] == rk) gv[3][n[3]++] = value[i];
        for (int64_t q = role_ptr[j]; q < role_ptr[j + 1]; q++)
          if (roles[q] / 3 == k) gv[roles[q] % 3][n[roles[q] % 3]++] = value[i];
      }
      for (int64_t j = 0; j < N; j++) { /* dense P and C = reference + add - remove */
        int in_p = 0, add = 0, rem = 0;
        for (int64_t q = role_ptr[j]; q < role_ptr[j + 1]; q++)
          if (roles[q] / 3 == k) in_p |= roles[q] % 3 == 0, add |= roles[q] % 3 == 1, rem |= roles[q] % 3 == 2;
        if (in_p) gd[0][dn[0]++] = dense[j];
        if ((in_ref[j] == rk && !rem) || add) gd[1][dn[1]++] = dense[j];
      }
      int64_t n1 = size[3 * k], n2 = ref_size[rk] + size[3 * k + 1] - size[3 * k + 2];
      EXPECT(n1 == dn[0] && n2 == dn[1], "case %d test %d: group sizes %lld %lld, dense %lld %lld", c, k,
             (long long)n1, (long long)n2, (long long)dn[0], (long long)dn[1]);
      if (n1 < 1 || n2 < 1) {
        EXPECT(!tested[k], "case %d test %d: tested with an empty group", c, k);
        continue;
      }
      ps_de_group ref_g = {gv[3], n[3], ref_size[rk]}, p = {gv[0], n[0], n1};
      ps_de_group add = {gv[1], n[1], size[3 * k + 1]}, rem = {gv[2], n[2], size[3 * k + 2]};
      ps_de_ref ref;
      ps_de_gene old, want;
      CHECK_PS(ps_de_ref_build(&ref_g, &ref));
      CHECK_PS(ps_de_test_gene_ref(&p, &ref, &add, &rem, &work, &old));
      ps_de_ref_free(&ref);
      CHECK_PS(ps_de_test_gene(gd[0], dn[0], n1, gd[1], dn[1], n2, &work, &want));
      int pass = fmax(old.pct1, old.pct2) >= min_pct;
      EXPECT(tested[k] == pass, "case %d test %d: tested %d, min_pct says %d", c, k, tested[k], pass);
      if (!tested[k]) continue;
      n_tested++;
      n_small += old.p < 1e-3;
      n_nan += isnan(old.p);
      ps_de_gene g = got[k];
      EXPECT((g.p == old.p || (isnan(g.p) && isnan(old.p))) && g.log2fc == old.log2fc && g.pct1 == old.pct1 &&
                 g.pct2 == old.pct2,
             "case %d test %d: one ranking p %.17g log2FC %.17g pct %g %g, per test p %.17g log2FC %.17g pct %g %g", c,
             k, g.p, g.log2fc, g.pct1, g.pct2, old.p, old.log2fc, old.pct1, old.pct2);
      double ep = rel_err(g.p, want.p), df = fabs(g.log2fc - want.log2fc);
      EXPECT(ep <= 1e-12 && df <= 1e-12 * fabs(want.log2fc) + 1e-15 && g.pct1 == want.pct1 && g.pct2 == want.pct2,
             "case %d test %d: one ranking p %.17g log2FC %.17g, explicit groups p %.17g log2FC %.17g", c, k, g.p,
             g.log2fc, want.p, want.log2fc);
      if (ep > max_p) max_p = ep;
      if (df > max_fc) max_fc = df;
    }
    for (int i = 0; i < 4; i++) free(gv[i]);
    for (int i = 0; i < 2; i++) free(gd[i]);
    ps_de_rank_work_free(rw);
    free(got), free(tested), free(dense), free(value), free(cell);
    free(ref_of), free(in_ref), free(ref_size), free(size), free(role_ptr), free(roles);
  }
  /* a removed cell the reference lacks, a foreign membership: input errors */
  {
    int64_t ref_size[1] = {2}, size[3] = {1, 0, 1}, role_ptr[4] = {0, 0, 0, 2};
    int32_t roles[2] = {PS_DE_ROLE_P, PS_DE_ROLE_REMOVE}, in_ref[3] = {0, 0, -1}, cell[3] = {0, 1, 2};
    double value[3] = {1, 2, 3};
    ps_de_layout L = {1, 1, ref_size, NULL, size, 3, role_ptr, roles, in_ref};
    ps_de_rank_work *rw;
    ps_de_gene g;
    uint8_t t;
    CHECK_PS(ps_de_rank_work_create(&L, &rw));
    EXPECT(ps_de_test_gene_layout(&L, cell, value, 3, -1, rw, &g, &t) == PS_ERR_INPUT, "foreign removal accepted");
    roles[1] = 3 * 1 + PS_DE_ROLE_P;
    EXPECT(ps_de_test_gene_layout(&L, cell, value, 3, -1, rw, &g, &t) == PS_ERR_INPUT, "test 1 of 1 accepted");
    ps_de_rank_work_free(rw);
  }
  ps_de_work_free(&work);
  EXPECT(n_tested > 1000 && n_small > 20 && n_nan > 0, "random layouts: %lld tests, %lld with p < 1e-3, %lld tied",
         (long long)n_tested, (long long)n_small, (long long)n_nan);
  printf("check 1c: %d random genes, %lld tests (%lld with p < 1e-3, %lld all tied): one ranking = per-test path bit "
         "for bit; vs ps_de_test_gene max relative error of p %.3g, max absolute error of log2FC %.3g\n",
         CASES, (long long)n_tested, (long long)n_small, (long long)n_nan, max_p, max_fc);
}

static void check_edges(void) {
  /* R round(x, 3) at exact binary halves: ties go to the even last digit. */
  EXPECT(ps_de_round3(0.0625) == 0.062, "round3(1/16) = %.17g", ps_de_round3(0.0625));
  EXPECT(ps_de_round3(0.1875) == 0.188, "round3(3/16) = %.17g", ps_de_round3(0.1875));
  EXPECT(ps_de_round3(1.0 / 2000) == 0.0, "round3(1/2000) = %.17g", ps_de_round3(1.0 / 2000));
  EXPECT(ps_de_round3(0.1) == 0.1 && ps_de_round3(1.0) == 1.0 && ps_de_round3(0.0) == 0.0, "round3 fixed points");

  ps_de_work work = {0};
  ps_de_gene g;
  double v[3] = {1.0, 2.0, NAN}, unsorted[2] = {2.0, 1.0};
  EXPECT(ps_de_test_gene(v, 2, 0, v, 2, 5, &work, &g) == PS_ERR_INPUT, "empty P accepted");
  EXPECT(ps_de_test_gene(v, 2, 1, v, 2, 5, &work, &g) == PS_ERR_INPUT, "nnz > n accepted");
  EXPECT(ps_de_test_gene(v, 3, 4, v, 2, 5, &work, &g) == PS_ERR_INPUT, "NaN accepted");
  EXPECT(ps_de_test_gene_sorted(unsorted, 2, 4, v, 2, 5, &g) == PS_ERR_INPUT, "unsorted accepted");
  ps_error_clear();
  /* Sorted entry point on a case with negative values (zero block in the middle). */
  double a[2] = {-1.0, 3.0}, b[2] = {-2.0, 0.5};
  CHECK_PS(ps_de_test_gene_sorted(a, 2, 4, b, 2, 3, &g));
  /* R: wilcox.test(c(-1,3,0,0), c(-2,0.5,0), exact = FALSE)$p.value */
  EXPECT(rel_err(g.p, 0.85444506762953187) <= 1e-10, "negative values: p %.17g", g.p);
  ps_de_work_free(&work);
}

/* ---------------- check 2: selection ---------------- */

static ps_de_gene gene(double pct, double fc, double p) { return (ps_de_gene){pct, pct / 2, fc, p}; }

static void expect_genes(const ps_de_selection *s, const int64_t *want, int64_t n, const char *what) {
  EXPECT(s->n == n, "%s: %lld genes selected, want %lld", what, (long long)s->n, (long long)n);
  for (int64_t i = 0; i < n && i < s->n; i++)
    EXPECT(s->genes[i] == want[i], "%s: position %lld is gene %lld, want %lld", what, (long long)i,
           (long long)s->genes[i], (long long)want[i]);
}

static void check_selection(void) {
  ps_de_options o;
  ps_de_options_default(&o);
  EXPECT(o.min_pct == 0.1 && o.logfc == 0.1 && o.min_targets == 10 && o.max_targets == 500 &&
             o.max_rounds == 3 && o.factor == 0.8, "defaults differ from SPEC section 1");
  const double t2 = 0.1 * 0.8, t3 = 0.1 * 0.8 * 0.8;
  enum { G = 100 };
  ps_de_gene g[G];
  ps_de_selection s;

  /* (a) 12 genes pass at 0.1 (both signs, one exactly at 0.1): one selection. */
  for (int i = 0; i < G; i++) g[i] = gene(0.5, i % 2 ? 0.09 : -0.05, 0.5);
  int64_t a_genes[12];
  for (int i = 0; i < 12; i++) {
    int64_t gi = 7 * i + 3;
    g[gi] = gene(0.5, (i % 2 ? -1 : 1) * (i == 5 ? 0.1 : 0.2 + 0.01 * i), 1e-3 * (12 - i));
    a_genes[11 - i] = gi; /* ascending p */
  }
  CHECK_PS(ps_de_select(g, G, -1, &o, &s));
  EXPECT(s.rounds == 1 && s.threshold == 0.1 && s.n_passing == 12, "(a) rounds %d t %g", s.rounds, s.threshold);
  expect_genes(&s, a_genes, 12, "(a)");
  ps_de_selection_free(&s);

  /* (b) 5 pass at 0.1, 11 at 0.08: two selections. */
  for (int i = 0; i < G; i++) g[i] = gene(0.5, 0.05, 0.5);
  for (int i = 0; i < 5; i++) g[10 * i] = gene(0.5, 0.15, 1e-6 * (i + 1));
  for (int i = 0; i < 6; i++) g[10 * i + 5] = gene(0.5, i % 2 ? -0.09 : 0.085, 1e-5 * (i + 1));
  CHECK_PS(ps_de_select(g, G, -1, &o, &s));
  int64_t b_genes[11] = {0, 10, 20, 30, 40, 5, 15, 25, 35, 45, 55};
  EXPECT(s.rounds == 2 && s.threshold == t2, "(b) rounds %d t %.17g", s.rounds, s.threshold);
  expect_genes(&s, b_genes, 11, "(b)");
  ps_de_selection_free(&s);

  /* (c) fewer than 10 even at 0.064: stops after 3 selections with what passes then. */
  for (int i = 0; i < G; i++) g[i] = gene(0.5, 0.03, 0.5);
  g[1] = gene(0.5, 0.2, 1e-4);
  g[2] = gene(0.5, -0.09, 1e-3);
  g[3] = gene(0.5, 0.07, 1e-2);
  g[4] = gene(0.5, 0.063, 1e-9); /* below 0.064: never kept */
  CHECK_PS(ps_de_select(g, G, -1, &o, &s));
  int64_t c_genes[3] = {1, 2, 3};
  EXPECT(s.rounds == 3 && s.threshold == t3 && s.n_passing == 3, "(c) rounds %d t %.17g", s.rounds, s.threshold);
  expect_genes(&s, c_genes, 3, "(c)");
  ps_de_selection_free(&s);

  /* (e) min_pct: max(pct1, pct2) >= 0.1 on the rounded values. */
  for (int i = 0; i < G; i++) g[i] = gene(0.05, 1.0, 1e-20); /* strong but rarely expressed */
  g[10] = (ps_de_gene){0.0, 0.1, 0.5, 0.01};                  /* expressed in controls only */
  g[11] = (ps_de_gene){ps_de_round3(0.0999), 0.0, 0.5, 0.02}; /* 0.0999 rounds to 0.1 */
  g[12] = (ps_de_gene){0.099, 0.099, 0.5, 0.03};
  CHECK_PS(ps_de_select(g, G, -1, &o, &s));
  int64_t e_genes[2] = {10, 11};
  EXPECT(s.rounds == 3, "(e) rounds %d", s.rounds);
  expect_genes(&s, e_genes, 2, "(e)");
  ps_de_selection_free(&s);

  /* (f) the perturbed gene (best p) is excluded before counting: 10 pass with it,
   * 9 without, so a second selection picks up gene 50. */
  for (int i = 0; i < G; i++) g[i] = gene(0.5, 0.01, 0.5);
  for (int i = 0; i < 10; i++) g[i] = gene(0.5, 0.3, 1e-3 * (i + 1));
  g[50] = gene(0.5, 0.09, 0.2);
  CHECK_PS(ps_de_select(g, G, -1, &o, &s));
  EXPECT(s.rounds == 1 && s.n == 10 && s.genes[0] == 0, "(f) without exclusion: rounds %d n %lld", s.rounds,
         (long long)s.n);
  ps_de_selection_free(&s);
  CHECK_PS(ps_de_select(g, G, 0, &o, &s));
  int64_t f_genes[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 50};
  EXPECT(s.rounds == 2, "(f) rounds %d", s.rounds);
  expect_genes(&s, f_genes, 10, "(f)");
  ps_de_selection_free(&s);

  /* Invalid options and an empty gene list. */
  ps_de_options bad = o;
  bad.max_targets = 0;
  EXPECT(ps_de_select(g, G, -1, &bad, &s) == PS_ERR_INPUT, "max_targets 0 accepted");
  ps_error_clear();
  CHECK_PS(ps_de_select(g, 0, -1, &o, &s));
  EXPECT(s.n == 0 && s.rounds == 3, "empty: n %lld rounds %d", (long long)s.n, s.rounds);
  ps_de_selection_free(&s);
}

/* (d) 800 pass at 0.1: exactly 500 kept, the smallest p-values; p ties go to the
 * larger |log2FC|, then to the lower gene index. Checked against a brute-force rank. */
static void check_cap(void) {
  enum { G = 1000, PASS = 800 };
  static ps_de_gene g[G];
  ps_de_options o;
  ps_de_options_default(&o);
  for (int i = 0; i < G; i++) g[i] = gene(0.5, 0.02, 1e-3); /* failing genes with small p */
  for (int i = 0; i < PASS; i++) {
    int gi = (int)((i * 617L) % G); /* gene order unrelated to rank */
    double p = i == PASS - 1 ? NAN : 1e-6 * (1 + i / 7); /* groups of 7 equal p; one NaN */
    double fc = 0.2 + 0.1 * ((i % 7) / 2);               /* pairs of equal |log2FC| inside a group */
    g[gi] = gene(0.5, i % 3 ? fc : -fc, p);
  }
  ps_de_selection s;
  CHECK_PS(ps_de_select(g, G, -1, &o, &s));
  EXPECT(s.n == 500 && s.n_passing == PASS && s.rounds == 1, "(d) n %lld passing %lld", (long long)s.n,
         (long long)s.n_passing);
  /* Brute force: rank of gene a = number of passing genes that come before it. */
  int64_t *want = calloc(500, sizeof *want);
  for (int a = 0; a < G; a++) {
    if (fabs(g[a].log2fc) < 0.1) continue;
    int64_t before = 0;
    for (int b = 0; b < G; b++) {
      if (b == a || fabs(g[b].log2fc) < 0.1) continue;
      double pa = isnan(g[a].p) ? INFINITY : g[a].p, pb = isnan(g[b].p) ? INFINITY : g[b].p;
      double fa = fabs(g[a].log2fc), fb = fabs(g[b].log2fc);
      before += pb < pa || (pb == pa && (fb > fa || (fb == fa && b < a)));
    }
    if (before < 500) want[before] = a;
  }
  expect_genes(&s, want, 500, "(d)");
  /* The cut falls inside the 72nd p group (500 = 71 * 7 + 3): of its seven genes the
   * three with the largest |log2FC| are kept, two of them tied on it. */
  int in_last_group = 0;
  for (int64_t i = 0; i < s.n; i++) in_last_group += g[s.genes[i]].p == 1e-6 * 72;
  EXPECT(in_last_group == 3, "(d) %d genes kept from the group cut by the cap", in_last_group);
  free(want);
  ps_de_selection_free(&s);

  /* Cap of 799 of 800: the NaN p-value is the one left out. */
  o.max_targets = PASS - 1;
  CHECK_PS(ps_de_select(g, G, -1, &o, &s));
  int nan_kept = 0;
  for (int64_t i = 0; i < s.n; i++) nan_kept += isnan(g[s.genes[i]].p);
  EXPECT(s.n == PASS - 1 && nan_kept == 0, "(d) NaN p not sorted last");
  ps_de_selection_free(&s);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  check_against_r();
  check_reference_random();
  check_layout_random();
  check_edges();
  check_selection();
  check_cap();
  if (failures) fprintf(stderr, "%d failures\n", failures);
  else printf("test_de: all checks passed\n");
  MPI_Finalize();
  return failures ? 1 : 0;
}
