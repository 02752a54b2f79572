/* pertscore sweep: one point of a job file's parameter sweep (what an sbatch
 * array task runs), the number of points, or the merged sweep table. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pertscore/io.h"

static const char *sweep_usage =
    "usage: mpirun -n P pertscore sweep --config JOB.yaml --task N   run point N (default: $SLURM_ARRAY_TASK_ID)\n"
    "       pertscore sweep --config JOB.yaml --count                 print the number of points\n"
    "       pertscore sweep --config JOB.yaml --list                  print every point's parameters\n"
    "       pertscore sweep --config JOB.yaml --merge [--table F]     gather every point into one table\n"
    "       pertscore sweep --config JOB.yaml --slurm-args            sbatch options from the slurm section\n"
    "--quiet, --json and --force pass through to the run of a point; --output F is --table F.\n"
    "\n"
    "Points are every combination of the sweep section's lists, the first list varying\n"
    "slowest; point N writes OUTPUT.pointNNN.h5ad. The table (default OUTPUT.sweep.tsv)\n"
    "has one row per point and perturbation: point, the swept values, output, n_cells,\n"
    "n_targets, mean_ps and cumulative_score; a point whose file is missing is listed\n"
    "with status 'missing' and the merge exits non-zero.\n";

typedef struct {
  const char *config, *table;
  int64_t task;
  int count, list, merge, slurm_args, help, quiet, json, force;
} sweep_options;

static int parse_sweep(int argc, char **argv, sweep_options *o) {
  enum { O_CONFIG = 1, O_TASK, O_COUNT, O_LIST, O_MERGE, O_TABLE, O_SLURM, O_HELP, O_QUIET, O_JSON, O_FORCE };
  static const struct option longs[] = {{"config", required_argument, 0, O_CONFIG}, {"task", required_argument, 0, O_TASK},
                                        {"count", no_argument, 0, O_COUNT},          {"list", no_argument, 0, O_LIST},
                                        {"merge", no_argument, 0, O_MERGE},          {"table", required_argument, 0, O_TABLE},
                                        {"slurm-args", no_argument, 0, O_SLURM},     {"help", no_argument, 0, O_HELP},
                                        {"quiet", no_argument, 0, O_QUIET},          {"json", no_argument, 0, O_JSON},
                                        {"output", required_argument, 0, O_TABLE},   {"force", no_argument, 0, O_FORCE},
                                        {0, 0, 0, 0}};
  memset(o, 0, sizeof *o);
  o->task = -1;
  optind = 1;
  opterr = 0;
  int c;
  double v;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (c) {
      case O_CONFIG: o->config = optarg; break;
      case O_TASK:
        PS_CALL(ps_cli_count("--task", optarg, &v));
        o->task = (int64_t)v;
        break;
      case O_COUNT: o->count = 1; break;
      case O_LIST: o->list = 1; break;
      case O_MERGE: o->merge = 1; break;
      case O_TABLE: o->table = optarg; break;
      case O_SLURM: o->slurm_args = 1; break;
      case O_HELP: o->help = 1; return PS_OK;
      case O_QUIET: o->quiet = 1; break;
      case O_JSON: o->json = 1; break;
      case O_FORCE: o->force = 1; break;
      default: return ps_cli_unknown_option_in("sweep", argv[optind - 1], longs);
    }
  }
  if (!o->config) PS_FAIL(PS_ERR_INPUT, "sweep: --config JOB.yaml is required");
  if (o->task < 0 && !o->count && !o->list && !o->merge && !o->slurm_args) {
    const char *env = getenv("SLURM_ARRAY_TASK_ID");
    if (!env) PS_FAIL(PS_ERR_INPUT, "sweep: give --task N (or run inside an sbatch --array job)");
    PS_CALL(ps_cli_count("SLURM_ARRAY_TASK_ID", env, &v));
    o->task = (int64_t)v;
  }
  return PS_OK;
}

static void print_point(const ps_job *job, int64_t point, FILE *out) {
  char path[4096];
  if (ps_job_output(job, point, path, sizeof path)) path[0] = '\0';
  fprintf(out, "%lld", (long long)point);
  for (int64_t s = 0; s < job->sweep_keys.n; s++) fprintf(out, "\t%s", ps_job_sweep_value(job, point, s));
  fprintf(out, "\t%s", path);
}

/* One row per point and perturbation, read from each point's results file. */
static int merge_table(const ps_job *job, const char *table_path) {
  static const char *columns[] = {"n_cells", "n_targets", "mean_ps", "cumulative_score"};
  enum { N_COLUMNS = sizeof columns / sizeof *columns };
  char partial[4200];
  snprintf(partial, sizeof partial, "%s.partial", table_path);
  FILE *out = fopen(partial, "w");
  if (!out) PS_FAIL(PS_ERR_INPUT, "%s: cannot create the sweep table", table_path);
  fprintf(out, "point");
  for (int64_t s = 0; s < job->sweep_keys.n; s++) fprintf(out, "\t%s", job->sweep_keys.items[s]);
  fprintf(out, "\toutput\tstatus\tperturbation");
  for (int c = 0; c < N_COLUMNS; c++) fprintf(out, "\t%s", columns[c]);
  fprintf(out, "\n");
  int64_t missing = 0, points = ps_job_points(job);
  for (int64_t t = 0; t < points; t++) {
    char path[4096];
    PS_CALL(ps_job_output(job, t, path, sizeof path));
    ps_strlist names = {0}, values[N_COLUMNS];
    memset(values, 0, sizeof values);
    int err = access(path, R_OK) == 0 ? ps_h5ad_read_frame_column(MPI_COMM_SELF, path, "var", "_index", 0, -1, &names)
                                      : PS_ERR_INPUT;
    for (int c = 0; c < N_COLUMNS && !err; c++)
      err = ps_h5ad_read_frame_column(MPI_COMM_SELF, path, "var", columns[c], 0, -1, &values[c]);
    if (err) {
      missing++;
      print_point(job, t, out);
      fprintf(out, "\tmissing\t");
      for (int c = 0; c < N_COLUMNS; c++) fprintf(out, "\t");
      fprintf(out, "\n");
      ps_error_clear();
    }
    for (int64_t k = 0; !err && k < names.n; k++) {
      print_point(job, t, out);
      fprintf(out, "\tok\t%s", names.items[k]);
      for (int c = 0; c < N_COLUMNS; c++) fprintf(out, "\t%s", k < values[c].n ? values[c].items[k] : "");
      fprintf(out, "\n");
    }
    ps_strlist_free(&names);
    for (int c = 0; c < N_COLUMNS; c++) ps_strlist_free(&values[c]);
  }
  if (fclose(out) != 0 || rename(partial, table_path) != 0)
    PS_FAIL(PS_ERR_SYSTEM, "%s: writing the sweep table failed", table_path);
  printf("%s: %lld points, %lld missing\n", table_path, (long long)points, (long long)missing);
  if (missing) PS_FAIL(PS_ERR_INPUT, "%s: %lld of %lld sweep points have no results file (see the status column)",
                       table_path, (long long)missing, (long long)points);
  return PS_OK;
}

