/* libFuzzer harness: user target files (src/io/targets.c), GMT or two-column TSV.
 *
 * Checked beyond memory safety: a successful read returns as many perturbations
 * as genes (parallel arrays), at least one pair, and no empty gene name; a
 * failure is an input error with a message. */
#include "fuzz_common.h"
#include "pertscore/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write(".targets", data, size);
  ps_target_pairs t;
  int err = ps_targets_read(path, &t);
  if (err == PS_OK) {
    FUZZ_CHECK(t.perturbation.n == t.gene.n);
    FUZZ_CHECK(t.gene.n > 0);
    for (int64_t i = 0; i < t.gene.n; i++) {
      FUZZ_CHECK(t.perturbation.items[i] != NULL && t.gene.items[i] != NULL);
      FUZZ_CHECK(t.gene.items[i][0] != '\0');
    }
  } else {
    FUZZ_CHECK(err == PS_ERR_INPUT && ps_error_message()[0] != '\0');
  }
  ps_target_pairs_free(&t);
  ps_error_clear();
  return 0;
}
