# Fault tests: SIGKILL of a rank mid-run (docs/reliability.md).
ps_add_script_test(fault_kill_rank fault/kill_rank.sh "fault")
# --resume from the stage checkpoints of a killed run, on 1 and 3 ranks after 2 (docs/reliability.md).
ps_add_script_test(fault_resume fault/resume.sh "fault")
# An MPI call that fails returns through the one error path on 1-3 ranks (MPI_ERRORS_RETURN).
ps_add_script_test(fault_mpi_error fault/mpi_error.sh "fault")
# An allocation failing on one rank before a collective write stops every rank (no hang).
ps_add_script_test(fault_oom_sync fault/oom_sync.sh "fault")
