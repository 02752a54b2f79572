/* Unit test of the per-cell QP (SPEC.md section 3) and ps_score_cells.
 *
 * (a) thousands of random QPs built like the real ones (H = B_S B_S^T, c = B_S r),
 *     including optima on both bounds and nearly collinear rows: KKT <= 1e-6;
 * (b) dim <= 3: brute force over every {0, U, free} pattern agrees in objective;
 * (c) ps_score_cells on a hand-made design: rescaling rule and control cells;
 * (d) ps_score_cells at high MOI (up to 21 perturbations a cell, the Gram kernel's
 *     odd and even sizes and a gene count that is not a multiple of its 4 lanes):
 *     KKT of every cell's answer on H and c computed here with plain dots;
 * plus a rough QPs/second figure for 1 and 5 perturbations. */
#include "pertscore/score.h"

#include <math.h>
#include <petscsys.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

enum { NG = 50, MAXD = 8 };

/* Small deterministic normal generator (Box-Muller on a xorshift). */

typedef struct {
  int dim;
  double B[MAXD][NG], r[NG];
  double H[MAXD * MAXD], c[MAXD];
  double lambda, upper;
  int collinear; /* rows built nearly parallel: H ill conditioned */
} qp_case;

static void build_hc(qp_case *q) {
  int d = q->dim;
  for (int a = 0; a < d; a++) {
    double s = 0;
    for (int n = 0; n < NG; n++) s += q->B[a][n] * q->r[n];
    q->c[a] = s;
    for (int b = 0; b < d; b++) {
      double t = 0;
      for (int n = 0; n < NG; n++) t += q->B[a][n] * q->B[b][n];
      q->H[a * d + b] = t;
    }
  }
}

/* kind: 0 generic, 1 optimum pushed to 0, 2 pushed to U, 3 mixed extremes, 4 nearly collinear rows. */
static void make_case(qp_case *q, int dim, int kind) {
  static const double lambdas[3] = {0.0, 0.01, 0.5};
  q->dim = dim;
  q->lambda = lambdas[(int)(unif() * 3) % 3];
  q->upper = 3.0;
  q->collinear = 0;
  double amp = 0.05 + unif(); /* effect size, like beta rows of log expression */
  for (int a = 0; a < dim; a++)
    for (int n = 0; n < NG; n++) q->B[a][n] = amp * normal();
  if (kind == 4 && dim >= 2) {
    q->collinear = 1;
    int pairs = 1 + (int)(unif() * (dim / 2));
    for (int p = 0; p < pairs; p++) {
      int a = (int)(unif() * dim), b = (int)(unif() * dim);
      if (a == b) b = (a + 1) % dim;
      double eps = pow(10.0, -2.0 - 8.0 * unif()); /* 1e-2 .. 1e-10 */
      if (unif() < 0.1) eps = 0.0;                 /* exactly duplicated row: H singular */
      double sign = unif() < 0.8 ? 1.0 : -1.0;
      for (int n = 0; n < NG; n++) q->B[b][n] = sign * q->B[a][n] + eps * amp * normal();
    }
  }
  double truth[MAXD];
  for (int a = 0; a < dim; a++) {
    switch (kind) {
      case 1: truth[a] = -1.0 - 3.0 * unif(); break;
      case 2: truth[a] = 4.0 + 5.0 * unif(); break;
      case 3: truth[a] = unif() < 0.5 ? -2.0 - 2.0 * unif() : 4.0 + 4.0 * unif(); break;
      default: truth[a] = -1.5 + 6.0 * unif(); break;
    }
  }
  double noise = 0.3 * amp * unif();
  for (int n = 0; n < NG; n++) {
    double v = noise * normal();
    for (int a = 0; a < dim; a++) v += truth[a] * q->B[a][n];
    q->r[n] = v;
  }
  build_hc(q);
}

static double objective(int d, const double *H, const double *c, double lambda, const double *x) {
  double f = 0;
  for (int i = 0; i < d; i++) {
    double hx = 0;
    for (int j = 0; j < d; j++) hx += H[i * d + j] * x[j];
    f += x[i] * (0.5 * hx - c[i] + lambda);
  }
  return f;
}

