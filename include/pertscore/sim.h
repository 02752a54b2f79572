/* pertscore/sim.h: simulated screens with ground truth (SPEC.md section 8).
 *
 * Negative-binomial counts; gene means from a log-normal; K perturbations, each
 * knocking down its own target gene and shifting a set of downstream genes by
 * log fold changes; every perturbed cell has a true efficiency e (drawn from a
 * mixture of levels) that scales its perturbation's effect. Every draw of cell i
 * comes from a random stream keyed by (seed, i), so output is identical on any
 * number of ranks. */
#ifndef PERTSCORE_SIM_H
#define PERTSCORE_SIM_H

#include "pertscore/util.h"

typedef struct {
  int64_t n_cells;
  int32_t n_genes;
  int32_t n_perturbations;
  double moi;               /* guides per cell: fixed (rounded) or the Poisson mean */
  int poisson_moi;
  double control_fraction;  /* chance that a guide is a non-targeting control */
  int32_t guides_per_perturbation;
  int32_t n_downstream;     /* downstream genes per perturbation */
  double effect_size;       /* typical |log fold change| of a downstream gene at e = 1 */
  double knockdown;         /* fraction of the target gene removed at e = 1 */
  double efficiencies[16];  /* mixture levels of e */
  int n_efficiencies;
  int uniform_efficiency;   /* --efficiencies uniform: e ~ uniform(0, 1) instead of the mixture */
  double shared_downstream; /* --shared-downstream F: round(F D) of each perturbation's D downstream genes
                             * are one set shared by all perturbations (own fold changes); 0 */
  double library_size;      /* mean total counts per cell */
  double dispersion;        /* NB: var = mu + dispersion mu^2 */
  uint64_t seed;
  /* --effects (docs/cv.md "Simulations"): PS_SIM_EFFECTS_SPARSE (default, above);
   * LOWRANK: every responsive gene g (the K targets and n_downstream shared genes)
   * has an embedding e_g ~ N(0, I_rank) and perturbing gene t shifts each other
   * responsive gene by effect_size <e_t, e_g> / rank (so an unseen perturbation's
   * effect follows from its gene's responses to the others); NONE: no knockdown
   * and no downstream effect (pure noise). */
  int effect_model;
  int32_t effect_rank; /* LOWRANK embedding dimension (3) */
  /* --dosage-design (ground truth for the dosage analysis, SPEC section 5): the
   * targets are the K most expressed genes; perturbation k has a designed ED50 e_k
   * (even k: buffered, uniform in [0.15, 0.45]; odd k: sensitive, uniform in
   * [0.6, 0.9]) and Hill slope b_k (uniform in [2, 4]); a cell's efficiency is
   * uniform(0, 1) (not the mixture), its own-gene level x = 1 - knockdown * efficiency
   * on the scale of the dosage analysis (log-normalized expression relative to
   * the controls: ln(1 + c f) = x ln(1 + c) for the gene's expected normalized
   * count c = 1e4 weight and the multiplicative change f), and the downstream
   * effects are scaled by 1 / (1 + (x / e_k)^b_k) instead of the efficiency. */
  int dosage_design;
  /* --unmeasured-targets U (a targeted panel such as TAP-seq): the last U of the K
   * perturbations target genes outside the G measured genes (gene indices G, G + 1,
   * ..., named like the others; no knockdown is measured), their downstream genes
   * still come from the panel. 0 (default): every target is measured. */
  int32_t n_unmeasured_targets;
  /* --inert N (calibration checks, SPEC section 10): the last N perturbations do
   * nothing (a guide that failed): their cells' efficiencies are 0. 0 (default). */
  int32_t n_inert;
  /* --cell-types T (SPEC section 6 checks): cell i is of type i mod T, obs column
   * "cell_type" = "type1".."typeT". Each type t >= 1 shifts n_type_genes random
   * genes' basal expression by +-type_shift (log scale, sizes like the effects),
   * and, unless type_responses_same, responds differently: each downstream gene
   * of a perturbation either keeps its gene with the opposite sign or is replaced
   * by another gene (half and half). T = 1 (default): no column, the same bytes. */
  int32_t n_cell_types;
  int type_responses_same;
  int32_t n_type_genes; /* basal-shifted genes per type t >= 1 (30) */
  double type_shift;    /* typical |log shift| of those genes (1) */
} ps_sim_options;

enum { PS_SIM_EFFECTS_SPARSE = 0, PS_SIM_EFFECTS_LOWRANK = 1, PS_SIM_EFFECTS_NONE = 2 };

void ps_sim_options_default(ps_sim_options *o);

/* Global truth, identical on every rank. */
typedef struct {
  double *gene_weight;       /* G: relative expression (sums to 1) */
  int32_t *target_gene;      /* K: gene knocked down by perturbation k (>= G: not measured) */
  int32_t *downstream_ptr;   /* K + 1 */
  int32_t *downstream_gene;  /* downstream genes of each perturbation */
  double *downstream_lfc;    /* natural-log fold change at e = 1 */
  double *dosage_ed50;       /* K, with dosage_design (else NULL): designed ED50 e_k */
  double *dosage_hill_b;     /* K, with dosage_design: designed Hill slope b_k */
  /* --cell-types T > 1: for type t >= 1 and perturbation k, entries
   * type_ptr[(t - 1) K + k] .. type_ptr[(t - 1) K + k + 1] of type_gene / type_lfc
   * are its downstream effects (type 0 uses downstream_*); basal_shift is T x G
   * (row 0 zero), the natural-log shift of each type's basal expression */
  int32_t n_cell_types;
  int32_t *type_ptr;
  int32_t *type_gene;
  double *type_lfc;
  double *basal_shift;
} ps_sim_truth;

int ps_sim_truth_make(const ps_sim_options *o, ps_sim_truth *t);
void ps_sim_truth_free(ps_sim_truth *t);

/* Name of gene g and of perturbation k (its target gene's name), into buf. */
const char *ps_sim_gene_name(int32_t g, char *buf, size_t size);

/* Write PREFIX.h5ad (counts as CSR, obs column "guide"), PREFIX.guides.tsv (scMAGeCK
 * barcode table), PREFIX.truth.tsv (per cell and perturbation: efficiency),
 * PREFIX.effects.tsv (per perturbation: downstream genes and log fold changes) and
 * PREFIX.targets.gmt (true downstream genes); with dosage_design also PREFIX.dosage.tsv
 * (per perturbation: own gene, designed ED50, Hill slope, class). With T > 1 cell
 * types: obs column "cell_type", a cell_type column in PREFIX.truth.tsv,
 * PREFIX.basal.tsv (cell_type, gene, log_shift), and, when the responses differ,
 * effects and GMT lines per (perturbation, type) named "P@typeN" (the names
 * `run --group-by cell_type` gives). Collective. */
int ps_sim_write(MPI_Comm comm, const ps_sim_options *o, const char *prefix, ps_progress *progress);

#define PS_SIM_CONTROL_LABEL "NonTargeting"

#endif
