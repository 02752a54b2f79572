/* Unit test of the cross-validation metrics and folds (SPEC.md section 7, docs/cv.md).
 *
 * Check 1: ps_cv_delta_metrics and ps_cv_retrieval equal the hand-computed values
 *   of the committed cases (metric_cases.tsv, retrieval_cases.tsv; each case's
 *   derivation is in the file's header) to 1e-12 relative; NaN where undefined.
 * Also: the training mean and median baselines leave the own-gene entries out
 *   and the mean is exactly the sum in training order over the count; perturbation
 *   folds are a balanced deterministic permutation; stratified slots are balanced
 *   within every stratum. */
#include "pertscore/cv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

#if !defined(METRIC_CASES) || !defined(RETRIEVAL_CASES)
#error "METRIC_CASES and RETRIEVAL_CASES must name the TSVs of tests/cv"
#endif

/* Parse "a,b,c" (numbers or nan) into a malloc'ed array; returns the count. */
static int64_t parse_list(const char *s, double **out) {
  int64_t n = 1;
  for (const char *c = s; *c; c++) n += *c == ',';
  double *v = malloc((size_t)n * sizeof *v);
  int64_t i = 0;
  const char *p = s;
  while (i < n) {
    char *end;
    v[i++] = strtod(p, &end);
    p = *end ? end + 1 : end;
  }
  *out = v;
  return n;
}

static int matches(double got, const char *want_text) {
  if (strcmp(want_text, "-") == 0) return 1;
  if (strcmp(want_text, "nan") == 0) return isnan(got);
  double want = strtod(want_text, NULL);
  if (isnan(got)) return 0;
  return fabs(got - want) <= 1e-12 * (fabs(want) > 1 ? fabs(want) : 1);
}

/* Split a line at tabs in place; returns the field count. */
static int split_tabs(char *line, char **field, int max) {
  int n = 0;
  line[strcspn(line, "\r\n")] = '\0';
  for (char *save = NULL, *tok = strtok_r(line, "\t", &save); tok && n < max; tok = strtok_r(NULL, "\t", &save))
    field[n++] = tok;
  return n;
}

static void metric_cases(void) {
  FILE *f = fopen(METRIC_CASES, "r");
  if (!f) {
    fprintf(stderr, "FAIL: cannot open %s\n", METRIC_CASES);
    exit(1);
  }
  static char line[1 << 16];
  int header = 1, cases = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    if (header) {
      header = 0;
      continue;
    }
    char *field[32];
    int n = split_tabs(line, field, 32);
    if (n != 15) {
      fprintf(stderr, "FAIL: %s: a case with %d fields\n", METRIC_CASES, n);
      exit(1);
    }
    double *pred, *obs, *skipd = NULL;
    int64_t G = parse_list(field[4], &pred), G2 = parse_list(field[5], &obs);
    EXPECT(G == G2, "case %s: pred and obs lengths differ", field[0]);
    int n_skip = 0;
    int64_t skip[4];
    if (strcmp(field[3], "-") != 0) {
      n_skip = (int)parse_list(field[3], &skipd);
      for (int i = 0; i < n_skip; i++) skip[i] = (int64_t)skipd[i];
    }
    double m[PS_CV_N_METRICS];
    int err = ps_cv_delta_metrics(G, pred, obs, skip, n_skip, atoi(field[1]), atoi(field[2]), m);
    EXPECT(err == PS_OK, "case %s: error %s", field[0], ps_error_message());
    for (int k = 0; k < PS_CV_RETRIEVAL; k++)
      EXPECT(matches(m[k], field[6 + k]), "case %s: %s = %.17g, expected %s", field[0], ps_cv_metric_names[k], m[k],
             field[6 + k]);
    EXPECT(isnan(m[PS_CV_RETRIEVAL]), "case %s: retrieval should be left NaN", field[0]);
    free(pred);
    free(obs);
    free(skipd);
    cases++;
  }
  fclose(f);
  EXPECT(cases == 5, "expected 5 metric cases, read %d", cases);
}

