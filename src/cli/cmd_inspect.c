/* pertscore inspect FILE */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pertscore/io.h"

int ps_cmd_inspect(MPI_Comm comm, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (argc != 2 || strcmp(argv[1], "--help") == 0) {
    if (rank == 0) fprintf(argc == 2 ? stdout : stderr, "usage: pertscore inspect FILE.h5ad\n");
    return argc == 2 ? 0 : 2;
  }
  int err = rank == 0 ? ps_h5ad_inspect(argv[1]) : PS_OK;
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  return 0;
}
