# valgrind memcheck on small runs, 1 and 2 ranks and a --resume (docs/reliability.md).
# Label valgrind only: .ci/run runs it as its own step (ctest -L valgrind).
ps_add_script_test(valgrind_run valgrind/run.sh "valgrind")
