# Memory guard (src/cost, issue #7): the estimate's monotonicity, sizes, limits;
# refusals with --max-memory and Slurm's limit, and a generous limit that runs;
# the same for pertscore cv (both schemes, before the read and at the cv stage).
ps_add_c_test(test_cost ${CMAKE_CURRENT_SOURCE_DIR}/memory/test_cost.c 1 "unit")
ps_add_script_test(memory_guard memory/guard.sh "errors;memory")
