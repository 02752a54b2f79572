# cross-validation (SPEC.md section 7, docs/cv.md)
# check 1: metrics against hand-computed cases; baselines, folds
ps_add_c_test(test_cv_metrics ${CMAKE_CURRENT_SOURCE_DIR}/cv/test_cv_metrics.c 1 "unit;cv")
target_compile_definitions(test_cv_metrics PRIVATE
  METRIC_CASES="${CMAKE_CURRENT_SOURCE_DIR}/cv/metric_cases.tsv"
  RETRIEVAL_CASES="${CMAKE_CURRENT_SOURCE_DIR}/cv/retrieval_cases.tsv")
# checks 2 and 6 (library level), the embedding against a serial LAPACK reference: np 1, 2, 3, 4
foreach(np 1 2 3 4)
  ps_add_c_test(test_cv_scheme ${CMAKE_CURRENT_SOURCE_DIR}/cv/test_cv_scheme.c ${np} "mpi;cv")
endforeach()
# checks 3, 5, 6 end to end (simulations, np 1, 2, 5, external predictions)
ps_add_script_test(cv_perturbations cv/perturbations.sh "mpi;cv")
# checks 4 and 5 for the cells scheme
ps_add_script_test(cv_cells cv/cells.sh "mpi;cv")
# refused options and inputs, no output left behind
ps_add_script_test(cv_errors cv/errors.sh "cv;errors")
# pertscore run --cv: the same tables as pertscore cv, in the results file; np 1, 2
ps_add_script_test(cv_run cv/run_cv.sh "mpi;cv")
# the cells scheme when one rank's allocation fails (each allocation of cells.c in turn): an error on
# every rank, no hang; 3 ranks give a fold group of two
foreach(np 2 3)
  ps_add_c_test(test_cv_cells_oom ${CMAKE_CURRENT_SOURCE_DIR}/cv/test_cv_cells_oom.c ${np} "mpi;cv;errors")
endforeach()
# the corrected split-half ceiling: an oracle reaches it, no model beats it; recomputed from uns/cv/halves
ps_add_script_test(cv_ceiling cv/ceiling.sh "mpi;cv")
# predictions with gaps: warning, compared perturbations, counts, --strict
ps_add_script_test(cv_gaps cv/gaps.sh "mpi;cv")
# groups: --group-by equal to cv on each group's cells alone (both schemes), --control-by against numpy,
# np 1, 2, 3; run --cv --control-by
ps_add_script_test(cv_groups cv/groups.sh "mpi;cv")
