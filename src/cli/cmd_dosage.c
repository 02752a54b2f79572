/* pertscore dosage: the dosage stage (SPEC.md section 5) on an existing results
 * file: its PS, the input's own-gene expression, a copy of the results file with
 * the dosage fields replaced. */
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pertscore/data.h"
#include "pertscore/dosage.h"
#include "pertscore/results.h"

static const char *dosage_usage =
    "usage: mpirun -n P pertscore dosage --results RESULTS.h5ad --output NEW.h5ad [options]\n"
    "\n"
    "Recomputes the dosage analysis (Hill fit of PS against the perturbation's own-gene\n"
    "expression, ED50, class, correlations; SPEC.md section 5) from the PS of a results\n"
    "file of `pertscore run` and the own-gene expression of its input, and writes a copy\n"
    "of the results file with the dosage fields (var columns, uns/pertscore/dosage) replaced.\n"
    "\n"
    "  --results FILE        results .h5ad of pertscore run (or lambda)\n"
    "  --input FILE          the expression input the results were computed from\n"
    "                        (default: the one recorded in the results file)\n"
    "  --layer NAME          use layers/NAME of the input (default: as recorded)\n"
    "  --input-is KIND       auto (default), counts, lognorm: as pertscore run\n"
    "  --min-dosage-cells N  fit only perturbations with at least N cells (100)\n"
    "  --output FILE         the new results file (may be --results itself: replaced when complete)\n"
    "  --table FILE          also write the dosage table as TSV\n"
    "  --force               replace OUTPUT if it exists (always done; accepted as for run)\n"
    "  --quiet               no progress on stderr\n"
    "  --json                print a machine-readable summary on stdout\n";

typedef struct {
  ps_dosage_source src;
  ps_dosage_options opt;
  const char *output, *table;
  char input[4096], layer[4096];
  int quiet, json;
} dosage_cli;

static int parse_dosage(int argc, char **argv, dosage_cli *o, int *help) {
  enum { O_RESULTS = 1, O_INPUT, O_LAYER, O_INPUT_IS, O_MIN_CELLS, O_OUTPUT, O_TABLE, O_QUIET, O_JSON, O_HELP, O_FORCE };
  static const struct option longs[] = {
      {"results", required_argument, 0, O_RESULTS}, {"input", required_argument, 0, O_INPUT},
      {"layer", required_argument, 0, O_LAYER}, {"input-is", required_argument, 0, O_INPUT_IS},
      {"min-dosage-cells", required_argument, 0, O_MIN_CELLS}, {"output", required_argument, 0, O_OUTPUT},
      {"table", required_argument, 0, O_TABLE}, {"quiet", no_argument, 0, O_QUIET},
      {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, O_HELP},
      {"out", required_argument, 0, O_OUTPUT}, {"force", no_argument, 0, O_FORCE}, {0, 0, 0, 0}};
  ps_dosage_options_default(&o->opt);
  o->src.input_is = PS_INPUT_AUTO;
  optind = 1;
  opterr = 0;
  int c;
  double number;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (c) {
      case O_RESULTS: o->src.results = optarg; break;
      case O_INPUT: snprintf(o->input, sizeof o->input, "%s", optarg); break;
      case O_LAYER: snprintf(o->layer, sizeof o->layer, "%s", optarg); break;
      case O_INPUT_IS:
        if (strcmp(optarg, "counts") == 0) o->src.input_is = PS_INPUT_COUNTS;
        else if (strcmp(optarg, "lognorm") == 0) o->src.input_is = PS_INPUT_LOGNORM;
        else if (strcmp(optarg, "auto") == 0) o->src.input_is = PS_INPUT_AUTO;
        else PS_FAIL(PS_ERR_INPUT, "--input-is expects auto, counts or lognorm, got '%s'", optarg);
        break;
      case O_MIN_CELLS:
        PS_CALL(ps_cli_count("--min-dosage-cells", optarg, &number));
        if (number < 1) PS_FAIL(PS_ERR_INPUT, "--min-dosage-cells must be >= 1 (got %s)", optarg);
        o->opt.min_cells = (int64_t)number;
        break;
      case O_OUTPUT: o->output = optarg; break;
      case O_TABLE: o->table = optarg; break;
      case O_FORCE: break; /* OUTPUT is always replaced; --force as for run (one vocabulary) */
      case O_QUIET: o->quiet = 1; break;
      case O_JSON: o->json = 1; break;
      case O_HELP: *help = 1; return PS_OK;
      default: return ps_cli_unknown_option_in("dosage", argv[optind - 1], longs);
    }
  }
  if (optind < argc) PS_FAIL(PS_ERR_INPUT, "dosage: unexpected argument '%s'", argv[optind]);
  if (!o->src.results) PS_FAIL(PS_ERR_INPUT, "dosage: --results FILE.h5ad is required");
  if (!o->output) PS_FAIL(PS_ERR_INPUT, "dosage: --output FILE is required");
  return PS_OK;
}

