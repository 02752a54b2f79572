/* Memory per rank, per stage, and the memory guard (pertscore/cost.h).
 *
 * Symbols: P ranks; M analysed cells (Min input cells); G genes; nnz stored input
 * values (nnzA of the analysed cells, ~ nnz M / Min); N regression genes; K
 * perturbations; n = K + Gb rows of B (Gb intercepts, 1 without groups); D =
 * nnz(D) = M x MOI design entries; S = scored PS entries (D, or perturbed cells x
 * K with --score-all-cells); Y = nnz(Y) <= M N; Q = the largest rank's X^T X pairs,
 * sum over its cells of (|S|+1)(|S|+2)/2 ~ (M/P)(MOI+1)(MOI+2)/2, at most
 * n(n+1)/2; R permutations, b their batch width (ps_ridge_perm_batch: 16 n N b
 * <= the batch budget, 256 MB by default); nb the block size of the n x n matrix
 * on the 1 x P grid (every rank holds whole columns) and rP = min(n, ceil(ceil(n /
 * nb) / P) nb) its columns on the largest rank; T target pairs; C control cells.
 * Bytes per rank:
 *
 *   runtime      48 MiB                          MPI, HDF5, PETSc, OpenBLAS (52 MB RSS measured for a tiny run)
 *   resident     12 Y/P + 12 D/P + 12 C K/P + 45 M/P + 40 G + 8 n N   dataset kept read..write: Y (CSR), design,
 *                                                own-gene values (controls carry every K), names, flags; B
 *                + 12 nnzA/P                     with --cv perturbations: every gene of the analysed cells
 *   read         12 nnz/P + 56 Min/P + 40 G      the cell block (CSR, 12 per value, read straight into int32
 *                                                indices and doubles), the block's names, indptr share and
 *                                                name hashes, the gene names
 *   targets      12 nnz/P + 40 Min/P + 56 G + 12 D/P + 45 M/P   (the block, names and design, still held)
 *                + 32 max(nnzA/32, 2^16)/P + 24 M + 8 D + 40 T   one gene batch of the transpose (1/32 of
 *                                                the values: Alltoallv send + receive of 16-byte entries, then
 *                                                its shard), per-gene counts, every cell's DE roles
 *                                                (allgathered, O(M MOI)), the selected pairs
 *   regression   40 G + 12 D/P + 45 M/P + 12 C K/P (dosage) + 12 nnzA/P (--cv perturbations)
 *                + max(12 nnz/P + 40 Min/P [+ 12 Y/P with --keep-expression], 12 Y/P + 32 max(Y/32, 2^16)/P)
 *                                                the end of the read: Y taken from the block in place (a
 *                                                copy only when the block is kept), then the winsorizing
 *                                                quantiles (Y and one batch of 1/32 of its values: send +
 *                                                receive of 16-byte pairs); Y <= nnzA before the genes are chosen
 *   ridge        8 rP n + max(64 Q, 16 n N + 8 rP N)   factor of X^T X + lambda I, with the assembly's pair
 *                                                tables (hash, send, receive) or the X^T Y right-hand side
 *                                                (dense sum + packed reduce-scatter buffer) and this rank's share
 *   permutations 8 rP n + 16 M + 4 D + 12 (M + D)/P + [13 Y/P if D >= 1.5 M, else 4 (M + D)/P]
 *                + 12 n N + 8 (2 n + rP) N b [+ 8 n N b if P > 1] [+ 8 M with basal groups]
 *                                                the inverse; every cell's design row and the permutation
 *                                                (allgathered, O(M MOI)); this rank's permuted rows; Y by
 *                                                gene tiles (MOI >= 1.5) or the cells bucketed by row (Y read
 *                                                in place); counts + p-values; one batch (its two n x N b
 *                                                buffers, the own rows of B_r, and with P > 1 the MPI
 *                                                reductions' temporaries of one batch: measured, bench scaling;
 *                                                with groups the cells sorted by group, to permute within them)
 *                + [4 n N + 17 N + rP + 9 Y/P + 8 M/P with --permutations-adaptive]   each pair's stopping
 *                                                count (int32, every row), the open-gene maps, and Y restricted
 *                                                to the open genes (made once < 3/4 of them are open: <= 0.75 Y;
 *                                                by gene tile the tiles are rebuilt from it, old ones freed first)
 *   score        8 n N + 8 S/P                   p-values; PS (QP scratch is O(MOI^2 + MOI N), negligible)
 *   dosage       8 n N + 16 S/P + 16 (D/P + C) + 368 K   PS aligned to the design, each perturbation's
 *                                                cells and the controls' own-gene values on its owner, K-row tables
 *   cv           8 n N + 8 S/P + (perturbations) 24 (K + 1) G + 16 G K   pseudobulk sums and means (docs/cv.md),
 *                                                a fold's genes x |T| training matrix and its SVD workspace;
 *                (cells) 16 rP n + 8 rP N + 24 n N + 21 M/P + 28 D/P + 16 S/P   a fold's system and the
 *                                                copy of X^T X it is refactored from per lambda, its X^T Y
 *                                                share, the fit's two n x N products and beta, the training
 *                                                mask, cursors and rows, full-data and fold PS, score pairs
 *                                                (the folds run in turn over the cells in place: no copy of Y)
 *   write        8 n N + 8 S/P + (16 MOI + 40) M/P   PS and the obs columns (labels) being written
 *
 * peak = runtime + max(read, targets, regression, resident + max(ridge, permutations,
 * score, dosage, cv, write)): the parts of the read come before the dataset is resident
 * and hold their own data. `pertscore cv` (cv_only) runs only the cv stage after the
 * read: no score stage, and the ridge stage's terms only for the cells scheme (its
 * fits assemble and factor X^T X as the ridge does); without regression genes
 * (no_regression) Y is bounded by 0. The guard runs before the matrix is loaded (read, from
 * the input's shape: cells, genes, nnz from indptr), again once the design is known
 * (targets with T <= K x --max-targets, regression with Y <= nnzA), and after the
 * read (every stage). Measured (docs/performance.md): freed heap is not returned to
 * the system, so the RSS of the stages after the read stays at the read's peak.
 * Distributed parts shrink with P; replicated ones (B and its p-values, the
 * O(M MOI) design rows of the permutations, gene names) do not. */
