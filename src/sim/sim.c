/* Simulated Perturb-seq screens with ground truth (SPEC.md section 8). */
#include "pertscore/sim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/io.h"

/* Streams below this are cells; global parameters use the top of the range. */
#define STREAM_GENES UINT64_C(0xFFFFFFFF00000001)
#define STREAM_PERTURBATIONS UINT64_C(0xFFFFFFFF00000002)
#define STREAM_EMBEDDING UINT64_C(0xFFFFFFFF00000003)
#define STREAM_DOSAGE UINT64_C(0xFFFFFFFF0000D05E)
#define STREAM_SHARED UINT64_C(0xFFFFFFFF00005AED)
#define STREAM_CELL_TYPES UINT64_C(0xFFFFFFFF0000CE11) /* + type */

void ps_sim_options_default(ps_sim_options *o) {
  memset(o, 0, sizeof *o);
  o->n_cells = 2000;
  o->n_genes = 500;
  o->n_perturbations = 10;
  o->moi = 1;
  o->control_fraction = 0.1;
  o->guides_per_perturbation = 2;
  o->n_downstream = 20;
  o->effect_size = 1.0;
  o->knockdown = 0.9;
  const double levels[] = {0, 0.25, 0.5, 0.75, 1};
  memcpy(o->efficiencies, levels, sizeof levels);
  o->n_efficiencies = 5;
  o->library_size = 5000;
  o->dispersion = 0.1;
  o->seed = 1;
  o->effect_model = PS_SIM_EFFECTS_SPARSE;
  o->effect_rank = 3;
  o->n_cell_types = 1;
  o->n_type_genes = 30;
  o->type_shift = 1.0;
}

const char *ps_sim_gene_name(int32_t g, char *buf, size_t size) {
  snprintf(buf, size, "GENE%05d", g + 1);
  return buf;
}

void ps_sim_truth_free(ps_sim_truth *t) {
  if (!t) return;
  free(t->gene_weight);
  free(t->target_gene);
  free(t->downstream_ptr);
  free(t->downstream_gene);
  free(t->downstream_lfc);
  free(t->dosage_ed50);
  free(t->dosage_hill_b);
  free(t->type_ptr);
  free(t->type_gene);
  free(t->type_lfc);
  free(t->basal_shift);
  memset(t, 0, sizeof *t);
}


/* --effects lowrank: the responsive genes are the K targets (order[0, K)) and the
 * next n_downstream genes of the shuffled pool; each has an embedding e_g ~
 * N(0, I_r); perturbing t shifts every other responsive gene g by
 * effect_size <e_t, e_g> / r. Draws come from their own stream, so the default
 * design's draws are untouched. */
static int lowrank_effects(const ps_sim_options *o, const int32_t *order, ps_sim_truth *t) {
  int32_t K = o->n_perturbations, R = o->effect_rank, n_resp = K + o->n_downstream;
  if (R < 1 || R > 64) PS_FAIL(PS_ERR_INPUT, "simulate: --rank must be in [1, 64] (got %d)", R);
  double *e;
  PS_ALLOC(e, (int64_t)n_resp * R);
  ps_rng rng = ps_rng_make(o->seed, STREAM_EMBEDDING);
  for (int64_t i = 0; i < (int64_t)n_resp * R; i++) e[i] = ps_rng_normal(&rng);
  PS_ALLOC(t->downstream_gene, (int64_t)K * (n_resp - 1));
  PS_ALLOC(t->downstream_lfc, (int64_t)K * (n_resp - 1));
  int64_t w = 0;
  for (int32_t k = 0; k < K; k++) {
    for (int32_t i = 0; i < n_resp; i++) {
      if (i == k) continue;
      double dot = 0;
      for (int32_t r = 0; r < R; r++) dot += e[(int64_t)k * R + r] * e[(int64_t)i * R + r];
      t->downstream_gene[w] = order[i];
      t->downstream_lfc[w++] = o->effect_size * dot / R;
    }
    t->downstream_ptr[k + 1] = (int32_t)w;
  }
  free(e);
  return PS_OK;
}

/* --dosage-design: each perturbation's designed ED50 and Hill slope (sim.h), from
 * their own stream so that no other draw moves. */