/* --input / --layer default to what the results file records (rank 0 reads, all get it). */
static int resolve_input(MPI_Comm comm, dosage_cli *o) {
  int rank, missing = 0, err = PS_OK;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    int found = 0;
    char buf[1024];
    if (!o->input[0]) {
      err = ps_results_read_parameter(o->src.results, "input", o->input, sizeof o->input, &found);
      missing = !found;
      if (!err && !o->layer[0]) {
        err = ps_results_read_parameter(o->src.results, "layer", buf, sizeof buf, &found);
        if (!err && found && strcmp(buf, "X") != 0) snprintf(o->layer, sizeof o->layer, "%s", buf);
      }
    }
  }
  PS_CALL(ps_error_sync(comm, err)); /* rank 0 read alone: all ranks leave together */
  PS_CHECK_MPI(MPI_Bcast(&missing, 1, MPI_INT, 0, comm));
  if (missing)
    PS_FAIL(PS_ERR_INPUT, "%s: no input recorded (uns/pertscore/parameters/input); give --input", o->src.results);
  PS_CHECK_MPI(MPI_Bcast(o->input, sizeof o->input, MPI_CHAR, 0, comm));
  PS_CHECK_MPI(MPI_Bcast(o->layer, sizeof o->layer, MPI_CHAR, 0, comm));
  o->src.input = o->input;
  o->src.layer = o->layer[0] ? o->layer : NULL;
  return PS_OK;
}

static int check_paths(const dosage_cli *o) {
  char a[4096], b[4096];
  if (realpath(o->output, a) && realpath(o->src.input, b) && strcmp(a, b) == 0)
    PS_FAIL(PS_ERR_INPUT, "%s: the output path is the input; choose another --output", o->output);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", o->output);
  const char *folder = dirname(dir);
  if (access(folder, W_OK) != 0)
    PS_FAIL(PS_ERR_INPUT, "%s: the output folder '%s' does not exist or is not writable", o->output, folder);
  if (access(o->src.results, R_OK) != 0) PS_FAIL(PS_ERR_INPUT, "%s: cannot read the results file", o->src.results);
  return PS_OK;
}

static void put_number(FILE *f, double v) {
  if (isnan(v)) fputs("\tNA", f);
  else fprintf(f, "\t%.6g", v); /* TSV numbers: %.6g (the results file has full precision) */
}

/* --table: one row per perturbation (rank 0). */
static int write_table(const char *path, const ps_strlist *names, const ps_dosage_table *t) {
  FILE *f = fopen(path, "w");
  if (!f) PS_FAIL(PS_ERR_INPUT, "%s: cannot create the table file", path);
  fputs("perturbation\tn_cells\tdosage_status\tdosage_class\ted50\thill_b\thill_c\thill_d\thill_e\thill_0\thill_1"
        "\tpcc\tpcc_p\tscc\tscc_p\tcrispri_efficient\tcumulative_ps\town_min\town_control_median\n", f);
  for (int32_t k = 0; k < t->n_perturbations; k++) {
    const char *cls = ps_dosage_class_name((ps_dosage_class)t->cls[k]);
    fprintf(f, "%s\t%lld\t%s\t%s", names->items[k], (long long)t->n_cells[k], ps_dosage_table_status_name(t->status[k]),
            *cls ? cls : "none");
    const double v[] = {t->ed50[k], t->hill_b[k], t->hill_c[k], t->hill_d[k], t->hill_e[k], t->hill0[k], t->hill1[k],
                        t->pcc[k], t->pcc_p[k], t->scc[k], t->scc_p[k]};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) put_number(f, v[i]);
    fprintf(f, "\t%d", t->crispri_efficient[k]);
    put_number(f, t->cumulative_ps[k]);
    put_number(f, t->own_min[k]);
    put_number(f, t->own_control_median[k]);
    fputc('\n', f);
  }
  if (fclose(f) != 0) PS_FAIL(PS_ERR_SYSTEM, "%s: write failed", path);
  return PS_OK;
}