/* Gaussian elimination with partial pivoting on an n x n system; 0 if (numerically) singular. */
static int dense_solve(int n, double *A, double *b, double tiny) {
  for (int k = 0; k < n; k++) {
    int p = k;
    for (int i = k + 1; i < n; i++)
      if (fabs(A[i * n + k]) > fabs(A[p * n + k])) p = i;
    if (fabs(A[p * n + k]) <= tiny) return 0;
    if (p != k) {
      for (int j = 0; j < n; j++) {
        double t = A[k * n + j];
        A[k * n + j] = A[p * n + j];
        A[p * n + j] = t;
      }
      double t = b[k];
      b[k] = b[p];
      b[p] = t;
    }
    for (int i = k + 1; i < n; i++) {
      double m = A[i * n + k] / A[k * n + k];
      for (int j = k; j < n; j++) A[i * n + j] -= m * A[k * n + j];
      b[i] -= m * b[k];
    }
  }
  for (int k = n - 1; k >= 0; k--) {
    double s = b[k];
    for (int j = k + 1; j < n; j++) s -= A[k * n + j] * b[j];
    b[k] = s / A[k * n + k];
  }
  return 1;
}

/* Enumerate every coordinate in {0, U, free}; solve the free subsystem exactly; keep the
 * feasible point of least objective. A singular free block can be skipped: some optimum
 * always has a nonsingular one (move along the null direction until a bound is hit). */
static double brute_force(const qp_case *q, double *best) {
  int d = q->dim, total = 1;
  for (int i = 0; i < d; i++) total *= 3;
  double best_f = INFINITY, maxdiag = 0;
  for (int i = 0; i < d; i++) maxdiag = fmax(maxdiag, q->H[i * d + i]);
  for (int code = 0; code < total; code++) {
    int state[MAXD], freeidx[MAXD], nf = 0, t = code;
    double x[MAXD];
    for (int i = 0; i < d; i++) {
      state[i] = t % 3;
      t /= 3;
      x[i] = state[i] == 1 ? q->upper : 0.0;
      if (state[i] == 2) freeidx[nf++] = i;
    }
    if (nf > 0) {
      double A[MAXD * MAXD], b[MAXD];
      for (int a = 0; a < nf; a++) {
        int i = freeidx[a];
        b[a] = q->c[i] - q->lambda;
        for (int j = 0; j < d; j++)
          if (state[j] != 2) b[a] -= q->H[i * d + j] * x[j];
        for (int e = 0; e < nf; e++) A[a * nf + e] = q->H[i * d + freeidx[e]];
      }
      if (!dense_solve(nf, A, b, 1e-13 * maxdiag)) continue;
      int ok = 1;
      for (int a = 0; a < nf; a++) {
        double v = b[a];
        if (v < -1e-9 * q->upper || v > q->upper * (1 + 1e-9)) ok = 0;
        x[freeidx[a]] = fmin(fmax(v, 0.0), q->upper);
      }
      if (!ok) continue;
    }
    double f = objective(d, q->H, q->c, q->lambda, x);
    if (f < best_f) {
      best_f = f;
      memcpy(best, x, (size_t)d * sizeof *x);
    }
  }
  return best_f;
}

/* Smallest Cholesky pivot over the largest diagonal: a cheap conditioning proxy. */
static double conditioning(int d, const double *H) {
  double L[MAXD * MAXD], maxdiag = 0, minpiv = INFINITY;
  memcpy(L, H, (size_t)d * d * sizeof *L);
  for (int k = 0; k < d; k++) {
    maxdiag = fmax(maxdiag, H[k * d + k]);
    double p = L[k * d + k];
    for (int j = 0; j < k; j++) p -= L[k * d + j] * L[k * d + j];
    if (p <= 0) return 0;
    minpiv = fmin(minpiv, p);
    double s = sqrt(p);
    L[k * d + k] = s;
    for (int i = k + 1; i < d; i++) {
      double v = L[i * d + k];
      for (int j = 0; j < k; j++) v -= L[i * d + j] * L[k * d + j];
      L[i * d + k] = v / s;
    }
  }
  return minpiv / maxdiag;
}