static int dosage_design(const ps_sim_options *o, ps_sim_truth *t) {
  int32_t K = o->n_perturbations;
  PS_ALLOC(t->dosage_ed50, K);
  PS_ALLOC(t->dosage_hill_b, K);
  ps_rng rng = ps_rng_make(o->seed, STREAM_DOSAGE);
  for (int32_t k = 0; k < K; k++) {
    double u = ps_rng_uniform(&rng);
    t->dosage_ed50[k] = k % 2 == 0 ? 0.15 + 0.3 * u : 0.6 + 0.3 * u;
    t->dosage_hill_b[k] = 2.0 + 2.0 * ps_rng_uniform(&rng);
  }
  return PS_OK;
}

/* --dosage-design: a cell of perturbation k at own-gene level x (sim.h): the
 * own gene's multiplicative change f with ln(1 + c f) = x ln(1 + c), c = 1e4 w. */
static double dosage_own_factor(double weight, double x) {
  double c = 1e4 * weight;
  return expm1(x * log1p(c)) / c;
}

/* --cell-types (sim.h): each type's basal shift and, per perturbation, its
 * downstream effects; types t >= 1 draw from their own streams, so type 0 and
 * every other draw are those of a one-type screen. pool genes order[K, pool)
 * are the candidates for downstream genes. */
static int cell_type_effects(const ps_sim_options *o, const int32_t *order, int32_t K, int32_t pool, ps_sim_truth *t) {
  int32_t T = o->n_cell_types, G = o->n_genes, K_all = o->n_perturbations, D = o->n_downstream;
  t->n_cell_types = T;
  PS_ALLOC(t->basal_shift, (int64_t)T * G);
  PS_ALLOC(t->type_ptr, (int64_t)(T - 1) * K_all + 1);
  PS_ALLOC(t->type_gene, (int64_t)(T - 1) * K_all * D);
  PS_ALLOC(t->type_lfc, (int64_t)(T - 1) * K_all * D);
  uint8_t *taken;
  PS_ALLOC(taken, G);
  int64_t w = 0;
  for (int32_t type = 1; type < T; type++) {
    ps_rng rng = ps_rng_make(o->seed, STREAM_CELL_TYPES + (uint64_t)type);
    for (int32_t i = 0; i < o->n_type_genes && i < G; i++) {
      int32_t g = (int32_t)(ps_rng_next(&rng) % (uint64_t)G);
      double size = o->type_shift * (0.5 + fabs(0.5 * ps_rng_normal(&rng)));
      t->basal_shift[(int64_t)type * G + g] = ps_rng_uniform(&rng) < 0.5 ? -size : size;
    }
    for (int32_t k = 0; k < K_all; k++) {
      memset(taken, 0, (size_t)G);
      for (int32_t d = t->downstream_ptr[k]; d < t->downstream_ptr[k + 1]; d++) taken[t->downstream_gene[d]] = 1;
      /* untaken genes left in the pool order[K, pool): a small panel can run out of replacement genes */
      int32_t untaken = 0;
      for (int32_t i = K; i < pool; i++) untaken += !taken[order[i]];
      for (int32_t d = t->downstream_ptr[k]; d < t->downstream_ptr[k + 1]; d++) {
        int32_t g = t->downstream_gene[d];
        double lfc = t->downstream_lfc[d];
        if (!o->type_responses_same) {
          if (ps_rng_uniform(&rng) < 0.5 || untaken == 0) {
            lfc = -lfc; /* the same gene, the other way (also when no other gene is left) */
          } else {      /* another gene */
            do g = order[K + (int32_t)(ps_rng_next(&rng) % (uint64_t)(pool - K))];
            while (taken[g]);
            taken[g] = 1;
            untaken--;
          }
        }
        t->type_gene[w] = g;
        t->type_lfc[w++] = lfc;
      }
      t->type_ptr[(int64_t)(type - 1) * K_all + k + 1] = (int32_t)w;
    }
  }
  free(taken);
  return PS_OK;
}

