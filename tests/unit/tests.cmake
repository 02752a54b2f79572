# ridge regression (SPEC.md section 2) against a dense solve, on 1, 2 and 3 ranks
foreach(np 1 2 3)
  ps_add_c_test(test_ridge ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ridge.c ${np} "unit;mpi")
endforeach()
# per-cell QP with TAO (SPEC.md section 3): KKT, brute force, rescaling
ps_add_c_test(test_qp ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_qp.c 1 "unit")
ps_add_c_test(test_qp ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_qp.c 2 "unit;mpi")
# ridge permutation p-values (SPEC.md section 2) against a brute force, KS under the null, on 1, 2 and 3 ranks
foreach(np 1 2 3)
  ps_add_c_test(test_ridge_perm ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ridge_perm.c ${np} "unit;mpi")
endforeach()
# ps_ridge_fit_grid with basal groups and a keep mask against a dense solve; the permutations' X^T Y_r choice
foreach(np 1 2 3)
  ps_add_c_test(test_ridge_grid ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ridge_grid.c ${np} "unit;mpi")
endforeach()
# the weighted QP, own genes and unscored perturbations of SPEC.md section 9 (KKT with W, closed form), 1 and 3 ranks
foreach(np 1 3)
  ps_add_c_test(test_qp_weighted ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_qp_weighted.c ${np} "unit;mpi")
endforeach()
