/* Unit test of the dosage analysis (SPEC.md section 5).
 *
 * Check 1 (the LL.4 fit):
 *   (a) noise-free LL.4 points: the fit recovers b, c, d, e to 1e-4 relative for
 *       many parameter sets (b < 0 and b > 0, e 0.1 .. 2, 5 .. 10 points, x = 0);
 *   (b) noisy points (hill_cases.tsv): e agrees with R nls to 1e-3 relative and the
 *       sum of squares is never worse than R's;
 *   (c) whole perturbations (pipeline_cases.tsv): normalization, bins and the fit
 *       against R (median, cut(unique(quantile)), tapply means, nls).
 * Check 2: Pearson and Spearman (exact = FALSE) p-values against R cor.test
 *   (cor_cases.tsv) to 1e-8 relative, pt() against R (pt_cases.tsv).
 * Check 3: statuses: tied deciles merging into < 5 bins, a flat response failing
 *   the Hill(0) - Hill(1) filter, own gene not expressed in controls, too few
 *   cells; the x -> 0 limit of Hill.
 * Then 2000 random noisy fits (never worse than the true parameters), a step
 * (b on its bound), and a reused solver against a fresh one. */
#include "pertscore/dosage.h"

#include <math.h>
#include <petscsys.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

#if !defined(HILL_CASES) || !defined(PIPELINE_CASES) || !defined(COR_CASES) || !defined(PT_CASES)
#error "HILL_CASES, PIPELINE_CASES, COR_CASES and PT_CASES must name the TSVs of tests/dosage"
#endif

static double rel_err(double got, double want) {
  if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0 : INFINITY;
  if (want == got) return 0;
  return fabs(got - want) / fabs(want);
}

/* ---------------- reading the R tables ---------------- */

/* Parse "a,b,c" into a malloc'ed array; returns the count. */
static int64_t parse_list(char *s, double **out) {
  int64_t n = 1;
  for (char *c = s; *c; c++) n += *c == ',';
  double *v = malloc((size_t)n * sizeof *v);
  int64_t i = 0;
  for (char *p = s, *end; *p; p = *end ? end + 1 : end) {
    v[i++] = strtod(p, &end);
    if (end == p) break;
  }
  *out = v;
  return i;
}

/* A list of exactly n values, or the test stops: a reference case with a broken
 * list cannot be checked, and going on would read pointers never set. */
static double *parse_exact(char *s, int64_t n, const char *name, const char *what) {
  double *v;
  int64_t got = parse_list(s, &v);
  if (got != n) {
    fprintf(stderr, "FAIL %s: %s list has %lld values, expected %lld\n", name, what, (long long)got, (long long)n);
    exit(1);
  }
  return v;
}

typedef struct {
  FILE *f;
  char *line;
  size_t cap;
  char *field[32];
  int nf;
  const char *path;
} tsv;

static void tsv_open(tsv *t, const char *path) {
  memset(t, 0, sizeof *t);
  t->path = path;
  t->f = fopen(path, "r");
  if (!t->f) {
    fprintf(stderr, "FAIL: cannot open %s\n", path);
    exit(1);
  }
  if (getline(&t->line, &t->cap, t->f) <= 0) { /* header */
    fprintf(stderr, "FAIL: %s is empty\n", path);
    exit(1);
  }
}

/* Next row split at tabs; 0 at the end. Exits unless the row has `want` fields. */
static int tsv_next(tsv *t, int want) {
  if (getline(&t->line, &t->cap, t->f) <= 0) return 0;
  t->line[strcspn(t->line, "\n")] = 0;
  t->nf = 0;
  for (char *s = t->line, *tab; t->nf < 32; s = tab + 1) {
    t->field[t->nf++] = s;
    if (!(tab = strchr(s, '\t'))) break;
    *tab = 0;
  }
  if (t->nf != want) {
    fprintf(stderr, "FAIL: %s: a row has %d fields, expected %d\n", t->path, t->nf, want);
    exit(1);
  }
  return 1;
}

static void tsv_close(tsv *t) {
  free(t->line);
  fclose(t->f);
}

static double num(const tsv *t, int k) { return strtod(t->field[k], NULL); }

/* ---------------- check 1a: noise-free recovery ---------------- */