int ps_sim_truth_make(const ps_sim_options *o, ps_sim_truth *t) {
  memset(t, 0, sizeof *t);
  int32_t G = o->n_genes, K_all = o->n_perturbations, U = o->n_unmeasured_targets;
  if (U < 0 || U > K_all)
    PS_FAIL(PS_ERR_INPUT, "simulate: --unmeasured-targets must be in [0, %d] (got %d)", K_all, U);
  if (U > 0 && (o->effect_model != PS_SIM_EFFECTS_SPARSE || o->dosage_design))
    PS_FAIL(PS_ERR_INPUT, "simulate: --unmeasured-targets works with the sparse effects only (not with --effects "
            "lowrank/none or --dosage-design)");
  if (o->n_cell_types < 1 || o->n_cell_types > 1000)
    PS_FAIL(PS_ERR_INPUT, "simulate: --cell-types must be in [1, 1000] (got %d)", o->n_cell_types);
  if (o->n_cell_types > 1 && (o->effect_model != PS_SIM_EFFECTS_SPARSE || o->dosage_design))
    PS_FAIL(PS_ERR_INPUT, "simulate: --cell-types works with the sparse effects only (not with --effects "
            "lowrank/none or --dosage-design)");
  /* K: perturbations whose target gene is in the panel (all of them unless U > 0) */
  int32_t K = K_all - U;
  if (G < 2 * K + o->n_downstream)
    PS_FAIL(PS_ERR_INPUT, "simulate: %d genes are too few for %d perturbations with %d downstream genes each", G, K,
            o->n_downstream);
  PS_ALLOC(t->gene_weight, G);
  ps_rng rng = ps_rng_make(o->seed, STREAM_GENES);
  double total = 0;
  for (int32_t g = 0; g < G; g++) total += t->gene_weight[g] = exp(1.5 * ps_rng_normal(&rng));
  for (int32_t g = 0; g < G; g++) t->gene_weight[g] /= total;
  /* Targets and downstream genes come from the better-expressed half, so effects are measurable. */
  int32_t *order;
  PS_ALLOC(order, G);
  for (int32_t g = 0; g < G; g++) order[g] = g;
  for (int32_t i = 1; i < G; i++) { /* insertion sort by weight, descending (deterministic) */
    int32_t v = order[i], j = i;
    while (j > 0 && t->gene_weight[order[j - 1]] < t->gene_weight[v]) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = v;
  }
  int32_t pool = G / 2 > 2 * K + o->n_downstream ? G / 2 : 2 * K + o->n_downstream;
  ps_rng prng = ps_rng_make(o->seed, STREAM_PERTURBATIONS);
  /* shuffle the pool (--dosage-design: not the K most expressed genes, the targets,
   * so that their own-gene expression is well measured) */
  const int32_t fixed = o->dosage_design ? K : 0;
  for (int32_t i = pool - 1; i > fixed; i--) {
    int32_t j = fixed + (int32_t)(ps_rng_next(&prng) % (uint64_t)(i + 1 - fixed)), tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  PS_ALLOC(t->target_gene, K_all);
  uint8_t *is_target;
  PS_ALLOC(is_target, G);
  for (int32_t k = 0; k < K; k++) {
    t->target_gene[k] = order[k];
    is_target[order[k]] = 1;
  }
  for (int32_t k = K; k < K_all; k++) t->target_gene[k] = G + (k - K); /* outside the panel */
  PS_ALLOC(t->downstream_ptr, K_all + 1);
  if (o->dosage_design) PS_CALL(dosage_design(o, t));
  if (o->effect_model != PS_SIM_EFFECTS_SPARSE) {
    int err = o->effect_model == PS_SIM_EFFECTS_LOWRANK ? lowrank_effects(o, order, t) : PS_OK;
    free(is_target);
    free(order);
    return err;
  }
  PS_ALLOC(t->downstream_gene, (int64_t)K_all * o->n_downstream);
  PS_ALLOC(t->downstream_lfc, (int64_t)K_all * o->n_downstream);
  int32_t rest = pool - K, w = 0;
  uint8_t *taken;
  PS_ALLOC(taken, G);
  /* --shared-downstream: one set of genes, drawn from its own stream, first in every
   * perturbation's list (without it the draws are exactly as before) */
  int32_t n_shared = (int32_t)floor(o->shared_downstream * o->n_downstream + 0.5), *shared = NULL;
  PS_ALLOC(shared, n_shared > 0 ? n_shared : 1);
  if (n_shared > 0) {
    ps_rng srng = ps_rng_make(o->seed, STREAM_SHARED);
    for (int32_t d = 0; d < n_shared; d++) {
      int32_t g;
      int again;
      do {
        g = order[K + (int32_t)(ps_rng_next(&srng) % (uint64_t)rest)];
        again = 0;
        for (int32_t e = 0; e < d; e++) again |= shared[e] == g;
      } while (again);
      shared[d] = g;
    }
  }
  for (int32_t k = 0; k < K_all; k++) {
    memset(taken, 0, (size_t)G);
    for (int32_t d = 0; d < o->n_downstream; d++) {
      int32_t g;
      if (d < n_shared) g = shared[d];
      else
        do g = order[K + (int32_t)(ps_rng_next(&prng) % (uint64_t)rest)];
        while (taken[g]);
      taken[g] = 1;
      double size = o->effect_size * (0.5 + fabs(0.5 * ps_rng_normal(&prng)));
      t->downstream_gene[w] = g;
      t->downstream_lfc[w++] = ps_rng_uniform(&prng) < 0.5 ? -size : size;
    }
    t->downstream_ptr[k + 1] = w;
  }
  free(shared);
  free(taken);
  free(is_target);
  int err = o->n_cell_types > 1 ? cell_type_effects(o, order, K, pool, t) : PS_OK;
  free(order);
  return err;
}

/* Growable text buffer for the per-rank chunks of the text outputs. */
typedef struct {
  char *data;
  int64_t len, cap;
} text_buf;

static int text_printf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int text_printf(text_buf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? (size_t)(b->cap - b->len) : 0, fmt, ap);
    va_end(ap);
    if (b->data && b->len + n < b->cap) {
      b->len += n;
      return PS_OK;
    }
    int64_t cap = b->cap ? 2 * b->cap : 1 << 16;
    while (cap < b->len + n + 1) cap *= 2;
    char *grown = realloc(b->data, (size_t)cap);
    if (!grown) PS_FAIL(PS_ERR_SYSTEM, "out of memory building simulator text output");
    b->data = grown;
    b->cap = cap;
  }
}

