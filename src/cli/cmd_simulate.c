/* pertscore simulate: a screen with ground truth (SPEC.md section 8). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pertscore/sim.h"

static const char *simulate_usage =
    "usage: mpirun -n P pertscore simulate --output PREFIX.h5ad [options]   (--out: the same)\n"
    "\n"
    "  --cells N              cells (2000)\n"
    "  --genes G              genes (500)\n"
    "  --perturbations K      perturbations, each targeting one gene (10)\n"
    "  --moi M                guides per cell (1)\n"
    "  --poisson-moi          draw guides per cell from Poisson(M) instead\n"
    "  --control-fraction F   chance a guide is non-targeting (0.1); label 'NonTargeting'\n"
    "  --downstream D         downstream genes per perturbation (20)\n"
    "  --effect X             typical |ln fold change| of downstream genes at efficiency 1 (1.0)\n"
    "  --knockdown X          fraction of the target gene removed at efficiency 1 (0.9)\n"
    "  --efficiencies LIST    mixture levels of the per-cell efficiency (0,0.25,0.5,0.75,1),\n"
    "                         or uniform: e ~ uniform(0, 1)\n"
    "  --shared-downstream F  this fraction of each perturbation's downstream genes is one set shared by\n"
    "                         all perturbations (each with its own fold changes; 0)\n"
    "  --library-size N       mean counts per cell (5000)\n"
    "  --dispersion X         negative-binomial dispersion (0.1)\n"
    "  --seed S               random seed (1); output is identical on any number of ranks\n"
    "  --effects MODEL        sparse (default: each perturbation shifts its own downstream genes),\n"
    "                         lowrank (effects from a rank-R gene embedding shared by the targets\n"
    "                         and D responsive genes: unseen perturbations are predictable from\n"
    "                         related ones; see docs/cv.md), none (pure noise: no knockdown either)\n"
    "  --rank R               embedding dimension of --effects lowrank (3)\n"
    "  --dosage-design        dose-response ground truth for `run`'s dosage stage: targets are the most\n"
    "                         expressed genes, efficiencies uniform(0, 1), downstream effects Hill-shaped\n"
    "                         in the own-gene level with a designed ED50 (half <= 0.5) and slope;\n"
    "                         writes PREFIX.dosage.tsv\n"
    "  --unmeasured-targets U the last U perturbations target genes outside the measured panel\n"
    "                         (a TAP-seq panel: names GENE<G+1>...; no own-gene knockdown measured),\n"
    "                         their downstream genes are drawn from the panel (0)\n"
    "  --inert N              the last N perturbations do nothing (failed guides: efficiency 0) (0)\n"
    "  --cell-types T         cell i is of type i mod T (obs column 'cell_type'); each type shifts\n"
    "                         the basal expression of --type-genes genes by about --type-shift and,\n"
    "                         unless --type-responses same, responds differently (1; writes\n"
    "                         PREFIX.basal.tsv and per-type effects/GMT lines P@typeN)\n"
    "  --type-responses KIND  differ (default) or same\n"
    "  --type-genes N         basal-shifted genes per type (30)\n"
    "  --type-shift X         typical |log shift| of those genes (1)\n"
    "  --force                replace the outputs if they exist (always done; accepted as for run)\n"
    "  --quiet                no progress on stderr\n"
    "\n"
    "writes PREFIX.h5ad (counts; obs column 'guide'), PREFIX.guides.tsv (scMAGeCK table),\n"
    "PREFIX.truth.tsv (per cell: perturbation, efficiency), PREFIX.effects.tsv and\n"
    "PREFIX.targets.gmt (true downstream genes).\n";

/* A count the simulator holds as int32: larger values are refused here (a cast
 * would wrap them into nonsense that the range checks then report). */
static int count_i32(const char *option, const char *text, int32_t *out) {
  double v;
  PS_CALL(ps_cli_count(option, text, &v));
  if (v > INT32_MAX) PS_FAIL(PS_ERR_INPUT, "%s must be at most %d, got '%s'", option, INT32_MAX, text);
  *out = (int32_t)v;
  return PS_OK;
}