static void retrieval_cases(void) {
  FILE *f = fopen(RETRIEVAL_CASES, "r");
  if (!f) {
    fprintf(stderr, "FAIL: cannot open %s\n", RETRIEVAL_CASES);
    exit(1);
  }
  char line[4096];
  int header = 1, cases = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    if (header) {
      header = 0;
      continue;
    }
    char *field[8];
    if (split_tabs(line, field, 8) != 7) {
      fprintf(stderr, "FAIL: %s: malformed case\n", RETRIEVAL_CASES);
      exit(1);
    }
    double *pred, *ownd;
    int64_t G = parse_list(field[1], &pred);
    const double *obs[16];
    double *obs_owned[16];
    int64_t own[16];
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(field[3], ";", &save); tok && n < 16; tok = strtok_r(NULL, ";", &save)) {
      int64_t len = parse_list(tok, &obs_owned[n]);
      EXPECT(len == G, "case %s: candidate %d has %lld genes", field[0], n, (long long)len);
      obs[n] = obs_owned[n];
      n++;
    }
    int64_t n_own = parse_list(field[4], &ownd);
    EXPECT(n_own == n, "case %s: %lld own genes for %d candidates", field[0], (long long)n_own, n);
    for (int i = 0; i < n; i++) own[i] = (int64_t)ownd[i];
    double got = ps_cv_retrieval(G, pred, atoll(field[2]), obs, own, n, atoi(field[5]));
    EXPECT(matches(got, field[6]), "case %s: retrieval %.17g, expected %s", field[0], got, field[6]);
    for (int i = 0; i < n; i++) free(obs_owned[i]);
    free(pred);
    free(ownd);
    cases++;
  }
  fclose(f);
  EXPECT(cases == 7, "expected 7 retrieval cases, read %d", cases);
}

/* Mean and median leave each training perturbation's own gene out; the mean is
 * bit-for-bit the ordered sum over the count. */
static void baselines(void) {
  enum { G = 5, T = 4 };
  double d[T][G] = {{1, 2, 3, 4, 5}, {0.1, 0.2, 0.3, 0.4, 0.5}, {-1, 7, 1e-3, 2, 9}, {3, 3, 3, 3, 1e6}};
  const double *delta[T] = {d[0], d[1], d[2], d[3]};
  int64_t own[T] = {0, -1, 2, 4}; /* perturbation 3's own gene 4 holds the 1e6 knockdown */
  double mean[G], median[G];
  ps_cv_baselines(G, T, delta, own, mean, median);
  for (int g = 0; g < G; g++) {
    double sum = 0;
    int n = 0;
    for (int t = 0; t < T; t++)
      if (own[t] != g) {
        sum += d[t][g];
        n++;
      }
    EXPECT(mean[g] == sum / n, "mean baseline gene %d: %.17g vs %.17g", g, mean[g], sum / n);
  }
  EXPECT(median[0] == 0.1, "median gene 0 (values 0.1, -1, 3 -> 0.1): %g", median[0]);
  EXPECT(median[1] == 2.5, "median gene 1 (0.2, 2, 3, 7 -> 2.5): %g", median[1]);
  EXPECT(median[2] == 3, "median gene 2 (3, 0.3, 3 -> 3): %g", median[2]);
  EXPECT(median[4] == 5, "median gene 4 (5, 0.5, 9; the 1e6 own entry left out -> 5): %g", median[4]);
}