/* One cell's guides: perturbation ids (-1 = control) and efficiencies. */
typedef struct {
  int n;
  int32_t id[64];
  int32_t guide[64];
  double efficiency[64];
  int umi[64];
} cell_guides;

static void draw_guides(const ps_sim_options *o, ps_rng *rng, cell_guides *c) {
  int n = o->poisson_moi ? (int)ps_rng_poisson(rng, o->moi) : (int)floor(o->moi + 0.5);
  if (n > 64) n = 64;
  if (n > o->n_perturbations) n = o->n_perturbations;
  c->n = 0;
  int controls = 0;
  for (int i = 0; i < n; i++) {
    int32_t id;
    if (ps_rng_uniform(rng) < o->control_fraction) {
      id = -1;
    } else {
      int again;
      do { /* distinct perturbations within a cell */
        id = (int32_t)(ps_rng_next(rng) % (uint64_t)o->n_perturbations);
        again = 0;
        for (int j = 0; j < c->n; j++) again |= c->id[j] == id;
      } while (again);
    }
    if (id < 0 && controls++) continue; /* one control guide record is enough */
    c->id[c->n] = id;
    c->guide[c->n] = (int32_t)(ps_rng_next(rng) % (uint64_t)(id < 0 ? 4 : o->guides_per_perturbation));
    c->efficiency[c->n] = id < 0 ? 0.0
                          : o->dosage_design || o->uniform_efficiency ? ps_rng_uniform(rng) /* continuous */
                                             : o->efficiencies[ps_rng_next(rng) % (uint64_t)o->n_efficiencies];
    c->umi[c->n] = 3 + (int)ps_rng_poisson(rng, 20);
    c->n++;
  }
}

typedef struct {
  ps_csr counts;
  ps_strlist names, guide_labels, cell_types;
  text_buf guides, truth;
} sim_block;

