/* pertscore inspect FILE */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pertscore/io.h"

int ps_cmd_inspect(MPI_Comm comm, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (argc != 2 || strcmp(argv[1], "--help") == 0) {
    if (rank == 0) fprintf(argc == 2 ? stdout : stderr, "usage: pertscore inspect FILE\n"
                    "  FILE: an .h5ad (input or results) or a 10x Genomics .h5. A results file gets a summary:\n"
                    "  its parameters, the head of the var table and, with var/effect_fdr, the calls\n"
                    "  (FDR <= 0.05); then every file gets the list of its contents.\n");
    return argc == 2 ? 0 : 2;
  }
  int err = rank == 0 ? ps_h5ad_inspect(argv[1]) : PS_OK;
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  return 0;
}
