/* Per-cell results (DESIGN.md "Results file", docs/results-format.md): the obs
 * columns perturbation, guide, n_guides, ps, ps_perturbation and the long
 * --cells-table TSV. Every rank builds its own cells' values; categories are the
 * union over ranks (identical everywhere), so the writes stay collective and
 * nothing cells x perturbations is ever dense. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/results.h"

/* The label of a cell: its perturbations '+'-joined; a control cell's control
 * label(s) as assigned (its units, '+'-joined), or the first --control label. */
static int cell_label(const ps_dataset *d, int64_t j, const char *control, char **out) {
  const ps_design *D = &d->design;
  if (D->ptr[j + 1] == D->ptr[j]) {
    const char *units = d->cell_units && d->cell_units[j] ? d->cell_units[j] : control;
    *out = strdup(units ? units : "control");
    if (!*out) PS_FAIL(PS_ERR_SYSTEM, "out of memory");
    return PS_OK;
  }
  size_t len = 1;
  for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) len += strlen(D->names.items[D->ids[p]]) + 1;
  PS_ALLOC(*out, len);
  for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) {
    if (p > D->ptr[j]) strcat(*out, "+");
    strcat(*out, D->names.items[D->ids[p]]);
  }
  return PS_OK;
}

/* The PS of local cell j for perturbation k in the scored design, NaN if none. */
/* The entry of (cell j, perturbation k) in the scored layout, -1 when not scored. */
static int64_t scored_entry(const ps_design *scored, int64_t j, int32_t k) {
  for (int64_t q = scored->ptr[j]; q < scored->ptr[j + 1]; q++)
    if (scored->ids[q] == k) return q;
  return -1;
}

int64_t ps_cell_top_entry(const ps_dataset *d, const ps_design *scored, const ps_scores *s, int64_t j) {
  const ps_design *D = &d->design;
  int64_t top = -1;
  for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) {
    int64_t q = scored_entry(scored, j, D->ids[p]);
    if (q >= 0 && !isnan(s->ps[q]) && (top < 0 || s->ps[q] > s->ps[top])) top = q;
  }
  return top;
}

/* Codes of local strings into the union (over ranks) of their values. */
static int categorical(MPI_Comm comm, char *const *values, int64_t n, ps_strlist *categories, int32_t *codes) {
  ps_strlist local = {0};
  for (int64_t j = 0; j < n; j++) PS_CALL(ps_strlist_push(&local, values[j]));
  ps_strlist_sort_unique(&local);
  int err = ps_strlist_allgather_union(comm, &local, categories);
  ps_strlist_free(&local);
  PS_CALL(err);
  for (int64_t j = 0; j < n; j++) codes[j] = (int32_t)ps_strlist_find_sorted(categories, values[j]);
  return PS_OK;
}

void ps_cell_columns_free(ps_cell_columns *c) {
  for (int64_t j = 0; c->label && j < c->n; j++) free(c->label[j]);
  free(c->label);
  free(c->label_code);
  free(c->guide_code);
  free(c->ps);
  free(c->ps_code);
  ps_strlist_free(&c->labels);
  ps_strlist_free(&c->guides);
  memset(c, 0, sizeof *c);
}

int ps_cell_columns_build(MPI_Comm comm, const ps_dataset *d, const ps_design *scored, const ps_scores *s,
                          const char *control, ps_cell_columns *c) {
  const ps_design *D = &d->design;
  int64_t n = D->n_cells;
  memset(c, 0, sizeof *c);
  c->n = n;
  PS_ALLOC(c->label, n);
  PS_ALLOC(c->label_code, n);
  PS_ALLOC(c->guide_code, n);
  PS_ALLOC(c->ps, n);
  PS_ALLOC(c->ps_code, n);
  char **guides;
  PS_ALLOC(guides, n);
  for (int64_t j = 0; j < n; j++) {
    PS_CALL(cell_label(d, j, control, &c->label[j]));
    guides[j] = d->cell_guides && d->cell_guides[j] ? d->cell_guides[j] : "";
    /* ps: the largest PS among the perturbations the cell carries */
    int64_t top = ps_cell_top_entry(d, scored, s, j);
    c->ps[j] = top >= 0 ? s->ps[top] : NAN;
    c->ps_code[j] = top >= 0 ? scored->ids[top] : -1;
  }
  int err = categorical(comm, c->label, n, &c->labels, c->label_code);
  if (!err) err = categorical(comm, guides, n, &c->guides, c->guide_code);
  free(guides);
  return err;
}