static void check_noise_free(ps_hill_solver *solver) {
  static const double bs[] = {-6, -3, -1.5, -0.8, 0.8, 1.5, 3, 6};
  static const double es[] = {0.1, 0.25, 0.5, 0.9, 1.4, 2.0};
  static const int ns[] = {10, 7, 5};
  double worst[4] = {0}, x[10], y[10];
  int n_fits = 0;
  for (size_t ib = 0; ib < sizeof bs / sizeof *bs; ib++)
    for (size_t ie = 0; ie < sizeof es / sizeof *es; ie++)
      for (size_t in = 0; in < sizeof ns / sizeof *ns; in++)
        for (int zero = 0; zero < 2; zero++) {
          const int n = ns[in];
          /* canonical truth d >= c; c, d anywhere, including c < 0 */
          ps_hill_params t = {.b = bs[ib], .e = es[ie], .c = 0.4 * unif() - 0.2};
          t.d = t.c + 0.3 + 0.8 * unif();
          /* x spread on the log scale over 0.03 .. 4 (the curve is sampled on both sides of e),
           * optionally one x = 0 */
          for (int i = 0; i < n; i++) {
            x[i] = exp(log(0.03) + (log(4.0) - log(0.03)) * (i + 0.3 * unif()) / (n - 1 + 0.3));
            y[i] = ps_hill_eval(&t, x[i]);
          }
          if (zero) {
            x[0] = 0.0;
            y[0] = ps_hill_eval(&t, 0.0);
          }
          ps_hill_params f;
          CHECK_PS(ps_hill_fit(solver, n, x, y, &f));
          /* c and d relative to the curve's height when they are near 0 */
          double scale = t.d - t.c;
          double err[4] = {rel_err(f.b, t.b), fabs(f.c - t.c) / fmax(fabs(t.c), scale),
                           fabs(f.d - t.d) / fmax(fabs(t.d), scale), rel_err(f.e, t.e)};
          int ok = f.converged;
          for (int k = 0; k < 4; k++) {
            ok &= err[k] <= 1e-4;
            if (!(err[k] <= worst[k])) worst[k] = err[k];
          }
          EXPECT(ok, "noise-free b %g c %g d %g e %g (n %d%s): fit b %.10g c %.10g d %.10g e %.10g sse %.3g "
                     "converged %d", t.b, t.c, t.d, t.e, n, zero ? ", x0 = 0" : "", f.b, f.c, f.d, f.e, f.sse,
                 f.converged);
          n_fits++;
        }
  printf("check 1a: %d noise-free LL.4 fits; worst relative error b %.2g c %.2g d %.2g e %.2g\n", n_fits,
         worst[0], worst[1], worst[2], worst[3]);
}

/* ---------------- check 1b: noisy points against R nls ---------------- */

static void check_hill_vs_r(ps_hill_solver *solver) {
  tsv t;
  tsv_open(&t, HILL_CASES);
  int n_cases = 0;
  double worst_e = 0, worst_bcd = 0, worst_sse = -INFINITY;
  char worst_name[64] = "-";
  while (tsv_next(&t, 14)) {
    const char *name = t.field[0];
    int n = atoi(t.field[1]);
    double *x = parse_exact(t.field[2], n, name, "x"), *y = parse_exact(t.field[3], n, name, "y");
    double rb = num(&t, 8), rc = num(&t, 9), rd = num(&t, 10), re = num(&t, 11), rsse = num(&t, 12);
    ps_hill_params f;
    CHECK_PS(ps_hill_fit(solver, n, x, y, &f));
    double ee = rel_err(f.e, re), scale = rd - rc;
    double eb = fmax(rel_err(f.b, rb), fmax(fabs(f.c - rc) / fmax(fabs(rc), scale), fabs(f.d - rd) / fmax(fabs(rd), scale)));
    double dsse = (f.sse - rsse) / rsse; /* < 0: better than R */
    EXPECT(f.converged && ee <= 1e-3, "%s: e %.10g, R nls %.10g (rel %.3g); b %.6g c %.6g d %.6g vs R %.6g %.6g %.6g",
           name, f.e, re, ee, f.b, f.c, f.d, rb, rc, rd);
    EXPECT(dsse <= 1e-9, "%s: sum of squares %.12g is above R's %.12g", name, f.sse, rsse);
    if (ee > worst_e) {
      worst_e = ee;
      snprintf(worst_name, sizeof worst_name, "%s", name);
    }
    worst_bcd = fmax(worst_bcd, eb);
    worst_sse = fmax(worst_sse, dsse);
    free(x);
    free(y);
    n_cases++;
  }
  tsv_close(&t);
  EXPECT(n_cases >= 20, "only %d cases in %s", n_cases, HILL_CASES);
  printf("check 1b: %d noisy cases vs R nls: worst relative error e %.2g (%s), b/c/d %.2g; "
         "sum of squares relative to R's at most %+.2g\n",
         n_cases, worst_e, worst_name, worst_bcd, worst_sse);
}