static int run_dosage_command(MPI_Comm comm, dosage_cli *o, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  PS_CALL(resolve_input(comm, o));
  PS_CALL(ps_error_sync(comm, check_paths(o)));
  ps_progress progress;
  ps_progress_init(&progress, comm, o->quiet);
  ps_progress_stage(&progress, "dosage");
  ps_dosage_table table;
  ps_dosage_results res;
  PS_CALL(ps_results_read_dosage_input(comm, o->src.results, &res));
  int err = ps_error_sync(comm, ps_dosage_recompute(comm, &o->src, &res, &o->opt, &progress, &table));
  ps_dosage_results_free(&res);
  PS_CALL(err);
  double seconds = ps_progress_done(&progress);
  ps_progress_stage(&progress, "write");
  char command[8192] = "pertscore";
  for (int i = 0; i < argc; i++) {
    strncat(command, " ", sizeof command - strlen(command) - 1);
    strncat(command, argv[i], sizeof command - strlen(command) - 1);
  }
  char partial[4200];
  snprintf(partial, sizeof partial, "%s.partial", o->output);
  ps_cleanup_register(partial);
  PS_CALL(ps_file_copy(comm, o->src.results, partial));
  PS_CALL(ps_error_sync(comm, ps_results_add_dosage(comm, partial, &table, &o->opt, seconds, command)));
  PS_CALL(ps_error_sync(comm, ps_output_commit(comm, partial, o->output)));
  ps_cleanup_unregister();
  if (o->table) {
    ps_strlist names;
    PS_CALL(ps_error_sync(comm, ps_results_read_perturbations(comm, o->output, &names)));
    PS_CALL(ps_error_sync(comm, rank == 0 ? write_table(o->table, &names, &table) : PS_OK));
    ps_strlist_free(&names);
  }
  ps_progress_done(&progress);
  if (rank == 0 && !o->quiet)
    fprintf(stderr, "pertscore: dosage: %lld of %lld perturbations with a measured own gene fitted (%lld buffered, "
            "%lld sensitive), %lld control cells -> %s\n", (long long)table.n_fitted, (long long)table.n_with_own_gene,
            (long long)table.n_buffered, (long long)table.n_sensitive, (long long)table.n_control, o->output);
  if (rank == 0 && o->json) {
    printf("{\"output\": \"%s\", \"results\": \"%s\", \"input\": \"%s\", \"perturbations\": %d, \"control_cells\": %lld, "
           "\"dosage\": {\"with_own_gene\": %lld, \"fitted\": %lld, \"buffered\": %lld, \"sensitive\": %lld, "
           "\"crispri_efficient\": %lld, \"seconds\": %.3f}}\n",
           o->output, o->src.results, o->src.input, table.n_perturbations, (long long)table.n_control,
           (long long)table.n_with_own_gene, (long long)table.n_fitted, (long long)table.n_buffered,
           (long long)table.n_sensitive, (long long)table.n_crispri_efficient, seconds);
    fflush(stdout);
  }
  ps_dosage_table_free(&table);
  return PS_OK;
}

int ps_cmd_dosage(MPI_Comm comm, int argc, char **argv) {
  int rank, help = 0;
  MPI_Comm_rank(comm, &rank);
  dosage_cli o;
  memset(&o, 0, sizeof o);
  int err = parse_dosage(argc, argv, &o, &help);
  if (!err && help) {
    if (rank == 0) fputs(dosage_usage, stdout);
    return 0;
  }
  if (!err) err = run_dosage_command(comm, &o, argc, argv);
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  return 0;
}
