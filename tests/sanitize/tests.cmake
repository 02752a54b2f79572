# The sanitizer build's leak checking (tests/sanitize/run.sh, docs/reliability.md):
# a preload library that keeps Open MPI's plugins loaded, so that LeakSanitizer
# can name their frames at exit. Not a test; built only with -DPS_SANITIZE=ON.
if(PS_SANITIZE)
  add_library(ps_keep_plugins SHARED ${CMAKE_CURRENT_SOURCE_DIR}/sanitize/keep_plugins.c)
  target_compile_options(ps_keep_plugins PRIVATE ${PS_WARNINGS} -fno-sanitize=all)
  target_link_options(ps_keep_plugins PRIVATE -fno-sanitize=all)
endif()