/* ---------------- check 1c: whole perturbations against R ---------------- */

static void check_pipeline_vs_r(ps_hill_solver *solver) {
  tsv t;
  tsv_open(&t, PIPELINE_CASES);
  ps_dosage_options opt;
  ps_dosage_options_default(&opt);
  int n_cases = 0, n_fitted = 0, n_filtered = 0;
  double worst_mean = 0, worst_e = 0, worst_h = 0;
  while (tsv_next(&t, 18)) {
    const char *name = t.field[0];
    int64_t n = atoll(t.field[1]), n_control = atoll(t.field[2]);
    int n_bins = atoi(t.field[5]);
    double *bx = parse_exact(t.field[6], n_bins, name, "bin x"), *bps = parse_exact(t.field[7], n_bins, name, "bin PS");
    double *bcount = parse_exact(t.field[8], n_bins, name, "bin count");
    double *own = parse_exact(t.field[15], n, name, "own-gene"), *ps = parse_exact(t.field[16], n, name, "PS");
    double *control = parse_exact(t.field[17], n_control, name, "control");
    double re = num(&t, 12), rh0 = num(&t, 13), rh1 = num(&t, 14);
    ps_dosage_result r;
    CHECK_PS(ps_dosage_fit_one(own, ps, n, control, n_control, &opt, solver, &r));
    EXPECT(r.expr_min == num(&t, 3) && r.control_median == num(&t, 4), "%s: min %.17g median %.17g, R %s %s", name,
           r.expr_min, r.control_median, t.field[3], t.field[4]);
    EXPECT(r.bins.n_bins == n_bins, "%s: %d bins, R %d", name, r.bins.n_bins, n_bins);
    for (int k = 0; k < n_bins && k < r.bins.n_bins; k++) {
      EXPECT(r.bins.count[k] == (int64_t)bcount[k], "%s: bin %d has %lld cells, R %g", name, k,
             (long long)r.bins.count[k], bcount[k]);
      double em = fmax(rel_err(r.bins.mean_x[k], bx[k]), rel_err(r.bins.mean_ps[k], bps[k]));
      EXPECT(em <= 1e-12, "%s: bin %d means %.17g %.17g, R %.17g %.17g", name, k, r.bins.mean_x[k],
             r.bins.mean_ps[k], bx[k], bps[k]);
      worst_mean = fmax(worst_mean, em);
    }
    /* R's decision from its own fit */
    ps_dosage_status want = rh0 - rh1 >= opt.min_drop ? PS_DOSAGE_FITTED : PS_DOSAGE_FILTER_FAILED;
    EXPECT(r.status == want, "%s: status \"%s\", R's fit gives \"%s\"", name, ps_dosage_status_name(r.status),
           ps_dosage_status_name(want));
    double ee = rel_err(r.hill.e, re), eh = fmax(fabs(r.hill0 - rh0), fabs(r.hill1 - rh1));
    EXPECT(ee <= 1e-3 && eh <= 1e-6, "%s: e %.10g, R %.10g (rel %.3g); Hill(0) %.10g Hill(1) %.10g, R %.10g %.10g",
           name, r.hill.e, re, ee, r.hill0, r.hill1, rh0, rh1);
    if (want == PS_DOSAGE_FITTED) {
      ps_dosage_class c = re <= opt.ed50_split ? PS_DOSAGE_BUFFERED : PS_DOSAGE_SENSITIVE;
      EXPECT(r.cls == c && r.ed50 == r.hill.e, "%s: class %s, R's e %.6g says %s", name, ps_dosage_class_name(r.cls),
             re, ps_dosage_class_name(c));
      n_fitted++;
      printf("  %-16s ED50 %.4f (R %.4f) %s, Hill(0) - Hill(1) = %.3f, Pearson r %.3f p %.2g%s\n", name, r.ed50, re,
             ps_dosage_class_name(r.cls), r.hill0 - r.hill1, r.pearson.r, r.pearson.p,
             r.crispri_efficient ? " (CRISPRi efficient)" : "");
    } else {
      EXPECT(isnan(r.ed50) && r.cls == PS_DOSAGE_CLASS_NONE, "%s: unfitted result carries an ED50", name);
      n_filtered++;
      printf("  %-16s %s: Hill(0) - Hill(1) = %.3f (R %.3f)\n", name, ps_dosage_status_name(r.status),
             r.hill0 - r.hill1, rh0 - rh1);
    }
    worst_e = fmax(worst_e, ee);
    worst_h = fmax(worst_h, eh);
    free(bx), free(bps), free(bcount), free(own), free(ps), free(control);
    n_cases++;
  }
  tsv_close(&t);
  EXPECT(n_cases >= 5 && n_fitted >= 3 && n_filtered >= 1, "pipeline cases: %d read, %d fitted, %d filtered",
         n_cases, n_fitted, n_filtered);
  printf("check 1c: %d perturbations vs R (median, cut/quantile bins, nls): bin means to %.2g, e to %.2g, "
         "Hill(0)/Hill(1) to %.2g\n",
         n_cases, worst_mean, worst_e, worst_h);
}