static void test_random(ps_qp_solver *solver) {
  /* PS_TEST_QP_STRESS=n multiplies the count, for trying solver options by hand */
  const char *stress = getenv("PS_TEST_QP_STRESS");
  const int per_dim_kind = 150 * (stress && atoi(stress) > 0 ? atoi(stress) : 1);
  double worst = 0, worst_collinear = 0;
  long n = 0, at_zero = 0, at_upper = 0, interior = 0, singular = 0, n_slow = 0;
  double slowest = 0;
  qp_case q;
  for (int dim = 1; dim <= MAXD; dim++)
    for (int kind = 0; kind <= 4; kind++)
      for (int rep = 0; rep < per_dim_kind; rep++) {
        make_case(&q, dim, kind);
        double psi[MAXD];
        double tq = MPI_Wtime();
        CHECK_PS(ps_qp_solve(solver, dim, q.H, q.c, q.lambda, q.upper, psi));
        tq = MPI_Wtime() - tq;
        slowest = fmax(slowest, tq);
        n_slow += tq > 1e-3;
        double kkt = ps_qp_kkt_residual(dim, q.H, q.c, q.lambda, q.upper, psi);
        EXPECT(kkt <= 1e-6, "dim %d kind %d rep %d: KKT residual %.3g", dim, kind, rep, kkt);
        if (q.collinear) worst_collinear = fmax(worst_collinear, kkt);
        else worst = fmax(worst, kkt);
        if (q.collinear && conditioning(dim, q.H) < 1e-14) singular++;
        for (int i = 0; i < dim; i++) {
          EXPECT(psi[i] >= 0 && psi[i] <= q.upper, "psi %g outside [0, U]", psi[i]);
          if (psi[i] == 0.0) at_zero++;
          else if (psi[i] == q.upper) at_upper++;
          else interior++;
        }
        n++;
      }
  printf("random QPs: %ld solved (dims 1..%d), coordinates at 0: %ld, at U: %ld, interior: %ld, "
         "(near-)singular H: %ld\n",
         n, MAXD, at_zero, at_upper, interior, singular);
  printf("random QPs: worst KKT residual %.3g (well conditioned), %.3g (nearly collinear rows)\n", worst,
         worst_collinear);
  printf("random QPs: slowest single QP %.2f ms, %ld took over 1 ms\n", 1e3 * slowest, n_slow);
  EXPECT(at_zero > 100 && at_upper > 100 && interior > 100, "bound types not all exercised");
  EXPECT(singular > 0, "no (near-)singular hessian was generated");
}

static void test_brute_force(ps_qp_solver *solver) {
  qp_case q;
  double worst_f = 0, worst_psi = 0;
  long n = 0, n_psi = 0;
  for (int dim = 1; dim <= 3; dim++)
    for (int kind = 0; kind <= 4; kind++)
      for (int rep = 0; rep < 300; rep++) {
        make_case(&q, dim, kind);
        double psi[MAXD], bf[MAXD];
        CHECK_PS(ps_qp_solve(solver, dim, q.H, q.c, q.lambda, q.upper, psi));
        double f = objective(dim, q.H, q.c, q.lambda, psi);
        double fb = brute_force(&q, bf);
        /* relative to |f*| but never to less than the objective's natural size at this scale */
        double cs = 0;
        for (int i = 0; i < dim; i++) cs = fmax(cs, fabs(q.c[i]));
        double denom = fmax(fabs(fb), 1e-6 * (cs + q.lambda) * q.upper);
        double rel = fabs(f - fb) / denom;
        worst_f = fmax(worst_f, rel);
        if (rel > 1e-9) {
          fprintf(stderr, "  H =");
          for (int i = 0; i < dim * dim; i++) fprintf(stderr, " %.17g", q.H[i]);
          fprintf(stderr, "\n  c =");
          for (int i = 0; i < dim; i++) fprintf(stderr, " %.17g", q.c[i]);
          fprintf(stderr, "\n  lambda %g psi_tao", q.lambda);
          for (int i = 0; i < dim; i++) fprintf(stderr, " %.17g", psi[i]);
          fprintf(stderr, " kkt %.3g\n  psi_bf", ps_qp_kkt_residual(dim, q.H, q.c, q.lambda, q.upper, psi));
          for (int i = 0; i < dim; i++) fprintf(stderr, " %.17g", bf[i]);
          fprintf(stderr, " kkt %.3g\n", ps_qp_kkt_residual(dim, q.H, q.c, q.lambda, q.upper, bf));
        }
        EXPECT(rel <= 1e-9, "dim %d kind %d rep %d: TAO objective %.17g, brute force %.17g (rel %.3g)", dim, kind,
               rep, f, fb, rel);
        if (!q.collinear && conditioning(dim, q.H) > 1e-3) {
          double dpsi = 0;
          for (int i = 0; i < dim; i++) dpsi = fmax(dpsi, fabs(psi[i] - bf[i]));
          worst_psi = fmax(worst_psi, dpsi);
          EXPECT(dpsi <= 1e-6, "dim %d kind %d rep %d: psi differs from brute force by %.3g", dim, kind, rep, dpsi);
          n_psi++;
        }
        n++;
      }
  printf("brute force (dim <= 3): %ld QPs, worst relative objective gap %.3g; psi compared on %ld "
         "well-conditioned ones, worst |dpsi| %.3g\n",
         n, worst_f, n_psi, worst_psi);
}

