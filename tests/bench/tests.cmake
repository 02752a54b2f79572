# Benchmark support (tools/bench, docs/performance.md): the simulator's targeted-panel
# screens and the per-stage statistics. Performance itself is measured by tools/bench, not here.
ps_add_script_test(sim_unmeasured_targets bench/sim_panel.sh "mpi;bench")
ps_add_script_test(stage_stats bench/stage_stats.sh "mpi;bench")
ps_add_script_test(bench_tool bench/bench_tool.sh "bench")
