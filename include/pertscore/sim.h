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
  double library_size;      /* mean total counts per cell */
  double dispersion;        /* NB: var = mu + dispersion mu^2 */
  uint64_t seed;
} ps_sim_options;

void ps_sim_options_default(ps_sim_options *o);

/* Global truth, identical on every rank. */
typedef struct {
  double *gene_weight;       /* G: relative expression (sums to 1) */
  int32_t *target_gene;      /* K: gene knocked down by perturbation k */
  int32_t *downstream_ptr;   /* K + 1 */
  int32_t *downstream_gene;  /* downstream genes of each perturbation */
  double *downstream_lfc;    /* natural-log fold change at e = 1 */
} ps_sim_truth;

int ps_sim_truth_make(const ps_sim_options *o, ps_sim_truth *t);
void ps_sim_truth_free(ps_sim_truth *t);

/* Name of gene g and of perturbation k (its target gene's name), into buf. */
const char *ps_sim_gene_name(int32_t g, char *buf, size_t size);

/* Write PREFIX.h5ad (counts as CSR, obs column "guide"), PREFIX.guides.tsv (scMAGeCK
 * barcode table), PREFIX.truth.tsv (per cell and perturbation: efficiency),
 * PREFIX.effects.tsv (per perturbation: downstream genes and log fold changes) and
 * PREFIX.targets.gmt (true downstream genes). Collective. */
int ps_sim_write(MPI_Comm comm, const ps_sim_options *o, const char *prefix, ps_progress *progress);

#define PS_SIM_CONTROL_LABEL "NonTargeting"

#endif