#include "pertscore/cost.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/ridge.h"

static const char *stage_names[PS_COST_N_STAGES] = {"read", "targets", "regression", "ridge", "permutations",
                                                    "score", "dosage", "cv", "write"};

const char *ps_cost_stage_name(int stage) {
  return stage >= 0 && stage < PS_COST_N_STAGES ? stage_names[stage] : "?";
}

/* Columns of the n x n block-cyclic matrix on the rank with the most (1 x P grid,
 * block size as ridge_system.c chooses it: min(nb, n / P), at least 1). */
static double factor_columns(double n, int ranks, int block) {
  double nb = floor(n / ranks);
  if (nb > block) nb = block;
  if (nb < 1) nb = 1;
  double columns = ceil(ceil(n / nb) / ranks) * nb;
  return columns < n ? columns : n;
}

void ps_cost_memory_estimate(const ps_cost_problem *p, ps_cost_memory *out) {
  memset(out, 0, sizeof *out);
  double P = p->ranks > 0 ? p->ranks : 1;
  double M = (double)p->cells, G = (double)p->genes, K = p->perturbations, N = p->regression_genes;
  double n = (double)p->perturbations + (p->basal_rows > 0 ? p->basal_rows : 1);
  double D = (double)p->design_entries, S = (double)p->scored_entries, Y = (double)p->nnz_y;
  double C = (double)p->control_cells, Min = (double)(p->cells_input > 0 ? p->cells_input : p->cells);
  double moi = M > 0 ? D / M : 0;
  double rP = factor_columns(n, (int)P, p->block > 0 ? p->block : ps_ridge_block_size((int)n, (int)P));
  double pairs_all = n * (n + 1) / 2, Q = (double)p->gram_pairs < pairs_all ? (double)p->gram_pairs : pairs_all;

  out->runtime = 48.0 * 1024 * 1024;
  double nnz = (double)p->nnz, nnz_a = Min > 0 ? nnz * (M / Min) : 0;
  /* 1/32 of the values per batch of the targets' transpose and the winsorizing (src/data) */
  const double batches = 32, batch_min = 65536;
  double batch_a = fmax(nnz_a / batches, batch_min);
  out->stage[PS_COST_READ] = 12 * nnz / P + 56 * Min / P + 40 * G;
  out->peak_stage = PS_COST_READ;
  double best = out->stage[PS_COST_READ];
  if (p->known != PS_COST_KNOWN_SHAPE && p->select_targets) {
    out->stage[PS_COST_TARGETS] = 12 * nnz / P + 40 * Min / P + 56 * G + 12 * D / P + 45 * M / P + 32 * batch_a / P +
                                  24 * M + 8 * D + 40 * (double)p->target_pairs;
    if (out->stage[PS_COST_TARGETS] > best) best = out->stage[PS_COST_TARGETS], out->peak_stage = PS_COST_TARGETS;
  }
  if (p->known != PS_COST_KNOWN_SHAPE) {
    /* Y <= nnzA before the genes are chosen; none without regression genes */
    double y_bound = p->known == PS_COST_KNOWN_ALL ? Y : p->no_regression ? 0 : nnz_a;
    double during = 12 * nnz / P + 40 * Min / P + (p->keep_expression ? 12 * y_bound / P : 0);
    double winsor = 12 * y_bound / P + 32 * fmax(y_bound / batches, batch_min) / P;
    out->stage[PS_COST_REGRESSION] = 40 * G + 12 * D / P + 45 * M / P + (p->dosage ? 12 * C * K / P : 0) +
                                     (p->keep_expression ? 12 * nnz_a / P : 0) + (during > winsor ? during : winsor);
    if (out->stage[PS_COST_REGRESSION] > best)
      best = out->stage[PS_COST_REGRESSION], out->peak_stage = PS_COST_REGRESSION;
  }
  if (p->known == PS_COST_KNOWN_ALL) {
    out->resident = 12 * Y / P + 12 * D / P + 12 * C * K / P + 45 * M / P + 40 * G + 8 * n * N;
    if (p->keep_expression) out->resident += 12 * nnz_a / P;
    double rhs = 16 * n * N + 8 * rP * N;
    out->stage[PS_COST_RIDGE] = 8 * rP * n + (64 * Q > rhs ? 64 * Q : rhs);
    if (p->permutations > 0) {
      double b = ps_ridge_perm_batch((int32_t)n, (int32_t)N, p->permutations,
                                     p->perm_batch_bytes > 0 ? p->perm_batch_bytes : INT64_C(256) << 20);
      out->stage[PS_COST_PERMUTATIONS] =
          8 * rP * n + 16 * M + 4 * D + 12 * (M + D) / P + (D >= 1.5 * M ? 13 * Y / P : 4 * (M + D) / P) +
          12 * n * N + 8 * (2 * n + rP) * N * b +
          (P > 1 ? 8 * n * N * b : 0) + /* Open MPI's reduce-scatter/allreduce temporaries: one batch */
          (p->basal_rows > 1 ? 8 * M : 0) + /* basal groups: the cells by group, to permute within groups */
          (p->perm_adaptive ? 4 * n * N + 17 * N + rP + 9 * Y / P + 8 * M / P : 0);
    }
    double pvalues = p->permutations > 0 ? 8 * n * N : 0;
    if (!p->cv_only) out->stage[PS_COST_SCORE] = pvalues + 8 * S / P;
    if (p->dosage) out->stage[PS_COST_DOSAGE] = pvalues + 16 * S / P + 16 * (D / P + C) + 368 * K;
    out->stage[PS_COST_WRITE] = pvalues + 8 * S / P + (16 * moi + 40) * M / P;
    if (p->cv_scheme == 1) /* docs/cv.md: pseudobulk sums and means, a fold's genes x |T| matrix and its SVD */
      out->stage[PS_COST_CV] = pvalues + 8 * S / P + 24 * (K + 1) * G + 16 * G * K;
    else if (p->cv_scheme == 2) /* a fold's system, its copies for the lambda grid, the fit; PS and pairs */
      out->stage[PS_COST_CV] = pvalues + 16 * rP * n + 8 * rP * N + 24 * n * N + 21 * M / P + 28 * D / P + 16 * S / P;
    if (p->cv_only) { /* pertscore cv: the cells scheme's fits assemble X^T X as the ridge does; no PS stage */
      if (p->cv_scheme != 2) out->stage[PS_COST_RIDGE] = 0;
      out->stage[PS_COST_PERMUTATIONS] = out->stage[PS_COST_DOSAGE] = 0;
    }
    for (int s = PS_COST_RIDGE; s < PS_COST_N_STAGES; s++)
      if (out->resident + out->stage[s] > best) best = out->resident + out->stage[s], out->peak_stage = s;
  }
  out->peak = out->runtime + best;
}

