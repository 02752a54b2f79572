/* MPI test of the perturbations scheme (SPEC.md section 7, docs/cv.md) on an
 * in-memory screen: 1300 cells (every 13th a control, every 50th perturbed twice),
 * 12 perturbations whose effects come from a rank-2 gene embedding, 60 genes.
 *
 * Check 2: the training-mean baseline equals the mean of the training deltas
 *   exactly (same order, own-gene entries left out), the median equals an
 *   independent median; then every cell of fold 0's held-out perturbations
 *   (also the doubly perturbed ones) is poisoned with NaN: fold 0's training
 *   outputs (mean, median, embedding predictions, the control mean) stay finite
 *   and bit-for-bit unchanged, fold 0's held-out metrics become NaN, and the
 *   other folds, which train on the poisoned perturbations, do turn NaN (so the
 *   test can see a leak).
 * The embedding model against a serial reference (LAPACK dgesvd, the docs/cv.md
 *   formula) to 1e-9, fitted by the fold groups and by all ranks together (pdgesvd
 *   on 1 x 1, 2 x 1, 3 x 1 and 2 x 2 grids for np 1, 2, 3, 4).
 * Check 6 at the library level: predictions equal to control mean + observed
 *   delta score Pearson 1, retrieval 1, MSE 0; predictions equal to control mean +
 *   the mean baseline score as the mean baseline (1e-12). */
#include "pertscore/cv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *info,
             size_t, size_t);

enum { M = 1300, K = 12, G = 60, R = 2 };

static int rank = 0;

static int64_t own_of(int32_t k) { return 4 * k; }

/* Global cell i: perturbation ids (0, 1 or 2 of them). */
static int cell_ids(int64_t i, int32_t *ids) {
  int32_t group = (int32_t)(i % (K + 1));
  if (group == K) return 0;
  ids[0] = group;
  if (i % 50 == 0) {
    ids[1] = (group + 1) % K;
    if (ids[1] < ids[0]) {
      int32_t t = ids[0];
      ids[0] = ids[1];
      ids[1] = t;
    }
    return 2;
  }
  return 1;
}

static void build(int64_t begin, int64_t end, ps_design *d, ps_csr *x) {
  static double e[G][R];
  ps_rng er = ps_rng_make(11, 1);
  for (int g = 0; g < G; g++)
    for (int r = 0; r < R; r++) e[g][r] = ps_rng_normal(&er);
  int64_t n = end - begin;
  memset(d, 0, sizeof *d);
  d->n_perturbations = K;
  char name[16];
  for (int k = 0; k < K; k++) {
    snprintf(name, sizeof name, "P%02d", k);
    ps_strlist_push(&d->names, name);
  }
  d->n_cells = n;
  d->ptr = calloc((size_t)n + 1, sizeof *d->ptr);
  d->ids = calloc((size_t)(2 * n + 1), sizeof *d->ids);
  x->n_rows = n;
  x->n_cols = G;
  x->indptr = calloc((size_t)n + 1, sizeof *x->indptr);
  x->indices = calloc((size_t)(n * G), sizeof *x->indices);
  x->data = calloc((size_t)(n * G), sizeof *x->data);
  for (int64_t j = 0; j < n; j++) {
    int32_t ids[2];
    int c = cell_ids(begin + j, ids);
    d->ptr[j + 1] = d->ptr[j] + c;
    for (int t = 0; t < c; t++) d->ids[d->ptr[j] + t] = ids[t];
    ps_rng noise = ps_rng_make(12, (uint64_t)(begin + j));
    for (int g = 0; g < G; g++) {
      double v = 1.0 + 0.02 * g;
      for (int t = 0; t < c; t++) {
        double dot = 0;
        for (int r = 0; r < R; r++) dot += e[own_of(ids[t])][r] * e[g][r];
        v += 0.4 * dot;
      }
      x->indices[j * G + g] = g;
      x->data[j * G + g] = v + 0.3 * ps_rng_normal(&noise);
    }
    x->indptr[j + 1] = (j + 1) * G;
  }
}

