# The fuzz triage's verdicts (the harnesses themselves build with -DPS_FUZZ=ON: tests/fuzz/CMakeLists.txt).
ps_add_script_test(fuzz_triage_rules fuzz/triage_rules.sh "unit")