int ps_cost_problem_of_run(MPI_Comm comm, const ps_dataset *d, const ps_design *scored, int permutations,
                           int64_t perm_batch_bytes, int dosage, ps_cost_problem *p) {
  memset(p, 0, sizeof *p);
  const ps_design *D = &d->design;
  int64_t pairs = 0, sums[3] = {ps_csr_nnz(&d->y), D->ptr[D->n_cells], scored->ptr[scored->n_cells]};
  for (int64_t j = 0; j < D->n_cells; j++) {
    int64_t s = D->ptr[j + 1] - D->ptr[j];
    pairs += (s + 1) * (s + 2) / 2;
  }
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_INT64_T, MPI_SUM, comm));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &pairs, 1, MPI_INT64_T, MPI_MAX, comm));
  PS_CHECK_MPI(MPI_Comm_size(comm, &p->ranks));
  p->cells_input = d->n_cells_input;
  p->genes = d->n_genes;
  p->cells = d->n_analysed;
  p->control_cells = d->n_control;
  p->perturbations = D->n_perturbations;
  p->basal_rows = ps_design_n_basal(D);
  p->regression_genes = d->n_regression;
  p->nnz_y = sums[0];
  p->design_entries = sums[1];
  p->scored_entries = sums[2];
  p->gram_pairs = pairs;
  p->target_pairs = d->targets.gene.n;
  p->permutations = permutations;
  p->perm_batch_bytes = perm_batch_bytes;
  p->dosage = dosage;
  p->nnz = d->nnz_input;
  p->keep_expression = d->expression.indptr != NULL;
  p->select_targets = d->target_threshold != NULL; /* set by the selection only */
  p->known = PS_COST_KNOWN_ALL;
  return PS_OK;
}

