/* cv and lambda --group-by (docs/cv.md "Groups"): the analysis of each group of an
 * obs column on that group's cells alone, as a run on a subset file would do it.
 * The commands loop over the groups (ps_dataset_options.subset_column); here are
 * the per-group output paths and the TSV that joins the groups' tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pertscore/io.h"

static int group_path(const char *path, const char *group, char *out, size_t capacity) {
  char safe[1024];
  size_t n = 0;
  for (const char *c = group; *c && n + 1 < sizeof safe; c++) {
    int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
             *c == '-' || *c == '_';
    safe[n++] = ok ? *c : '_';
  }
  safe[n] = '\0';
  size_t len = strlen(path), stem = len;
  if (len > 5 && strcmp(path + len - 5, ".h5ad") == 0) stem = len - 5;
  else if (len > 4 && strcmp(path + len - 4, ".tsv") == 0) stem = len - 4;
  int w = snprintf(out, capacity, "%.*s.%s%s", (int)stem, path, safe, path + stem);
  if (w < 0 || (size_t)w >= capacity) PS_FAIL(PS_ERR_INPUT, "--group-by: the output path for group '%s' is too long", group);
  return PS_OK;
}

int ps_cli_group_paths(const char *path, const void *groups_in, void *out_in) {
  const ps_strlist *groups = groups_in;
  ps_strlist *out = out_in, sorted = {0};
  memset(out, 0, sizeof *out);
  char buf[4096];
  int err = PS_OK;
  for (int64_t g = 0; g < groups->n && !err; g++) {
    err = group_path(path, groups->items[g], buf, sizeof buf);
    if (!err) err = ps_strlist_push(out, buf);
    if (!err) err = ps_strlist_push(&sorted, buf);
  }
  if (!err) {
    ps_strlist_sort_unique(&sorted);
    if (sorted.n != out->n)
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "--group-by: two groups share the output path of %s (their "
                         "labels differ only in characters other than letters, digits, '.', '-', '_')", path);
  }
  ps_strlist_free(&sorted);
  if (err) ps_strlist_free(out);
  return err;
}

static int join(const char *path, const ps_strlist *groups, const ps_strlist *parts) {
  FILE *out = fopen(path, "w");
  if (!out) PS_FAIL(PS_ERR_SYSTEM, "%s: cannot write", path);
  int err = PS_OK;
  char *line = NULL;
  size_t cap = 0;
  for (int64_t g = 0; g < parts->n && !err; g++) {
    FILE *in = fopen(parts->items[g], "r");
    if (!in) {
      err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: cannot read", parts->items[g]);
      break;
    }
    ssize_t n;
    for (int64_t row = 0; (n = getline(&line, &cap, in)) > 0; row++) {
      if (row == 0 && g > 0) continue; /* one header */
      if (fprintf(out, "%s\t%s", row == 0 ? "group" : groups->items[g], line) < 0) {
        err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: write failed", path);
        break;
      }
    }
    fclose(in);
  }
  free(line);
  if (fclose(out) != 0 && !err) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "%s: write failed", path);
  return err;
}

int ps_cli_group_tsv(MPI_Comm comm, const char *path, const void *groups, const void *parts) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  char partial[4200];
  snprintf(partial, sizeof partial, "%s.partial", path);
  PS_CALL(ps_error_sync(comm, rank == 0 ? join(partial, groups, parts) : PS_OK));
  return ps_error_sync(comm, ps_output_commit(comm, partial, path));
}
