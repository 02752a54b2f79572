/* pertscore dosage: the dosage stage (SPEC.md section 5) recomputed from an
 * existing results file's PS and the input's own-gene expression.
 *
 * The two files are read in their own blocks (the results file balanced by its
 * PS nonzeros, the input by its expression nonzeros), so a cell's PS and its
 * expression usually sit on different ranks. They are joined by cell name
 * without any rank holding every name: each cell name is hashed (128 bits), the
 * results rows (global row, carried perturbations and their PS) and the input
 * cells (rank, block row) both go to the rank hash mod P, which matches them and
 * sends each input rank the results data of its cells. The input rank then holds
 * exactly what pertscore run holds after scoring (its cells' own-gene values,
 * carried perturbations and PS, with the results row as global index), and the
 * stage runs as in run: the same numbers, on any number of ranks. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pertscore/data.h"
#include "pertscore/dosage.h"
#include "pertscore/io.h"

/* Two independent 64-bit hashes of a name (FNV-1a and a multiplicative hash,
 * both finished with the splitmix64 mixer): a false match of two different
 * names needs both to collide (about n^2 / 2^128). */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static void name_hash(const char *s, int64_t h[2]) {
  uint64_t a = UINT64_C(0xcbf29ce484222325), b = UINT64_C(0x9e3779b97f4a7c15);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    a = (a ^ *p) * UINT64_C(0x100000001b3);
    b = (b + *p) * UINT64_C(0xff51afd7ed558ccd) + 1;
  }
  uint64_t ha = mix64(a), hb = mix64(b ^ (uint64_t)strlen(s));
  memcpy(&h[0], &ha, sizeof ha);
  memcpy(&h[1], &hb, sizeof hb);
}

/* Alltoallv of int64 words: count[r] words to rank r (send packed by
 * destination). *rdispl (size + 1 entries, caller frees) delimits each source's words. */
static int exchange_words(MPI_Comm comm, const int64_t *count, const int64_t *send, int64_t **recv, int64_t **rdispl) {
  int size;
  MPI_Comm_size(comm, &size);
  int64_t *rcount;
  int *sc, *sd, *rc, *rd;
  PS_ALLOC(rcount, size);
  PS_ALLOC(sc, size);
  PS_ALLOC(sd, size);
  PS_ALLOC(rc, size);
  PS_ALLOC(rd, size);
  PS_ALLOC(*rdispl, size + 1);
  PS_CHECK_MPI(MPI_Alltoall(count, 1, MPI_INT64_T, rcount, 1, MPI_INT64_T, comm));
  int64_t s_total = 0, r_total = 0;
  for (int r = 0; r < size; r++) {
    s_total += count[r];
    r_total += rcount[r];
  }
  int64_t too_big = s_total > INT_MAX || r_total > INT_MAX;
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &too_big, 1, MPI_INT64_T, MPI_MAX, comm));
  if (too_big) PS_FAIL(PS_ERR_SYSTEM, "dosage: one rank would exchange more than 2^31 words of cell data; use more ranks");
  for (int r = 0; r < size; r++) {
    sc[r] = (int)count[r];
    rc[r] = (int)rcount[r];
    sd[r] = r ? sd[r - 1] + sc[r - 1] : 0;
    rd[r] = r ? rd[r - 1] + rc[r - 1] : 0;
    (*rdispl)[r + 1] = rd[r] + rc[r];
  }
  PS_ALLOC(*recv, r_total);
  PS_CHECK_MPI(MPI_Alltoallv(send, sc, sd, MPI_INT64_T, *recv, rc, rd, MPI_INT64_T, comm));
  free(rcount);
  free(sc);
  free(sd);
  free(rc);
  free(rd);
  return PS_OK;
}

static int hash_owner(const int64_t h[2], int size) { return (int)((uint64_t)h[0] % (uint64_t)size); }