static int simulate_cell(const ps_sim_options *o, const ps_sim_truth *t, int64_t cell, double *log_effect,
                         sim_block *b, int64_t row) {
  char name[64], gene[32], label[4096];
  ps_rng rng = ps_rng_make(o->seed, (uint64_t)cell);
  cell_guides c;
  draw_guides(o, &rng, &c);
  snprintf(name, sizeof name, "SIMCELL%08lld", (long long)cell + 1);
  PS_CALL(ps_strlist_push(&b->names, name));
  int32_t G = o->n_genes, T = t->n_cell_types > 1 ? t->n_cell_types : 1, type = (int32_t)(cell % T);
  char type_name[32];
  snprintf(type_name, sizeof type_name, "type%d", (int)type + 1);
  for (int32_t g = 0; g < G; g++) log_effect[g] = T > 1 ? t->basal_shift[(int64_t)type * G + g] : 0.0;
  if (T > 1) PS_CALL(ps_strlist_push(&b->cell_types, type_name));
  label[0] = '\0';
  for (int i = 0; i < c.n; i++) {
    const char *unit = PS_SIM_CONTROL_LABEL;
    if (c.id[i] >= 0) {
      int32_t k = c.id[i];
      if (k >= o->n_perturbations - o->n_inert) c.efficiency[i] = 0.0; /* --inert: a guide that does nothing */
      double e = c.efficiency[i];
      unit = ps_sim_gene_name(t->target_gene[k], gene, sizeof gene);
      double scale = e; /* of the downstream effects */
      if (o->dosage_design) { /* Hill-shaped in the own-gene level x (sim.h) */
        double x = 1.0 - o->knockdown * e;
        log_effect[t->target_gene[k]] += log(dosage_own_factor(t->gene_weight[t->target_gene[k]], x));
        scale = 1.0 / (1.0 + pow(x / t->dosage_ed50[k], t->dosage_hill_b[k]));
      } else if (o->effect_model != PS_SIM_EFFECTS_NONE && t->target_gene[k] < o->n_genes) {
        log_effect[t->target_gene[k]] += log(1.0 - o->knockdown * e);
      }
      const int32_t *ptr = type > 0 ? t->type_ptr + (int64_t)(type - 1) * o->n_perturbations : t->downstream_ptr;
      const int32_t *down = type > 0 ? t->type_gene : t->downstream_gene;
      const double *lfc = type > 0 ? t->type_lfc : t->downstream_lfc;
      for (int32_t d = ptr[k]; d < ptr[k + 1]; d++) log_effect[down[d]] += scale * lfc[d];
    }
    PS_CALL(text_printf(&b->guides, "%s\t%s_sg%d\tSEQ%s%d\t%s\t%d\t%d\n", name, unit, c.guide[i] + 1, unit,
                        c.guide[i] + 1, unit, 2 * c.umi[i], c.umi[i]));
    if (T > 1) PS_CALL(text_printf(&b->truth, "%s\t%s\t%.6g\t%s\n", name, unit, c.efficiency[i], type_name));
    else PS_CALL(text_printf(&b->truth, "%s\t%s\t%.6g\n", name, unit, c.efficiency[i]));
    size_t len = strlen(label);
    snprintf(label + len, sizeof label - len, "%s%s", i ? "," : "", unit);
  }
  PS_CALL(ps_strlist_push(&b->guide_labels, label));
  /* NB as gamma-Poisson; the library size varies between cells */
  double library = o->library_size * exp(0.3 * ps_rng_normal(&rng));
  double shape = 1.0 / o->dispersion;
  ps_csr *m = &b->counts;
  int64_t at = m->indptr[row];
  for (int32_t g = 0; g < G; g++) {
    double mu = library * t->gene_weight[g] * exp(log_effect[g]);
    double lambda = mu * ps_rng_gamma(&rng, shape) / shape;
    int64_t count = ps_rng_poisson(&rng, lambda);
    if (count == 0) continue;
    if (at == m->n_cols) { /* n_cols doubles as capacity while generating; grow by a quarter */
      int64_t cap = m->n_cols + m->n_cols / 4 + 1024;
      int32_t *ni = realloc(m->indices, (size_t)cap * sizeof *ni);
      double *nd = realloc(m->data, (size_t)cap * sizeof *nd);
      if (ni) m->indices = ni;
      if (nd) m->data = nd;
      if (!ni || !nd) PS_FAIL(PS_ERR_SYSTEM, "out of memory simulating counts");
      m->n_cols = cap;
    }
    m->indices[at] = g;
    m->data[at++] = (double)count;
  }
  m->indptr[row + 1] = at;
  return PS_OK;
}

