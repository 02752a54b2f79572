# Fault: an MPI call that fails (issue 14). With MPI_ERRORS_RETURN the error comes back
# to PS_CHECK_MPI: every rank exits non-zero with pertscore's message naming the call,
# no MPI_ERRORS_ARE_FATAL abort, and the old results stay byte-identical.
# PERTSCORE_FAULT=ridge:mpi-error makes every rank call MPI_Bcast with count -1 at the
# start of the ridge stage (src/util/fault.c ps_fault_mpi_error). (Debian's PETSc 3.18
# already sets MPI_ERRORS_RETURN on PETSC_COMM_WORLD in PetscInitialize, so this passes
# without main.c's own MPI_Comm_set_errhandler too; it guards the whole path.)
set -euo pipefail
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
run 2 simulate --cells 1500 --genes 150 --perturbations 4 --seed 5 --out sim.h5ad --quiet
args=(run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting --targets sim.targets.gmt
      --output results.h5ad --force --quiet)
run 2 "${args[@]}"
cp results.h5ad first.h5ad
fails=0
for np in 1 2 3; do
  set +e
  PERTSCORE_FAULT=ridge:mpi-error timeout 120 "$MPIEXEC" --oversubscribe -n "$np" "$PERTSCORE" "${args[@]}" 2> err.$np
  rc=$?
  set -e
  echo "np $np: exit $rc; $(grep -m1 'pertscore: error' err.$np || echo 'no pertscore error line')"
  if ((rc == 0 || rc == 124)); then echo "FAIL: np $np: exit $rc (0: error not seen; 124: hang)"; fails=1; fi
  grep -q "pertscore: error: MPI call failed (MPI_ERR_COUNT" err.$np || { echo "FAIL: np $np: no message naming the MPI error"; fails=1; }
  if grep -q "MPI_ERRORS_ARE_FATAL" err.$np; then echo "FAIL: np $np: MPI aborted inside the call"; fails=1; fi
  cmp -s first.h5ad results.h5ad || { echo "FAIL: np $np: the old results changed"; fails=1; }
done
exit $fails
