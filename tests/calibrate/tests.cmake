# calibrated calls (SPEC.md section 10, docs/method.md "Calibrated calls")
foreach(mode null power ranks numpy)
  add_test(NAME calibration_${mode}
           COMMAND ${PS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/calibrate/calibration.py ${mode})
  set_tests_properties(calibration_${mode} PROPERTIES
    ENVIRONMENT "${PS_TEST_ENV};PERTSCORE=$<TARGET_FILE:pertscore>;MPIEXEC=${PS_MPIEXEC};WORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/work_calibration_${mode}"
    LABELS "calibration" TIMEOUT 900)
endforeach()
# the same with basal groups (--control-by / --group-by): nulls within each group
foreach(mode null power ranks numpy)
  add_test(NAME calibration_groups_${mode}
           COMMAND ${PS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/calibrate/calibration_groups.py ${mode})
  set_tests_properties(calibration_groups_${mode} PROPERTIES
    ENVIRONMENT "${PS_TEST_ENV};PERTSCORE=$<TARGET_FILE:pertscore>;MPIEXEC=${PS_MPIEXEC};WORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/work_calibration_groups_${mode}"
    LABELS "calibration" TIMEOUT 900)
endforeach()
