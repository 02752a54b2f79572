/* Preloaded into the processes of the sanitizer tests (tests/sanitize/run.sh): dlclose
 * does nothing, so Open MPI's plugins (mca_*.so) stay mapped until the process ends.
 * Open MPI unloads them in MPI_Finalize; LeakSanitizer's report at exit then cannot
 * name their frames (the suppressions match by function name), and every unnamed
 * frame makes the symbolizer re-read /proc/self/maps (about 1.5 s per process).
 * Built without sanitizers, so bash, mpirun and python load no ASan runtime. */
int dlclose(void *handle);

int dlclose(void *handle) {
  (void)handle;
  return 0;
}