static void test_speed(ps_qp_solver *solver) {
  enum { NP = 400 };
  static qp_case pool[NP];
  const int dims[2] = {1, 5};
  for (int t = 0; t < 2; t++) {
    for (int i = 0; i < NP; i++) make_case(&pool[i], dims[t], i % 4);
    int reps = dims[t] == 1 ? 100 : 25;
    double psi[MAXD], t0 = MPI_Wtime();
    for (int r = 0; r < reps; r++)
      for (int i = 0; i < NP; i++)
        CHECK_PS(ps_qp_solve(solver, dims[t], pool[i].H, pool[i].c, pool[i].lambda, pool[i].upper, psi));
    double secs = MPI_Wtime() - t0;
    printf("speed: dim %d: %d QPs in %.3f s = %.0f QPs/s (one rank)\n", dims[t], reps * NP, secs,
           reps * NP / secs);
  }
}

/* The safeguard: a first method cut to one iteration, without the exact finish, must hand
 * over to the fallback method; with the fallback cut too, the solve must fail rather than
 * return a point that misses the tolerance. */
/* The handover: the direct method capped at one iteration cannot finish the cells
 * whose optimal face is not the first one it tries; TAO must then solve them. */
static void test_handover(void) {
  PetscOptionsSetValue(NULL, "-ps_qp_direct_max_it", "1");
  ps_qp_solver *solver;
  CHECK_PS(ps_qp_solver_create(&solver));
  qp_case q;
  double worst = 0;
  for (int rep = 0; rep < 400; rep++) {
    make_case(&q, 2 + rep % 7, rep % 5);
    double psi[MAXD];
    CHECK_PS(ps_qp_solve(solver, q.dim, q.H, q.c, q.lambda, q.upper, psi));
    worst = fmax(worst, ps_qp_kkt_residual(q.dim, q.H, q.c, q.lambda, q.upper, psi));
  }
  int64_t n_tao = ps_qp_solver_tao_solves(solver);
  ps_qp_solver_destroy(&solver);
  PetscOptionsClearValue(NULL, "-ps_qp_direct_max_it");
  EXPECT(n_tao > 0 && n_tao < 400 && worst <= 1e-6, "handover: %lld of 400 to TAO, worst KKT %.3g", (long long)n_tao,
         worst);
  printf("handover: direct method capped at 1 iteration left %lld of 400 QPs to TAO; worst KKT %.3g\n",
         (long long)n_tao, worst);
}

static void test_safeguard(void) {
  PetscOptionsSetValue(NULL, "-ps_qp_direct", "0"); /* the direct method would solve them all */
  PetscOptionsSetValue(NULL, "-ps_qp_tao_max_it", "1");
  PetscOptionsSetValue(NULL, "-ps_qp_polish", "0");
  ps_qp_solver *solver;
  CHECK_PS(ps_qp_solver_create(&solver));
  qp_case q;
  double worst = 0;
  for (int rep = 0; rep < 200; rep++) {
    make_case(&q, 3 + rep % 4, rep % 4);
    double psi[MAXD];
    CHECK_PS(ps_qp_solve(solver, q.dim, q.H, q.c, q.lambda, q.upper, psi));
    worst = fmax(worst, ps_qp_kkt_residual(q.dim, q.H, q.c, q.lambda, q.upper, psi));
  }
  int64_t n_fallback;
  ps_qp_solver_counts(solver, NULL, &n_fallback, NULL, NULL);
  ps_qp_solver_destroy(&solver);
  EXPECT(n_fallback > 0 && worst <= 1e-6, "fallback: used %lld times, worst KKT %.3g", (long long)n_fallback, worst);

  PetscOptionsSetValue(NULL, "-ps_qp_fallback_tao_max_it", "1");
  CHECK_PS(ps_qp_solver_create(&solver));
  int n_failed = 0;
  for (int rep = 0; rep < 50; rep++) {
    make_case(&q, 6, 0);
    double psi[MAXD];
    if (ps_qp_solve(solver, q.dim, q.H, q.c, q.lambda, q.upper, psi) != PS_OK) n_failed++;
  }
  ps_qp_solver_destroy(&solver);
  EXPECT(n_failed > 0, "crippled solver never reported a failure");
  printf("safeguard: fallback used on %lld of 200 QPs (worst KKT after it %.3g); both methods cut: %d of 50 "
         "reported as errors, e.g. \"%s\"\n",
         (long long)n_fallback, worst, n_failed, ps_error_message());
  ps_error_clear();
  PetscOptionsClearValue(NULL, "-ps_qp_tao_max_it");
  PetscOptionsClearValue(NULL, "-ps_qp_polish");
  PetscOptionsClearValue(NULL, "-ps_qp_fallback_tao_max_it");
  PetscOptionsClearValue(NULL, "-ps_qp_direct");
}

