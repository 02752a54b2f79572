/* The perturbations scheme (SPEC.md section 7): folds of perturbations, no
 * perturbation in both train and test; predict each held-out perturbation's
 * pseudobulk delta (vs the control mean, every evaluated gene, its own gene
 * left out) with the baselines, the gene-embedding model and optionally an
 * external model, and the split-half ceiling. docs/cv.md has the definitions.
 *
 * Parallel layout: the pseudobulk table is replicated (pseudobulk.c). The
 * ceiling is spread over all ranks by perturbation. The folds are spread over
 * rank groups (MPI_Comm_split: min(P, F) groups of contiguous ranks, group g
 * takes folds g, g + groups, ...): a group fits the fold's embedding together
 * (pdgesvd on its grid) and splits the held-out perturbations' predictions and
 * metrics among its ranks. Every metric is computed by exactly one rank and
 * summed into the replicated table, so the result does not depend on P beyond
 * rounding (pseudobulk sums, SVD). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cv_internal.h"

const char *const ps_cv_model_names[PS_CV_N_MODELS] = {"mean", "median", "zero", "embedding", "predictions",
                                                       "ceiling",
                                                       "split_half"};

void ps_cv_options_default(ps_cv_options *o) {
  memset(o, 0, sizeof *o);
  o->scheme = PS_CV_SCHEME_PERTURBATIONS;
  o->n_folds = 5;
  o->seed = 1;
  o->min_cells = 10;
  o->n_pcs = 10;
  o->embedding_lambda = 0.1;
  o->top_n = 100;
  o->top_de = 50;
  o->n_ridge_lambdas = 13; /* 10^-2 .. 10^4 in half decades; run's default 0.01 is the first */
  for (int i = 0; i < o->n_ridge_lambdas; i++) o->ridge_lambdas[i] = pow(10.0, -2.0 + 0.5 * i);
  ps_score_options_default(&o->score);
}

void ps_cv_perturbation_result_free(ps_cv_perturbation_result *r) {
  if (!r) return;
  free(r->fold);
  free(r->n_cells);
  free(r->own_gene);
  free(r->n_pcs);
  free(r->n_train);
  free(r->metrics);
  free(r->control_mean);
  free(r->observed);
  free(r->predicted);
  free(r->cell_half);
  free(r->compared);
  free(r->pereggrn);
  memset(r, 0, sizeof *r);
}

static double *metric_row(ps_cv_perturbation_result *r, int32_t k, int model) {
  return r->metrics + ((int64_t)k * PS_CV_N_MODELS + model) * PS_CV_N_METRICS;
}

static double *pereggrn_row(ps_cv_perturbation_result *r, int32_t k, int model) {
  return r->pereggrn + ((int64_t)k * PS_CV_N_MODELS + model) * PS_CV_N_PEREGGRN;
}

/* Split-half ceiling of every included perturbation, spread over ranks: predicted
 * = half 0's delta, observed = half 1's delta (each half against the same half of
 * the controls), the raw metrics in the split_half rows; retrieval among the fold's
 * held-out perturbations' half-1 deltas. The ceiling rows hold them corrected to the
 * full data (ceiling.c): retrieval with each candidate's correlation scaled by
 * ps_cv_ceiling_scale of its own split-half Pearson.
 * half_delta: the bulk's half means with the control half subtracted in place. */
