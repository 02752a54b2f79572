/* Guide-assignment tables (SPEC.md section 0): scMAGeCK barcode tables, Cell Ranger
 * protospacer calls, and per-cell labels from an obs column. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/io.h"

const char *ps_cell_key(const char *name, char *buf, size_t size) {
  size_t len = strlen(name);
  if (len >= 2 && name[len - 2] == '-' && name[len - 1] == '1') len -= 2;
  if (len >= size) len = size - 1;
  memcpy(buf, name, len);
  buf[len] = '\0';
  return buf;
}

static int calls_push(ps_guide_calls *g, int64_t cell, const char *unit, const char *guide, double umi) {
  if (g->n == g->capacity) {
    int64_t want = g->capacity ? 2 * g->capacity : 64;
    int64_t *c = realloc(g->cell, (size_t)want * sizeof *c);
    char **u = realloc(g->unit, (size_t)want * sizeof *u);
    char **q = realloc(g->guide, (size_t)want * sizeof *q);
    double *m = realloc(g->umi, (size_t)want * sizeof *m);
    if (c) g->cell = c;
    if (u) g->unit = u;
    if (q) g->guide = q;
    if (m) g->umi = m;
    if (!c || !u || !q || !m) PS_FAIL(PS_ERR_SYSTEM, "out of memory storing guide calls");
    g->capacity = want;
  }
  g->cell[g->n] = cell;
  g->unit[g->n] = strdup(unit);
  g->guide[g->n] = strdup(guide);
  g->umi[g->n] = umi;
  if (!g->unit[g->n] || !g->guide[g->n]) PS_FAIL(PS_ERR_SYSTEM, "out of memory storing guide calls");
  g->n++;
  return PS_OK;
}

/* Row row_index (0-based data row) named a cell of this rank's block. */
static int mark_row(ps_guide_calls *g, int64_t row) {
  if (row >= g->row_capacity) {
    int64_t want = g->row_capacity ? 2 * g->row_capacity : 1024;
    while (want <= row) want *= 2;
    uint8_t *m = realloc(g->row_matched, (size_t)want);
    if (!m) PS_FAIL(PS_ERR_SYSTEM, "out of memory marking guide rows");
    memset(m + g->row_capacity, 0, (size_t)(want - g->row_capacity));
    g->row_matched = m;
    g->row_capacity = want;
  }
  g->row_matched[row] = 1;
  return PS_OK;
}

/* Example mode (ps_guides_unmatched_examples): keep the cell of an unmatched row.
 * Returns 1 when the row is consumed (and reading should go on), 2 to stop. */
static int example_row(ps_guide_calls *g, const char *cell) {
  int64_t row = g->n_rows_read - 1;
  int matched = row < g->example_rows && g->example_matched[row];
  if (!matched && g->examples.n < g->max_examples && ps_strlist_push(&g->examples, cell) != PS_OK) return 2;
  return g->examples.n >= g->max_examples ? 2 : 1;
}

void ps_guide_calls_free(ps_guide_calls *g) {
  if (!g) return;
  free(g->row_matched);
  ps_strlist_free(&g->examples);
  for (int64_t i = 0; i < g->n; i++) {
    free(g->unit[i]);
    free(g->guide[i]);
  }
  free(g->cell);
  free(g->unit);
  free(g->guide);
  free(g->umi);
  memset(g, 0, sizeof *g);
}

/* Split line in place at sep; returns the number of fields (at most max). */
static int split_fields(char *line, char sep, char **fields, int max) {
  int n = 0;
  char *p = line;
  size_t len = strlen(p);
  while (len && (p[len - 1] == '\n' || p[len - 1] == '\r')) p[--len] = '\0';
  while (n < max) {
    fields[n++] = p;
    char *s = strchr(p, sep);
    if (!s) break;
    *s = '\0';
    p = s + 1;
  }
  return n;
}

static int column_of(char **fields, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(fields[i], name) == 0) return i;
  return -1;
}

static int parse_count(const char *text, double *value) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno || !isfinite(v) || v < 0) return 0;
  *value = v;
  return 1;
}

/* Cell Ranger names guides, not genes: the unit is the guide name without a
 * trailing "_N" / "-N" / ".N" / "_sgN" style suffix (a part holding a digit). */
