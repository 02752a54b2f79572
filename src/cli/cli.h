/* Subcommands of the pertscore executable (internal to src/cli). */
#ifndef PS_CLI_H
#define PS_CLI_H

#include <mpi.h>

/* Each takes the subcommand's own arguments (argv[0] is the subcommand name,
 * PETSc options already removed) and returns a process exit status. */
int ps_cmd_run(MPI_Comm comm, int argc, char **argv);
int ps_cmd_simulate(MPI_Comm comm, int argc, char **argv);
int ps_cmd_inspect(MPI_Comm comm, int argc, char **argv);
int ps_cmd_convert(MPI_Comm comm, int argc, char **argv);
int ps_cmd_lambda(MPI_Comm comm, int argc, char **argv);
int ps_cmd_cv(MPI_Comm comm, int argc, char **argv);
int ps_cmd_dosage(MPI_Comm comm, int argc, char **argv);

/* Parse a number option or fail with a message naming the option. */
int ps_cli_number(const char *option, const char *text, double *value);
/* As ps_cli_number, for a whole number >= 0. */
int ps_cli_count(const char *option, const char *text, double *value);
/* The dataset options shared by run, lambda and cv (dataset_options.c): sets
 * *handled to 1 and fills the ps_dataset_options when NAME (no dashes) is one. */
int ps_cli_dataset_option(const char *name, const char *arg, void *dataset_options, int *handled);
/* Split "a,b,c" and append the parts. */
int ps_cli_split_list(const char *text, void *strlist);

/* ---- job files (job.c) ---- */
#include "pertscore/util.h"

typedef struct {
  char path[4096];
  ps_strlist keys, values;   /* run options: name (no dashes) -> value ("" for a flag) */
  ps_strlist sweep_keys;     /* swept options, in file order */
  ps_strlist *sweep_values;  /* per swept option: its values */
  int64_t sweep_keys_capacity;
  ps_strlist slurm_keys, slurm_values; /* resources for the sbatch scripts */
} ps_job;

/* On failure the job is left empty (nothing to free); a sweep has at most 10^6 points. */
int ps_job_read(const char *path, ps_job *job);
void ps_job_free(ps_job *job);
/* Number of sweep points (the product of the swept lists' lengths; 1 without a sweep). */
int64_t ps_job_points(const ps_job *job);
const char *ps_job_sweep_value(const ps_job *job, int64_t point, int64_t key);
/* Output path of a point: OUTPUT.pointNNN.h5ad, or OUTPUT itself for point -1 / no sweep. */
int ps_job_output(const ps_job *job, int64_t point, char *buf, size_t size);
/* argv of `run` for a point (-1: the job without its sweep); empty on failure. */
int ps_job_argv(const ps_job *job, int64_t point, ps_strlist *argv);
/* -1: not an option of run; 0: a flag; 1: takes a value (cmd_run.c). */
int ps_run_option_arity(const char *name);
int ps_cmd_sweep(MPI_Comm comm, int argc, char **argv);

#endif