/* One cell's guides (from cell_guides / cell_units) whose unit is label, '+'-joined
 * into buf; all its guides when none matches (e.g. a relabelled pseudo cell). */
static void guides_of(const ps_dataset *d, int64_t j, const char *label, char *buf, size_t size) {
  buf[0] = '\0';
  const char *g = d->cell_guides ? d->cell_guides[j] : NULL, *u = d->cell_units ? d->cell_units[j] : NULL;
  if (!g || !u) return;
  size_t used = 0;
  while (*g && *u) {
    size_t gl = strcspn(g, "+"), ul = strcspn(u, "+");
    if (ul == strlen(label) && strncmp(u, label, ul) == 0)
      used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%s%.*s", used ? "+" : "", (int)gl, g);
    g += gl + (g[gl] == '+');
    u += ul + (u[ul] == '+');
    if (used >= size) break;
  }
  if (!buf[0]) snprintf(buf, size, "%s", d->cell_guides[j]);
}

static int append(char **text, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int append(char **text, size_t *len, size_t *cap, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(*text ? *text + *len : NULL, *text ? *cap - *len : 0, fmt, ap);
    va_end(ap);
    if (m < 0) PS_FAIL(PS_ERR_SYSTEM, "formatting the cells table failed");
    if (*text && *len + (size_t)m < *cap) {
      *len += (size_t)m;
      return PS_OK;
    }
    size_t want = (*cap ? *cap * 2 : 1 << 16) + (size_t)m + 1;
    char *t = realloc(*text, want);
    if (!t) PS_FAIL(PS_ERR_SYSTEM, "out of memory formatting the cells table");
    *text = t;
    *cap = want;
  }
}

static int format_number(char *buf, size_t size, double v) {
  if (isnan(v)) return snprintf(buf, size, "NA");
  return snprintf(buf, size, "%.6g", v);
}

int ps_cells_table_write(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                         const ps_scores *s, const double *ps_pvalue, const char *control) {
  const ps_design *D = &d->design;
  int rank;
  MPI_Comm_rank(comm, &rank);
  char *text = NULL;
  size_t len = 0, cap = 0;
  int err = PS_OK;
  if (rank == 0) err = append(&text, &len, &cap, "cell\tperturbation\tguide\tps\tps_pvalue\n");
  char guide[4096], ps[64], pv[64];
  for (int64_t j = 0; !err && j < D->n_cells; j++) {
    if (D->ptr[j + 1] == D->ptr[j]) { /* a control cell: one row, no PS */
      const char *label = d->cell_units && d->cell_units[j] ? d->cell_units[j] : control;
      err = append(&text, &len, &cap, "%s\t%s\t%s\tNA\tNA\n", d->cells.items[j], label ? label : "control",
                   d->cell_guides && d->cell_guides[j] ? d->cell_guides[j] : "");
      continue;
    }
    for (int64_t p = D->ptr[j]; !err && p < D->ptr[j + 1]; p++) {
      int32_t k = D->ids[p];
      const char *unit = d->by_group ? d->base.items[k] : D->names.items[k];
      guides_of(d, j, unit, guide, sizeof guide);
      int64_t entry = scored_entry(scored, j, k);
      format_number(ps, sizeof ps, entry >= 0 ? s->ps[entry] : NAN);
      /* the calibrated p-value (SPEC section 10, layers/ps_pvalue); NA without calibration */
      format_number(pv, sizeof pv, entry >= 0 && ps_pvalue ? ps_pvalue[entry] : NAN);
      err = append(&text, &len, &cap, "%s\t%s\t%s\t%s\t%s\n", d->cells.items[j], D->names.items[k], guide, ps, pv);
    }
  }
  err = ps_error_sync(comm, err);
  if (!err) err = ps_text_write_ordered(comm, path, text ? text : "", (int64_t)len);
  free(text);
  return err;
}