/* ---------------- check 2: correlations and pt against R ---------------- */

static void check_cor_vs_r(void) {
  tsv t;
  tsv_open(&t, COR_CASES);
  int n_cases = 0;
  double worst[4] = {0};
  char worst_name[4][64] = {"-", "-", "-", "-"};
  while (tsv_next(&t, 8)) {
    const char *name = t.field[0];
    int64_t n = atoll(t.field[1]);
    double *x = parse_exact(t.field[6], n, name, "x"), *y = parse_exact(t.field[7], n, name, "y");
    ps_cor_test pe, sp;
    CHECK_PS(ps_cor_pearson(x, y, n, &pe));
    CHECK_PS(ps_cor_spearman(x, y, n, &sp));
    double got[4] = {pe.r, pe.p, sp.r, sp.p}, want[4] = {num(&t, 2), num(&t, 3), num(&t, 4), num(&t, 5)};
    static const char *what[4] = {"Pearson r", "Pearson p", "Spearman r", "Spearman p"};
    for (int k = 0; k < 4; k++) {
      double e = rel_err(got[k], want[k]);
      EXPECT(e <= (k % 2 ? 1e-8 : 1e-12), "%s: %s %.17g, R %.17g (rel %.3g)", name, what[k], got[k], want[k], e);
      if (e > worst[k]) {
        worst[k] = e;
        snprintf(worst_name[k], sizeof worst_name[k], "%s", name);
      }
    }
    free(x);
    free(y);
    n_cases++;
  }
  tsv_close(&t);
  EXPECT(n_cases >= 30, "only %d cases in %s", n_cases, COR_CASES);
  printf("check 2: %d cor.test cases; worst relative error: Pearson r %.2g (%s), p %.2g (%s); Spearman r %.2g (%s), "
         "p %.2g (%s)\n",
         n_cases, worst[0], worst_name[0], worst[1], worst_name[1], worst[2], worst_name[2], worst[3], worst_name[3]);

  tsv_open(&t, PT_CASES);
  int n_pt = 0;
  double worst_pt = 0;
  while (tsv_next(&t, 4)) {
    double tt = num(&t, 0), df = num(&t, 1);
    for (int lower = 1; lower >= 0; lower--) {
      double got = ps_pt(tt, df, lower), want = num(&t, lower ? 2 : 3), e = rel_err(got, want);
      /* p below the smallest normal double: compare absolutely (R's TOMS 708 and our continued
       * fraction round subnormals differently) */
      if (want < 1e-300 && fabs(got - want) < 1e-300) e = 0;
      EXPECT(e <= 1e-10, "pt(%.17g, %g, lower %d) = %.17g, R %.17g (rel %.3g)", tt, df, lower, got, want, e);
      worst_pt = fmax(worst_pt, e);
    }
    n_pt++;
  }
  tsv_close(&t);
  printf("check 2: %d pt(t, df) values in both tails, worst relative error %.2g\n", n_pt, worst_pt);
}