/* Round 1, results side: per row [h0, h1, global row, n, (k, PS bits) x n]. */
static int pack_results(MPI_Comm comm, const ps_dosage_results *rb, int64_t **send, int64_t *count) {
  int size;
  MPI_Comm_size(comm, &size);
  const ps_csr *x = &rb->x.x;
  int64_t *at;
  PS_ALLOC(at, size + 1);
  int64_t h[2];
  for (int64_t j = 0; j < x->n_rows; j++) {
    name_hash(rb->x.cells.items[j], h);
    count[hash_owner(h, size)] += 4 + 2 * (rb->carried_ptr[j + 1] - rb->carried_ptr[j]);
  }
  for (int r = 0; r < size; r++) at[r + 1] = at[r] + count[r];
  PS_ALLOC(*send, at[size]);
  for (int64_t j = 0; j < x->n_rows; j++) {
    name_hash(rb->x.cells.items[j], h);
    int64_t *w = *send + at[hash_owner(h, size)];
    int64_t n = rb->carried_ptr[j + 1] - rb->carried_ptr[j];
    w[0] = h[0];
    w[1] = h[1];
    w[2] = rb->x.cell_begin + j;
    w[3] = n;
    for (int64_t t = 0; t < n; t++) {
      int32_t k = rb->carried[rb->carried_ptr[j] + t];
      double ps = 0.0; /* X holds the carried entries (and more with --score-all-cells) */
      for (int64_t p = x->indptr[j]; p < x->indptr[j + 1]; p++)
        if (x->indices[p] == k) ps = x->data[p];
      w[4 + 2 * t] = k;
      memcpy(&w[5 + 2 * t], &ps, sizeof ps);
    }
    at[hash_owner(h, size)] += 4 + 2 * n;
  }
  free(at);
  return PS_OK;
}

/* Round 1, input side: per cell [h0, h1, block row]. */
static int pack_input(MPI_Comm comm, const ps_matrix *m, int64_t **send, int64_t *count) {
  int size;
  MPI_Comm_size(comm, &size);
  int64_t *at, h[2];
  PS_ALLOC(at, size + 1);
  for (int64_t i = 0; i < m->cells.n; i++) {
    name_hash(m->cells.items[i], h);
    count[hash_owner(h, size)] += 3;
  }
  for (int r = 0; r < size; r++) at[r + 1] = at[r] + count[r];
  PS_ALLOC(*send, at[size]);
  for (int64_t i = 0; i < m->cells.n; i++) {
    name_hash(m->cells.items[i], h);
    int64_t *w = *send + at[hash_owner(h, size)];
    w[0] = h[0];
    w[1] = h[1];
    w[2] = i;
    at[hash_owner(h, size)] += 3;
  }
  free(at);
  return PS_OK;
}

typedef struct {
  int64_t h0, h1;
  int64_t at;  /* word offset of the record in the receive buffer */
  int source;  /* sending rank */
} keyed;

static int compare_keyed(const void *a, const void *b) {
  const keyed *p = a, *q = b;
  if (p->h0 != q->h0) return p->h0 < q->h0 ? -1 : 1;
  if (p->h1 != q->h1) return p->h1 < q->h1 ? -1 : 1;
  return (p->source > q->source) - (p->source < q->source);
}

/* Index the records of a receive buffer: fixed words (3) or results records. */
static int index_records(const int64_t *recv, const int64_t *rdispl, int size, int results, keyed **out, int64_t *n) {
  *n = 0; /* set on the out-of-memory return too: gcc -O2 cannot see that callers skip it */
  int64_t count = 0;
  for (int64_t w = 0; w < rdispl[size]; count++) w += results ? 4 + 2 * recv[w + 3] : 3;
  PS_ALLOC(*out, count);
  int64_t c = 0;
  for (int r = 0; r < size; r++)
    for (int64_t w = rdispl[r]; w < rdispl[r + 1]; w += results ? 4 + 2 * recv[w + 3] : 3)
      (*out)[c++] = (keyed){recv[w], recv[w + 1], w, r};
  qsort(*out, (size_t)count, sizeof **out, compare_keyed);
  *n = count;
  return PS_OK;
}

