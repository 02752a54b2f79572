/* libFuzzer harness: guide tables (src/io/guides.c).
 *
 * The input is a whole guide table file (scMAGeCK TSV or Cell Ranger
 * protospacer_calls_per_cell.csv; the reader sniffs which). It is read with
 * ps_guides_read_table against a small cell index whose names are the ones used
 * by the seed corpus (tests/fuzz/corpus/guides), so mutated rows still match
 * cells and reach the call storage. The same bytes, split at newlines, are then
 * fed to ps_guides_from_labels as obs labels (the --guide-column path).
 *
 * Checked beyond memory safety: a successful read returns calls whose cell is
 * a valid local index, with non-NULL unit and guide and a UMI count that is a
 * number >= 0, and at most as many matched rows as rows read. */
#include <math.h>

#include "fuzz_common.h"
#include "pertscore/io.h"

static const char *cell_names[] = {
    "AAACCTGAGAAGGCCT-1", "AAACCTGAGACAGACC-1", "AAACCTGAGCGATAGC-1", "AAACCTGCAAGGTTCT-1",
    "AAACGGGAGTCCTCCT-1", "cell_1",             "cell_2",             "c3",
    "SIMCELL00000001",    "SIMCELL00000002",    "SIMCELL00000004",
};
enum { N_CELLS = sizeof cell_names / sizeof *cell_names };

static ps_strmap cells;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char key[1024];
  if (ps_strmap_init(&cells, N_CELLS) != PS_OK) abort();
  for (int i = 0; i < N_CELLS; i++)
    if (ps_strmap_put(&cells, ps_cell_key(cell_names[i], key, sizeof key), i) != PS_OK) abort();
  return 0;
}

static void check_calls(const ps_guide_calls *g, int64_t n_cells) {
  FUZZ_CHECK(g->n >= 0 && g->n <= g->capacity);
  FUZZ_CHECK(g->n_rows_local >= 0 && g->n_rows_local <= g->n_rows_read);
  for (int64_t i = 0; i < g->n; i++) {
    FUZZ_CHECK(g->cell[i] >= 0 && g->cell[i] < n_cells);
    FUZZ_CHECK(g->unit[i] != NULL && g->guide[i] != NULL);
    FUZZ_CHECK(g->umi[i] >= 0); /* also false for NaN */
  }
}

static void fuzz_table(const uint8_t *data, size_t size) {
  const char *path = fuzz_write(".guides", data, size);
  ps_guide_calls calls;
  int err = ps_guides_read_table(path, &cells, &calls);
  if (err == PS_OK) check_calls(&calls, N_CELLS);
  else FUZZ_CHECK(err == PS_ERR_INPUT && ps_error_message()[0] != '\0');
  ps_guide_calls_free(&calls); /* partial results after an error are freed the same way */
  ps_error_clear();
}

static void fuzz_labels(const uint8_t *data, size_t size) {
  ps_strlist labels = {0};
  char *text = malloc(size + 1);
  if (!text) return;
  memcpy(text, data, size);
  text[size] = '\0';
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    if (ps_strlist_push(&labels, line) != PS_OK) abort();
  free(text);
  ps_guide_calls calls;
  if (ps_guides_from_labels(&labels, &calls) == PS_OK) {
    check_calls(&calls, labels.n);
    FUZZ_CHECK(calls.n_rows_read == labels.n);
    /* the unit rule never makes a name longer */
    char unit[256];
    for (int64_t i = 0; i < calls.n; i++) {
      ps_guide_unit(calls.guide[i], unit, sizeof unit);
      FUZZ_CHECK(strlen(unit) <= strlen(calls.guide[i]));
    }
  }
  ps_guide_calls_free(&calls);
  ps_strlist_free(&labels);
  ps_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_table(data, size);
  fuzz_labels(data, size);
  return 0;
}