/* ---------------- check 3: statuses and edge cases ---------------- */

/* Cells with own-gene values own[] and PS = Hill(normalized x) + noise; controls with median 2. */
static void make_cells(int64_t n, double *own, double *ps, double *control, int64_t n_control,
                       const ps_hill_params *truth, double noise) {
  for (int64_t i = 0; i < n_control; i++) control[i] = 2.0 * (0.5 + (double)i / (double)(n_control - 1));
  for (int64_t i = 0; i < n; i++) ps[i] = ps_hill_eval(truth, own[i] / 2.0) + noise * normal();
}

static void check_statuses(ps_hill_solver *solver) {
  ps_dosage_options opt;
  ps_dosage_options_default(&opt);
  enum { N = 400, NC = 301 };
  static double own[N], ps[N], control[NC];
  ps_hill_params truth = {.b = 3, .c = 0.05, .d = 0.9, .e = 0.35};
  ps_dosage_result r;

  /* A good perturbation first: fitted, buffered. */
  for (int i = 0; i < N; i++) own[i] = i == 0 ? 0.0 : 2.0 * 1.3 * unif();
  make_cells(N, own, ps, control, NC, &truth, 0.05);
  CHECK_PS(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r));
  EXPECT(r.status == PS_DOSAGE_FITTED && r.cls == PS_DOSAGE_BUFFERED && fabs(r.ed50 - 0.35) < 0.05,
         "clean buffered case: status %s, class %s, ED50 %g", ps_dosage_status_name(r.status),
         ps_dosage_class_name(r.cls), r.ed50);
  EXPECT(r.control_median == 2.0 && r.expr_min == 0.0, "median %g (want 2), min %g (want 0)", r.control_median,
         r.expr_min);
  EXPECT(r.crispri_efficient && r.pearson.r < -0.5, "clean case: Pearson r %g p %g, not CRISPRi-efficient",
         r.pearson.r, r.pearson.p);
  double sum = 0;
  for (int i = 0; i < N; i++) sum += ps[i];
  EXPECT(fabs(r.cumulative_ps - sum) <= 1e-12 * fabs(sum), "cumulative PS %.17g vs %.17g", r.cumulative_ps, sum);
  printf("check 3: clean case: ED50 %.4f (truth 0.35) %s, drop %.3f, r %.3f\n", r.ed50, ps_dosage_class_name(r.cls),
         r.hill0 - r.hill1, r.pearson.r);

  /* Sensitive: same with e = 0.8. */
  truth.e = 0.8;
  make_cells(N, own, ps, control, NC, &truth, 0.05);
  CHECK_PS(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r));
  EXPECT(r.status == PS_DOSAGE_FITTED && r.cls == PS_DOSAGE_SENSITIVE, "sensitive case: status %s class %s ED50 %g",
         ps_dosage_status_name(r.status), ps_dosage_class_name(r.cls), r.ed50);

  /* Ties: 65% of the cells at 0 (deciles 0 .. 0.6 all 0), the rest on two values:
   * breaks 0, 1, 2 -> 2 bins < 5: "too few bins". */
  truth.e = 0.35;
  for (int i = 0; i < N; i++) own[i] = i < 260 ? 0.0 : i < 330 ? 1.0 : 2.0;
  make_cells(N, own, ps, control, NC, &truth, 0.05);
  CHECK_PS(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r));
  EXPECT(r.status == PS_DOSAGE_TOO_FEW_BINS && r.bins.n_bins < 5 && isnan(r.ed50),
         "tied deciles: status %s with %d bins", ps_dosage_status_name(r.status), r.bins.n_bins);
  printf("check 3: tied deciles: %d unique breaks, %d bins -> \"%s\"\n", r.bins.n_breaks, r.bins.n_bins,
         ps_dosage_status_name(r.status));
  /* the breaks are R's: quantile(x, 0:10/10) of 260 zeros, 70 halves, 70 ones = 0 x 7, 0.5, 0.5 (0.8: index 320.2
   * between x[320] = 0.5 and x[321] = 0.5), 1 (0.9: index 360.1, both 1), 1 */
  EXPECT(r.bins.n_breaks == 3 && r.bins.breaks[0] == 0 && r.bins.breaks[1] == 0.5 && r.bins.breaks[2] == 1.0,
         "tied breaks: %d: %g %g %g", r.bins.n_breaks, r.bins.breaks[0], r.bins.breaks[1], r.bins.breaks[2]);

  /* An empty interval is dropped. 400 values: 10 zeros, 70 at 0.5, then 1 .. 2. Decile 0.1
   * (index 40.9) is 0.5; decile 0.2 (index 80.8) interpolates between x[80] = 0.5 and
   * x[81] = 1: 0.9. Nothing lies in (0.5, 0.9]. */
  {
    static double xs[400];
    for (int i = 0; i < 400; i++) xs[i] = i < 10 ? 0.0 : i < 80 ? 0.5 : 1.0 + (i - 80) / 320.0;
    ps_dosage_bins bins;
    CHECK_PS(ps_dosage_bin(xs, NULL, 400, 10, &bins));
    EXPECT(bins.n_breaks == 11 && bins.breaks[1] == 0.5 && fabs(bins.breaks[2] - 0.9) < 1e-12 &&
               bins.n_bins == 9 && bins.count[0] == 80 && bins.interval[1] == 2 && isnan(bins.mean_ps[0]),
           "empty interval: %d breaks (%g %g), %d bins, first count %lld, second interval %d", bins.n_breaks,
           bins.breaks[1], bins.breaks[2], bins.n_bins, (long long)bins.count[0], bins.interval[1]);
    int64_t total = 0;
    for (int k = 0; k < bins.n_bins; k++) total += bins.count[k];
    EXPECT(total == 400, "binned %lld of 400", (long long)total);
    /* 0 0 0 0.5 0.5 0.5 in thirds: breaks 0, 0, 0.5, 0.5 -> unique 0, 0.5: one bin [0, 0.5] */
    double six[6] = {0, 0, 0, 0.5, 0.5, 0.5};
    CHECK_PS(ps_dosage_bin(six, NULL, 6, 3, &bins));
    EXPECT(bins.n_breaks == 2 && bins.n_bins == 1 && bins.count[0] == 6, "thirds: %d breaks %d bins", bins.n_breaks,
           bins.n_bins);
    printf("check 3: empty interval (0.5, 0.9] dropped: %d bins from %d breaks\n", 9, 11);
  }

  /* Flat response: PS independent of expression -> the fit (if any) fails the filter. */
  for (int i = 0; i < N; i++) {
    own[i] = 2.0 * 1.3 * unif();
    ps[i] = 0.4 + 0.05 * normal();
  }
  CHECK_PS(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r));
  EXPECT(r.status == PS_DOSAGE_FILTER_FAILED && r.bins.n_bins == 10 && isnan(r.ed50) &&
             r.cls == PS_DOSAGE_CLASS_NONE && !r.crispri_efficient,
         "flat response: status %s, drop %g", ps_dosage_status_name(r.status), r.hill0 - r.hill1);
  printf("check 3: flat response: Hill(0) - Hill(1) = %.3f -> \"%s\"\n", r.hill0 - r.hill1,
         ps_dosage_status_name(r.status));
  /* Increasing response (PS rises with expression): the drop is negative -> filtered. */
  truth = (ps_hill_params){.b = -3, .c = 0.05, .d = 0.9, .e = 0.5};
  make_cells(N, own, ps, control, NC, &truth, 0.05);
  CHECK_PS(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r));
  EXPECT(r.status == PS_DOSAGE_FILTER_FAILED && r.hill0 - r.hill1 < 0 && !r.crispri_efficient,
         "increasing response: status %s, drop %g", ps_dosage_status_name(r.status), r.hill0 - r.hill1);

  /* Own gene zero in most controls: median == min == 0. */
  for (int i = 0; i < NC; i++) control[i] = i % 3 == 0 ? 1.5 : 0.0;
  CHECK_PS(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r));
  EXPECT(r.status == PS_DOSAGE_NOT_EXPRESSED && r.bins.n_bins == 0 && !isnan(r.pearson.r),
         "not expressed: status %s", ps_dosage_status_name(r.status));
  printf("check 3: median of controls == min -> \"%s\"\n", ps_dosage_status_name(r.status));

  /* Too few cells: correlations and the cumulative score are still reported. */
  CHECK_PS(ps_dosage_fit_one(own, ps, 99, control, NC, &opt, solver, &r));
  EXPECT(r.status == PS_DOSAGE_TOO_FEW_CELLS && r.n_cells == 99 && !isnan(r.pearson.p) && r.bins.n_bins == 0,
         "99 cells: status %s", ps_dosage_status_name(r.status));

  /* Bad input is an error, not a status. */
  ps[3] = NAN;
  EXPECT(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r) == PS_ERR_INPUT, "NaN PS accepted");
  ps[3] = 0.5;
  opt.min_bins = 3;
  EXPECT(ps_dosage_fit_one(own, ps, N, control, NC, &opt, solver, &r) == PS_ERR_INPUT, "min_bins 3 accepted");
  ps_error_clear();

  /* Hill at x = 0 is the limit; the two parameterizations of one curve agree. */
  ps_hill_params p = {.b = 2, .c = 0.1, .d = 0.8, .e = 0.4}, q = {.b = -2, .c = 0.8, .d = 0.1, .e = 0.4};
  EXPECT(ps_hill_eval(&p, 0) == 0.8 && ps_hill_eval(&q, 0) == 0.8, "Hill(0) %g %g", ps_hill_eval(&p, 0),
         ps_hill_eval(&q, 0));
  EXPECT(fabs(ps_hill_eval(&p, 0.4) - 0.45) < 1e-15 && fabs(ps_hill_eval(&p, 1e-300) - 0.8) < 1e-15 &&
             fabs(ps_hill_eval(&p, 1e300) - 0.1) < 1e-15 && fabs(ps_hill_eval(&q, 0.7) - ps_hill_eval(&p, 0.7)) < 1e-15,
         "Hill values");
  ps_hill_params flat = {.b = 0, .c = 0.2, .d = 0.6, .e = 1};
  EXPECT(ps_hill_eval(&flat, 0) == 0.4 && ps_hill_eval(&flat, 3) == 0.4, "b = 0 is flat at (c + d) / 2");
}

