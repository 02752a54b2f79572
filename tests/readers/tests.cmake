# The results readers: the Python module pertscore and R's read_pertscore, checked
# against the raw HDF5 with h5py, installed with cmake --install; the Seurat recipe.
ps_add_script_test(readers readers/readers.sh "interop")
set_tests_properties(readers PROPERTIES
  ENVIRONMENT "${PS_TEST_ENV};PERTSCORE=$<TARGET_FILE:pertscore>;MPIEXEC=${PS_MPIEXEC};PYTHON=${PS_PYTHON};TESTS_DIR=${CMAKE_CURRENT_SOURCE_DIR};WORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/work_readers;BUILD_DIR=${CMAKE_BINARY_DIR}")
