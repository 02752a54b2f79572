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

/* Parse a number option or fail with a message naming the option. */
int ps_cli_number(const char *option, const char *text, double *value);
/* As ps_cli_number, for a whole number >= 0. */
int ps_cli_count(const char *option, const char *text, double *value);
/* Split "a,b,c" and append the parts. */
int ps_cli_split_list(const char *text, void *strlist);

#endif