static int write_truth_tables(MPI_Comm comm, const ps_sim_options *o, const ps_sim_truth *t, const char *prefix) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  text_buf effects = {0}, gmt = {0};
  char path[4096], gene[32], target[32], name[64];
  /* --cell-types with differing responses: one entry per (perturbation, type), "P@typeN" */
  int32_t per_type = t->n_cell_types > 1 && !o->type_responses_same ? t->n_cell_types : 1;
  if (rank == 0) {
    PS_CALL(text_printf(&effects, "perturbation\tgene\tlog_fold_change\trole\n"));
    for (int32_t k = 0; k < o->n_perturbations; k++)
      for (int32_t type = 0; type < per_type; type++) {
        ps_sim_gene_name(t->target_gene[k], target, sizeof target);
        if (per_type > 1) snprintf(name, sizeof name, "%s@type%d", target, (int)type + 1);
        else snprintf(name, sizeof name, "%s", target);
        const int32_t *ptr = type > 0 ? t->type_ptr + (int64_t)(type - 1) * o->n_perturbations : t->downstream_ptr;
        const int32_t *down = type > 0 ? t->type_gene : t->downstream_gene;
        const double *lfc = type > 0 ? t->type_lfc : t->downstream_lfc;
        double knockdown = o->effect_model == PS_SIM_EFFECTS_NONE ? 0.0 : log(1.0 - o->knockdown);
        PS_CALL(text_printf(&effects, "%s\t%s\t%.6g\ttarget\n", name, target, knockdown));
        PS_CALL(text_printf(&gmt, "%s\ttrue downstream genes", name));
        for (int32_t d = ptr[k]; d < ptr[k + 1]; d++) {
          ps_sim_gene_name(down[d], gene, sizeof gene);
          PS_CALL(text_printf(&effects, "%s\t%s\t%.6g\tdownstream\n", name, gene, lfc[d]));
          PS_CALL(text_printf(&gmt, "\t%s", gene));
        }
        PS_CALL(text_printf(&gmt, "\n"));
      }
  }
  snprintf(path, sizeof path, "%s.effects.tsv", prefix);
  PS_CALL(ps_text_write_ordered(comm, path, effects.data, effects.len));
  snprintf(path, sizeof path, "%s.targets.gmt", prefix);
  PS_CALL(ps_text_write_ordered(comm, path, gmt.data, gmt.len));
  free(effects.data);
  free(gmt.data);
  return PS_OK;
}

/* PREFIX.basal.tsv (--cell-types T > 1): each type's basal log shift, nonzero genes only. */
static int write_basal_truth(MPI_Comm comm, const ps_sim_options *o, const ps_sim_truth *t, const char *prefix) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  text_buf b = {0};
  char path[4096], gene[32];
  if (rank == 0) {
    PS_CALL(text_printf(&b, "cell_type\tgene\tlog_shift\n"));
    for (int32_t type = 0; type < t->n_cell_types; type++)
      for (int32_t g = 0; g < o->n_genes; g++)
        if (t->basal_shift[(int64_t)type * o->n_genes + g] != 0.0)
          PS_CALL(text_printf(&b, "type%d\t%s\t%.6g\n", (int)type + 1, ps_sim_gene_name(g, gene, sizeof gene),
                              t->basal_shift[(int64_t)type * o->n_genes + g]));
  }
  snprintf(path, sizeof path, "%s.basal.tsv", prefix);
  PS_CALL(ps_text_write_ordered(comm, path, b.data, b.len));
  free(b.data);
  return PS_OK;
}

/* PREFIX.dosage.tsv (--dosage-design): the designed dose-response of each perturbation. */
static int write_dosage_truth(MPI_Comm comm, const ps_sim_options *o, const ps_sim_truth *t, const char *prefix) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  text_buf b = {0};
  char path[4096], gene[32];
  if (rank == 0) {
    PS_CALL(text_printf(&b, "perturbation\town_gene\ted50\thill_b\tclass\town_log_expression\n"));
    for (int32_t k = 0; k < o->n_perturbations; k++) {
      ps_sim_gene_name(t->target_gene[k], gene, sizeof gene);
      PS_CALL(text_printf(&b, "%s\t%s\t%.6g\t%.6g\t%s\t%.6g\n", gene, gene, t->dosage_ed50[k], t->dosage_hill_b[k],
                          t->dosage_ed50[k] <= 0.5 ? "buffered" : "sensitive",
                          log1p(1e4 * t->gene_weight[t->target_gene[k]])));
    }
  }
  snprintf(path, sizeof path, "%s.dosage.tsv", prefix);
  PS_CALL(ps_text_write_ordered(comm, path, b.data, b.len));
  free(b.data);
  return PS_OK;
}

/* Capacity for n cells' counts, so that a large screen is not grown by copying:
 * the expected nonzeros of the NB counts, P(count > 0) = 1 - (1 + d mu)^(-1/d),
 * plus 10% for the library-size spread and the effects. */
static int64_t expected_nonzeros(const ps_sim_options *o, const ps_sim_truth *t, int64_t n) {
  double per_cell = 0;
  for (int32_t g = 0; g < o->n_genes; g++) {
    double mu = o->library_size * t->gene_weight[g];
    per_cell += 1.0 - pow(1.0 + o->dispersion * mu, -1.0 / o->dispersion);
  }
  return (int64_t)(1.1 * per_cell * (double)n) + 1024;
}

