# Fault tests: SIGKILL of a rank mid-run (docs/reliability.md).
ps_add_script_test(fault_kill_rank fault/kill_rank.sh "fault")