static void folds(void) {
  int32_t a[103], b[103];
  ps_cv_permutation_folds(103, 5, 42, a);
  ps_cv_permutation_folds(103, 5, 42, b);
  int count[5] = {0}, same = 1;
  for (int i = 0; i < 103; i++) {
    same &= a[i] == b[i];
    count[a[i]]++;
  }
  EXPECT(same, "perturbation folds are not deterministic");
  for (int f = 0; f < 5; f++) EXPECT(count[f] == 20 || count[f] == 21, "fold %d has %d of 103", f, count[f]);
  ps_cv_permutation_folds(103, 5, 43, b);
  int differ = 0;
  for (int i = 0; i < 103; i++) differ += a[i] != b[i];
  EXPECT(differ > 0, "another seed gives the same folds");

  /* stratified slots: 3 strata of 11, 7, 2 items interleaved */
  int32_t stratum[20], slot[20];
  for (int i = 0; i < 20; i++) stratum[i] = i < 4 ? 2 * (i % 2) : (i % 3 == 0 ? 1 : 0);
  ps_cv_stratified_slots(MPI_COMM_SELF, 20, stratum, 3, 4, 7, 99, slot);
  for (int s = 0; s < 3; s++) {
    int c[4] = {0}, total = 0;
    for (int i = 0; i < 20; i++)
      if (stratum[i] == s) {
        c[slot[i]]++;
        total++;
      }
    int lo = total / 4, hi = (total + 3) / 4;
    for (int k = 0; k < 4; k++) EXPECT(c[k] >= lo && c[k] <= hi, "stratum %d slot %d holds %d of %d", s, k, c[k], total);
  }
}

/* PEREGGRN's conventions by hand: 26 genes, gene 25 skipped (the perturbed gene).
 * |o| = 40, 39, ..., 22 for genes 0..18 (19 genes), then genes 19, 20, 21 tied at |o| = 5
 * (positions 20-22, average rank 21 > 20: all out of the top 20, in the top 100), genes
 * 22-24 have o = 0. pred = o + 1 on genes 0..18, 0 elsewhere; so the top-20 sum is 19 x 1,
 * the sum over all is 19 + 3 x 25 = 94, directions right on 0..18 and 22..24 (0 == 0): 22 / 25. */
static void pereggrn_case(void) {
  double o[26], p[26], m[PS_CV_N_PEREGGRN];
  for (int g = 0; g < 26; g++) {
    o[g] = g < 19 ? (g % 2 ? -1.0 : 1.0) * (40 - g) : g < 22 ? 5.0 : 0.0;
    p[g] = g < 19 ? o[g] + 1.0 : 0.0;
  }
  o[25] = 1e6; /* skipped */
  int64_t skip = 25;
  EXPECT(ps_cv_pereggrn_metrics(26, p, o, &skip, 1, m) == PS_OK, "pereggrn case: error");
  EXPECT(m[PS_CV_PG_TOP20_SUM] == 19.0, "top-20 sum %.17g (expected 19: the 3 tied genes are out)", m[PS_CV_PG_TOP20_SUM]);
  EXPECT(m[PS_CV_PG_TOP20] == 1.0, "top-20 mean %.17g (expected 1 over 19 genes)", m[PS_CV_PG_TOP20]);
  EXPECT(m[PS_CV_PG_TOP100_SUM] == 94.0 && m[PS_CV_PG_TOP200_SUM] == 94.0, "top-100/200 sums %g %g (expected 94)",
         m[PS_CV_PG_TOP100_SUM], m[PS_CV_PG_TOP200_SUM]);
  EXPECT(m[PS_CV_PG_TOP100] == 94.0 / 25.0, "top-100 mean %.17g (expected 94 / 25)", m[PS_CV_PG_TOP100]);
  EXPECT(m[PS_CV_PG_MSE_SUM] == 94.0, "sum of squares %.17g (expected 94)", m[PS_CV_PG_MSE_SUM]);
  EXPECT(m[PS_CV_PG_SIGN_ALL] == 22.0 / 25.0, "direction %.17g (expected 22 / 25)", m[PS_CV_PG_SIGN_ALL]);
  p[3] = NAN;
  EXPECT(ps_cv_pereggrn_metrics(26, p, o, &skip, 1, m) == PS_OK && isnan(m[PS_CV_PG_MSE_SUM]), "NaN not propagated");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  pereggrn_case();
  metric_cases();
  retrieval_cases();
  baselines();
  folds();
  printf("%d checks, %d failures\n", checks, failures);
  MPI_Finalize();
  return failures ? 1 : 0;
}
