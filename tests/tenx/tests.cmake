# 10x Genomics input (SPEC.md section 0): the feature-barcode .h5 reader with
# guide capture (issue check 6 at the reader level: the same screen as h5ad +
# guide table and as 10x .h5 gives the same matrix and guide calls, np 1 and 3),
# and `pertscore convert` of MEX folders (plain and gzipped, and broken ones).
ps_add_script_test(tenx_fixture tenx/fixture.sh "interop")
set_tests_properties(tenx_fixture PROPERTIES FIXTURES_SETUP tenx_files)
foreach(np 1 3)
  ps_add_c_test(test_tenx_read ${CMAKE_CURRENT_SOURCE_DIR}/tenx/test_tenx_read.c ${np} "interop;mpi")
  set_tests_properties(test_tenx_read_np${np} PROPERTIES FIXTURES_REQUIRED tenx_files
    ENVIRONMENT "${PS_TEST_ENV};TENX_DIR=${CMAKE_CURRENT_BINARY_DIR}/work_tenx_fixture")
endforeach()
ps_add_script_test(tenx_convert tenx/convert.sh "interop")
ps_add_script_test(tenx_run tenx/run_tenx.sh "interop;mpi")
set_tests_properties(tenx_run PROPERTIES FIXTURES_REQUIRED tenx_files
  ENVIRONMENT "${PS_TEST_ENV};PERTSCORE=$<TARGET_FILE:pertscore>;MPIEXEC=${PS_MPIEXEC};PYTHON=${PS_PYTHON};TESTS_DIR=${CMAKE_CURRENT_SOURCE_DIR};WORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/work_tenx_run;TENX_DIR=${CMAKE_CURRENT_BINARY_DIR}/work_tenx_fixture")