/* On the hash owner: match, and pack for each input rank [block row, global row, n, (k, PS bits) x n]. */
static int match(MPI_Comm comm, const char *results_path, const char *input_path, const int64_t *rres,
                 const int64_t *dres, const int64_t *rin, const int64_t *din, int64_t **send, int64_t *count) {
  int size;
  MPI_Comm_size(comm, &size);
  keyed *res, *in;
  int64_t n_res, n_in;
  PS_CALL(index_records(rres, dres, size, 1, &res, &n_res));
  int err = index_records(rin, din, size, 0, &in, &n_in);
  if (err) {
    free(res);
    return err;
  }
  for (int64_t a = 1; a < n_res && !err; a++)
    if (res[a].h0 == res[a - 1].h0 && res[a].h1 == res[a - 1].h1)
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: two cells share a name (obs rows %lld and %lld)",
                         results_path, (long long)rres[res[a - 1].at + 2], (long long)rres[res[a].at + 2]);
  int64_t *partner; /* per results record: the input record matched, -1 */
  PS_ALLOC(partner, n_res);
  for (int64_t a = 0, b = 0; a < n_res && !err; a++) {
    partner[a] = -1;
    while (b < n_in && compare_keyed(&(keyed){res[a].h0, res[a].h1, 0, -1}, &in[b]) > 0) b++;
    if (b < n_in && in[b].h0 == res[a].h0 && in[b].h1 == res[a].h1) {
      if (b + 1 < n_in && in[b + 1].h0 == res[a].h0 && in[b + 1].h1 == res[a].h1)
        err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                           "%s: the cell of results row %lld appears twice in the input's obs names", input_path,
                           (long long)rres[res[a].at + 2]);
      partner[a] = b;
    }
  }
  int64_t unmatched = 0;
  for (int64_t a = 0; a < n_res && !err; a++) {
    if (partner[a] < 0) {
      unmatched++;
      continue;
    }
    count[in[partner[a]].source] += 3 + 2 * rres[res[a].at + 3];
  }
  PS_CALL(ps_error_sync(comm, err));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &unmatched, 1, MPI_INT64_T, MPI_SUM, comm));
  if (unmatched)
    PS_FAIL(PS_ERR_INPUT, "%lld cells of %s are not cells of %s (obs names); give the input the results were "
            "computed from", (long long)unmatched, results_path, input_path);
  int64_t *at;
  PS_ALLOC(at, size + 1);
  for (int r = 0; r < size; r++) at[r + 1] = at[r] + count[r];
  PS_ALLOC(*send, at[size]);
  for (int64_t a = 0; a < n_res; a++) {
    const keyed *c = &in[partner[a]];
    const int64_t *r = rres + res[a].at;
    int64_t *w = *send + at[c->source], n = r[3];
    w[0] = rin[c->at + 2];
    w[1] = r[2];
    w[2] = n;
    memcpy(w + 3, r + 4, (size_t)(2 * n) * sizeof *w);
    at[c->source] += 3 + 2 * n;
  }
  free(at);
  free(partner);
  free(res);
  free(in);
  return PS_OK;
}

typedef struct {
  int64_t row;     /* input block row */
  const int64_t *w; /* its record */
} local_cell;

static int compare_local(const void *a, const void *b) {
  const local_cell *p = a, *q = b;
  return (p->row > q->row) - (p->row < q->row);
}

/* The input rank's cells as pertscore run has them: design, PS, global index, keep[]. */
typedef struct {
  ps_design design;
  double *ps;
  int64_t *index;
  int64_t *keep;
} joined;

static int build_joined(const int64_t *recv, int64_t n_words, const ps_matrix *m, const ps_strlist *names,
                        joined *J) {
  int64_t n = 0, n_ids = 0;
  for (int64_t w = 0; w < n_words; w += 3 + 2 * recv[w + 2], n++) n_ids += recv[w + 2];
  local_cell *cells;
  PS_ALLOC(cells, n);
  n = 0;
  for (int64_t w = 0; w < n_words; w += 3 + 2 * recv[w + 2]) cells[n++] = (local_cell){recv[w], recv + w};
  qsort(cells, (size_t)n, sizeof *cells, compare_local);
  ps_design *D = &J->design;
  D->n_perturbations = (int32_t)names->n;
  D->names = *names; /* borrowed: not freed with the design */
  D->n_cells = n;
  PS_ALLOC(D->ptr, n + 1);
  PS_ALLOC(D->ids, n_ids);
  PS_ALLOC(J->ps, n_ids);
  PS_ALLOC(J->index, n);
  PS_ALLOC(J->keep, m->x.n_rows);
  for (int64_t i = 0; i < m->x.n_rows; i++) J->keep[i] = -1;
  int64_t t = 0;
  for (int64_t j = 0; j < n; j++) {
    const int64_t *w = cells[j].w;
    J->keep[cells[j].row] = j;
    J->index[j] = w[1];
    for (int64_t q = 0; q < w[2]; q++, t++) {
      D->ids[t] = (int32_t)w[3 + 2 * q];
      memcpy(&J->ps[t], &w[4 + 2 * q], sizeof(double));
    }
    D->ptr[j + 1] = t;
    for (int64_t a = D->ptr[j] + 1; a < t; a++) /* sorted by ps_results_read_dosage_input */
      if (D->ids[a] <= D->ids[a - 1])
        PS_FAIL(PS_ERR_INPUT, "results row %lld lists a perturbation twice", (long long)w[1]);
  }
  free(cells);
  return PS_OK;
}