static int parse_simulate(int argc, char **argv, ps_sim_options *o, char *prefix, size_t size, int *quiet, int *help) {
  enum { O_CELLS = 1, O_GENES, O_PERT, O_MOI, O_POISSON, O_CONTROL, O_DOWN, O_EFFECT, O_KD, O_EFF, O_LIB, O_DISP,
         O_SEED, O_OUT, O_QUIET, O_HELP, O_EFFECTS, O_RANK, O_DOSAGE_DESIGN, O_UNMEASURED, O_INERT,
         O_CELL_TYPES, O_TYPE_RESPONSES, O_TYPE_GENES, O_TYPE_SHIFT, O_FORCE, O_SHARED };
  static const struct option longs[] = {
      {"cells", required_argument, 0, O_CELLS}, {"genes", required_argument, 0, O_GENES},
      {"perturbations", required_argument, 0, O_PERT}, {"moi", required_argument, 0, O_MOI},
      {"poisson-moi", no_argument, 0, O_POISSON}, {"control-fraction", required_argument, 0, O_CONTROL},
      {"downstream", required_argument, 0, O_DOWN}, {"effect", required_argument, 0, O_EFFECT},
      {"knockdown", required_argument, 0, O_KD}, {"efficiencies", required_argument, 0, O_EFF},
      {"library-size", required_argument, 0, O_LIB}, {"dispersion", required_argument, 0, O_DISP},
      {"seed", required_argument, 0, O_SEED}, {"output", required_argument, 0, O_OUT},
      {"out", required_argument, 0, O_OUT}, {"force", no_argument, 0, O_FORCE},
      {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, O_HELP},
      {"effects", required_argument, 0, O_EFFECTS}, {"rank", required_argument, 0, O_RANK},
      {"dosage-design", no_argument, 0, O_DOSAGE_DESIGN},
      {"unmeasured-targets", required_argument, 0, O_UNMEASURED}, {"inert", required_argument, 0, O_INERT},
      {"cell-types", required_argument, 0, O_CELL_TYPES}, {"type-responses", required_argument, 0, O_TYPE_RESPONSES},
      {"type-genes", required_argument, 0, O_TYPE_GENES}, {"type-shift", required_argument, 0, O_TYPE_SHIFT},
      {"shared-downstream", required_argument, 0, O_SHARED},
      {0, 0, 0, 0}};
  ps_sim_options_default(o);
  optind = 1;
  opterr = 0;
  int c;
  double v;
  const char *out = NULL;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    const char *name = c > 0 && c <= O_HELP ? longs[c - 1].name : "?";
    if (c >= O_CELLS && c <= O_SEED && c != O_POISSON && c != O_EFF) PS_CALL(ps_cli_number(name, optarg, &v));
    switch (c) {
      case O_CELLS: o->n_cells = (int64_t)v; break;
      case O_GENES: PS_CALL(count_i32("--genes", optarg, &o->n_genes)); break;
      case O_PERT: PS_CALL(count_i32("--perturbations", optarg, &o->n_perturbations)); break;
      case O_MOI: o->moi = v; break;
      case O_POISSON: o->poisson_moi = 1; break;
      case O_CONTROL: o->control_fraction = v; break;
      case O_DOWN: PS_CALL(count_i32("--downstream", optarg, &o->n_downstream)); break;
      case O_EFFECT: o->effect_size = v; break;
      case O_KD: o->knockdown = v; break;
      case O_EFF: {
        if (strcmp(optarg, "uniform") == 0) { /* e ~ uniform(0, 1) per perturbed guide */
          o->uniform_efficiency = 1;
          break;
        }
        o->uniform_efficiency = 0;
        ps_strlist levels = {0};
        PS_CALL(ps_cli_split_list(optarg, &levels));
        if (levels.n < 1 || levels.n > 16) PS_FAIL(PS_ERR_INPUT, "--efficiencies takes 1 to 16 levels");
        for (int64_t i = 0; i < levels.n; i++) {
          PS_CALL(ps_cli_number("--efficiencies", levels.items[i], &o->efficiencies[i]));
          if (o->efficiencies[i] < 0 || o->efficiencies[i] > 1) PS_FAIL(PS_ERR_INPUT, "--efficiencies must be in [0, 1]");
        }
        o->n_efficiencies = (int)levels.n;
        ps_strlist_free(&levels);
        break;
      }
      case O_LIB: o->library_size = v; break;
      case O_SHARED:
        PS_CALL(ps_cli_number("--shared-downstream", optarg, &o->shared_downstream));
        if (!(o->shared_downstream >= 0 && o->shared_downstream <= 1))
          PS_FAIL(PS_ERR_INPUT, "--shared-downstream must be in [0, 1], got %s", optarg);
        break;
      case O_DISP: o->dispersion = v; break;
      case O_SEED: o->seed = (uint64_t)v; break;
      case O_OUT: out = optarg; break;
      case O_FORCE: break; /* OUTPUT is always replaced; --force as for run (one vocabulary) */
      case O_QUIET: *quiet = 1; break;
      case O_HELP: *help = 1; return PS_OK;
      case O_EFFECTS:
        if (strcmp(optarg, "sparse") == 0) o->effect_model = PS_SIM_EFFECTS_SPARSE;
        else if (strcmp(optarg, "lowrank") == 0) o->effect_model = PS_SIM_EFFECTS_LOWRANK;
        else if (strcmp(optarg, "none") == 0) o->effect_model = PS_SIM_EFFECTS_NONE;
        else PS_FAIL(PS_ERR_INPUT, "--effects expects sparse, lowrank or none, got '%s'", optarg);
        break;
      case O_RANK:
        PS_CALL(ps_cli_count("--rank", optarg, &v));
        if (v < 1 || v > 64) PS_FAIL(PS_ERR_INPUT, "--rank must be in [1, 64], got '%s'", optarg);
        o->effect_rank = (int32_t)v;
        break;
      case O_DOSAGE_DESIGN: o->dosage_design = 1; break;
      case O_INERT:
        PS_CALL(count_i32("--inert", optarg, &o->n_inert));
        break;
      case O_UNMEASURED:
        PS_CALL(count_i32("--unmeasured-targets", optarg, &o->n_unmeasured_targets));
        break;
      case O_CELL_TYPES:
        PS_CALL(count_i32("--cell-types", optarg, &o->n_cell_types));
        break;
      case O_TYPE_RESPONSES:
        if (strcmp(optarg, "same") == 0) o->type_responses_same = 1;
        else if (strcmp(optarg, "differ") == 0) o->type_responses_same = 0;
        else PS_FAIL(PS_ERR_INPUT, "--type-responses expects differ or same, got '%s'", optarg);
        break;
      case O_TYPE_GENES:
        PS_CALL(count_i32("--type-genes", optarg, &o->n_type_genes));
        break;
      case O_TYPE_SHIFT: PS_CALL(ps_cli_number("--type-shift", optarg, &o->type_shift)); break;
      default: return ps_cli_unknown_option_in("simulate", argv[optind - 1], longs);
    }
  }
  if (!out) PS_FAIL(PS_ERR_INPUT, "simulate: --output PREFIX.h5ad is required");
  snprintf(prefix, size, "%s", out);
  size_t len = strlen(prefix);
  if (len > 5 && strcmp(prefix + len - 5, ".h5ad") == 0) prefix[len - 5] = '\0';
  if (o->dispersion <= 0 || o->library_size <= 0 || o->knockdown < 0 || o->knockdown >= 1 ||
      o->control_fraction < 0 || o->control_fraction >= 1)
    PS_FAIL(PS_ERR_INPUT, "simulate: need dispersion > 0, library size > 0, knockdown in [0, 1), control fraction in [0, 1)");
  return PS_OK;
}

int ps_cmd_simulate(MPI_Comm comm, int argc, char **argv) {
  int rank, quiet = 0, help = 0;
  MPI_Comm_rank(comm, &rank);
  ps_sim_options o;
  char prefix[4096];
  int err = parse_simulate(argc, argv, &o, prefix, sizeof prefix, &quiet, &help);
  if (!err && help) {
    if (rank == 0) fputs(simulate_usage, stdout);
    return 0;
  }
  if (!err) {
    ps_progress progress;
    ps_progress_init(&progress, comm, quiet);
    ps_progress_stage(&progress, "simulate");
    err = ps_sim_write(comm, &o, prefix, &progress);
    if (!err) ps_progress_done(&progress);
  }
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  return 0;
}