int ps_cost_parse_size(const char *text, double *bytes) {
  char *end;
  double value = text ? strtod(text, &end) : NAN;
  if (!text || end == text || !(value >= 0) || !isfinite(value))
    PS_FAIL(PS_ERR_INPUT, "--max-memory: '%s' is not a size (examples: 512M, 12G, 1.5T, 1000000)", text ? text : "");
  double unit = 1;
  switch (*end) {
    case 'k': case 'K': unit = 1024.0, end++; break;
    case 'm': case 'M': unit = 1024.0 * 1024, end++; break;
    case 'g': case 'G': unit = 1024.0 * 1024 * 1024, end++; break;
    case 't': case 'T': unit = 1024.0 * 1024 * 1024 * 1024, end++; break;
    default: break;
  }
  if (unit > 1 && end[0] == 'i' && end[1] == 'B') end += 2;
  else if (end[0] == 'B') end++;
  if (*end) PS_FAIL(PS_ERR_INPUT, "--max-memory: '%s' is not a size (examples: 512M, 12G, 1.5T, 1000000)", text);
  *bytes = floor(value * unit);
  return PS_OK;
}

const char *ps_cost_format_size(double bytes, char *buf, size_t size) {
  static const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024 && u < 5) bytes /= 1024, u++;
  snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

