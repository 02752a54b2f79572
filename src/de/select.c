/* Targets of one perturbation from its per-gene DE results (SPEC.md section 1):
 * min.pct filter, |log2FC| >= t with the adaptive threshold, the max_targets cap. */
#include "pertscore/de.h"

#include <math.h>
#include <stdlib.h>

void ps_de_options_default(ps_de_options *o) {
  o->min_pct = 0.1;
  o->logfc = 0.1;
  o->min_targets = 10;
  o->max_targets = 500;
  o->max_rounds = 3;
  o->factor = 0.8;
  o->fdr = 0.0;
}

static int check_options(const ps_de_options *o) {
  if (!(o->min_pct >= 0 && o->min_pct <= 1))
    PS_FAIL(PS_ERR_INPUT, "--min-pct must be in [0, 1] (got %g)", o->min_pct);
  if (!(o->logfc >= 0) || !isfinite(o->logfc))
    PS_FAIL(PS_ERR_INPUT, "--logfc must be >= 0 (got %g)", o->logfc);
  if (o->min_targets < 0)
    PS_FAIL(PS_ERR_INPUT, "--min-targets must be >= 0 (got %lld)", (long long)o->min_targets);
  if (o->max_targets < 1)
    PS_FAIL(PS_ERR_INPUT, "--max-targets must be >= 1 (got %lld)", (long long)o->max_targets);
  if (o->max_rounds < 1)
    PS_FAIL(PS_ERR_INPUT, "the number of target selections must be >= 1 (got %d)", o->max_rounds);
  if (!(o->factor > 0 && o->factor <= 1))
    PS_FAIL(PS_ERR_INPUT, "the threshold factor must be in (0, 1] (got %g)", o->factor);
  if (!(o->fdr >= 0 && o->fdr <= 1)) PS_FAIL(PS_ERR_INPUT, "--target-fdr must be in (0, 1] (got %g)", o->fdr);
  return PS_OK;
}

typedef struct {
  double p, abs_fc;
  int64_t gene;
} candidate;

/* Ascending p (NaN last), then larger |log2FC|, then smaller gene index: the
 * SPEC's tie rule for the cap, and a total order so the result is deterministic. */
static int cmp_candidate(const void *a, const void *b) {
  const candidate *x = a, *y = b;
  int xn = isnan(x->p), yn = isnan(y->p);
  if (xn != yn) return xn - yn;
  if (!xn && x->p != y->p) return x->p < y->p ? -1 : 1;
  if (x->abs_fc != y->abs_fc) return x->abs_fc > y->abs_fc ? -1 : 1;
  return (x->gene > y->gene) - (x->gene < y->gene);
}

/* Benjamini-Hochberg q of n candidates (NaN p counts as 1): q[i] aligned with c[i]. */
static int bh_qvalues(const candidate *c, int64_t n, double **out) {
  double *q;
  PS_ALLOC(q, n);
  candidate *sorted = malloc((size_t)n * sizeof *sorted);
  if (!sorted) {
    free(q);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory: BH over %lld genes", (long long)n);
  }
  /* sort positions by p (then the candidate order's tie rule: only the order of equal p
   * changes which h' they get, and equal p get equal q in BH anyway) */
  for (int64_t i = 0; i < n; i++) {
    sorted[i] = c[i];
    sorted[i].gene = i; /* position in c */
    if (isnan(sorted[i].p)) sorted[i].p = 1.0;
  }
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_candidate);
  double running = INFINITY;
  for (int64_t h = n; h >= 1; h--) {
    double v = sorted[h - 1].p * (double)n / (double)h;
    if (v < running) running = v;
    q[sorted[h - 1].gene] = running < 1.0 ? running : 1.0;
  }
  free(sorted);
  *out = q;
  return PS_OK;
}

int ps_de_select(const ps_de_gene *genes, int64_t n_genes, int64_t exclude, const ps_de_options *opt,
                 ps_de_selection *out) {
  *out = (ps_de_selection){0};
  PS_CALL(check_options(opt));
  if (n_genes < 0) PS_FAIL(PS_ERR_INPUT, "target selection: %lld genes", (long long)n_genes);

  /* Tested genes (min.pct, excluded gene removed) once; the rounds only move t. */
  candidate *c;
  PS_ALLOC(c, n_genes);
  int64_t n_tested = 0;
  for (int64_t g = 0; g < n_genes; g++) {
    const ps_de_gene *d = &genes[g];
    if (g == exclude || !(fmax(d->pct1, d->pct2) >= opt->min_pct)) continue;
    c[n_tested++] = (candidate){d->p, fabs(d->log2fc), g};
  }

  /* Adaptive threshold: 0.1, 0.08, 0.064 by default. A NaN |log2FC| never passes. */
  double t = opt->logfc;
  int64_t n_pass = 0;
  int round = 0;
  for (;;) {
    round++;
    n_pass = 0;
    for (int64_t i = 0; i < n_tested; i++) n_pass += c[i].abs_fc >= t;
    if (n_pass >= opt->min_targets || round >= opt->max_rounds) break;
    t *= opt->factor;
  }

  /* --target-fdr: BH q of every tested gene (c is in gene order; q aligned with it) */
  double *q = NULL;
  if (opt->fdr > 0 && n_tested > 0) {
    int err = bh_qvalues(c, n_tested, &q);
    if (err) {
      free(c);
      return ps_error_trace(err, __FILE__, __LINE__);
    }
    n_pass = 0;
    for (int64_t i = 0; i < n_tested; i++) n_pass += c[i].abs_fc >= t && q[i] <= opt->fdr;
  }

  /* Keep the passing candidates (stable in gene order), rank them, cap. */
  int64_t m = 0;
  for (int64_t i = 0; i < n_tested; i++)
    if (c[i].abs_fc >= t && (!q || q[i] <= opt->fdr)) c[m++] = c[i];
  free(q);
  qsort(c, (size_t)m, sizeof *c, cmp_candidate);
  int64_t n_keep = m < opt->max_targets ? m : opt->max_targets;

  out->genes = malloc((size_t)(n_keep > 0 ? n_keep : 1) * sizeof *out->genes);
  if (!out->genes) {
    free(c);
    PS_FAIL(PS_ERR_SYSTEM, "out of memory: %lld target genes", (long long)n_keep);
  }
  for (int64_t i = 0; i < n_keep; i++) out->genes[i] = c[i].gene;
  out->n = n_keep;
  out->threshold = t;
  out->rounds = round;
  out->n_passing = n_pass;
  free(c);
  return PS_OK;
}

void ps_de_selection_free(ps_de_selection *s) {
  if (!s) return;
  free(s->genes);
  *s = (ps_de_selection){0};
}