static const double *row(const ps_cv_perturbation_result *r, int model, int32_t k) {
  return r->predicted + ((int64_t)model * K + k) * G;
}

static double metric(const ps_cv_perturbation_result *r, int32_t k, int model, int m) {
  return r->metrics[((int64_t)k * PS_CV_N_MODELS + model) * PS_CV_N_METRICS + m];
}

/* Serial reference of the embedding model for fold f (docs/cv.md), predictions of its held-out perturbations. */
static void reference_embedding(const ps_cv_perturbation_result *r, int f, const double *center, double *pred) {
  int T = 0, train[K];
  for (int32_t k = 0; k < K; k++)
    if (r->fold[k] >= 0 && r->fold[k] != f) train[T++] = k;
  int g_ = G, lo = T < G ? T : G, one = 1, info = 0;
  /* Y: training deltas minus the centre, own-gene entries (NaN in observed) 0; y is dgesvd's copy */
  double *yc = calloc((size_t)G * T, sizeof *yc), *y = calloc((size_t)G * T, sizeof *y);
  double *u = calloc((size_t)G * lo, sizeof *u), s[G], vt[1];
  for (int t = 0; t < T; t++)
    for (int g = 0; g < G; g++) {
      double o = r->observed[(int64_t)train[t] * G + g];
      y[(int64_t)t * G + g] = yc[(int64_t)t * G + g] = isnan(o) ? 0.0 : o - center[g];
    }
  double query;
  int lwork = -1;
  dgesvd_("S", "N", &g_, &T, y, &g_, s, u, &g_, vt, &one, &query, &lwork, &info, 1, 1);
  lwork = (int)query;
  double *work = malloc((size_t)lwork * sizeof *work);
  dgesvd_("S", "N", &g_, &T, y, &g_, s, u, &g_, vt, &one, work, &lwork, &info, 1, 1);
  EXPECT(info == 0, "dgesvd info %d", info);
  int k = 10 < T - 1 ? 10 : T - 1;
  double sc[G][10], p[10][K], gty[10][K], m2[10][10], a[10][10], w[10][10];
  for (int g = 0; g < G; g++)
    for (int i = 0; i < k; i++) sc[g][i] = u[(int64_t)i * G + g] * s[i];
  for (int t = 0; t < T; t++)
    for (int i = 0; i < k; i++) {
      p[i][t] = sc[own_of(train[t])][i];
      double acc = 0;
      for (int g = 0; g < G; g++) acc += sc[g][i] * yc[(int64_t)t * G + g];
      gty[i][t] = acc;
    }
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      double s1 = 0, s2 = 0;
      for (int t = 0; t < T; t++) {
        s1 += gty[i][t] * p[j][t];
        s2 += p[i][t] * p[j][t];
      }
      m2[i][j] = s1 / (s[i] * s[i] + 0.1);
      a[i][j] = s2 + (i == j ? 0.1 : 0);
    }
  /* W = M2 A^-1 by Gauss-Jordan on A (independent of the library's Cholesky) */
  double inv[10][10];
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) inv[i][j] = i == j;
  for (int c = 0; c < k; c++) {
    int piv = c;
    for (int i = c + 1; i < k; i++)
      if (fabs(a[i][c]) > fabs(a[piv][c])) piv = i;
    for (int j = 0; j < k; j++) {
      double t = a[c][j];
      a[c][j] = a[piv][j];
      a[piv][j] = t;
      t = inv[c][j];
      inv[c][j] = inv[piv][j];
      inv[piv][j] = t;
    }
    double d = a[c][c];
    for (int j = 0; j < k; j++) {
      a[c][j] /= d;
      inv[c][j] /= d;
    }
    for (int i = 0; i < k; i++) {
      if (i == c) continue;
      double fct = a[i][c];
      for (int j = 0; j < k; j++) {
        a[i][j] -= fct * a[c][j];
        inv[i][j] -= fct * inv[c][j];
      }
    }
  }
  for (int i = 0; i < k; i++)
    for (int j = 0; j < k; j++) {
      double acc = 0;
      for (int t = 0; t < k; t++) acc += m2[i][t] * inv[t][j];
      w[i][j] = acc;
    }
  for (int32_t h = 0; h < K; h++) {
    if (r->fold[h] != f) continue;
    double wp[10];
    for (int i = 0; i < k; i++) {
      wp[i] = 0;
      for (int j = 0; j < k; j++) wp[i] += w[i][j] * sc[own_of(h)][j];
    }
    for (int g = 0; g < G; g++) {
      double acc = center[g];
      for (int i = 0; i < k; i++) acc += sc[g][i] * wp[i];
      pred[(int64_t)h * G + g] = acc;
    }
  }
  free(y);
  free(yc);
  free(u);
  free(work);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int64_t begin, end;
  ps_block_range(M, rank, size, &begin, &end);
  ps_design d;
  ps_csr x;
  build(begin, end, &d, &x);
  int64_t own[K];
  for (int k = 0; k < K; k++) own[k] = own_of(k);
  ps_cv_options opt;
  ps_cv_options_default(&opt);
  opt.keep_predictions = 1;
  opt.seed = 3;
  ps_cv_perturbation_input in = {.design = &d, .x = &x, .n_genes = G, .own_gene = own};
  ps_cv_perturbation_result r0;
  CHECK_PS(ps_cv_perturbations(MPI_COMM_WORLD, &in, &opt, &r0));

  /* folds: every perturbation included, sizes 3 or 2 */
  int per_fold[5] = {0};
  for (int k = 0; k < K; k++) per_fold[r0.fold[k]]++;
  for (int f = 0; f < 5; f++) EXPECT(per_fold[f] == 2 || per_fold[f] == 3, "fold %d holds %d", f, per_fold[f]);
  int64_t doubles = 0;
  for (int64_t i = 0; i < M; i++) {
    int32_t ids[2];
    doubles += cell_ids(i, ids) == 2;
  }
  EXPECT(r0.n_multiple == doubles, "doubly perturbed cells left out: %lld, expected %lld", (long long)r0.n_multiple,
         (long long)doubles);

  /* check 2a: the mean baseline is the mean of the training deltas, exactly; the median independently */
  for (int32_t k = 0; k < K; k++) {
    int f = r0.fold[k];
    for (int g = 0; g < G; g++) {
      double sum = 0, v[K];
      int n = 0;
      for (int32_t t = 0; t < K; t++) {
        if (r0.fold[t] == f || own[t] == g) continue;
        sum += r0.observed[(int64_t)t * G + g];
        v[n++] = r0.observed[(int64_t)t * G + g];
      }
      EXPECT(row(&r0, PS_CV_MODEL_MEAN, k)[g] == sum / n, "mean baseline k %d g %d: %.17g vs %.17g", k, g,
             row(&r0, PS_CV_MODEL_MEAN, k)[g], sum / n);
      for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
          double t = v[j];
          v[j] = v[j - 1];
          v[j - 1] = t;
        }
      double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
      EXPECT(row(&r0, PS_CV_MODEL_MEDIAN, k)[g] == med, "median baseline k %d g %d", k, g);
      EXPECT(row(&r0, PS_CV_MODEL_ZERO, k)[g] == 0, "zero baseline");
    }
    for (int m = 0; m < PS_CV_N_METRICS; m++)
      EXPECT(m == PS_CV_PEARSON || m == PS_CV_SPEARMAN || m == PS_CV_PEARSON_TOP || m == PS_CV_RETRIEVAL ||
                 !isnan(metric(&r0, k, PS_CV_MODEL_ZERO, m)),
             "zero baseline metric %s undefined", ps_cv_metric_names[m]);
    EXPECT(!isnan(metric(&r0, k, PS_CV_MODEL_CEILING, PS_CV_PEARSON)), "ceiling Pearson undefined for %d", k);
  }

  /* the embedding model against the serial reference, every fold */
  double *ref = calloc((size_t)K * G, sizeof *ref), worst = 0, scale = 0;
  for (int f = 0; f < 5; f++) {
    int32_t any = -1;
    for (int32_t k = 0; k < K; k++)
      if (r0.fold[k] == f) any = k;
    reference_embedding(&r0, f, row(&r0, PS_CV_MODEL_MEAN, any), ref);
  }
  for (int32_t k = 0; k < K; k++)
    for (int g = 0; g < G; g++) {
      double got = row(&r0, PS_CV_MODEL_EMBEDDING, k)[g] - row(&r0, PS_CV_MODEL_MEAN, k)[g];
      double want = ref[(int64_t)k * G + g] - row(&r0, PS_CV_MODEL_MEAN, k)[g];
      worst = fmax(worst, fabs(got - want));
      scale = fmax(scale, fabs(want));
    }
  EXPECT(worst <= 1e-9 * scale && scale > 0, "embedding vs serial reference: max diff %.3g (scale %.3g)", worst, scale);
  if (rank == 0) printf("embedding (fold groups) vs serial dgesvd reference: max |diff| %.3g of %.3g\n", worst, scale);
  /* fold 0's embedding fitted by all ranks together: pdgesvd on a P-rank grid (2 x 1, 3 x 1, 2 x 2) */
  {
    const double *train[K], *center = NULL;
    int64_t town[K];
    int32_t T = 0;
    for (int32_t k = 0; k < K; k++) {
      if (r0.fold[k] == 0) center = row(&r0, PS_CV_MODEL_MEAN, k);
      else {
        train[T] = r0.observed + (int64_t)k * G;
        town[T++] = own[k];
      }
    }
    ps_cv_embedding e;
    CHECK_PS(ps_cv_embedding_fit(MPI_COMM_WORLD, G, T, train, town, center, 10, 0.1, &e));
    double pred[G], diff = 0;
    for (int32_t k = 0; k < K; k++) {
      if (r0.fold[k] != 0) continue;
      ps_cv_embedding_predict(&e, center, own[k], pred);
      for (int g = 0; g < G; g++) diff = fmax(diff, fabs(pred[g] - ref[(int64_t)k * G + g]));
    }
    EXPECT(diff <= 1e-9 * scale, "embedding on all %d ranks vs the serial reference: %.3g", size, diff);
    if (rank == 0) printf("embedding on a %d-rank grid vs serial reference: max |diff| %.3g\n", size, diff);
    ps_cv_embedding_free(&e);
  }
  double emb = 0, mean = 0;
  for (int32_t k = 0; k < K; k++) {
    emb += metric(&r0, k, PS_CV_MODEL_EMBEDDING, PS_CV_PEARSON) / K;
    mean += metric(&r0, k, PS_CV_MODEL_MEAN, PS_CV_PEARSON) / K;
  }
  if (rank == 0) printf("Pearson delta: embedding %.4f, mean baseline %.4f\n", emb, mean);
  EXPECT(emb > mean, "the embedding should beat the mean baseline on this low-rank screen");

  /* check 6 (library level): perfect predictions, and the mean baseline as predictions */
  double *truth = malloc((size_t)K * G * sizeof *truth), *as_mean = malloc((size_t)K * G * sizeof *as_mean);
  uint8_t has[K];
  for (int32_t k = 0; k < K; k++) {
    has[k] = 1;
    for (int g = 0; g < G; g++) {
      double o = r0.observed[(int64_t)k * G + g];
      truth[(int64_t)k * G + g] = r0.control_mean[g] + (isnan(o) ? 0.0 : o);
      as_mean[(int64_t)k * G + g] = r0.control_mean[g] + row(&r0, PS_CV_MODEL_MEAN, k)[g];
    }
  }
  ps_cv_perturbation_result rp;
  in.predictions = truth;
  in.has_prediction = has;
  CHECK_PS(ps_cv_perturbations(MPI_COMM_WORLD, &in, &opt, &rp));
  for (int32_t k = 0; k < K; k++) {
    EXPECT(fabs(metric(&rp, k, PS_CV_MODEL_PREDICTIONS, PS_CV_PEARSON) - 1) < 1e-12, "perfect predictions Pearson %.17g",
           metric(&rp, k, PS_CV_MODEL_PREDICTIONS, PS_CV_PEARSON));
    EXPECT(metric(&rp, k, PS_CV_MODEL_PREDICTIONS, PS_CV_RETRIEVAL) == 1, "perfect predictions retrieval %g",
           metric(&rp, k, PS_CV_MODEL_PREDICTIONS, PS_CV_RETRIEVAL));
    EXPECT(metric(&rp, k, PS_CV_MODEL_PREDICTIONS, PS_CV_MSE) < 1e-28, "perfect predictions MSE %g",
           metric(&rp, k, PS_CV_MODEL_PREDICTIONS, PS_CV_MSE));
    EXPECT(metric(&rp, k, PS_CV_MODEL_PREDICTIONS, PS_CV_OVERLAP_TOP) == 1, "perfect top overlap");
  }
  ps_cv_perturbation_result_free(&rp);
  in.predictions = as_mean;
  CHECK_PS(ps_cv_perturbations(MPI_COMM_WORLD, &in, &opt, &rp));
  for (int32_t k = 0; k < K; k++)
    for (int m = 0; m < PS_CV_N_METRICS; m++) {
      double a = metric(&rp, k, PS_CV_MODEL_PREDICTIONS, m), b = metric(&rp, k, PS_CV_MODEL_MEAN, m);
      EXPECT((isnan(a) && isnan(b)) || fabs(a - b) <= 1e-12 * fmax(1, fabs(b)), "mean as predictions: %s %.17g vs %.17g",
             ps_cv_metric_names[m], a, b);
    }
  ps_cv_perturbation_result_free(&rp);
  in.predictions = NULL;
  in.has_prediction = NULL;

  /* check 2b: poison every cell carrying a fold-0 held-out perturbation */
  int64_t poisoned = 0;
  for (int64_t j = 0; j < d.n_cells; j++) {
    int hit = 0;
    for (int64_t p = d.ptr[j]; p < d.ptr[j + 1]; p++) hit |= r0.fold[d.ids[p]] == 0;
    if (!hit) continue;
    poisoned++;
    for (int64_t p = x.indptr[j]; p < x.indptr[j + 1]; p++) x.data[p] = NAN;
  }
  MPI_Allreduce(MPI_IN_PLACE, &poisoned, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  ps_cv_perturbation_result r1;
  CHECK_PS(ps_cv_perturbations(MPI_COMM_WORLD, &in, &opt, &r1));
  int leaks = 0, sensitive = 0;
  for (int g = 0; g < G; g++) leaks += !isfinite(r1.control_mean[g]) || r1.control_mean[g] != r0.control_mean[g];
  for (int32_t k = 0; k < K; k++) {
    for (int model = 0; model < PS_CV_MODEL_PREDICTIONS; model++)
      for (int g = 0; g < G; g++) {
        double a = row(&r1, model, k)[g], b = row(&r0, model, k)[g];
        if (r1.fold[k] == 0) leaks += !isfinite(a) || a != b;
        else sensitive += model == PS_CV_MODEL_MEAN && isnan(a);
      }
    if (r1.fold[k] == 0)
      for (int model = 0; model < PS_CV_MODEL_PREDICTIONS; model++)
        EXPECT(isnan(metric(&r1, k, model, PS_CV_MSE)), "held-out metric of a poisoned perturbation is not NaN");
  }
  EXPECT(leaks == 0, "%d training outputs of fold 0 changed or are not finite after poisoning its held-out cells", leaks);
  EXPECT(sensitive > 0, "poisoning did not reach the other folds' training: the test cannot see a leak");
  if (rank == 0)
    printf("poisoned %lld cells of fold 0's held-out perturbations: %d non-finite or changed fold-0 training outputs, "
           "%d NaN mean-baseline entries in the other folds (expected)\n", (long long)poisoned, leaks, sensitive);

  ps_cv_perturbation_result_free(&r0);
  ps_cv_perturbation_result_free(&r1);
  free(ref);
  free(truth);
  free(as_mean);
  ps_design_free(&d);
  ps_csr_free(&x);
  MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("%d checks per rank, %d failures\n", checks, failures);
  MPI_Finalize();
  return failures ? 1 : 0;
}