static void gene_of_guide(const char *guide, char *gene, size_t size) {
  snprintf(gene, size, "%s", guide);
  char *cut = NULL;
  for (char *p = gene; *p; p++)
    if (*p == '_' || *p == '-' || *p == '.') cut = p;
  if (!cut || cut == gene) return;
  for (char *p = cut + 1; *p; p++)
    if (isdigit((unsigned char)*p)) {
      *cut = '\0';
      return;
    }
}

#define PS_MAX_FIELDS 64

static int read_scmageck(FILE *f, const char *path, char **header, int n_header, const ps_strmap *cells,
                         ps_guide_calls *out) {
  int c_cell = column_of(header, n_header, "cell"), c_guide = column_of(header, n_header, "barcode");
  int c_gene = column_of(header, n_header, "gene"), c_umi = column_of(header, n_header, "umi_count");
  if (c_cell < 0 || c_guide < 0 || c_gene < 0 || c_umi < 0)
    PS_FAIL(PS_ERR_INPUT, "%s: scMAGeCK barcode table needs the columns cell, barcode, gene and umi_count "
            "(header: cell barcode sgrna gene read_count umi_count)", path);
  char *line = NULL, *fields[PS_MAX_FIELDS], key[1024];
  size_t cap = 0;
  int64_t line_no = 1;
  int need = c_cell > c_guide ? c_cell : c_guide;
  if (c_gene > need) need = c_gene;
  if (c_umi > need) need = c_umi;
  while (getline(&line, &cap, f) > 0) {
    line_no++;
    if (line[0] == '\n' || line[0] == '\r' || line[0] == '\0') continue;
    int n = split_fields(line, '\t', fields, PS_MAX_FIELDS);
    if (n <= need) {
      int err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld has %d tab-separated fields, expected %d", path, (long long)line_no, n,
              n_header);
      free(line); /* after the message: fields point into line */
      return err;
    }
    double umi;
    if (!parse_count(fields[c_umi], &umi)) {
      int err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld: umi_count '%s' is not a non-negative number", path, (long long)line_no,
              fields[c_umi]);
      free(line); /* after the message: fields point into line */
      return err;
    }
    out->n_rows_read++;
    if (out->example_matched) {
      if (example_row(out, fields[c_cell]) == 2) break;
      continue;
    }
    int64_t cell = ps_strmap_get(cells, ps_cell_key(fields[c_cell], key, sizeof key));
    if (cell < 0) continue;
    out->n_rows_local++;
    PS_CALL(mark_row(out, out->n_rows_read - 1));
    PS_CALL(calls_push(out, cell, fields[c_gene], fields[c_guide], umi));
  }
  free(line);
  return PS_OK;
}

static int read_cellranger(FILE *f, const char *path, char **header, int n_header, const ps_strmap *cells,
                           ps_guide_calls *out) {
  int c_cell = column_of(header, n_header, "cell_barcode"), c_call = column_of(header, n_header, "feature_call");
  int c_umi = column_of(header, n_header, "num_umis");
  if (c_cell < 0 || c_call < 0 || c_umi < 0)
    PS_FAIL(PS_ERR_INPUT, "%s: protospacer calls need the columns cell_barcode, feature_call and num_umis", path);
  char *line = NULL, *fields[PS_MAX_FIELDS], key[1024], gene[1024];
  size_t cap = 0;
  int64_t line_no = 1;
  while (getline(&line, &cap, f) > 0) {
    line_no++;
    if (line[0] == '\n' || line[0] == '\r' || line[0] == '\0') continue;
    int n = split_fields(line, ',', fields, PS_MAX_FIELDS);
    if (n < n_header) {
      int err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld has %d comma-separated fields, expected %d", path, (long long)line_no, n,
              n_header);
      free(line); /* after the message: fields point into line */
      return err;
    }
    out->n_rows_read++;
    if (out->example_matched) {
      if (example_row(out, fields[c_cell]) == 2) break;
      continue;
    }
    int64_t cell = ps_strmap_get(cells, ps_cell_key(fields[c_cell], key, sizeof key));
    char *calls[PS_MAX_FIELDS], *umis[PS_MAX_FIELDS];
    int n_calls = split_fields(fields[c_call], '|', calls, PS_MAX_FIELDS);
    int n_umis = split_fields(fields[c_umi], '|', umis, PS_MAX_FIELDS);
    if (n_calls != n_umis) {
      int err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld: %d feature calls but %d UMI counts", path, (long long)line_no, n_calls,
              n_umis);
      free(line); /* after the message: fields point into line */
      return err;
    }
    if (cell < 0) continue;
    out->n_rows_local++;
    PS_CALL(mark_row(out, out->n_rows_read - 1));
    for (int i = 0; i < n_calls; i++) {
      double umi;
      if (!parse_count(umis[i], &umi)) {
        int err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lld: num_umis '%s' is not a non-negative number", path, (long long)line_no,
                umis[i]);
        free(line); /* after the message: fields point into line */
        return err;
      }
      gene_of_guide(calls[i], gene, sizeof gene);
      PS_CALL(calls_push(out, cell, gene, calls[i], umi));
    }
  }
  free(line);
  return PS_OK;
}

