/* The memory estimate (src/cost, pertscore/cost.h): its parts shrink with ranks
 * where they are distributed, grow with the sizes they depend on, and the size
 * parser and the limit from Slurm's environment behave as documented. One rank
 * (the estimate itself is not collective). */
#include "pertscore/cost.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

/* A genome-scale screen: 200k cells, 18k perturbations, MOI 1.2, 400 genes. */
static ps_cost_problem screen(int ranks) {
  ps_cost_problem p = {.cells_input = 250000, .genes = 33000, .nnz = INT64_C(250000) * 4000, .cells = 200000,
                       .control_cells = 10000, .perturbations = 18000, .basal_rows = 1, .regression_genes = 400,
                       .nnz_y = INT64_C(200000) * 300, .design_entries = 240000, .scored_entries = 240000,
                       .target_pairs = 18000 * 40, .permutations = 100, .perm_batch_bytes = INT64_C(256) << 20,
                       .dosage = 1, .ranks = ranks, .select_targets = 1};
  p.gram_pairs = (p.cells / ranks) * 4; /* (|S|+1)(|S|+2)/2 ~ 4 at MOI 1.2 */
  return p;
}

static void test_more_ranks_less_per_rank(void) {
  ps_cost_memory prev;
  ps_cost_problem p = screen(1);
  ps_cost_memory_estimate(&p, &prev);
  for (int ranks = 2; ranks <= 256; ranks *= 2) {
    ps_cost_memory m;
    p = screen(ranks);
    ps_cost_memory_estimate(&p, &m);
    EXPECT(m.resident < prev.resident, "resident %g on %d ranks not below %g", m.resident, ranks, prev.resident);
    EXPECT(m.stage[PS_COST_RIDGE] < prev.stage[PS_COST_RIDGE], "ridge %g on %d ranks not below %g",
          m.stage[PS_COST_RIDGE], ranks, prev.stage[PS_COST_RIDGE]);
    EXPECT(m.stage[PS_COST_READ] < prev.stage[PS_COST_READ], "read %g on %d ranks", m.stage[PS_COST_READ], ranks);
    EXPECT(m.stage[PS_COST_TARGETS] < prev.stage[PS_COST_TARGETS], "targets on %d ranks", ranks);
    EXPECT(m.stage[PS_COST_REGRESSION] < prev.stage[PS_COST_REGRESSION], "regression on %d ranks", ranks);
    /* the permutation batch is replicated: that stage may stay flat but never grows */
    EXPECT(m.stage[PS_COST_PERMUTATIONS] <= prev.stage[PS_COST_PERMUTATIONS], "permutations grew on %d ranks", ranks);
    EXPECT(m.stage[PS_COST_SCORE] <= prev.stage[PS_COST_SCORE], "score grew on %d ranks", ranks);
    EXPECT(m.peak < prev.peak, "peak %g on %d ranks not below %g", m.peak, ranks, prev.peak);
    for (int s = PS_COST_RIDGE; s < PS_COST_N_STAGES; s++)
      EXPECT(m.peak >= m.runtime + m.resident + m.stage[s], "peak below the %s stage", ps_cost_stage_name(s));
    for (int s = PS_COST_READ; s < PS_COST_RIDGE; s++)
      EXPECT(m.peak >= m.runtime + m.stage[s], "peak below the %s stage", ps_cost_stage_name(s));
    prev = m;
  }
  /* the K x K factor: about 8 (K + 1)^2 / P per rank */
  p = screen(16);
  ps_cost_memory m;
  ps_cost_memory_estimate(&p, &m);
  double factor = 8.0 * 18001 * 18001 / 16;
  EXPECT(m.stage[PS_COST_RIDGE] >= factor && m.stage[PS_COST_RIDGE] < 1.2 * factor + 64.0 * p.gram_pairs + 2e8,
        "ridge %g vs factor %g on 16 ranks", m.stage[PS_COST_RIDGE], factor);
}