static int ceiling(MPI_Comm comm, const ps_cv_bulk *b, const double *half_delta, const double *kappa,
                   const int32_t *inc, int32_t n_inc, const ps_cv_options *opt, ps_cv_perturbation_result *r) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t G = b->n_genes;
  const double **obs;
  int64_t *own;
  double *half_r, *scale;
  PS_ALLOC(obs, n_inc);
  PS_ALLOC(own, n_inc);
  PS_ALLOC(half_r, n_inc);
  PS_ALLOC(scale, n_inc);
  /* every perturbation's split-half Pearson (each rank needs its folds' for the scaling) */
  for (int32_t j = 0; j < n_inc; j++) {
    int64_t skip = r->own_gene[inc[j]];
    const double *h0 = half_delta + 2 * (int64_t)inc[j] * G;
    half_r[j] = ps_cv_pearson(G, h0, h0 + G, &skip, 1);
  }
  for (int32_t i = rank; i < n_inc; i += size) {
    int32_t k = inc[i], n = 0, truth = -1;
    for (int32_t j = 0; j < n_inc; j++) {
      if (r->fold[inc[j]] != r->fold[k]) continue;
      if (inc[j] == k) truth = n;
      obs[n] = half_delta + (2 * (int64_t)inc[j] + 1) * G;
      scale[n] = ps_cv_ceiling_scale(half_r[j], kappa ? kappa[inc[j]] : 0.5);
      own[n++] = r->own_gene[inc[j]];
    }
    const double *pred = half_delta + 2 * (int64_t)k * G, *truth_obs = pred + G;
    double *raw = metric_row(r, k, PS_CV_MODEL_SPLIT_HALF), *m = metric_row(r, k, PS_CV_MODEL_CEILING);
    int64_t skip = r->own_gene[k];
    PS_CALL(ps_cv_delta_metrics(G, pred, truth_obs, &skip, 1, opt->top_n, opt->top_de, raw));
    raw[PS_CV_RETRIEVAL] = ps_cv_retrieval(G, pred, skip, obs, own, n, truth);
    int64_t n_genes = G - (skip >= 0 && skip < G), top = opt->top_n < n_genes ? opt->top_n : n_genes;
    double kap = kappa ? kappa[k] : 0.5;
    ps_cv_ceiling_correct(raw, n_genes > 0 ? (double)top / (double)n_genes : 1.0, kap, m);
    m[PS_CV_RETRIEVAL] = ps_cv_retrieval_scaled(G, pred, skip, obs, own, n, truth, scale);
    double *pg_raw = pereggrn_row(r, k, PS_CV_MODEL_SPLIT_HALF);
    PS_CALL(ps_cv_pereggrn_metrics(G, pred, truth_obs, &skip, 1, pg_raw));
    ps_cv_pereggrn_correct(pg_raw, kap, pereggrn_row(r, k, PS_CV_MODEL_CEILING));
  }
  free(obs);
  free(own);
  free(half_r);
  free(scale);
  return PS_OK;
}

/* One fold on its group: train on the other folds' perturbations, predict and
 * score this fold's (the group's ranks take every gsize-th held-out one). */
static int run_fold(MPI_Comm group, int f, const ps_cv_perturbation_input *in, const double *obs,
                    const double *test_obs,
                    const double *control_mean, const int32_t *inc, int32_t n_inc, const ps_cv_options *opt,
                    ps_cv_perturbation_result *r) {
  int grank, gsize;
  MPI_Comm_rank(group, &grank);
  MPI_Comm_size(group, &gsize);
  int64_t G = r->n_genes;
  int32_t n_train = 0, n_test = 0;
  const double **train, **test;
  int64_t *train_own, *test_own;
  int32_t *test_k;
  PS_ALLOC(train, n_inc);
  PS_ALLOC(test, n_inc);
  PS_ALLOC(train_own, n_inc);
  PS_ALLOC(test_own, n_inc);
  PS_ALLOC(test_k, n_inc);
  for (int32_t i = 0; i < n_inc; i++) {
    int32_t k = inc[i];
    if (r->fold[k] == f) {
      test[n_test] = test_obs + (int64_t)k * G;
      test_own[n_test] = r->own_gene[k];
      test_k[n_test++] = k;
    } else {
      train[n_train] = obs + (int64_t)k * G;
      train_own[n_train++] = r->own_gene[k];
    }
  }
  double *mean, *median, *zero, *pred;
  PS_ALLOC(mean, G);
  PS_ALLOC(median, G);
  PS_ALLOC(zero, G);
  PS_ALLOC(pred, G);
  PS_CALL(ps_cv_baselines(G, n_train, train, train_own, mean, median));
  ps_cv_embedding e;
  PS_CALL(ps_cv_embedding_fit(group, G, n_train, train, train_own, mean, opt->n_pcs, opt->embedding_lambda, &e));
  r->n_pcs[f] = e.k;
  r->n_train[f] = n_train;
  for (int32_t h = grank; h < n_test; h += gsize) {
    int32_t k = test_k[h];
    int64_t own = test_own[h];
    for (int model = 0; model < PS_CV_MODEL_CEILING; model++) {
      const double *p = pred;
      switch (model) {
        case PS_CV_MODEL_MEAN: p = mean; break;
        case PS_CV_MODEL_MEDIAN: p = median; break;
        case PS_CV_MODEL_ZERO: p = zero; break;
        case PS_CV_MODEL_EMBEDDING: ps_cv_embedding_predict(&e, mean, own, pred); break;
        case PS_CV_MODEL_PREDICTIONS:
          for (int64_t g = 0; g < G; g++)
            pred[g] = in->predictions && in->has_prediction[k] ? in->predictions[(int64_t)k * G + g] - control_mean[g]
                                                               : NAN;
          break;
      }
      double *m = metric_row(r, k, model);
      PS_CALL(ps_cv_delta_metrics(G, p, test[h], &own, 1, opt->top_n, opt->top_de, m));
      m[PS_CV_RETRIEVAL] = ps_cv_retrieval(G, p, own, test, test_own, n_test, h);
      PS_CALL(ps_cv_pereggrn_metrics(G, p, test[h], &own, 1, pereggrn_row(r, k, model)));
      if (r->predicted) memcpy(r->predicted + ((int64_t)model * r->n_perturbations + k) * G, p, (size_t)G * sizeof *p);
    }
  }
  ps_cv_embedding_free(&e);
  free(mean);
  free(median);
  free(zero);
  free(pred);
  free(train);
  free(test);
  free(train_own);
  free(test_own);
  free(test_k);
  return PS_OK;
}