/* A positive number of megabytes from the environment, or 0. */
static double env_megabytes(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  double mb = strtod(v, &end);
  return end != v && mb > 0 && isfinite(mb) ? mb : 0;
}

void ps_cost_memory_limit(double max_memory, int ranks_on_node, double *limit, char *source, size_t size) {
  *limit = 0;
  source[0] = '\0';
  char text[64];
  if (max_memory > 0) {
    *limit = max_memory;
    snprintf(source, size, "--max-memory %s per rank", ps_cost_format_size(max_memory, text, sizeof text));
  }
  double per_node = env_megabytes("SLURM_MEM_PER_NODE"), per_cpu = env_megabytes("SLURM_MEM_PER_CPU");
  double slurm = 0;
  char slurm_source[256] = "";
  if (per_node > 0) {
    int ranks = ranks_on_node > 0 ? ranks_on_node : 1;
    slurm = per_node * 1024 * 1024 / ranks;
    snprintf(slurm_source, sizeof slurm_source, "Slurm: SLURM_MEM_PER_NODE=%s MB shared by the %d rank(s) on this node",
             getenv("SLURM_MEM_PER_NODE"), ranks);
  } else if (per_cpu > 0) {
    const char *cpus_text = getenv("SLURM_CPUS_PER_TASK");
    double cpus = cpus_text && atof(cpus_text) > 0 ? atof(cpus_text) : 1;
    slurm = per_cpu * cpus * 1024 * 1024;
    snprintf(slurm_source, sizeof slurm_source, "Slurm: SLURM_MEM_PER_CPU=%s MB x %g CPU(s) per task",
             getenv("SLURM_MEM_PER_CPU"), cpus);
  }
  if (slurm > 0 && (*limit == 0 || slurm < *limit)) {
    *limit = slurm;
    snprintf(source, size, "%s", slurm_source);
  }
}

