ps_add_script_test(ranks_agree mpi/ranks.sh "mpi")
ps_add_script_test(simulate_same_bytes mpi/simulate_bytes.sh "mpi")
ps_add_script_test(truth_efficiency mpi/truth.sh "mpi;truth")
ps_add_script_test(auto_targets mpi/auto_targets.sh "mpi")