static int run_folds(MPI_Comm comm, const ps_cv_perturbation_input *in, const double *obs, const double *test_obs,
                     const double *control_mean,
                     const int32_t *inc, int32_t n_inc, const ps_cv_options *opt, ps_cv_perturbation_result *r) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int n_groups = size < opt->n_folds ? size : opt->n_folds;
  int my_group = (int)((int64_t)rank * n_groups / size);
  MPI_Comm group;
  PS_CHECK_MPI(MPI_Comm_split(comm, my_group, rank, &group));
  int err = PS_OK;
  for (int f = my_group; f < opt->n_folds && !err; f += n_groups) {
    err = run_fold(group, f, in, obs, test_obs, control_mean, inc, n_inc, opt, r);
    err = ps_error_sync(group, err); /* the group's next fold is collective again */
    /* progress prints on rank 0 only, which is in group 0: its share of the folds; the
     * pseudobulk and the ceiling came first (0.3 of the stage) */
    if (in->progress && !err)
      ps_progress_update(in->progress, 0.3 + 0.6 * (double)(f + n_groups) / (double)(opt->n_folds + n_groups - 1));
  }
  MPI_Comm_free(&group);
  return err;
}

/* The scheme on out (zeroed by the caller); b and *inc are freed by the caller on every return. */
static int perturbations_run(MPI_Comm comm, const ps_cv_perturbation_input *in, const ps_cv_options *opt,
                             ps_cv_perturbation_result *out, ps_cv_bulk *bulk, int32_t **inc_out) {
  const ps_design *D = in->design;
  int32_t K = D->n_perturbations;
  int64_t G = in->n_genes;
  int F = opt->n_folds;
  if (F < 2) PS_FAIL(PS_ERR_INPUT, "cv: --folds must be at least 2 (got %d)", F);
  if (G < 2) PS_FAIL(PS_ERR_INPUT, "cv: need at least 2 evaluated genes (got %lld)", (long long)G);
  double t0 = ps_wtime();
  PS_CALL(ps_cv_pseudobulk(comm, D, in->x, in->column_of, G, opt->seed, bulk));
  ps_cv_bulk b = *bulk; /* the arrays stay bulk's (freed by the caller) */
  out->n_perturbations = K;
  out->n_genes = G;
  out->n_folds = F;
  out->has_predictions = in->predictions != NULL;
  PS_ALLOC(out->fold, K);
  PS_ALLOC(out->n_cells, K + 1);
  PS_ALLOC(out->own_gene, K);
  PS_ALLOC(out->n_pcs, F);
  PS_ALLOC(out->n_train, F);
  PS_ALLOC(out->metrics, (int64_t)K * PS_CV_N_MODELS * PS_CV_N_METRICS);
  PS_ALLOC(out->pereggrn, (int64_t)K * PS_CV_N_MODELS * PS_CV_N_PEREGGRN);
  PS_ALLOC(out->control_mean, G);
  memcpy(out->n_cells, b.n_cells, ((size_t)K + 1) * sizeof *b.n_cells);
  out->n_multiple = b.n_multiple;
  out->n_local_cells = D->n_cells;
  out->cell_half = bulk->cell_half; /* the result's from here on */
  bulk->cell_half = b.cell_half = NULL;
  memcpy(out->own_gene, in->own_gene, (size_t)K * sizeof *in->own_gene);
  memcpy(out->control_mean, b.mean + (int64_t)K * G, (size_t)G * sizeof *out->control_mean);
  if (b.n_cells[K] < 1) PS_FAIL(PS_ERR_INPUT, "cv: no control cells");

  /* included perturbations: enough cells, both halves non-empty; folds over them */
  int32_t n_inc = 0;
  PS_ALLOC(*inc_out, K);
  int32_t *inc = *inc_out;
  for (int32_t k = 0; k < K; k++) {
    out->fold[k] = -1;
    if (b.n_cells[k] >= opt->min_cells && b.n_half[2 * k] > 0 && b.n_half[2 * k + 1] > 0) inc[n_inc++] = k;
  }
  if (n_inc < F)
    PS_FAIL(PS_ERR_INPUT, "cv: only %d perturbation(s) have at least %lld cells; the perturbations scheme needs at "
            "least --folds (%d) of them (lower --min-cells or --folds)", n_inc, (long long)opt->min_cells, F);
  int32_t *fold_inc;
  PS_ALLOC(fold_inc, n_inc);
  int err = ps_cv_permutation_folds(n_inc, F, opt->seed, fold_inc);
  for (int32_t i = 0; !err && i < n_inc; i++) out->fold[inc[i]] = fold_inc[i];
  free(fold_inc);
  PS_CALL(err);

  /* observed deltas (in place of the means) and the halves' deltas. With
   * --disjoint-controls the training deltas (and the predictions) take control half 0,
   * the held-out deltas and the halves control half 1, so no model shares the held-out
   * control noise. */
  double *obs = b.mean, *test = b.mean;
  const double *control = out->control_mean, *test_control = out->control_mean;
  if (opt->disjoint_controls) {
    if (b.n_half[2 * (int64_t)K] < 1 || b.n_half[2 * (int64_t)K + 1] < 1)
      PS_FAIL(PS_ERR_INPUT, "cv: --disjoint-controls needs at least 2 control cells (got %lld)",
              (long long)b.n_cells[K]);
    memcpy(out->control_mean, b.half_mean + 2 * (int64_t)K * G, (size_t)G * sizeof *out->control_mean);
    test_control = b.half_mean + (2 * (int64_t)K + 1) * G;
    PS_ALLOC(bulk->test_delta, (int64_t)K * G);
    b.test_delta = test = bulk->test_delta;
    for (int32_t k = 0; k < K; k++)
      for (int64_t g = 0; g < G; g++) test[(int64_t)k * G + g] = obs[(int64_t)k * G + g] - test_control[g];
  }
  for (int32_t k = 0; k < K; k++)
    for (int64_t g = 0; g < G; g++) obs[(int64_t)k * G + g] -= control[g];
  if (opt->disjoint_controls) {
    /* the halves against their own control halves (independent noise), and kappa: the
     * held-out delta's noise (V_p + 2 V_c, control half 1) over a half delta's
     * (2 V_p + 2 V_c), from V_p = mean over genes of (p_0 - p_1)^2 / 4 and V_c likewise */
    PS_ALLOC(bulk->kappa, K > 0 ? K : 1);
    b.kappa = bulk->kappa;
    const double *c0 = b.half_mean + 2 * (int64_t)K * G, *c1 = c0 + G;
    double vc = 0;
    for (int64_t g = 0; g < G; g++) vc += (c0[g] - c1[g]) * (c0[g] - c1[g]) / 4.0;
    vc /= (double)G;
    for (int32_t k = 0; k < K; k++) {
      const double *p0 = b.half_mean + 2 * (int64_t)k * G, *p1 = p0 + G;
      double vp = 0;
      int64_t n = 0;
      for (int64_t g = 0; g < G; g++)
        if (g != out->own_gene[k] && !isnan(p0[g]) && !isnan(p1[g])) {
          vp += (p0[g] - p1[g]) * (p0[g] - p1[g]) / 4.0;
          n++;
        }
      vp = n ? vp / (double)n : 0.0;
      b.kappa[k] = vp + vc > 0 ? (vp + 2.0 * vc) / (2.0 * vp + 2.0 * vc) : 0.5;
    }
    for (int32_t k = 0; k < K; k++)
      for (int h = 0; h < 2; h++)
        for (int64_t g = 0; g < G; g++)
          b.half_mean[(2 * (int64_t)k + h) * G + g] -= b.half_mean[(2 * (int64_t)K + h) * G + g];
  } else {
    for (int32_t k = 0; k < K; k++)
      for (int h = 0; h < 2; h++)
        for (int64_t g = 0; g < G; g++)
          b.half_mean[(2 * (int64_t)k + h) * G + g] -= control[g];
  }
  out->seconds[0] = ps_wtime() - t0;
  if (in->progress) ps_progress_update(in->progress, 0.2);

  t0 = ps_wtime();
  PS_CALL(ps_error_sync(comm, ceiling(comm, &b, b.half_mean, b.kappa, inc, n_inc, opt, out)));
  free(bulk->half_mean);
  bulk->half_mean = b.half_mean = NULL;
  out->seconds[1] = ps_wtime() - t0;
  if (in->progress) ps_progress_update(in->progress, 0.3);

  t0 = ps_wtime();
  if (opt->keep_predictions) PS_ALLOC(out->predicted, (int64_t)PS_CV_N_MODELS * K * G);
  PS_CALL(ps_error_sync(comm, run_folds(comm, in, obs, test, control, inc, n_inc, opt, out)));
  PS_CALL(ps_allreduce_sum(comm, out->metrics, (int64_t)K * PS_CV_N_MODELS * PS_CV_N_METRICS, MPI_DOUBLE,
                           sizeof(double)));
  PS_CALL(ps_allreduce_sum(comm, out->pereggrn, (int64_t)K * PS_CV_N_MODELS * PS_CV_N_PEREGGRN, MPI_DOUBLE,
                           sizeof(double)));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, out->n_pcs, F, MPI_INT, MPI_MAX, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, out->n_train, F, MPI_INT, MPI_MAX, comm));
  for (int32_t k = 0; k < K; k++)
    if (out->fold[k] < 0)
    {
      for (int m = 0; m < PS_CV_N_MODELS * PS_CV_N_METRICS; m++) out->metrics[(int64_t)k * PS_CV_N_MODELS * PS_CV_N_METRICS + m] = NAN;
      for (int m = 0; m < PS_CV_N_MODELS * PS_CV_N_PEREGGRN; m++)
        out->pereggrn[(int64_t)k * PS_CV_N_MODELS * PS_CV_N_PEREGGRN + m] = NAN;
    }
  /* compared: every model predicts it (the embedding needs its gene measured, the
   * predictions file a row), so that every model's mean is over the same perturbations */
  PS_ALLOC(out->compared, K > 0 ? K : 1);
  for (int32_t k = 0; k < K; k++) {
    const double *m = out->metrics + (int64_t)k * PS_CV_N_MODELS * PS_CV_N_METRICS;
    int ok = out->fold[k] >= 0 && !isnan(m[PS_CV_MODEL_EMBEDDING * PS_CV_N_METRICS + PS_CV_MSE]);
    if (out->has_predictions) ok = ok && !isnan(m[PS_CV_MODEL_PREDICTIONS * PS_CV_N_METRICS + PS_CV_MSE]);
    out->compared[k] = (uint8_t)ok;
    out->n_compared += ok;
  }
  if (out->predicted) {
    PS_CALL(ps_allreduce_sum(comm, out->predicted, (int64_t)PS_CV_N_MODELS * K * G, MPI_DOUBLE, sizeof(double)));
    for (int model = 0; model < PS_CV_N_MODELS; model++)
      for (int32_t k = 0; k < K; k++)
        if (out->fold[k] < 0 || model >= PS_CV_MODEL_CEILING)
          for (int64_t g = 0; g < G; g++) out->predicted[((int64_t)model * K + k) * G + g] = NAN;
    /* the observed deltas, without the perturbed gene's entry */
    for (int32_t k = 0; k < K; k++) {
      if (out->own_gene[k] >= 0) test[(int64_t)k * G + out->own_gene[k]] = NAN;
      if (out->fold[k] < 0)
        for (int64_t g = 0; g < G; g++) test[(int64_t)k * G + g] = NAN;
    }
    out->observed = test;
    if (test == bulk->mean) bulk->mean = b.mean = NULL;
    else bulk->test_delta = b.test_delta = NULL;
  }
  out->seconds[2] = ps_wtime() - t0;
  return PS_OK;
}

int ps_cv_perturbations(MPI_Comm comm, const ps_cv_perturbation_input *in, const ps_cv_options *opt,
                        ps_cv_perturbation_result *out) {
  memset(out, 0, sizeof *out);
  ps_cv_bulk bulk;
  memset(&bulk, 0, sizeof bulk);
  int32_t *inc = NULL;
  int err = perturbations_run(comm, in, opt, out, &bulk, &inc);
  free(inc);
  ps_cv_bulk_free(&bulk);
  if (err) ps_cv_perturbation_result_free(out); /* a failed scheme leaves nothing to free */
  return err;
}