static int sweep_serial(const sweep_options *o, const ps_job *job) {
  if (o->count) printf("%lld\n", (long long)ps_job_points(job));
  if (o->slurm_args) {
    for (int64_t i = 0; i < job->slurm_keys.n; i++)
      printf("%s--%s=%s", i ? " " : "", job->slurm_keys.items[i], job->slurm_values.items[i]);
    printf("\n");
  }
  if (o->list)
    for (int64_t t = 0; t < ps_job_points(job); t++) {
      print_point(job, t, stdout);
      printf("\n");
    }
  if (o->merge) {
    char table[4096], output[4096];
    PS_CALL(ps_job_output(job, -1, output, sizeof output));
    size_t len = strlen(output);
    int ext = len > 5 && strcmp(output + len - 5, ".h5ad") == 0;
    if (o->table) snprintf(table, sizeof table, "%s", o->table);
    else snprintf(table, sizeof table, "%.*s.sweep.tsv", (int)(ext ? len - 5 : len), output);
    PS_CALL(merge_table(job, table));
  }
  return PS_OK;
}

int ps_cmd_sweep(MPI_Comm comm, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  sweep_options o;
  ps_job job;
  memset(&job, 0, sizeof job);
  int err = parse_sweep(argc, argv, &o);
  if (!err && o.help) {
    if (rank == 0) fputs(sweep_usage, stdout);
    return 0;
  }
  if (!err) err = ps_job_read(o.config, &job);
  if (!err && o.task >= ps_job_points(&job))
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: task %lld is out of range: the sweep has %lld points (0 to %lld)",
                       o.config, (long long)o.task, (long long)ps_job_points(&job), (long long)ps_job_points(&job) - 1);
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  if (o.task < 0) { /* count, list, merge: small work on rank 0 */
    err = rank == 0 ? sweep_serial(&o, &job) : PS_OK;
    err = ps_error_sync(comm, err);
    if (err) ps_die(comm, err, 1);
    ps_job_free(&job);
    return 0;
  }
  ps_strlist args;
  err = ps_job_argv(&job, o.task, &args);
  if (!err && o.quiet) err = ps_strlist_push(&args, "--quiet");
  if (!err && o.json) err = ps_strlist_push(&args, "--json");
  if (!err && o.force) err = ps_strlist_push(&args, "--force");
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  if (rank == 0) {
    fprintf(stderr, "pertscore: sweep point %lld of %lld:", (long long)o.task, (long long)ps_job_points(&job));
    for (int64_t s = 0; s < job.sweep_keys.n; s++)
      fprintf(stderr, " %s=%s", job.sweep_keys.items[s], ps_job_sweep_value(&job, o.task, s));
    fprintf(stderr, "\n");
  }
  int status = ps_cmd_run(comm, (int)args.n, args.items);
  ps_strlist_free(&args);
  ps_job_free(&job);
  return status;
}