void ps_dosage_results_free(ps_dosage_results *r) {
  if (!r) return;
  ps_matrix_free(&r->x);
  free(r->carried_ptr);
  free(r->carried);
  memset(r, 0, sizeof *r);
}

int ps_dosage_recompute(MPI_Comm comm, const ps_dosage_source *src, const ps_dosage_results *res,
                        const ps_dosage_options *opt, ps_progress *progress, ps_dosage_table *out) {
  int size;
  MPI_Comm_size(comm, &size);
  const ps_dosage_results *rb = res;
  int unit_guide = rb->unit_guide;
  double scale = rb->scale;
  ps_matrix m;
  PS_CALL(ps_read_expression(comm, src->input, src->layer, &m));
  int is_counts;
  PS_CALL(ps_expression_normalize_scale(comm, &m.x, src->input_is, scale, &is_counts));
  if (progress) ps_progress_update(progress, 0.3);

  /* the join */
  int64_t *count_res, *count_in, *send_res = NULL, *send_in = NULL, *recv_res, *recv_in, *d_res, *d_in;
  PS_ALLOC(count_res, size);
  PS_ALLOC(count_in, size);
  PS_CALL(ps_error_sync(comm, pack_results(comm, rb, &send_res, count_res)));
  PS_CALL(ps_error_sync(comm, pack_input(comm, &m, &send_in, count_in)));
  PS_CALL(exchange_words(comm, count_res, send_res, &recv_res, &d_res));
  PS_CALL(exchange_words(comm, count_in, send_in, &recv_in, &d_in));
  free(send_res);
  free(send_in);
  int64_t *send_back = NULL, *recv_back, *d_back;
  memset(count_res, 0, (size_t)size * sizeof *count_res);
  PS_CALL(match(comm, src->results, src->input, recv_res, d_res, recv_in, d_in, &send_back, count_res));
  free(recv_res);
  free(recv_in);
  PS_CALL(exchange_words(comm, count_res, send_back, &recv_back, &d_back));
  free(send_back);

  joined J = {0};
  PS_CALL(ps_error_sync(comm, build_joined(recv_back, d_back[size], &m, &rb->x.genes, &J)));
  free(recv_back);
  ps_strmap gene_index;
  PS_CALL(ps_strmap_init(&gene_index, m.genes.n));
  for (int64_t g = 0; g < m.genes.n; g++) PS_CALL(ps_strmap_put(&gene_index, m.genes.items[g], g));
  int32_t *own_gene = NULL;
  ps_csr own = {0};
  PS_CALL(ps_error_sync(comm, ps_own_genes_extract(&m.x, J.keep, &J.design, &gene_index, unit_guide, &own_gene, &own)));
  ps_strmap_free(&gene_index);
  ps_matrix_free(&m);
  if (progress) ps_progress_update(progress, 0.5);

  ps_dosage_input in = {.n_perturbations = J.design.n_perturbations, .n_cells = J.design.n_cells, .index = J.index,
                        .ptr = J.design.ptr, .ids = J.design.ids, .ps = J.ps, .own_gene = own_gene, .own = &own};
  int err = ps_dosage_stage(comm, &in, opt, progress, out);
  free(own_gene);
  ps_csr_free(&own);
  free(J.design.ptr);
  free(J.design.ids);
  free(J.ps);
  free(J.index);
  free(J.keep);
  free(count_res);
  free(count_in);
  free(d_res);
  free(d_in);
  free(d_back);
  return err;
}
