# Basal groups (SPEC.md sections 2, 3 and 6; issue 3 check 7): --control-by and --group-by.
# The per-group-intercept ridge against a dense solve and the per-group B_0 of the QP, on 1, 2 and 3 ranks.
foreach(np 1 2 3)
  ps_add_c_test(test_ridge_groups ${CMAKE_CURRENT_SOURCE_DIR}/groups/test_ridge_groups.c ${np} "unit;mpi")
endforeach()
# --group-by on a simulated screen with two cell types that respond differently (check 7),
# --control-by on a batch shift, np 1/2/3 agreement and the input errors.
ps_add_script_test(groups_group_by groups/group_by.sh "mpi")
ps_add_script_test(groups_control_by groups/control_by.sh "mpi")
# --cell-types with 50-60 genes (the type responses' gene redraw hung): finishes, distinct genes
ps_add_script_test(groups_small_panel groups/small_panel.sh "mpi")
# --group-by / --control-by when one rank's allocation fails (each allocation of groups.c in turn):
# an error on every rank, no hang
foreach(np 2 3)
  ps_add_c_test(test_groups_oom ${CMAKE_CURRENT_SOURCE_DIR}/groups/test_groups_oom.c ${np} "mpi;errors")
endforeach()
