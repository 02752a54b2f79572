/* 10x Genomics input (SPEC.md section 0; issue check 6 at the reader level): the
 * same screen as h5ad + scMAGeCK guide table and as a 10x feature-barcode .h5
 * with CRISPR Guide Capture features must give the same expression matrix (cell
 * names, gene names, every value) and the same guide calls per cell (unit, guide,
 * UMI), on any number of ranks. The files come from the tenx_fixture test
 * (tests/tenx/fixture.sh) in $TENX_DIR.
 *
 * The two readers split cells differently (blocks are balanced by nonzeros and the
 * 10x file also holds guide entries), so every rank writes its cells as canonical
 * text lines ("global index, name, gene:value..., sorted calls") and rank 0
 * compares the gathered texts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/io.h"
#include "ps_test.h"

static int rank = 0;

typedef struct {
  char *s;
  size_t len, cap;
} text;

static void append(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(text *t, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (t->s && (size_t)n < t->cap - t->len) {
      t->len += (size_t)n;
      return;
    }
    t->cap = 2 * (t->cap + (size_t)n + 64);
    t->s = realloc(t->s, t->cap);
    if (!t->s) abort();
  }
}

typedef struct {
  const char *unit, *guide;
  double umi;
} call;

static int compare_calls(const void *a, const void *b) {
  const call *x = a, *y = b;
  int c = strcmp(x->guide, y->guide);
  if (c) return c;
  c = strcmp(x->unit, y->unit);
  if (c) return c;
  return (x->umi > y->umi) - (x->umi < y->umi);
}

/* This rank's cells as lines; NULL guides = leave the calls out. */
static void describe(const ps_matrix *m, const ps_guide_calls *g, text *out) {
  call *calls = calloc((size_t)(g && g->n ? g->n : 1), sizeof *calls);
  for (int64_t r = 0; r < m->x.n_rows; r++) {
    append(out, "%lld\t%s\t", (long long)(m->cell_begin + r), m->cells.items[r]);
    for (int64_t p = m->x.indptr[r]; p < m->x.indptr[r + 1]; p++)
      append(out, "%d:%.17g ", m->x.indices[p], m->x.data[p]);
    int n = 0;
    for (int64_t i = 0; g && i < g->n; i++)
      if (g->cell[i] == r) calls[n++] = (call){g->unit[i], g->guide[i], g->umi[i]};
    qsort(calls, (size_t)n, sizeof *calls, compare_calls);
    append(out, "\t");
    for (int i = 0; i < n; i++) append(out, "%s/%s/%.17g ", calls[i].unit, calls[i].guide, calls[i].umi);
    append(out, "\n");
  }
  free(calls);
}

/* Concatenate every rank's text on rank 0 (rank order = cell order). */
static char *gather(MPI_Comm comm, const text *t) {
  int size, len = (int)t->len;
  MPI_Comm_size(comm, &size);
  int *lens = calloc((size_t)size, sizeof *lens), *displ = calloc((size_t)size, sizeof *displ);
  MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, comm);
  int total = 0;
  for (int r = 0; r < size; r++) {
    displ[r] = total;
    total += lens[r];
  }
  char *all = calloc((size_t)total + 1, 1);
  MPI_Gatherv(t->s ? t->s : "", len, MPI_CHAR, all, lens, displ, MPI_CHAR, 0, comm);
  free(lens);
  free(displ);
  return all;
}

static void compare_texts(const char *what, const char *a, const char *b, int64_t n_cells) {
  if (rank != 0) return;
  int64_t line = 0, lines_a = 0;
  for (const char *p = a; *p; p++) lines_a += *p == '\n';
  EXPECT(lines_a == n_cells, "%s: %lld cell lines gathered, expected %lld", what, (long long)lines_a,
        (long long)n_cells);
  while (*a && *b) {
    const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
    size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
    if (la != lb || memcmp(a, b, la) != 0) {
      EXPECT(0, "%s: cell line %lld differs:\n  h5ad: %.300s\n  10x:  %.300s", what, (long long)line,
            a, b);
      return;
    }
    a += la + (ea ? 1 : 0);
    b += lb + (eb ? 1 : 0);
    line++;
  }
  EXPECT(!*a && !*b, "%s: different number of cells", what);
}

