# dosage analysis (SPEC.md section 5): LL.4 fit against noise-free curves and R nls, whole
# perturbations against R, cor.test p-values, statuses (tied deciles, flat response)
ps_add_c_test(test_dosage ${CMAKE_CURRENT_SOURCE_DIR}/dosage/test_dosage.c 1 "unit")
target_compile_definitions(test_dosage PRIVATE
  HILL_CASES="${CMAKE_CURRENT_SOURCE_DIR}/dosage/hill_cases.tsv"
  PIPELINE_CASES="${CMAKE_CURRENT_SOURCE_DIR}/dosage/pipeline_cases.tsv"
  COR_CASES="${CMAKE_CURRENT_SOURCE_DIR}/dosage/cor_cases.tsv"
  PT_CASES="${CMAKE_CURRENT_SOURCE_DIR}/dosage/pt_cases.tsv")
