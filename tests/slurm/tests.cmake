# Slurm: a real one-node Slurm (Debian slurm-wlm, munge) started on this machine;
# slurm/run.sbatch is submitted with 2 tasks and its results compared with mpirun's.
# Needs root (installs packages if missing, starts slurmctld/slurmd/munged).
ps_add_script_test(slurm_single_run slurm/single_run.sh "slurm")
# 77: skipped when not root. RUN_SERIAL: the cluster uses fixed ports and /tmp/pertscore-slurm.
set_tests_properties(slurm_single_run PROPERTIES RUN_SERIAL TRUE SKIP_RETURN_CODE 77)
ps_add_script_test(slurm_sweep slurm/sweep.sh "slurm")
set_tests_properties(slurm_sweep PROPERTIES RUN_SERIAL TRUE SKIP_RETURN_CODE 77)
# Check 4: a job cancelled in the score stage and resubmitted with --resume equals a direct run.
ps_add_script_test(slurm_resume slurm/resume.sh "slurm")
set_tests_properties(slurm_resume PROPERTIES RUN_SERIAL TRUE SKIP_RETURN_CODE 77)