int ps_sim_write(MPI_Comm comm, const ps_sim_options *o, const char *prefix, ps_progress *progress) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (o->n_cells < 1 || o->n_genes < 1 || o->n_perturbations < 1 || o->moi < 0 || o->n_efficiencies < 1)
    PS_FAIL(PS_ERR_INPUT, "simulate: cells, genes and perturbations must be positive, moi >= 0, efficiencies non-empty");
  ps_sim_truth t;
  PS_CALL(ps_sim_truth_make(o, &t));
  int64_t begin, end;
  ps_block_range(o->n_cells, rank, size, &begin, &end);
  sim_block b = {0};
  b.counts.n_rows = end - begin;
  b.counts.n_cols = expected_nonzeros(o, &t, end - begin);
  PS_ALLOC(b.counts.indptr, end - begin + 1);
  PS_ALLOC(b.counts.indices, b.counts.n_cols);
  PS_ALLOC(b.counts.data, b.counts.n_cols);
  double *log_effect;
  PS_ALLOC(log_effect, o->n_genes);
  if (rank == 0) PS_CALL(text_printf(&b.guides, "cell\tbarcode\tsgrna\tgene\tread_count\tumi_count\n"));
  if (rank == 0)
    PS_CALL(text_printf(&b.truth, t.n_cell_types > 1 ? "cell\tperturbation\tefficiency\tcell_type\n"
                                                     : "cell\tperturbation\tefficiency\n"));
  for (int64_t i = begin; i < end; i++) {
    PS_CALL(simulate_cell(o, &t, i, log_effect, &b, i - begin));
    if (progress && (i - begin) % 4096 == 0) ps_progress_update(progress, (double)(i - begin) / (double)(end - begin));
  }
  b.counts.n_cols = o->n_genes;
  free(log_effect);

  char path[4096], gene[32];
  snprintf(path, sizeof path, "%s.h5ad", prefix);
  ps_h5ad_writer *w;
  PS_CALL(ps_h5ad_create(comm, path, &w));
  PS_CALL(ps_h5ad_write_csr(w, "X", &b.counts, begin, o->n_cells, 1));
  ps_column obs_columns[] = {{.name = "guide", .kind = PS_COL_STRING, .strings = b.guide_labels.items},
                             {.name = "cell_type", .kind = PS_COL_STRING, .strings = b.cell_types.items}};
  PS_CALL(ps_h5ad_write_frame(w, "obs", b.names.items, b.names.n, begin, o->n_cells, obs_columns,
                              t.n_cell_types > 1 ? 2 : 1));
  ps_strlist genes = {0};
  for (int32_t g = 0; g < o->n_genes; g++) PS_CALL(ps_strlist_push(&genes, ps_sim_gene_name(g, gene, sizeof gene)));
  PS_CALL(ps_h5ad_write_frame(w, "var", genes.items, rank == 0 ? genes.n : 0, 0, genes.n, NULL, 0));
  PS_CALL(ps_h5ad_write_string(w, "uns/simulation/generator", "pertscore simulate " PS_VERSION));
  PS_CALL(ps_h5ad_write_scalar(w, "uns/simulation/seed", (double)o->seed));
  PS_CALL(ps_h5ad_close(&w));
  snprintf(path, sizeof path, "%s.guides.tsv", prefix);
  PS_CALL(ps_text_write_ordered(comm, path, b.guides.data, b.guides.len));
  snprintf(path, sizeof path, "%s.truth.tsv", prefix);
  PS_CALL(ps_text_write_ordered(comm, path, b.truth.data, b.truth.len));
  PS_CALL(write_truth_tables(comm, o, &t, prefix));
  if (t.n_cell_types > 1) PS_CALL(write_basal_truth(comm, o, &t, prefix));
  if (o->dosage_design) PS_CALL(write_dosage_truth(comm, o, &t, prefix));
  ps_strlist_free(&genes);
  ps_strlist_free(&b.names);
  ps_strlist_free(&b.guide_labels);
  ps_strlist_free(&b.cell_types);
  ps_csr_free(&b.counts);
  free(b.guides.data);
  free(b.truth.data);
  ps_sim_truth_free(&t);
  return PS_OK;
}