static void compare_genes(const char *what, const ps_matrix *a, const ps_matrix *b) {
  EXPECT(a->n_cells == b->n_cells && a->n_genes == b->n_genes, "%s: shape %lld x %lld vs %lld x %lld", what,
        (long long)a->n_cells, (long long)a->n_genes, (long long)b->n_cells, (long long)b->n_genes);
  EXPECT(a->genes.n == b->genes.n, "%s: %lld vs %lld gene names", what, (long long)a->genes.n, (long long)b->genes.n);
  for (int64_t i = 0; i < a->genes.n && i < b->genes.n; i++)
    if (strcmp(a->genes.items[i], b->genes.items[i]) != 0) {
      EXPECT(0, "%s: gene %lld is '%s' vs '%s'", what, (long long)i, a->genes.items[i], b->genes.items[i]);
      break;
    }
}

static int64_t cells_with_calls(MPI_Comm comm, const ps_guide_calls *g, int64_t n_rows) {
  char *has = calloc((size_t)(n_rows ? n_rows : 1), 1);
  int64_t n = 0, total = 0;
  for (int64_t i = 0; i < g->n; i++) has[g->cell[i]] = 1;
  for (int64_t r = 0; r < n_rows; r++) n += has[r];
  free(has);
  MPI_Allreduce(&n, &total, 1, MPI_INT64_T, MPI_SUM, comm);
  return total;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const char *dir = getenv("TENX_DIR");
  if (!dir) {
    if (rank == 0) fprintf(stderr, "FAIL: TENX_DIR is not set (the tenx_fixture test makes the files)\n");
    MPI_Finalize();
    return 1;
  }
  char h5ad[4096], table[4096], path[4096];
  snprintf(h5ad, sizeof h5ad, "%s/sim.h5ad", dir);
  snprintf(table, sizeof table, "%s/sim.guides.tsv", dir);

  /* reference: h5ad + scMAGeCK table */
  ps_matrix ref;
  int err = ps_h5ad_read_matrix(comm, h5ad, NULL, &ref);
  EXPECT(!err, "reading %s: %s", h5ad, ps_error_message());
  if (err) MPI_Abort(comm, 1);
  ps_strmap index;
  char key[1024];
  ps_strmap_init(&index, ref.cells.n);
  for (int64_t i = 0; i < ref.cells.n; i++) ps_strmap_put(&index, ps_cell_key(ref.cells.items[i], key, sizeof key), i);
  ps_guide_calls ref_calls;
  err = ps_guides_read_table(table, &index, &ref_calls);
  EXPECT(!err, "reading %s: %s", table, ps_error_message());
  ps_strmap_free(&index);
  text t = {0};
  describe(&ref, &ref_calls, &t);
  char *want = gather(comm, &t);
  t.len = 0;
  describe(&ref, NULL, &t);
  char *want_no_calls = gather(comm, &t);
  int64_t ref_called = cells_with_calls(comm, &ref_calls, ref.x.n_rows);

  ps_input_format format = 0;
  err = ps_input_sniff(comm, h5ad, &format);
  EXPECT(!err && format == PS_FORMAT_H5AD, "sniff %s: err %d format %d", h5ad, err, (int)format);

  static const char *files[] = {"sim_10x.h5", "sim_10x_mixed.h5"};
  for (int f = 0; f < 2; f++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[f]);
    ps_matrix m;
    ps_guide_calls calls;
    err = ps_tenx_read(comm, path, 3, &m, &calls);
    EXPECT(!err, "ps_tenx_read %s: %s", path, ps_error_message());
    if (err) continue;
    compare_genes(files[f], &ref, &m);
    EXPECT(strcmp(m.layout, "10x") == 0 && strcmp(m.element, "matrix") == 0, "%s: layout '%s' element '%s'", files[f],
          m.layout, m.element);
    t.len = 0;
    describe(&m, &calls, &t);
    char *got = gather(comm, &t);
    compare_texts(files[f], want, got, ref.n_cells);
    free(got);
    EXPECT(calls.n_rows_read == ref_called, "%s: n_rows_read %lld, expected %lld cells with a call", files[f],
          (long long)calls.n_rows_read, (long long)ref_called);
    EXPECT(cells_with_calls(comm, &calls, m.x.n_rows) == ref_called, "%s: cells with calls differ", files[f]);
    ps_guide_calls_free(&calls);
    ps_matrix_free(&m);

    /* a lower threshold calls the 1- and 2-UMI decoys too */
    err = ps_tenx_read(comm, path, 1, &m, &calls);
    int64_t n_low = calls.n, n_low_all = 0;
    MPI_Allreduce(&n_low, &n_low_all, 1, MPI_INT64_T, MPI_SUM, comm);
    int64_t n_ref = ref_calls.n, n_ref_all = 0;
    MPI_Allreduce(&n_ref, &n_ref_all, 1, MPI_INT64_T, MPI_SUM, comm);
    EXPECT(!err && n_low_all > n_ref_all, "%s: --min-guide-umi 1 gave %lld calls, not more than the %lld at 3",
          files[f], (long long)n_low_all, (long long)n_ref_all);
    ps_guide_calls_free(&calls);
    ps_matrix_free(&m);

    /* the dispatcher: expression only */
    format = 0;
    err = ps_input_sniff(comm, path, &format);
    EXPECT(!err && format == PS_FORMAT_TENX, "sniff %s: err %d format %d", path, err, (int)format);
    err = ps_read_expression(comm, path, NULL, &m);
    EXPECT(!err, "ps_read_expression %s: %s", path, ps_error_message());
    if (!err) {
      t.len = 0;
      describe(&m, NULL, &t);
      got = gather(comm, &t);
      compare_texts("ps_read_expression", want_no_calls, got, ref.n_cells);
      free(got);
      ps_matrix_free(&m);
    }
    err = ps_read_expression(comm, path, "counts", &m);
    EXPECT(err == PS_ERR_INPUT && strstr(ps_error_message(), "has no layers"), "%s with a layer: %d '%s'", files[f], err,
          ps_error_message());
    ps_error_clear();
  }

  /* no guide features: same matrix, zero calls */
  snprintf(path, sizeof path, "%s/sim_10x_noguides.h5", dir);
  ps_matrix m;
  ps_guide_calls calls;
  err = ps_tenx_read(comm, path, 3, &m, &calls);
  EXPECT(!err, "ps_tenx_read %s: %s", path, ps_error_message());
  if (!err) {
    EXPECT(calls.n == 0 && calls.n_rows_read == 0, "noguides: %lld calls", (long long)calls.n);
    t.len = 0;
    describe(&m, &calls, &t);
    char *got = gather(comm, &t);
    compare_texts("noguides", want_no_calls, got, ref.n_cells);
    free(got);
    ps_guide_calls_free(&calls);
    ps_matrix_free(&m);
  }
  /* the dispatcher on the h5ad gives the h5ad reader's matrix */
  err = ps_read_expression(comm, h5ad, NULL, &m);
  EXPECT(!err, "ps_read_expression %s: %s", h5ad, ps_error_message());
  if (!err) {
    t.len = 0;
    describe(&m, NULL, &t);
    char *got = gather(comm, &t);
    compare_texts("ps_read_expression h5ad", want_no_calls, got, ref.n_cells);
    free(got);
    ps_matrix_free(&m);
  }

  /* broken files: an error naming the problem on every rank, no hang */
  snprintf(path, sizeof path, "%s/bad_list.tsv", dir);
  FILE *list = fopen(path, "r");
  EXPECT(list != NULL, "cannot open %s", path);
  char line[8192];
  int n_bad = 0;
  while (list && fgets(line, sizeof line, list)) {
    line[strcspn(line, "\n")] = '\0';
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = '\0';
    const char *expect = tab + 1;
    err = ps_error_sync(comm, ps_tenx_read(comm, line, 3, &m, &calls));
    EXPECT(err == PS_ERR_INPUT, "%s: expected an input error, got %d", line, err);
    EXPECT(strstr(ps_error_message(), expect) != NULL, "%s: message '%s' lacks '%s'", line, ps_error_message(), expect);
    EXPECT(strstr(ps_error_message(), line) != NULL, "%s: message '%s' does not name the file", line,
          ps_error_message());
    if (rank == 0) printf("  %-60s -> %s\n", strrchr(line, '/') + 1, ps_error_message());
    ps_error_clear();
    n_bad++;
  }
  if (list) fclose(list);
  EXPECT(n_bad >= 5, "only %d broken files tested", n_bad);

  ps_guide_calls_free(&ref_calls);
  ps_matrix_free(&ref);
  free(want);
  free(want_no_calls);
  free(t.s);
  int all = 0;
  MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, comm);
  if (rank == 0) printf("%s: test_tenx_read on %d ranks\n", all ? "FAIL" : "PASS", size);
  MPI_Finalize();
  return all ? 1 : 0;
}