static void test_grows_with_sizes(void) {
  ps_cost_problem p = screen(4);
  ps_cost_memory base, more;
  ps_cost_memory_estimate(&p, &base);
  p.perturbations *= 2, p.target_pairs *= 2;
  ps_cost_memory_estimate(&p, &more);
  EXPECT(more.peak > base.peak, "more perturbations, no more memory");
  p = screen(4);
  p.permutations = 0;
  ps_cost_memory_estimate(&p, &more);
  EXPECT(more.stage[PS_COST_PERMUTATIONS] == 0 && more.peak <= base.peak, "no permutations should not cost more");
  p = screen(4);
  p.perm_adaptive = 1; /* the open genes' copy of Y (<= 3/4 of it) and the stopping counts */
  ps_cost_memory_estimate(&p, &more);
  EXPECT(more.stage[PS_COST_PERMUTATIONS] - base.stage[PS_COST_PERMUTATIONS] >=
             9.0 * p.nnz_y / p.ranks + 4.0 * (p.perturbations + p.basal_rows) * p.regression_genes,
         "--permutations-adaptive: %g more bytes, less than 3/4 of Y/P and the stopping table",
         more.stage[PS_COST_PERMUTATIONS] - base.stage[PS_COST_PERMUTATIONS]);
  p = screen(4);
  p.cells *= 4, p.nnz_y *= 4, p.design_entries *= 4, p.scored_entries *= 4, p.gram_pairs *= 4;
  ps_cost_memory_estimate(&p, &more);
  EXPECT(more.resident > base.resident, "more cells, no more resident memory");
  p = screen(4);
  p.dosage = 0;
  ps_cost_memory_estimate(&p, &more);
  EXPECT(more.stage[PS_COST_DOSAGE] == 0, "dosage estimated although off");
  p = screen(4);
  p.nnz = 0;
  ps_cost_memory_estimate(&p, &more);
  EXPECT(more.stage[PS_COST_READ] < base.stage[PS_COST_READ] && more.stage[PS_COST_TARGETS] < base.stage[PS_COST_TARGETS]
        && more.resident == base.resident, "nnz must enter read and targets only");
  /* the targets stage still holds the matrix block: at least 12 bytes per stored value */
  EXPECT(base.stage[PS_COST_TARGETS] >= 12.0 * (double)p.nnz / 4, "targets %g without the block",
        base.stage[PS_COST_TARGETS]);
  p = screen(4);
  p.select_targets = 0;
  ps_cost_memory_estimate(&p, &more);
  EXPECT(more.stage[PS_COST_TARGETS] == 0, "targets estimated with a targets file");
  p = screen(4);
  p.keep_expression = 1; /* run --cv perturbations keeps every gene of the analysed cells */
  ps_cost_memory_estimate(&p, &more);
  double kept = 12.0 * (double)p.nnz * ((double)p.cells / (double)p.cells_input) / 4;
  EXPECT(fabs(more.resident - base.resident - kept) < 1e-6 * kept, "keep_expression: resident +%g, expected +%g",
        more.resident - base.resident, kept);
}

/* run --cv: the stage is estimated for its scheme only, and the perturbations
 * scheme's replicated pseudobulk tables (3 x 8 (K + 1) G, docs/cv.md) are in it */
static void test_cv_stage(void) {
  ps_cost_problem p = screen(4);
  ps_cost_memory none, pert, cells;
  ps_cost_memory_estimate(&p, &none);
  EXPECT(none.stage[PS_COST_CV] == 0, "cv estimated without --cv");
  p.cv_scheme = 1;
  ps_cost_memory_estimate(&p, &pert);
  EXPECT(pert.stage[PS_COST_CV] >= 24.0 * (p.perturbations + 1) * (double)p.genes, "perturbations: %g",
        pert.stage[PS_COST_CV]);
  p.cv_scheme = 2;
  ps_cost_memory_estimate(&p, &cells);
  EXPECT(cells.stage[PS_COST_CV] > 0 && cells.stage[PS_COST_CV] != pert.stage[PS_COST_CV], "cells: %g",
        cells.stage[PS_COST_CV]);
  /* more ranks than folds: groups of several ranks share the copy */
  ps_cost_memory wide;
  p = screen(40);
  p.cv_scheme = 2;
  ps_cost_memory_estimate(&p, &wide);
  EXPECT(wide.stage[PS_COST_CV] < cells.stage[PS_COST_CV], "cells on 40 ranks %g not below 4 ranks' %g",
        wide.stage[PS_COST_CV], cells.stage[PS_COST_CV]);
}

/* pertscore cv (cv_only): after the read only the cv stage; the cells scheme's fits
 * assemble X^T X as the ridge does, the perturbations scheme fits no ridge; no PS
 * stage. The cv stage itself is run --cv's. */
