/* User-given target genes (SPEC.md section 1): GMT or two-column TSV. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pertscore/io.h"

void ps_target_pairs_free(ps_target_pairs *t) {
  if (!t) return;
  ps_strlist_free(&t->perturbation);
  ps_strlist_free(&t->gene);
}

int ps_targets_read(const char *path, ps_target_pairs *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "r");
  if (!f) PS_FAIL(PS_ERR_INPUT, "%s: cannot open the targets file: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  int64_t line_no = 0;
  int err = PS_OK;
  while (!err && getline(&line, &cap, f) > 0) {
    line_no++;
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (!len || line[0] == '#') continue;
    char *fields[3] = {line, NULL, NULL};
    char *tab1 = strchr(line, '\t');
    if (!tab1) {
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                         "%s: line %lld has no tab; expected GMT (name<TAB>description<TAB>gene...) or TSV "
                         "(perturbation<TAB>gene)", path, (long long)line_no);
      break;
    }
    *tab1 = '\0';
    fields[1] = tab1 + 1;
    char *tab2 = strchr(fields[1], '\t');
    if (tab2) { /* GMT: name, description, genes */
      *tab2 = '\0';
      char *save = NULL;
      for (char *g = strtok_r(tab2 + 1, "\t", &save); g && !err; g = strtok_r(NULL, "\t", &save))
        if (*g) {
          err = ps_strlist_push(&out->perturbation, fields[0]);
          if (!err) err = ps_strlist_push(&out->gene, g);
        }
    } else {
      if (line_no == 1 && strcasecmp(fields[0], "perturbation") == 0) continue; /* header */
      if (!*fields[1]) continue;
      err = ps_strlist_push(&out->perturbation, fields[0]);
      if (!err) err = ps_strlist_push(&out->gene, fields[1]);
    }
  }
  free(line);
  fclose(f);
  if (!err && out->gene.n == 0) err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: no target genes found", path);
  return err;
}
