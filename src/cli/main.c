/* pertscore: command-line entry. Thin: split PETSc options from ours, start MPI
 * and PETSc, dispatch to a subcommand. Nothing numerical lives here. */
#include <petsc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pertscore/util.h"

static const char *usage =
    "usage: mpirun -n P pertscore COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  run        per-cell perturbation-response scores (PS) for a screen\n"
    "  lambda     choose the PS penalty lambda by false-positive rate on pseudo cells\n"
    "  cv         cross-validation: held-out prediction of cells or of unseen perturbations\n"
    "  dosage     recompute the dosage analysis (Hill fit, ED50) of a results file\n"
    "  simulate   write a simulated screen with ground truth\n"
    "  sweep      one point of a job file's parameter sweep, or the merged sweep table\n"
    "  inspect    summarize an .h5ad input, a 10x Genomics .h5 or a results file\n"
    "  convert    a 10x MEX folder (matrix.mtx, barcodes, features) to .h5ad\n"
    "\n"
    "`pertscore COMMAND --help` lists a command's options. PETSc options\n"
    "(single dash, e.g. -ps_qp_tao_type bnls, -log_view) pass through to PETSc.\n";

int ps_cli_number(const char *option, const char *text, double *value) {
  char *end;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || v != v) PS_FAIL(PS_ERR_INPUT, "%s expects a number, got '%s'", option, text);
  *value = v;
  return PS_OK;
}

int ps_cli_count(const char *option, const char *text, double *value) {
  PS_CALL(ps_cli_number(option, text, value));
  if (*value < 0 || *value != (double)(int64_t)*value || *value > 1e15)
    PS_FAIL(PS_ERR_INPUT, "%s expects a whole number >= 0, got '%s'", option, text);
  return PS_OK;
}

int ps_cli_split_list(const char *text, void *list) {
  char *copy = strdup(text), *save = NULL;
  if (!copy) PS_FAIL(PS_ERR_SYSTEM, "out of memory");
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    if (*tok) PS_CALL(ps_strlist_push((ps_strlist *)list, tok));
  free(copy);
  return PS_OK;
}

/* Our options are GNU long options (--name); PETSc's start with one dash. A
 * negative number ("--lambda -1") is a value, not a PETSc option. */
static int is_petsc_option(const char *arg) {
  if (arg[0] != '-' || arg[1] == '-' || arg[1] == '\0' || arg[1] == 'h') return 0;
  char *end;
  strtod(arg, &end);
  return *end != '\0';
}

/* PETSc options given on the command line that nothing read: a misspelled -tao_...
 * or an option of a stage that did not run. Rank 0 names them. */
static void warn_unused_petsc_options(int rank, char **given, int n_given) {
  PetscInt n = 0;
  char **names = NULL, **values = NULL;
  if (PetscOptionsLeftGet(NULL, &n, &names, &values) != 0) return;
  for (PetscInt i = 0; i < n && rank == 0; i++) {
    int from_user = 0; /* options the program sets itself (src/dosage/hill.c) are not the user's */
    for (int a = 1; a < n_given && !from_user; a++) from_user = given[a][0] == '-' && strcmp(given[a] + 1, names[i]) == 0;
    if (from_user)
      fprintf(stderr, "pertscore: warning: PETSc option -%s was never used (misspelled, or for a stage that did "
              "not run; see docs/user-guide.md for the options pertscore reads)\n", names[i]);
  }
  PetscOptionsLeftRestore(NULL, &n, &names, &values);
}

int main(int argc, char **argv) {
  char **ours = calloc((size_t)argc + 1, sizeof *ours), **petsc = calloc((size_t)argc + 1, sizeof *petsc);
  int n_ours = 0, n_petsc = 0;
  if (!ours || !petsc) return 3;
  petsc[n_petsc++] = argv[0];
  for (int i = 1; i < argc; i++) {
    if (is_petsc_option(argv[i])) {
      petsc[n_petsc++] = argv[i];
      if (i + 1 < argc && argv[i + 1][0] != '-') petsc[n_petsc++] = argv[++i];
    } else {
      ours[n_ours++] = argv[i];
    }
  }
  MPI_Init(&argc, &argv);
  /* MPI errors come back as return codes to PS_CHECK_MPI (the one error path: a message
   * naming the call, every rank out through ps_error_sync), not as an abort inside the
   * call; communicators split or duplicated from these inherit it. PetscInitialize
   * (3.18) sets the same on PETSC_COMM_WORLD; set here so it does not hang on that. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  PETSC_COMM_WORLD = MPI_COMM_WORLD;
  if (PetscInitialize(&n_petsc, &petsc, NULL, NULL) != 0) {
    fprintf(stderr, "pertscore: error: PETSc failed to initialize\n");
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  int rank = 0, status;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const char *cmd = n_ours ? ours[0] : "";
  if (strcmp(cmd, "run") == 0) status = ps_cmd_run(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "simulate") == 0) status = ps_cmd_simulate(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "sweep") == 0) status = ps_cmd_sweep(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "inspect") == 0) status = ps_cmd_inspect(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "convert") == 0) status = ps_cmd_convert(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "lambda") == 0) status = ps_cmd_lambda(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "cv") == 0) status = ps_cmd_cv(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "dosage") == 0) status = ps_cmd_dosage(MPI_COMM_WORLD, n_ours, ours);
  else if (strcmp(cmd, "--version") == 0) {
    if (rank == 0) printf("pertscore %s\n", PS_VERSION);
    status = 0;
  } else {
    int asked = strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0;
    if (rank == 0) {
      if (!asked && *cmd) fprintf(stderr, "pertscore: unknown command '%s'\n\n", cmd);
      fputs(usage, asked ? stdout : stderr);
    }
    status = asked ? 0 : 2;
  }
  if (ps_stats_write_env(rank) != PS_OK) fprintf(stderr, "pertscore: warning: %s\n", ps_error_message());
  warn_unused_petsc_options(rank, petsc, n_petsc);
  PetscFinalize();
  MPI_Finalize();
  free(ours);
  free(petsc);
  return status;
}
