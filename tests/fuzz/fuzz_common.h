/* Shared by the libFuzzer harnesses (docs/reliability.md): our readers take a
 * path, so each input is written to a per-process scratch file first. /dev/shm is
 * memory, so this costs a write() and no disk I/O. */
#ifndef PS_FUZZ_COMMON_H
#define PS_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_path[256];

static void fuzz_remove_scratch(void) {
  if (fuzz_path[0]) unlink(fuzz_path);
}

/* Scratch file name for this process; suffix names the harness and the format
 * (".h5ad"). In PS_FUZZ_SCRATCH if set (run.sh gives each run a folder, as a
 * process killed by a crash or a timeout leaves its file behind), else /dev/shm,
 * else /tmp. */
__attribute__((unused)) static const char *fuzz_scratch(const char *suffix) {
  if (!fuzz_path[0]) {
    const char *dir = getenv("PS_FUZZ_SCRATCH");
    if (!dir || !*dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_path, sizeof fuzz_path, "%s/pertscore-fuzz-%ld%s", dir, (long)getpid(), suffix);
    atexit(fuzz_remove_scratch);
  }
  return fuzz_path;
}

/* Replace the scratch file's contents with data; aborts if it cannot (that is a
 * broken machine, not a finding). */
__attribute__((unused)) static const char *fuzz_write(const char *suffix, const uint8_t *data, size_t size) {
  const char *path = fuzz_scratch(suffix);
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
    perror(path);
    abort();
  }
  return path;
}

/* A violated invariant of a reader's successful result: report and crash, so
 * libFuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "fuzz invariant violated at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

#endif