/* A step between two bins: the least-squares optimum is b -> infinity. The fit must end
 * on the |b| bound or settle in the valley, without a PETSc error, with the step's two
 * levels as Hill(0) and Hill(large x). */
static void check_step(ps_hill_solver *solver) {
  double x[10], y[10];
  for (int i = 0; i < 10; i++) {
    x[i] = 0.1 * (i + 1);
    y[i] = x[i] <= 0.45 ? 0.9 : 0.2;
  }
  ps_hill_params f;
  CHECK_PS(ps_hill_fit(solver, 10, x, y, &f));
  /* |b| <= 100 leaves residuals of ~1e-5 at the two bins next to the step */
  EXPECT(f.converged && (f.at_bound || f.flat) && f.sse < 1e-8 && fabs(ps_hill_eval(&f, 0) - 0.9) < 1e-4 &&
             fabs(ps_hill_eval(&f, 5.0) - 0.2) < 1e-4 && f.e > 0.4 && f.e < 0.5,
         "step: b %g c %g d %g e %g sse %g converged %d flat %d at_bound %d", f.b, f.c, f.d, f.e, f.sse, f.converged,
         f.flat, f.at_bound);
  printf("step between bins: b %.1f (at bound: %d, flat: %d), e %.4f, Hill(0) %.6f, sse %.2g\n", f.b, f.at_bound,
         f.flat, f.e, ps_hill_eval(&f, 0), f.sse);
}