static void test_cv_command(void) {
  for (int scheme = 1; scheme <= 2; scheme++) {
    ps_cost_problem p = screen(4);
    p.permutations = 0, p.dosage = 0, p.cv_scheme = scheme;
    ps_cost_memory in_run, alone;
    ps_cost_memory_estimate(&p, &in_run);
    p.cv_only = 1;
    ps_cost_memory_estimate(&p, &alone);
    EXPECT(alone.stage[PS_COST_CV] == in_run.stage[PS_COST_CV] && alone.stage[PS_COST_CV] > 0 &&
          alone.resident == in_run.resident, "scheme %d: cv %g vs run --cv's %g", scheme, alone.stage[PS_COST_CV],
          in_run.stage[PS_COST_CV]);
    EXPECT(alone.stage[PS_COST_SCORE] == 0 && in_run.stage[PS_COST_SCORE] > 0, "scheme %d: score estimated", scheme);
    EXPECT(alone.stage[PS_COST_RIDGE] == (scheme == 2 ? in_run.stage[PS_COST_RIDGE] : 0) &&
          in_run.stage[PS_COST_RIDGE] > 0, "scheme %d: ridge %g", scheme, alone.stage[PS_COST_RIDGE]);
    EXPECT(alone.peak <= in_run.peak, "scheme %d: cv alone %g above run --cv's %g", scheme, alone.peak, in_run.peak);
  }
  /* no regression genes (cv --scheme perturbations without --targets): before the
   * read's end nnz(Y) is bounded by 0, not by the analysed cells' nnz, and the
   * regression stage is then what the full estimate gives for an empty Y */
  ps_cost_problem p = screen(4);
  p.keep_expression = 1, p.select_targets = 0, p.regression_genes = 0, p.nnz_y = 0;
  ps_cost_memory all, bounded, none;
  ps_cost_memory_estimate(&p, &all);
  p.known = PS_COST_KNOWN_DESIGN;
  ps_cost_memory_estimate(&p, &bounded);
  p.no_regression = 1;
  ps_cost_memory_estimate(&p, &none);
  EXPECT(none.stage[PS_COST_REGRESSION] < bounded.stage[PS_COST_REGRESSION] &&
        fabs(none.stage[PS_COST_REGRESSION] - all.stage[PS_COST_REGRESSION]) < 1e-9 * all.stage[PS_COST_REGRESSION],
        "no regression genes: %g before the read's end, %g bounded, %g after", none.stage[PS_COST_REGRESSION],
        bounded.stage[PS_COST_REGRESSION], all.stage[PS_COST_REGRESSION]);
}

/* ps_cost_guard_install: the guard's view of the read from its options */
static void test_guard_install(void) {
  ps_dataset_options data;
  ps_targets_options targets;
  ps_regression_options regression;
  ps_dataset_options_default(&data);
  ps_targets_options_default(&targets);
  ps_regression_options_default(&regression);
  targets.de.max_targets = 77;
  ps_cost_guard g;
  ps_cost_guard_install(&g, 1e9, &data, &targets, &regression);
  EXPECT(data.guard == ps_cost_dataset_guard && data.guard_context == &g && g.max_memory == 1e9 &&
        g.select_targets && !g.keep_expression && !g.no_regression && g.max_targets == 77 && !g.cv_only,
        "run's defaults: select %d keep %d none %d max_targets %lld", g.select_targets, g.keep_expression,
        g.no_regression, (long long)g.max_targets);
  regression.keep_expression = 1, targets.no_target_selection = 1; /* cv --scheme perturbations */
  ps_cost_guard_install(&g, 0, &data, &targets, &regression);
  EXPECT(!g.select_targets && g.keep_expression && g.no_regression, "cv perturbations: select %d keep %d none %d",
        g.select_targets, g.keep_expression, g.no_regression);
  targets.targets = "given.gmt"; /* the given targets' genes are regressed */
  ps_cost_guard_install(&g, 0, &data, &targets, &regression);
  EXPECT(!g.select_targets && !g.no_regression, "with --targets: select %d none %d", g.select_targets, g.no_regression);
}

/* The guard runs while the input is read: from the shape only the read stage is
 * estimated, with the design also the targets stage; nothing later. */