int ps_cost_check_memory(MPI_Comm comm, const ps_cost_problem *p, double max_memory) {
  ps_cost_memory m;
  ps_cost_memory_estimate(p, &m);
  ps_stats_set("memory.estimate_bytes", m.peak);
  ps_stats_set("memory.estimate.runtime_bytes", m.runtime);
  ps_stats_set("memory.estimate.resident_bytes", m.resident);
  for (int s = 0; s < PS_COST_N_STAGES; s++) {
    char name[64];
    snprintf(name, sizeof name, "memory.estimate.%s_bytes", stage_names[s]);
    ps_stats_set(name, m.stage[s]);
  }
  /* ranks sharing this node's memory */
  MPI_Comm node;
  int on_node = 1;
  PS_CHECK_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  PS_CHECK_MPI(MPI_Comm_size(node, &on_node));
  PS_CHECK_MPI(MPI_Comm_free(&node));
  double limit;
  char source[512];
  ps_cost_memory_limit(max_memory, on_node, &limit, source, sizeof source);
  ps_stats_set("memory.limit_bytes", limit);
  int err = PS_OK;
  if (limit > 0 && m.peak > limit) {
    char need[32], have[32], stage[32], resident[32], sizes[256];
    if (p->known == PS_COST_KNOWN_ALL && p->cv_only)
      snprintf(sizes, sizeof sizes, "the dataset %s; for %lld cells, %lld genes, %d perturbations, %d regression "
               "genes, the %s scheme on %d ranks", ps_cost_format_size(m.resident, resident, sizeof resident),
               (long long)p->cells, (long long)p->genes, p->perturbations, p->regression_genes,
               p->cv_scheme == 2 ? "cells" : "perturbations", p->ranks);
    else if (p->known == PS_COST_KNOWN_ALL)
      snprintf(sizes, sizeof sizes, "the dataset %s; for %lld cells, %d perturbations, %d regression genes, "
               "%d permutations on %d ranks", ps_cost_format_size(m.resident, resident, sizeof resident),
               (long long)p->cells, p->perturbations, p->regression_genes, p->permutations, p->ranks);
    else if (p->known == PS_COST_KNOWN_DESIGN)
      snprintf(sizes, sizeof sizes, "for %lld analysed cells of %lld, %lld genes, %d perturbations on %d ranks; "
               "checked before target selection", (long long)p->cells, (long long)p->cells_input,
               (long long)p->genes, p->perturbations, p->ranks);
    else
      snprintf(sizes, sizeof sizes, "for %lld cells x %lld genes with %lld stored values on %d ranks; checked "
               "before the matrix is read", (long long)p->cells_input, (long long)p->genes, (long long)p->nnz,
               p->ranks);
    err = ps_error_set(
        PS_ERR_INPUT, __FILE__, __LINE__,
        "memory guard: this run needs about %s per rank (at the %s stage: %s of it; %s), more than the limit of %s "
        "per rank (%s). Use more ranks or nodes (the cells, the K x K matrix and the batches are split over them), "
        "fewer %s or a subset of the cells, or raise the limit (--max-memory, sbatch --mem)",
        ps_cost_format_size(m.peak, need, sizeof need), stage_names[m.peak_stage],
        ps_cost_format_size(m.stage[m.peak_stage], stage, sizeof stage), sizes,
        ps_cost_format_size(limit, have, sizeof have), source,
        p->cv_only ? "--perturbations" : "--permutations, --perturbations"); /* pertscore cv has no permutations */
  }
  return ps_error_sync(comm, err);
}

int ps_cost_dataset_guard(MPI_Comm comm, const struct ps_dataset *d, int phase, void *context) {
  const ps_cost_guard *g = context;
  ps_cost_problem p;
  memset(&p, 0, sizeof p);
  PS_CHECK_MPI(MPI_Comm_size(comm, &p.ranks));
  p.cells_input = d->n_cells_input;
  p.genes = d->n_genes;
  p.nnz = d->nnz_input;
  p.select_targets = g->select_targets;
  p.keep_expression = g->keep_expression;
  p.cv_only = g->cv_only;
  p.no_regression = g->no_regression;
  p.known = PS_COST_KNOWN_SHAPE;
  if (phase >= PS_DATASET_GUARD_DESIGN) {
    const ps_design *D = &d->design;
    int64_t entries = D->ptr ? D->ptr[D->n_cells] : 0;
    PS_CHECK_MPI(MPI_Allreduce(&entries, &p.design_entries, 1, MPI_INT64_T, MPI_SUM, comm));
    p.cells = d->n_analysed;
    p.control_cells = d->n_control;
    p.perturbations = D->n_perturbations;
    p.basal_rows = ps_design_n_basal(D);
    p.target_pairs = (int64_t)D->n_perturbations * (g->max_targets > 0 ? g->max_targets : 500);
    p.known = PS_COST_KNOWN_DESIGN;
  }
  return ps_cost_check_memory(comm, &p, g->max_memory);
}

void ps_cost_guard_install(ps_cost_guard *g, double max_memory, ps_dataset_options *data,
                           const ps_targets_options *targets, const ps_regression_options *regression) {
  memset(g, 0, sizeof *g);
  g->max_memory = max_memory;
  g->select_targets = !targets->targets && !targets->no_target_selection;
  g->max_targets = targets->de.max_targets;
  g->keep_expression = regression->keep_expression;
  g->no_regression = targets->no_target_selection && !targets->targets;
  data->guard = ps_cost_dataset_guard;
  data->guard_context = g;
}