/* A reused solver must give what a fresh one gives. (TAO's BNK solvers keep state across
 * solves; with BNK's default active-set estimate a solver that had done a few hundred
 * fits froze free variables and stalled: this failed before as_type none.) */
enum { N_REF = 6 };
static double ref_x[N_REF][10], ref_y[N_REF][10];
static ps_hill_params ref_fit[N_REF];

static void reference_fits(int again, ps_hill_solver *solver) {
  double worst = 0;
  for (int k = 0; k < N_REF; k++) {
    if (!again) {
      ps_hill_params t = {.b = k % 2 ? 2.5 : -4.0, .c = 0.1, .d = 0.8, .e = 0.2 + 0.3 * k};
      for (int i = 0; i < 10; i++) {
        ref_x[k][i] = exp(log(0.03) + (log(1.6) - log(0.03)) * i / 9.0);
        ref_y[k][i] = ps_hill_eval(&t, ref_x[k][i]) + (k < 3 ? 0.0 : 0.02 * normal());
      }
    }
    ps_hill_params f;
    CHECK_PS(ps_hill_fit(solver, k < 3 ? 5 + k : 10, ref_x[k], ref_y[k], &f));
    if (!again) {
      ref_fit[k] = f;
      continue;
    }
    const ps_hill_params *r = &ref_fit[k];
    double d = fmax(fmax(rel_err(f.b, r->b), rel_err(f.e, r->e)), fmax(fabs(f.c - r->c), fabs(f.d - r->d)));
    EXPECT(d <= 1e-8 && f.converged == r->converged, "reference fit %d on a reused solver: b %.12g e %.12g, fresh "
           "solver b %.12g e %.12g", k, f.b, f.e, r->b, r->e);
    worst = fmax(worst, d);
  }
  if (again) printf("reused solver vs fresh solver on %d fits: worst relative difference %.2g\n", N_REF, worst);
}