/* (c) Hand-made design: A, B, C clearly positive effects; D a tiny one (raw max < 0.01).
 * Every rank generates all CELLS the same way and keeps its block, so the test also
 * checks the cross-rank maximum when run on more than one rank. */
static void test_score_cells(void) {
  enum { K = 4, N = 20, CELLS = 48 };
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *names[K] = {"A", "B", "C", "D"};
  ps_ridge ridge = {.n_rows = K + 1, .n_genes = N, .lambda = 0.01};
  ridge.beta = calloc((size_t)(K + 1) * N, sizeof *ridge.beta);
  for (int n = 0; n < N; n++) {
    ridge.beta[n] = 1.0 + 0.5 * unif(); /* basal */
    /* A, B, C act on genes 0..11, D on genes 12..19 only, so D's score cannot borrow from theirs */
    for (int k = 0; k < 3; k++) ridge.beta[(k + 1) * N + n] = n < 12 ? 0.3 * normal() : 0.0;
    ridge.beta[4 * N + n] = n < 12 ? 0.0 : n % 2 ? 1.0 : -1.0; /* ||B_D||^2 = 7 with the zero below */
    if (n % 7 == 3) ridge.beta[n] = ridge.beta[4 * N + n] = 0.0;  /* genes left out of the CSR */
  }
  /* Every 6th cell is a control cell; the others cycle through singles A, B, C, D, pair {A,B},
   * triple {A,B,C}, pair {C,D}. D only ever has a tiny effect: raw PS about 0.0035 < 0.01. */
  static const int sets[7][3] = {{0}, {1}, {2}, {3}, {0, 1}, {0, 1, 2}, {2, 3}};
  static const int sizes[7] = {1, 1, 1, 1, 2, 3, 2};
  static double dense[CELLS][N];
  int cell_set[CELLS], n_control = 0;
  for (int j = 0; j < CELLS; j++) {
    int s = j % 6 == 0 ? -1 : (j - j / 6 - 1) % 7;
    int d = s < 0 ? 0 : sizes[s];
    cell_set[j] = s;
    n_control += s < 0;
    double effect[3];
    for (int a = 0; a < d; a++) effect[a] = sets[s][a] == 3 ? 0.012 : 0.5 + 2.0 * unif();
    for (int n = 0; n < N; n++) {
      double v = ridge.beta[n] + 0.01 * normal();
      for (int a = 0; a < d; a++) v += effect[a] * ridge.beta[(sets[s][a] + 1) * N + n];
      dense[j][n] = n % 7 == 3 ? 0.0 : v; /* some genes not expressed: left out of the CSR */
    }
  }
  int64_t begin, end;
  ps_block_range(CELLS, rank, size, &begin, &end);
  const int64_t local = end - begin;
  ps_design design = {0};
  design.n_perturbations = K;
  for (int k = 0; k < K; k++) CHECK_PS(ps_strlist_push(&design.names, names[k]));
  design.n_cells = local;
  design.ptr = calloc((size_t)local + 1, sizeof *design.ptr);
  design.ids = calloc((size_t)local * 3 + 1, sizeof *design.ids);
  ps_csr y = {.n_rows = local, .n_cols = N};
  y.indptr = calloc((size_t)local + 1, sizeof *y.indptr);
  y.indices = calloc((size_t)local * N + 1, sizeof *y.indices);
  y.data = calloc((size_t)local * N + 1, sizeof *y.data);
  for (int64_t jl = 0; jl < local; jl++) {
    int s = cell_set[begin + jl], d = s < 0 ? 0 : sizes[s];
    design.ptr[jl + 1] = design.ptr[jl] + d;
    for (int a = 0; a < d; a++) design.ids[design.ptr[jl] + a] = sets[s][a];
    y.indptr[jl + 1] = y.indptr[jl];
    for (int n = 0; n < N; n++)
      if (dense[begin + jl][n] != 0.0) {
        y.indices[y.indptr[jl + 1]] = n;
        y.data[y.indptr[jl + 1]++] = dense[begin + jl][n];
      }
  }

  ps_score_options opt;
  ps_score_options_default(&opt);
  ps_progress progress;
  ps_progress_init(&progress, MPI_COMM_WORLD, 1);
  ps_progress_stage(&progress, "score");
  ps_scores out;
  CHECK_PS(ps_score_cells(MPI_COMM_WORLD, &design, &y, &ridge, &opt, &progress, &out));

  EXPECT(out.n_qp == CELLS - n_control, "n_qp %lld, expected %d", (long long)out.n_qp, CELLS - n_control);
  EXPECT(out.max_kkt <= 1e-6, "max_kkt %.3g", out.max_kkt);
  EXPECT(out.n_not_rescaled == 1, "n_not_rescaled %d, expected 1 (D)", (int)out.n_not_rescaled);
  EXPECT(out.rescaled[0] && out.rescaled[1] && out.rescaled[2] && !out.rescaled[3], "rescaled flags %d %d %d %d",
         out.rescaled[0], out.rescaled[1], out.rescaled[2], out.rescaled[3]);
  EXPECT(out.max_raw[3] > 0 && out.max_raw[3] < 0.01, "max raw PS of D %.4g", out.max_raw[3]);

  /* Each non-control cell against its own brute force (dims <= 3): raw PS = psi / U, then rescaled. */
  double max_ps[K] = {0}, worst = 0;
  int64_t entries = 0;
  for (int64_t jl = 0; jl < local; jl++) {
    int d = (int)(design.ptr[jl + 1] - design.ptr[jl]);
    if (cell_set[begin + jl] < 0) {
      EXPECT(d == 0, "control cell %lld has %d entries", (long long)(begin + jl), d);
      continue;
    }
    entries += d;
    qp_case q;
    memset(&q, 0, sizeof q); /* build_hc uses NG >= N columns: the rest stay zero */
    q.dim = d;
    q.lambda = opt.lambda;
    q.upper = opt.upper;
    for (int a = 0; a < d; a++)
      memcpy(q.B[a], ridge.beta + (design.ids[design.ptr[jl] + a] + 1) * N, N * sizeof(double));
    for (int n = 0; n < N; n++) q.r[n] = dense[begin + jl][n] - ridge.beta[n];
    build_hc(&q);
    double bf[MAXD];
    brute_force(&q, bf);
    for (int a = 0; a < d; a++) {
      int k = design.ids[design.ptr[jl] + a];
      double ps = out.ps[design.ptr[jl] + a];
      double expect = bf[a] / opt.upper / (out.rescaled[k] ? out.max_raw[k] : 1.0);
      worst = fmax(worst, fabs(ps - expect));
      if (ps > max_ps[k]) max_ps[k] = ps;
    }
  }
  EXPECT(entries == design.ptr[local], "entries %lld vs design %lld", (long long)entries,
         (long long)design.ptr[local]);
  MPI_Allreduce(MPI_IN_PLACE, max_ps, K, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  EXPECT(worst <= 1e-6, "PS differs from brute force by %.3g", worst);
  for (int k = 0; k < 3; k++)
    EXPECT(max_ps[k] == 1.0, "max PS of rescaled %s is %.17g, not exactly 1", names[k], max_ps[k]);
  EXPECT(max_ps[3] == out.max_raw[3], "unscaled D: max PS %.17g vs max raw %.17g", max_ps[3], out.max_raw[3]);
  if (rank == 0)
    printf("score_cells (%d rank%s): %lld QPs, %d control cells, max KKT %.3g, |PS - brute force| <= %.3g, "
           "max raw PS A %.3f B %.3f C %.3f D %.4f (not rescaled)\n",
           size, size == 1 ? "" : "s", (long long)out.n_qp, n_control, out.max_kkt, worst, out.max_raw[0],
           out.max_raw[1], out.max_raw[2], out.max_raw[3]);

  /* --no-rescale: raw values, nothing rescaled. */
  ps_scores raw;
  opt.rescale = 0;
  CHECK_PS(ps_score_cells(MPI_COMM_WORLD, &design, &y, &ridge, &opt, NULL, &raw));
  for (int k = 0; k < K; k++) EXPECT(!raw.rescaled[k], "rescaled[%d] set with rescale off", k);
  for (int64_t p = 0; p < design.ptr[local]; p++) {
    int k = design.ids[p];
    double back = out.rescaled[k] ? out.ps[p] * out.max_raw[k] : out.ps[p];
    EXPECT(fabs(raw.ps[p] - back) <= 1e-12, "raw PS %g vs %g", raw.ps[p], back);
  }
  ps_scores_free(&raw);

  /* Inputs that do not fit are an error on every rank, not a crash or a hang. */
  ps_scores bad;
  opt.upper = -1.0;
  EXPECT(ps_score_cells(MPI_COMM_WORLD, &design, &y, &ridge, &opt, NULL, &bad) == PS_ERR_INPUT,
         "negative upper accepted");
  EXPECT(bad.ps == NULL, "failed call left memory behind");
  opt.upper = 3.0;
  ridge.n_genes = N - 1;
  y.n_cols = rank == 0 ? N : N - 1; /* a mismatch on one rank only */
  EXPECT(ps_score_cells(MPI_COMM_WORLD, &design, &y, &ridge, &opt, NULL, &bad) != PS_OK,
         "expression/beta column mismatch on rank 0 accepted");
  ridge.n_genes = N;
  y.n_cols = N;
  ps_error_clear();

  ps_scores_free(&out);
  EXPECT(out.ps == NULL && out.max_raw == NULL, "ps_scores_free did not zero");
  ps_csr_free(&y);
  free(ridge.beta);
  ps_design_free(&design);
}

/* (d) Cells carrying 1..21 of K perturbations, N genes (N % 4 != 0): every answer
 * checked by KKT on H = B_S B_S^T and c = B_S (y - b0) formed here with plain dots. */
static void test_score_high_moi(void) {
  enum { K = 60, N = 37, CELLS = 240, DMAX = 21 };
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ps_ridge ridge = {.n_rows = K + 1, .n_genes = N, .lambda = 0.01};
  ridge.beta = calloc((size_t)(K + 1) * N, sizeof *ridge.beta);
  for (int n = 0; n < N; n++) ridge.beta[n] = 1.0 + unif();
  for (int k = 1; k <= K; k++)
    for (int n = 0; n < N; n++) ridge.beta[k * N + n] = 0.2 * normal();
  for (int n = 0; n < N; n++) ridge.beta[7 * N + n] = 0.999 * ridge.beta[3 * N + n]; /* a nearly collinear pair */
  int64_t begin, end;
  ps_block_range(CELLS, rank, size, &begin, &end);
  const int64_t local = end - begin;
  ps_design design = {.n_perturbations = K, .n_cells = local};
  for (int k = 0; k < K; k++) {
    char name[16];
    snprintf(name, sizeof name, "P%d", k);
    CHECK_PS(ps_strlist_push(&design.names, name));
  }
  design.ptr = calloc((size_t)local + 1, sizeof *design.ptr);
  design.ids = calloc((size_t)local * DMAX + 1, sizeof *design.ids);
  ps_csr y = {.n_rows = local, .n_cols = N};
  y.indptr = calloc((size_t)local + 1, sizeof *y.indptr);
  y.indices = calloc((size_t)local * N + 1, sizeof *y.indices);
  y.data = calloc((size_t)local * N + 1, sizeof *y.data);
  for (int64_t j = 0; j < CELLS; j++) { /* every rank draws every cell, keeps its block */
    int d = 1 + (int)(j % DMAX), first = (int)((j * 7) % K);
    double v[N];
    for (int n = 0; n < N; n++) v[n] = ridge.beta[n] + 0.1 * normal();
    for (int a = 0; a < d; a++)
      for (int n = 0; n < N; n++) v[n] += 3.0 * unif() * ridge.beta[((first + a * 3) % K + 1) * N + n];
    if (j < begin || j >= end) continue;
    int64_t jl = j - begin;
    for (int a = 0; a < d; a++) { /* ids first + 3a mod K, sorted */
      int32_t id = (int32_t)((first + a * 3) % K), at = (int32_t)(design.ptr[jl] + a);
      while (at > design.ptr[jl] && design.ids[at - 1] > id) design.ids[at] = design.ids[at - 1], at--;
      design.ids[at] = id;
    }
    design.ptr[jl + 1] = design.ptr[jl] + d;
    y.indptr[jl + 1] = y.indptr[jl];
    for (int n = 0; n < N; n++)
      if (v[n] > 0.8) y.indices[y.indptr[jl + 1]] = n, y.data[y.indptr[jl + 1]++] = v[n];
  }
  ps_score_options opt;
  ps_score_options_default(&opt);
  opt.rescale = 0;
  ps_scores out;
  CHECK_PS(ps_score_cells(MPI_COMM_WORLD, &design, &y, &ridge, &opt, NULL, &out));
  double worst = 0;
  for (int64_t jl = 0; jl < local; jl++) {
    int d = (int)(design.ptr[jl + 1] - design.ptr[jl]);
    double r[N], H[DMAX * DMAX], c[DMAX], psi[DMAX];
    for (int n = 0; n < N; n++) r[n] = -ridge.beta[n];
    for (int64_t p = y.indptr[jl]; p < y.indptr[jl + 1]; p++) r[y.indices[p]] += y.data[p];
    for (int a = 0; a < d; a++) {
      const double *ba = ridge.beta + (design.ids[design.ptr[jl] + a] + 1) * N;
      c[a] = 0;
      for (int n = 0; n < N; n++) c[a] += ba[n] * r[n];
      for (int b = 0; b < d; b++) {
        const double *bb = ridge.beta + (design.ids[design.ptr[jl] + b] + 1) * N;
        H[a * d + b] = 0;
        for (int n = 0; n < N; n++) H[a * d + b] += ba[n] * bb[n];
      }
      psi[a] = out.ps[design.ptr[jl] + a] * opt.upper;
    }
    worst = fmax(worst, ps_qp_kkt_residual(d, H, c, opt.lambda, opt.upper, psi));
  }
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  EXPECT(worst <= 1e-6, "high MOI: KKT residual on plain-dot H and c %.3g", worst);
  EXPECT(out.max_kkt <= 1e-6, "high MOI: max_kkt %.3g", out.max_kkt);
  EXPECT(out.n_qp == CELLS, "high MOI: %lld QPs, expected %d", (long long)out.n_qp, CELLS);
  if (rank == 0)
    printf("score_cells high MOI (%d rank%s): %lld QPs of dimension 1..%d, worst KKT on plain-dot H, c %.3g, %lld "
           "left to TAO\n",
           size, size == 1 ? "" : "s", (long long)out.n_qp, DMAX, worst, (long long)out.n_tao);
  ps_scores_free(&out);
  ps_csr_free(&y);
  free(ridge.beta);
  ps_design_free(&design);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (PetscInitialize(&argc, &argv, NULL, NULL)) return 1;
  ps_qp_solver *solver;
  CHECK_PS(ps_qp_solver_create(&solver));
  double t0 = MPI_Wtime();
  test_random(solver);
  double t1 = MPI_Wtime();
  test_brute_force(solver);
  double t2 = MPI_Wtime();
  test_speed(solver);
  printf("time: random %.2f s, brute force %.2f s, speed %.2f s\n", t1 - t0, t2 - t1, MPI_Wtime() - t2);
  int64_t n_solves, n_fallback, n_it, n_polished;
  ps_qp_solver_counts(solver, &n_solves, &n_fallback, &n_it, &n_polished);
  printf("solver: %lld solves, %lld left by the direct method to TAO, %lld needed the second TAO method, %.2f TAO "
         "iterations per solve, %lld moved by the exact finish after TAO\n",
         (long long)n_solves, (long long)ps_qp_solver_tao_solves(solver), (long long)n_fallback,
         (double)n_it / (double)n_solves, (long long)n_polished);
  ps_qp_solver_destroy(&solver);
  EXPECT(solver == NULL, "destroy did not clear the pointer");

  test_handover();
  test_safeguard();

  /* Edge cases: c = 0 and lambda = 0; zero hessian; non-finite input is an error. */
  CHECK_PS(ps_qp_solver_create(&solver));
  double zero[4] = {0}, psi[2];
  CHECK_PS(ps_qp_solve(solver, 2, zero, zero, 0.0, 3.0, psi));
  EXPECT(psi[0] == 0 && psi[1] == 0, "c = 0 gave psi %g %g", psi[0], psi[1]);
  double c2[2] = {1.0, -1.0};
  CHECK_PS(ps_qp_solve(solver, 2, zero, c2, 0.01, 3.0, psi));
  EXPECT(psi[0] == 3.0 && psi[1] == 0.0, "H = 0 gave psi %g %g", psi[0], psi[1]);
  double bad[2] = {NAN, 1.0};
  EXPECT(ps_qp_solve(solver, 2, zero, bad, 0.01, 3.0, psi) != PS_OK, "NaN input accepted");
  ps_error_clear();
  ps_qp_solver_destroy(&solver);

  test_score_cells();
  test_score_high_moi();

  PetscFinalize();
  printf("%s (%d failure%s)\n", failures ? "FAILED" : "passed", failures, failures == 1 ? "" : "s");
  MPI_Finalize();
  return failures ? 1 : 0;
}
