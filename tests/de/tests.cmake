# target-gene selection (SPEC.md section 1): Wilcoxon / fold change against R, adaptive threshold, cap
ps_add_c_test(test_de ${CMAKE_CURRENT_SOURCE_DIR}/de/test_de.c 1 "unit")
target_compile_definitions(test_de PRIVATE DE_CASES="${CMAKE_CURRENT_SOURCE_DIR}/de/wilcoxon_cases.tsv")