/* Many random noisy fits: robust start vs a single start at the truth, and speed. */
static void check_random_fits(ps_hill_solver *solver) {
  enum { CASES = 2000 };
  int n_unconverged = 0, n_worse = 0, n_at_bound = 0, n_flat = 0;
  double x[10], y[10], t0 = MPI_Wtime();
  for (int c = 0; c < CASES; c++) {
    int n = 5 + c % 6;
    ps_hill_params t = {.b = (c % 2 ? 1 : -1) * (0.5 + 7.5 * unif()), .e = exp(log(0.08) + unif() * log(25.0)),
                        .c = 0.3 * unif() - 0.1};
    t.d = t.c + 0.2 + unif();
    for (int i = 0; i < n; i++) {
      x[i] = exp(log(0.03) + (log(1.6) - log(0.03)) * (i + 0.5 * unif()) / (n - 0.5));
      y[i] = ps_hill_eval(&t, x[i]) + 0.03 * normal();
    }
    ps_hill_params f;
    CHECK_PS(ps_hill_fit(solver, n, x, y, &f));
    n_unconverged += !f.converged;
    n_at_bound += f.at_bound;
    n_flat += f.flat;
    /* the sum of squares at the truth bounds the optimum from above */
    double sse_truth = 0;
    for (int i = 0; i < n; i++) sse_truth += pow(ps_hill_eval(&t, x[i]) - y[i], 2);
    if (f.sse > sse_truth * (1 + 1e-9)) {
      n_worse++;
      fprintf(stderr, "  case %d: fit sse %.6g above the truth's %.6g (b %g e %g, fit b %g e %g)\n", c, f.sse,
              sse_truth, t.b, t.e, f.b, f.e);
    }
  }
  double secs = MPI_Wtime() - t0;
  EXPECT(n_worse == 0, "%d of %d fits worse than the true parameters", n_worse, CASES);
  EXPECT(n_unconverged <= CASES / 50, "%d of %d fits did not converge", n_unconverged, CASES);
  int64_t fits, solves, fallback, its;
  ps_hill_solver_counts(solver, &fits, &solves, &fallback, &its);
  printf("random noisy fits: %d (5..10 points), none worse than the truth: %s; %d not converged, %d flat, "
         "%d at a bound; %.0f fits/s\nsolver so far: %lld fits, %lld TAO solves (%lld with the fallback method), "
         "%.1f iterations per solve\n",
         CASES, n_worse ? "NO" : "yes", n_unconverged, n_flat, n_at_bound, CASES / secs, (long long)fits,
         (long long)solves, (long long)fallback, (double)its / (double)solves);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1;
  ps_hill_solver *solver, *fresh;
  CHECK_PS(ps_hill_solver_create(10, &fresh));
  reference_fits(0, fresh);
  ps_hill_solver_destroy(&fresh);
  CHECK_PS(ps_hill_solver_create(10, &solver));
  check_noise_free(solver);
  check_hill_vs_r(solver);
  check_pipeline_vs_r(solver);
  check_cor_vs_r();
  check_statuses(solver);
  check_random_fits(solver);
  check_step(solver);
  reference_fits(1, solver);
  ps_hill_solver_destroy(&solver);
  EXPECT(solver == NULL, "destroy did not clear the pointer");
  PetscFinalize();
  printf("%s (%d failure%s)\n", failures ? "FAILED" : "passed", failures, failures == 1 ? "" : "s");
  MPI_Finalize();
  return failures ? 1 : 0;
}