static int read_table(const char *path, const ps_strmap *cell_index, ps_guide_calls *out);

int ps_guides_read_table(const char *path, const ps_strmap *cell_index, ps_guide_calls *out) {
  memset(out, 0, sizeof *out);
  return read_table(path, cell_index, out);
}

int ps_guides_unmatched_examples(const char *path, const uint8_t *matched, int64_t n_rows, int max,
                                 ps_strlist *examples) {
  ps_guide_calls g;
  memset(&g, 0, sizeof g);
  ps_strmap none;
  PS_CALL(ps_strmap_init(&none, 1));
  g.example_matched = matched;
  g.example_rows = n_rows;
  g.max_examples = max;
  int err = read_table(path, &none, &g);
  ps_strmap_free(&none);
  *examples = g.examples;
  memset(&g.examples, 0, sizeof g.examples);
  ps_guide_calls_free(&g);
  return err;
}

static int read_table(const char *path, const ps_strmap *cell_index, ps_guide_calls *out) {
  FILE *f = fopen(path, "r");
  if (!f) PS_FAIL(PS_ERR_INPUT, "%s: cannot open the guide table: %s", path, strerror(errno));
  char *line = NULL, *header[PS_MAX_FIELDS];
  size_t cap = 0;
  if (getline(&line, &cap, f) <= 0) {
    free(line);
    fclose(f);
    PS_FAIL(PS_ERR_INPUT, "%s: the guide table is empty (expected a header line)", path);
  }
  int err;
  if (strchr(line, '\t')) {
    int n = split_fields(line, '\t', header, PS_MAX_FIELDS);
    err = read_scmageck(f, path, header, n, cell_index, out);
  } else if (strncmp(line, "cell_barcode,", 13) == 0) {
    int n = split_fields(line, ',', header, PS_MAX_FIELDS);
    err = read_cellranger(f, path, header, n, cell_index, out);
  } else {
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                       "%s: unknown guide table format; expected a scMAGeCK barcode table (tab-separated, header "
                       "'cell barcode sgrna gene read_count umi_count') or a Cell Ranger "
                       "protospacer_calls_per_cell.csv (header 'cell_barcode,num_features,feature_call,num_umis')",
                       path);
  }
  free(line);
  if (ferror(f) && !err) err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: read error", path);
  fclose(f);
  return err;
}

int ps_guides_from_labels(const ps_strlist *labels, ps_guide_calls *out) {
  memset(out, 0, sizeof *out);
  char buf[4096];
  for (int64_t i = 0; i < labels->n; i++) {
    snprintf(buf, sizeof buf, "%s", labels->items[i]);
    out->n_rows_read++;
    char *save = NULL;
    int any = 0;
    for (char *tok = strtok_r(buf, ",|+", &save); tok; tok = strtok_r(NULL, ",|+", &save)) {
      while (*tok == ' ') tok++;
      size_t len = strlen(tok);
      while (len && tok[len - 1] == ' ') tok[--len] = '\0';
      if (!len) continue;
      PS_CALL(calls_push(out, i, tok, tok, 1.0));
      any = 1;
    }
    out->n_rows_local += any;
  }
  return PS_OK;
}

/* Shared with the 10x guide-capture reader (tenx.c), so the guide -> unit rule and
 * the call storage live in one place (io.h). */
int ps_guide_calls_push(ps_guide_calls *g, int64_t cell, const char *unit, const char *guide, double umi) {
  return calls_push(g, cell, unit, guide, umi);
}

void ps_guide_unit(const char *guide, char *unit, size_t size) { gene_of_guide(guide, unit, size); }
