/* "Did you mean": the closest known option (or job-file key) to a misspelled one. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* The option table of the command being parsed (set by ps_cli_join_longs), for
 * ps_cli_unknown_option's suggestion. */
static const struct option *current_longs;

void ps_cli_set_suggestions(const struct option *longs) { current_longs = longs; }

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return (size_t)-1;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

const char *ps_cli_suggest(const struct option *const *lists, int n_lists, const char *word) {
  char name[128];
  while (*word == '-') word++;
  snprintf(name, sizeof name, "%.*s", (int)strcspn(word, "="), word);
  if (!*name) return NULL;
  const char *best = NULL;
  size_t best_d = (size_t)-1, len = strlen(name), limit = len < 5 ? 1 : len < 10 ? 2 : 3;
  for (int l = 0; l < n_lists; l++)
    for (const struct option *o = lists[l]; o && o->name; o++) {
      size_t d = edit_distance(name, o->name);
      if (d < best_d) {
        best_d = d;
        best = o->name;
      }
    }
  return best_d <= limit && best_d > 0 ? best : NULL;
}

int ps_cli_unknown_option_in(const char *command, const char *arg, const struct option *longs) {
  const char *hint = ps_cli_suggest(&longs, 1, arg);
  if (hint)
    PS_FAIL(PS_ERR_INPUT, "%s: unknown or incomplete option '%s'; did you mean --%s? (see pertscore %s --help)",
            command, arg, hint, command);
  PS_FAIL(PS_ERR_INPUT, "%s: unknown or incomplete option '%s' (see pertscore %s --help)", command, arg, command);
}

const struct option *ps_cli_current_longs(void) { return current_longs; }