static void test_partial_knowledge(void) {
  ps_cost_problem p = screen(4);
  ps_cost_memory all, part;
  ps_cost_memory_estimate(&p, &all);
  p.known = PS_COST_KNOWN_SHAPE;
  ps_cost_memory_estimate(&p, &part);
  EXPECT(part.stage[PS_COST_READ] == all.stage[PS_COST_READ] && part.peak_stage == PS_COST_READ &&
        part.peak == part.runtime + part.stage[PS_COST_READ] && part.resident == 0,
        "shape only: peak %g at %s", part.peak, ps_cost_stage_name(part.peak_stage));
  for (int s = PS_COST_TARGETS; s < PS_COST_N_STAGES; s++)
    EXPECT(part.stage[s] == 0, "shape only: the %s stage was estimated", ps_cost_stage_name(s));
  p.known = PS_COST_KNOWN_DESIGN;
  ps_cost_memory_estimate(&p, &part);
  EXPECT(part.stage[PS_COST_TARGETS] == all.stage[PS_COST_TARGETS] && part.resident == 0 &&
        part.stage[PS_COST_RIDGE] == 0, "shape and design: targets %g (all: %g), ridge %g",
        part.stage[PS_COST_TARGETS], all.stage[PS_COST_TARGETS], part.stage[PS_COST_RIDGE]);
  /* nnz(Y) is not known yet: bounded by the analysed cells' nnz, never below the exact estimate */
  EXPECT(part.stage[PS_COST_REGRESSION] >= all.stage[PS_COST_REGRESSION] && all.stage[PS_COST_REGRESSION] > 0,
        "shape and design: regression %g below the exact %g", part.stage[PS_COST_REGRESSION],
        all.stage[PS_COST_REGRESSION]);
}

static void test_parse_size(void) {
  const struct {
    const char *text;
    double bytes;
  } ok[] = {{"0", 0}, {"1000000", 1e6}, {"512M", 512.0 * 1048576}, {"12G", 12.0 * 1073741824},
            {"1.5T", 1.5 * 1099511627776.0}, {"800k", 819200}, {"2GiB", 2.0 * 1073741824}, {"64MB", 64.0 * 1048576}};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    double bytes = -1;
    EXPECT(ps_cost_parse_size(ok[i].text, &bytes) == PS_OK && bytes == ok[i].bytes, "'%s' gave %g, expected %g",
          ok[i].text, bytes, ok[i].bytes);
  }
  const char *bad[] = {"", "x", "12x", "-1G", "1.5Q", "G", "nan"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    double bytes;
    int err = ps_cost_parse_size(bad[i], &bytes);
    EXPECT(err == PS_ERR_INPUT && strstr(ps_error_message(), "--max-memory"), "'%s' accepted", bad[i]);
    ps_error_clear();
  }
}

static void test_limit(void) {
  double limit;
  char source[512];
  unsetenv("SLURM_MEM_PER_NODE");
  unsetenv("SLURM_MEM_PER_CPU");
  ps_cost_memory_limit(0, 4, &limit, source, sizeof source);
  EXPECT(limit == 0, "a limit without --max-memory or Slurm: %g", limit);
  ps_cost_memory_limit(1e9, 4, &limit, source, sizeof source);
  EXPECT(limit == 1e9 && strstr(source, "--max-memory"), "--max-memory: %g (%s)", limit, source);
  setenv("SLURM_MEM_PER_NODE", "8000", 1);
  ps_cost_memory_limit(0, 4, &limit, source, sizeof source);
  EXPECT(limit == 2000.0 * 1048576 && strstr(source, "SLURM_MEM_PER_NODE=8000"), "per node: %g (%s)", limit, source);
  ps_cost_memory_limit(1e9, 4, &limit, source, sizeof source);
  EXPECT(limit == 1e9 && strstr(source, "--max-memory"), "the smaller limit binds: %g (%s)", limit, source);
  unsetenv("SLURM_MEM_PER_NODE");
  setenv("SLURM_MEM_PER_CPU", "1000", 1);
  setenv("SLURM_CPUS_PER_TASK", "3", 1);
  ps_cost_memory_limit(0, 4, &limit, source, sizeof source);
  EXPECT(limit == 3000.0 * 1048576 && strstr(source, "SLURM_MEM_PER_CPU"), "per cpu: %g (%s)", limit, source);
  unsetenv("SLURM_MEM_PER_CPU");
  unsetenv("SLURM_CPUS_PER_TASK");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  test_more_ranks_less_per_rank();
  test_grows_with_sizes();
  test_partial_knowledge();
  test_cv_stage();
  test_cv_command();
  test_guard_install();
  test_parse_size();
  test_limit();
  if (failures) fprintf(stderr, "test_cost: %d failure(s)\n", failures);
  else printf("test_cost: ok\n");
  MPI_Finalize();
  return failures ? 1 : 0;
}
