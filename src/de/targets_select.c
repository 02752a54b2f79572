/* Automatic target genes (SPEC.md section 1; DESIGN.md data flow 3-4).
 *
 *   1. membership: every rank learns, per global analysed cell, which DE groups
 *      it is in (O(M x MOI): an allgather of the design, never cells x K dense);
 *   2. transpose: Alltoallvs send each analysed cell's nonzeros (log-normalized,
 *      not winsorized) to the rank owning the gene (g % P), one batch of genes
 *      at a time (a fraction of the matrix, so the copy never doubles the block);
 *   3. test: per owned gene, the reference group is summarized once and every
 *      perturbation is tested against it (ps_de_test_gene_ref); with
 *      --de-background others at high MOI the gene is ranked once and each
 *      perturbation's rank sum comes from its own cells (ps_de_test_gene_complement);
 *   4. select: per-gene results that can still be selected go to the rank owning
 *      the perturbation (k % P) in one Alltoallv; it runs ps_de_select;
 *   5. the selected (perturbation, gene) pairs are allgathered (small).
 * Steps 2-3 run per gene batch; every step is independent of the number of ranks
 * and of the batches (each gene's tests see all its values), so the targets are too. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "de_internal.h"
#include "pertscore/data.h"

/* Role of a cell in the test of perturbation k: entry = 3 k + role. */
enum { ROLE_P = PS_DE_ROLE_P, ROLE_ADD = PS_DE_ROLE_ADD, ROLE_REMOVE = PS_DE_ROLE_REMOVE, N_ROLES = PS_DE_N_ROLES };

/* DE groups, replicated: per global analysed cell its roles; the reference group
 * is the control cells (default) or every analysed cell (--de-background others).
 * With --group-by there is one reference per group g, holding g's cells only,
 * and perturbation k = (P, g) is tested against g's (SPEC section 6). */
typedef struct {
  int64_t n_cells;
  int64_t *role_ptr;   /* n_cells + 1 */
  int32_t *roles;      /* 3 k + role */
  int32_t *in_ref;     /* n_cells: the reference the cell belongs to, or -1 */
  int32_t n_refs;      /* references: 1, or the groups with --group-by */
  int64_t *n_ref;      /* n_refs: cells per reference */
  const int32_t *ref_of; /* K: reference of perturbation k; NULL: all 0 */
  int64_t *group_size; /* 3 K: cells per (k, role) */
} de_groups;

static void de_groups_free(de_groups *g) {
  free(g->role_ptr);
  free(g->roles);
  free(g->in_ref);
  free(g->n_ref);
  free(g->group_size);
  memset(g, 0, sizeof *g);
}

/* Roles of one local cell (SPEC section 1). Q = it carries X and a control guide:
 * with the reference quirk it is on the control side of X's test (added to C, or
 * simply kept in C = all cells with --de-background others) and not in P. Otherwise
 * it is in P if it is in X's DE group (low MOI: only the perturbation of its
 * largest-UMI guide; high MOI: all it carries), and with --de-background others it
 * leaves C for every perturbation it carries. */
static int cell_roles(const ps_targets_options *opt, const ps_dataset *d, int64_t j, int32_t *out) {
  const ps_design *D = &d->design;
  int quirk = !opt->de_strict_groups && d->has_control_guide[j];
  int n = 0;
  for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) {
    int32_t k = D->ids[p];
    if (quirk) {
      if (!opt->de_background_others) out[n++] = N_ROLES * k + ROLE_ADD;
      continue;
    }
    if (!d->low_moi || d->top_perturbation[j] == k) out[n++] = N_ROLES * k + ROLE_P;
    if (opt->de_background_others) out[n++] = N_ROLES * k + ROLE_REMOVE;
  }
  return n;
}

static int gather_groups(MPI_Comm comm, const ps_targets_options *opt, const ps_dataset *d, de_groups *g) {
  int size;
  MPI_Comm_size(comm, &size);
  const ps_design *D = &d->design;
  int64_t n_local = D->n_cells, n_ids = D->ptr[n_local];
  int32_t *roles, *count;
  int32_t *in_ref;
  PS_ALLOC(roles, 2 * n_ids);
  PS_ALLOC(count, n_local);
  PS_ALLOC(in_ref, n_local);
  int64_t w = 0;
  for (int64_t j = 0; j < n_local; j++) {
    count[j] = cell_roles(opt, d, j, roles + w);
    w += count[j];
    in_ref[j] = opt->de_background_others || D->ptr[j + 1] == D->ptr[j] ? (d->by_group ? D->group[j] : 0) : -1;
  }
  g->n_refs = d->by_group ? D->n_groups : 1;
  g->ref_of = d->by_group ? d->group_of : NULL;
  PS_ALLOC(g->n_ref, g->n_refs);
  int *cells_of, *cell_displ, *roles_of, *role_displ;
  int64_t mine[2] = {n_local, w}, *both, n_cells = 0, n_roles = 0;
  PS_ALLOC(cells_of, size);
  PS_ALLOC(cell_displ, size);
  PS_ALLOC(roles_of, size);
  PS_ALLOC(role_displ, size);
  PS_ALLOC(both, 2 * size);
  PS_CHECK_MPI(MPI_Allgather(mine, 2, MPI_INT64_T, both, 2, MPI_INT64_T, comm));
  for (int r = 0; r < size; r++) n_cells += both[2 * r], n_roles += both[2 * r + 1];
  if (n_cells > INT32_MAX || n_roles > INT32_MAX) /* the same on every rank */
    PS_FAIL(PS_ERR_SYSTEM, "target selection: %lld cells with %lld group memberships are too many to exchange",
            (long long)n_cells, (long long)n_roles);
  for (int r = 0, cells = 0, roles_before = 0; r < size; r++) {
    cells_of[r] = (int)both[2 * r];
    roles_of[r] = (int)both[2 * r + 1];
    cell_displ[r] = cells;
    role_displ[r] = roles_before;
    cells += cells_of[r];
    roles_before += roles_of[r];
  }
  int32_t *all_count;
  g->n_cells = n_cells;
  PS_ALLOC(all_count, n_cells);
  PS_ALLOC(g->role_ptr, n_cells + 1);
  PS_ALLOC(g->roles, n_roles);
  PS_ALLOC(g->in_ref, n_cells);
  PS_ALLOC(g->group_size, (int64_t)N_ROLES * D->n_perturbations);
  PS_CHECK_MPI(MPI_Allgatherv(count, (int)n_local, MPI_INT32_T, all_count, cells_of, cell_displ, MPI_INT32_T, comm));
  PS_CHECK_MPI(MPI_Allgatherv(in_ref, (int)n_local, MPI_INT32_T, g->in_ref, cells_of, cell_displ, MPI_INT32_T, comm));
  PS_CHECK_MPI(MPI_Allgatherv(roles, (int)w, MPI_INT32_T, g->roles, roles_of, role_displ, MPI_INT32_T, comm));
  for (int64_t j = 0; j < n_cells; j++) {
    g->role_ptr[j + 1] = g->role_ptr[j] + all_count[j];
    if (g->in_ref[j] >= 0) g->n_ref[g->in_ref[j]]++;
  }
  for (int64_t i = 0; i < n_roles; i++) g->group_size[g->roles[i]]++;
  free(roles), free(count), free(in_ref), free(all_count);
  free(cells_of), free(cell_displ), free(roles_of), free(role_displ), free(both);
  return PS_OK;
}

/* ---- the transpose, one gene batch at a time ---- */

/* 16 bytes without padding: every analysed nonzero moves once */
typedef struct {
  int32_t cell; /* global analysed index (checked < 2^31) */
  int32_t gene;
  double value;
} batch_entry;

/* A batch moves at most 1/BATCHES of the analysed nonzeros (whole genes; one gene
 * alone may be more): in flight a rank holds its send and receive entries (16 B
 * each) and then the shard (12 B) per value, against the block's 12 B, so the
 * transpose adds about 1/10 of the block. Matrices of BATCH_MIN_VALUES or fewer
 * go in one batch. */
enum { BATCHES = 32 };
#define BATCH_MIN_VALUES ((int64_t)1 << 16)

typedef struct {
  int64_t n_batches;
  int64_t *gene_end;    /* batch b: genes [gene_end[b - 1], gene_end[b]) */
  int64_t *local_count; /* per gene: this block's analysed nonzeros */
  int64_t *cursor;      /* per block row, when every row's genes ascend: its first value not yet sent
                         * (batches ascend, so each row is read once overall); NULL: scan whole rows */
  int32_t *owner;       /* per gene: the rank that tests it */
  int32_t *slot;        /* per gene: its place among its owner's genes of its batch (gene order) */
  int64_t *owned_start; /* per batch + 1: this rank's owned genes before it */
  int32_t *owned;       /* this rank's genes, batch by batch, ascending */
} gene_batches;

static void gene_batches_free(gene_batches *b) {
  free(b->gene_end);
  free(b->local_count);
  free(b->cursor);
  free(b->owner), free(b->slot), free(b->owned_start), free(b->owned);
  memset(b, 0, sizeof *b);
}

typedef struct {
  int64_t weight, gene;
} gene_weight;

static int heavier_first(const void *a, const void *b) {
  const gene_weight *x = a, *y = b;
  if (x->weight != y->weight) return x->weight > y->weight ? -1 : 1;
  return (x->gene > y->gene) - (x->gene < y->gene);
}

/* Owners per batch, heaviest gene first to the least loaded rank (a batch ends
 * in a collective, so each batch is balanced on its own): a gene costs its
 * nonzeros (rank sums) plus K (the per-perturbation loop). Round-robin by gene
 * left ranks up to ~10% apart on 2 ranks (lognormal expression). The same on
 * every rank; a gene's tests do not depend on where they run. */
static int assign_owners(int rank, int size, const int64_t *total, int64_t per_gene, int64_t n_genes,
                         gene_batches *b) {
  PS_ALLOC(b->owner, n_genes);
  PS_ALLOC(b->slot, n_genes);
  PS_ALLOC(b->owned_start, b->n_batches + 1);
  int64_t *load, g0 = 0, mine = 0;
  int32_t *next;
  gene_weight *order;
  PS_ALLOC(load, size);
  PS_ALLOC(next, size);
  PS_ALLOC(order, n_genes);
  for (int64_t bi = 0; bi < b->n_batches; bi++) {
    int64_t g1 = b->gene_end[bi];
    for (int64_t g = g0; g < g1; g++) order[g - g0] = (gene_weight){total[g] + per_gene, g};
    qsort(order, (size_t)(g1 - g0), sizeof *order, heavier_first);
    memset(load, 0, (size_t)size * sizeof *load);
    for (int64_t i = 0; i < g1 - g0; i++) {
      int r = 0;
      for (int q = 1; q < size; q++)
        if (load[q] < load[r]) r = q;
      b->owner[order[i].gene] = r;
      load[r] += order[i].weight;
    }
    memset(next, 0, (size_t)size * sizeof *next);
    for (int64_t g = g0; g < g1; g++) b->slot[g] = next[b->owner[g]]++;
    b->owned_start[bi] = mine;
    mine += next[rank];
    g0 = g1;
  }
  b->owned_start[b->n_batches] = mine;
  free(load), free(next), free(order);
  PS_ALLOC(b->owned, mine);
  for (int64_t g = 0, at = 0; g < n_genes; g++)
    if (b->owner[g] == rank) b->owned[at++] = (int32_t)g;
  return PS_OK;
}

/* Contiguous gene ranges of about equal global nonzeros and their genes' owners:
 * the same on every rank. Collective. */
static int plan_batches(MPI_Comm comm, const ps_csr *x, const int64_t *keep, int64_t n_genes, int32_t K,
                        gene_batches *b) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t *total;
  PS_ALLOC(b->local_count, n_genes);
  PS_ALLOC(total, n_genes);
  PS_ALLOC(b->gene_end, n_genes + 1);
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    for (int64_t p = x->indptr[i]; p < x->indptr[i + 1]; p++) b->local_count[x->indices[p]] += x->data[p] != 0;
  }
  PS_CHECK_MPI(MPI_Allreduce(b->local_count, total, (int)n_genes, MPI_INT64_T, MPI_SUM, comm));
  int64_t all = 0;
  for (int64_t g = 0; g < n_genes; g++) all += total[g];
  int64_t budget = (all + BATCHES - 1) / BATCHES, in_batch = 0;
  if (budget < BATCH_MIN_VALUES) budget = BATCH_MIN_VALUES;
  for (int64_t g = 0; g < n_genes; g++) {
    if (in_batch > 0 && in_batch + total[g] > budget) b->gene_end[b->n_batches++] = g, in_batch = 0;
    in_batch += total[g];
  }
  b->gene_end[b->n_batches++] = n_genes;
  int err = assign_owners(rank, size, total, K, n_genes, b);
  free(total);
  if (err) return err;
  int ascending = 1;
  for (int64_t i = 0; i < x->n_rows && ascending; i++)
    for (int64_t p = x->indptr[i] + 1; p < x->indptr[i + 1] && ascending; p++) ascending = x->indices[p] >= x->indices[p - 1];
  if (ascending && b->n_batches > 1) {
    PS_ALLOC(b->cursor, x->n_rows);
    for (int64_t i = 0; i < x->n_rows; i++) b->cursor[i] = x->indptr[i];
  }
  return PS_OK;
}

/* The gene shard of batch bi, genes [g0, g1): this rank's owned genes there, local
 * gene lg of s being owned gene b->owned[*lg0 + lg]. Cells arrive in rank order, so
 * within a gene they are ascending. Explicit zeros are dropped. Collective. */
static int build_batch(MPI_Comm comm, const ps_csr *x, const int64_t *keep, int64_t analysed_offset,
                       gene_batches *b, int64_t bi, ps_gene_shard *s, int64_t *lg0) {
  int64_t g0 = bi ? b->gene_end[bi - 1] : 0, g1 = b->gene_end[bi];
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int *scount, *rcount, *sdispl, *rdispl, *fill;
  int64_t *count64, s_total, r_total;
  PS_ALLOC(scount, size);
  PS_ALLOC(rcount, size);
  PS_ALLOC(sdispl, size);
  PS_ALLOC(rdispl, size);
  PS_ALLOC(fill, size);
  PS_ALLOC(count64, size);
  for (int64_t g = g0; g < g1; g++) count64[b->owner[g]] += b->local_count[g];
  PS_CALL(ps_exchange_counts(comm, count64, scount, sdispl, rcount, rdispl, &s_total, &r_total));
  free(count64);
  batch_entry *send, *recv;
  PS_ALLOC(send, s_total);
  for (int64_t i = 0; i < x->n_rows; i++) {
    if (keep[i] < 0) continue;
    int64_t p = b->cursor ? b->cursor[i] : x->indptr[i];
    for (; p < x->indptr[i + 1]; p++) {
      int32_t gene = x->indices[p];
      if (gene >= g1 && b->cursor) break; /* the rest is in later batches */
      if (gene < g0 || gene >= g1 || x->data[p] == 0) continue; /* zeros are implicit in the DE tests */
      int r = b->owner[gene];
      send[sdispl[r] + fill[r]++] = (batch_entry){(int32_t)(analysed_offset + keep[i]), gene, x->data[p]};
    }
    if (b->cursor) b->cursor[i] = p;
  }
  PS_ALLOC(recv, r_total);
  MPI_Datatype type;
  const int blocks[2] = {2, 1};
  const MPI_Aint offsets[2] = {offsetof(batch_entry, cell), offsetof(batch_entry, value)};
  const MPI_Datatype types[2] = {MPI_INT32_T, MPI_DOUBLE};
  PS_CALL(ps_mpi_struct_type(&type, 2, blocks, offsets, types, sizeof(batch_entry)));
  PS_CHECK_MPI(MPI_Alltoallv(send, scount, sdispl, type, recv, rcount, rdispl, type, comm));
  PS_CHECK_MPI(MPI_Type_free(&type));
  free(send);
  *lg0 = b->owned_start[bi];
  s->n_genes = b->owned_start[bi + 1] - *lg0;
  PS_ALLOC(s->ptr, s->n_genes + 1);
  PS_ALLOC(s->cell, r_total);
  PS_ALLOC(s->value, r_total);
  for (int64_t i = 0; i < r_total; i++) s->ptr[b->slot[recv[i].gene] + 1]++;
  for (int64_t lg = 0; lg < s->n_genes; lg++) s->ptr[lg + 1] += s->ptr[lg];
  int64_t *at;
  PS_ALLOC(at, s->n_genes + 1);
  memcpy(at, s->ptr, (size_t)(s->n_genes + 1) * sizeof *at);
  for (int64_t i = 0; i < r_total; i++) {
    int64_t q = at[b->slot[recv[i].gene]]++;
    s->cell[q] = recv[i].cell;
    s->value[q] = recv[i].value;
  }
  free(at), free(recv), free(scount), free(rcount), free(sdispl), free(rdispl), free(fill);
  return PS_OK;
}

/* ---- tests on owned genes ---- */

typedef struct {
  int32_t k, gene;
  double pct1, pct2, log2fc, p;
} de_record;

typedef struct {
  de_record *v;
  int64_t n, cap;
} record_list;

static int record_push(record_list *l, de_record r) {
  if (l->n == l->cap) {
    int64_t cap = l->cap ? 2 * l->cap : 256;
    de_record *grown = realloc(l->v, (size_t)cap * sizeof *grown);
    if (!grown) PS_FAIL(PS_ERR_SYSTEM, "out of memory keeping DE results (%lld)", (long long)cap);
    l->v = grown;
    l->cap = cap;
  }
  l->v[l->n++] = r;
  return PS_OK;
}

/* The smallest |log2FC| threshold ps_de_select can reach (same multiplications):
 * a gene below it, or below min_pct, is never selected, so it is not sent. */
static double last_threshold(const ps_de_options *o) {
  if (o->fdr > 0) return -INFINITY; /* --target-fdr: BH ranks among every gene that passed min_pct */
  double t = o->logfc;
  for (int r = 1; r < o->max_rounds; r++) t *= o->factor;
  return t;
}

/* --de-background others with P = the cells removed from C for every perturbation
 * (high MOI; low MOI removes a cell for all its perturbations but puts it in P for
 * one): P and C then make up the reference, and a gene is ranked once for all K
 * tests (src/de/complement.c) instead of each test sorting P and the removed cells. */
static int complement_applies(const ps_targets_options *opt, const de_groups *g, int32_t K) {
  if (!opt->de_background_others) return 0;
  for (int32_t k = 0; k < K; k++)
    if (g->group_size[N_ROLES * k + ROLE_REMOVE] != g->group_size[N_ROLES * k + ROLE_P] ||
        g->group_size[N_ROLES * k + ROLE_ADD] != 0)
      return 0;
  return 1;
}

/* One owned gene's K tests when complement_applies: per stored value its rank in its
 * cell's reference, added to the sums of each perturbation the cell is in P of.
 * ranks: from ps_de_ref_build_ranks, the references' values one after another, each
 * reference's in the order of the gene's stored values (as test_owned_genes fills them). */
static int complement_tests(const ps_targets_options *opt, const de_groups *g, const ps_gene_shard *s, int64_t lg,
                            int32_t K, const ps_de_ref *refs, const double *ranks, ps_de_sums *sums, int32_t gene,
                            int size, record_list *out) {
  const double t_min = last_threshold(&opt->de);
  memset(sums, 0, (size_t)K * sizeof *sums);
  int64_t *at;
  PS_ALLOC(at, g->n_refs + 1);
  for (int64_t q = s->ptr[lg]; q < s->ptr[lg + 1]; q++)
    if (g->in_ref[s->cell[q]] >= 0) at[g->in_ref[s->cell[q]] + 1]++;
  for (int32_t r = 0; r < g->n_refs; r++) at[r + 1] += at[r];
  for (int64_t q = s->ptr[lg]; q < s->ptr[lg + 1]; q++) {
    int64_t c = s->cell[q];
    double rank = g->in_ref[c] >= 0 ? ranks[at[g->in_ref[c]]++] : NAN; /* NaN: refused below */
    if (g->role_ptr[c] == g->role_ptr[c + 1]) continue;
    double v = s->value[q], e = expm1(v);
    for (int64_t r = g->role_ptr[c]; r < g->role_ptr[c + 1]; r++)
      if (g->roles[r] % N_ROLES == ROLE_P) ps_de_sums_add(&sums[g->roles[r] / N_ROLES], v, rank, e);
  }
  int err = PS_OK;
  for (int32_t k = 0; k < K && !err; k++) {
    const int32_t rk = g->ref_of ? g->ref_of[k] : 0;
    int64_t n1 = g->group_size[N_ROLES * k + ROLE_P], n2 = g->n_ref[rk] - n1;
    if (n1 < 1 || n2 < 1) continue;
    /* min.pct first, as in test_owned_genes */
    double pct1 = ps_de_round3((double)sums[k].positive / (double)n1);
    double pct2 = ps_de_round3((double)(refs[rk].n_positive - sums[k].positive) / (double)n2);
    if (!(fmax(pct1, pct2) >= opt->de.min_pct)) continue;
    ps_de_gene r;
    if ((err = ps_de_test_gene_complement(&sums[k], n1, &refs[rk], &r))) break;
    if (!(fabs(r.log2fc) >= t_min)) continue;
    err = record_push(&out[k % size], (de_record){k, gene, r.pct1, r.pct2, r.log2fc, r.p});
  }
  free(at);
  return err;
}

/* Per (perturbation, owned gene): the test, kept in out[k % P] if it can be selected.
 * s holds owned genes owned[lg0 ...] (a batch); n_owned: all owned genes, for the progress. */
static int test_owned_genes(MPI_Comm comm, const ps_targets_options *opt, const de_groups *g, const ps_gene_shard *s,
                            const int32_t *owned, int64_t lg0, int64_t n_owned, int32_t K, ps_progress *progress,
                            record_list *out) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const double t_min = last_threshold(&opt->de);
  const int complement = complement_applies(opt, g, K);
  /* PERTSCORE_DE_PER_TEST=1: the earlier path, each test sorting its own groups against
   * the reference summary (ps_de_test_gene_ref); the same results, for tools/bench */
  const char *env = getenv("PERTSCORE_DE_PER_TEST");
  const int per_test = env && env[0] == '1';
  int64_t n_slots = (int64_t)N_ROLES * K, *count, *offset, *fill, *positive, max_nnz = 0, max_slots = 0;
  PS_ALLOC(count, n_slots);
  PS_ALLOC(offset, n_slots + 1);
  PS_ALLOC(fill, n_slots);
  PS_ALLOC(positive, n_slots);
  for (int64_t lg = 0; lg < s->n_genes && (complement || per_test); lg++) { /* the scratch of the other paths */
    int64_t nnz = s->ptr[lg + 1] - s->ptr[lg], slots = 0;
    for (int64_t q = s->ptr[lg]; q < s->ptr[lg + 1]; q++) slots += g->role_ptr[s->cell[q] + 1] - g->role_ptr[s->cell[q]];
    if (nnz > max_nnz) max_nnz = nnz;
    if (slots > max_slots) max_slots = slots;
  }
  double *ref_values, *slot_values;
  int64_t *ref_start, *ref_fill;
  ps_de_ref *refs;
  PS_ALLOC(ref_values, max_nnz);
  PS_ALLOC(ref_start, g->n_refs + 1);
  PS_ALLOC(ref_fill, g->n_refs);
  PS_ALLOC(refs, g->n_refs);
  PS_ALLOC(slot_values, complement || !per_test ? 0 : max_slots);
  ps_de_sums *sums;
  double *ranks;
  PS_ALLOC(sums, complement ? K : 0);
  PS_ALLOC(ranks, complement ? max_nnz : 0);
  ps_de_work work = {0};
  const ps_de_layout layout = {K, g->n_refs, g->n_ref, g->ref_of, g->group_size, g->n_cells, g->role_ptr, g->roles,
                               g->in_ref};
  ps_de_rank_work *rank_work = NULL;
  ps_de_gene *results;
  uint8_t *tested;
  PS_ALLOC(results, complement || per_test ? 0 : K);
  PS_ALLOC(tested, complement || per_test ? 0 : K);
  if (!complement && !per_test) PS_CALL(ps_de_rank_work_create(&layout, &rank_work));
  int err = PS_OK;
  double sorted_values = 0, sorts = 0; /* de.sorted_values, de.sorts: the sort ceiling's size (tools/bench) */
  for (int64_t lg = 0; lg < s->n_genes && !err; lg++) {
    int64_t lo = s->ptr[lg], hi = s->ptr[lg + 1];
    if (rank_work) { /* one ranking for all K tests (src/de/ranking.c) */
      int32_t gene = owned[lg0 + lg];
      sorted_values += (double)(hi - lo), sorts += hi > lo;
      err = ps_de_test_gene_layout(&layout, s->cell + lo, s->value + lo, hi - lo, opt->de.min_pct, rank_work,
                                   results, tested);
      for (int32_t k = 0; k < K && !err; k++)
        if (tested[k] && fabs(results[k].log2fc) >= t_min)
          err = record_push(&out[k % size], (de_record){k, gene, results[k].pct1, results[k].pct2,
                                                        results[k].log2fc, results[k].p});
      if (progress && (lg0 + lg) % 64 == 0) ps_progress_update(progress, 0.6 + 0.3 * (double)(lg0 + lg) / (double)n_owned);
      continue;
    }
    memset(count, 0, (size_t)n_slots * sizeof *count);
    memset(positive, 0, (size_t)n_slots * sizeof *positive);
    for (int64_t q = lo; q < hi; q++) {
      int64_t c = s->cell[q];
      if (g->in_ref[c] >= 0) ref_start[g->in_ref[c] + 1]++;
      if (!complement)
        for (int64_t e = g->role_ptr[c]; e < g->role_ptr[c + 1]; e++) count[g->roles[e]]++;
    }
    for (int64_t i = 0; i < n_slots; i++) offset[i + 1] = offset[i] + count[i];
    memcpy(fill, offset, (size_t)n_slots * sizeof *fill);
    for (int64_t q = lo; q < hi && !complement; q++) {
      int64_t c = s->cell[q];
      for (int64_t e = g->role_ptr[c]; e < g->role_ptr[c + 1]; e++) {
        slot_values[fill[g->roles[e]]++] = s->value[q];
        positive[g->roles[e]] += s->value[q] > 0;
      }
    }
    /* each reference's values, then one summary per reference */
    for (int32_t i = 0; i < g->n_refs; i++) ref_start[i + 1] += ref_start[i];
    memcpy(ref_fill, ref_start, (size_t)g->n_refs * sizeof *ref_fill);
    for (int64_t q = lo; q < hi; q++)
      if (g->in_ref[s->cell[q]] >= 0) ref_values[ref_fill[g->in_ref[s->cell[q]]]++] = s->value[q];
    int32_t built = 0;
    for (; built < g->n_refs && !err; built++) {
      ps_de_group ref_group = {ref_values + ref_start[built], ref_start[built + 1] - ref_start[built], g->n_ref[built]};
      err = complement ? ps_de_ref_build_ranks(&ref_group, &refs[built], ranks + ref_start[built])
                       : ps_de_ref_build(&ref_group, &refs[built]);
    }
    memset(ref_start, 0, (size_t)(g->n_refs + 1) * sizeof *ref_start);
    if (err) built--; /* the failed one holds nothing */
    int32_t gene = owned[lg0 + lg];
    if (complement && !err) err = complement_tests(opt, g, s, lg, K, refs, ranks, sums, gene, size, out);
    for (int32_t k = 0; k < K && !err && !complement; k++) {
      int64_t sp = N_ROLES * k + ROLE_P, sa = sp + 1, sr = sp + 2;
      const int32_t rk = g->ref_of ? g->ref_of[k] : 0;
      const ps_de_ref *ref = &refs[rk];
      int64_t n1 = g->group_size[sp], n2 = g->n_ref[rk] + g->group_size[sa] - g->group_size[sr];
      if (n1 < 1 || n2 < 1) continue;
      /* min.pct first, with the very expressions ps_de_test_gene_ref uses: most genes stop here */
      double pct1 = ps_de_round3((double)positive[sp] / (double)n1);
      double pct2 = ps_de_round3((double)(ref->n_positive + positive[sa] - positive[sr]) / (double)n2);
      if (!(fmax(pct1, pct2) >= opt->de.min_pct)) continue;
      ps_de_group p = {slot_values + offset[sp], count[sp], n1};
      ps_de_group add = {slot_values + offset[sa], count[sa], g->group_size[sa]};
      ps_de_group remove = {slot_values + offset[sr], count[sr], g->group_size[sr]};
      ps_de_gene r;
      if ((err = ps_de_test_gene_ref(&p, ref, &add, &remove, &work, &r))) break;
      if (!(fabs(r.log2fc) >= t_min)) continue;
      err = record_push(&out[k % size], (de_record){k, gene, r.pct1, r.pct2, r.log2fc, r.p});
    }
    for (int32_t i = 0; i < built; i++) ps_de_ref_free(&refs[i]);
    if (progress && (lg0 + lg) % 64 == 0) ps_progress_update(progress, 0.6 + 0.3 * (double)(lg0 + lg) / (double)n_owned);
  }
  ps_de_work_free(&work);
  ps_de_rank_work_free(rank_work);
  free(results), free(tested);
  ps_stats_add("de.sorted_values", sorted_values);
  ps_stats_add("de.sorts", sorts);
  free(count), free(offset), free(fill), free(positive), free(ref_values), free(slot_values);
  free(ref_start), free(ref_fill), free(refs), free(sums), free(ranks);
  return err;
}

/* ---- selection on the perturbation's owner ---- */

static int exchange_records(MPI_Comm comm, record_list *out, de_record **recv, int64_t *n_recv) {
  int size;
  MPI_Comm_size(comm, &size);
  int *scount, *rcount, *sdispl, *rdispl;
  int64_t *count64, s_total, r_total;
  PS_ALLOC(scount, size);
  PS_ALLOC(rcount, size);
  PS_ALLOC(sdispl, size);
  PS_ALLOC(rdispl, size);
  PS_ALLOC(count64, size);
  for (int r = 0; r < size; r++) count64[r] = out[r].n;
  PS_CALL(ps_exchange_counts(comm, count64, scount, sdispl, rcount, rdispl, &s_total, &r_total));
  free(count64);
  de_record *send;
  PS_ALLOC(send, s_total);
  PS_ALLOC(*recv, r_total);
  for (int r = 0; r < size; r++)
    if (out[r].n) memcpy(send + sdispl[r], out[r].v, (size_t)out[r].n * sizeof *send);
  MPI_Datatype type;
  const int blocks[2] = {2, 4};
  const MPI_Aint offsets[2] = {offsetof(de_record, k), offsetof(de_record, pct1)};
  const MPI_Datatype types[2] = {MPI_INT32_T, MPI_DOUBLE};
  PS_CALL(ps_mpi_struct_type(&type, 2, blocks, offsets, types, sizeof(de_record)));
  PS_CHECK_MPI(MPI_Alltoallv(send, scount, sdispl, type, *recv, rcount, rdispl, type, comm));
  PS_CHECK_MPI(MPI_Type_free(&type));
  *n_recv = r_total;
  free(send), free(scount), free(rcount), free(sdispl), free(rdispl);
  return PS_OK;
}

/* Owned perturbations' targets, as (k, gene) pairs in selection order, and thresholds. */
static int select_owned(MPI_Comm comm, const ps_targets_options *opt, const ps_dataset *d, const ps_strmap *gene_index,
                        const de_record *rec, int64_t n_rec, int32_t **pairs, int64_t *n_pairs, double *threshold) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int32_t K = d->design.n_perturbations;
  int64_t G = d->n_genes, n_owned = K > rank ? (K - rank + size - 1) / size : 0;
  int64_t *start, *at, *order;
  PS_ALLOC(start, n_owned + 1);
  PS_ALLOC(at, n_owned + 1);
  PS_ALLOC(order, n_rec);
  for (int64_t i = 0; i < n_rec; i++) start[rec[i].k / size + 1]++;
  for (int64_t lk = 0; lk < n_owned; lk++) start[lk + 1] += start[lk];
  memcpy(at, start, (size_t)(n_owned + 1) * sizeof *at);
  for (int64_t i = 0; i < n_rec; i++) order[at[rec[i].k / size]++] = i;
  ps_de_gene *genes;
  PS_ALLOC(genes, G);
  const ps_de_gene untested = {0.0, 0.0, NAN, NAN}; /* never passes, whatever the options */
  for (int64_t i = 0; i < G; i++) genes[i] = untested;
  int64_t cap = 0;
  *pairs = NULL;
  *n_pairs = 0;
  for (int64_t lk = 0; lk < n_owned; lk++) {
    int32_t k = (int32_t)(rank + lk * size);
    for (int64_t q = start[lk]; q < start[lk + 1]; q++) {
      const de_record *r = &rec[order[q]];
      genes[r->gene] = (ps_de_gene){r->pct1, r->pct2, r->log2fc, r->p};
    }
    const char *own = d->by_group ? d->base.items[k] : d->design.names.items[k]; /* "P@g" perturbs P */
    int64_t exclude = opt->exclude_perturbed_gene ? ps_strmap_get(gene_index, own) : -1;
    ps_de_selection sel;
    PS_CALL(ps_de_select(genes, G, exclude, &opt->de, &sel));
    for (int64_t q = start[lk]; q < start[lk + 1]; q++) genes[rec[order[q]].gene] = untested;
    threshold[k] = sel.threshold;
    if (*n_pairs + sel.n > cap) {
      cap = 2 * (*n_pairs + sel.n);
      int32_t *grown = realloc(*pairs, (size_t)(2 * cap) * sizeof *grown);
      if (!grown) PS_FAIL(PS_ERR_SYSTEM, "out of memory keeping selected targets");
      *pairs = grown;
    }
    for (int64_t i = 0; i < sel.n; i++) {
      (*pairs)[2 * *n_pairs] = k;
      (*pairs)[2 * *n_pairs + 1] = (int32_t)sel.genes[i];
      ++*n_pairs;
    }
    ps_de_selection_free(&sel);
  }
  free(start), free(at), free(order), free(genes);
  return PS_OK;
}

/* Rank 0: one line naming (some of) the perturbations that ended short of
 * --min-targets; they are still scored, with the targets they have. */
static void warn_few_targets(MPI_Comm comm, const ps_targets_options *opt, const ps_dataset *d, const int64_t *start) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  char line[1024];
  int used = 0, few = 0;
  for (int32_t k = 0; k < d->design.n_perturbations; k++) {
    if (start[k + 1] - start[k] >= opt->de.min_targets) continue;
    if (few++ < 5 && used < (int)sizeof line)
      used += snprintf(line + used, sizeof line - used, "%s%s (%lld)", few > 1 ? ", " : "", d->design.names.items[k],
                       (long long)(start[k + 1] - start[k]));
  }
  if (rank != 0 || few == 0) return;
  fprintf(stderr, "pertscore: warning: %d perturbation%s with fewer than %lld targets at the lowest |log2FC| threshold: "
          "%s%s\n", few, few == 1 ? "" : "s", (long long)opt->de.min_targets, line, few > 5 ? ", ..." : "");
  fflush(stderr);
}

/* Every rank's pairs, in perturbation order (each perturbation's in selection
 * order), into d->targets; the genes used become the candidates. */
static int gather_pairs(MPI_Comm comm, const ps_targets_options *opt, const int32_t *pairs, int64_t n_pairs,
                        ps_dataset *d, int32_t **candidates, int32_t *n_candidates) {
  int size;
  MPI_Comm_size(comm, &size);
  int64_t mine = 2 * n_pairs, *counts64, total = 0;
  int *counts, *displs;
  PS_ALLOC(counts64, size);
  PS_ALLOC(counts, size);
  PS_ALLOC(displs, size);
  PS_CHECK_MPI(MPI_Allgather(&mine, 1, MPI_INT64_T, counts64, 1, MPI_INT64_T, comm));
  for (int r = 0; r < size; r++) total += counts64[r];
  if (total > INT32_MAX) /* the same on every rank */
    PS_FAIL(PS_ERR_SYSTEM, "target selection: %lld selected pairs are too many to exchange", (long long)total / 2);
  for (int r = 0, at = 0; r < size; r++) {
    counts[r] = (int)counts64[r];
    displs[r] = at;
    at += counts[r];
  }
  free(counts64);
  int32_t *all;
  PS_ALLOC(all, total);
  PS_CHECK_MPI(MPI_Allgatherv(pairs, (int)mine, MPI_INT32_T, all, counts, displs, MPI_INT32_T, comm));
  int32_t K = d->design.n_perturbations;
  int64_t n = total / 2, *start, *order;
  uint8_t *used;
  PS_ALLOC(start, K + 1);
  PS_ALLOC(order, n);
  PS_ALLOC(used, d->n_genes);
  for (int64_t i = 0; i < n; i++) start[all[2 * i] + 1]++;
  for (int32_t k = 0; k < K; k++) start[k + 1] += start[k];
  warn_few_targets(comm, opt, d, start);
  for (int64_t i = 0; i < n; i++) order[start[all[2 * i]]++] = i; /* stable: selection order kept */
  for (int64_t i = 0; i < n; i++) {
    int32_t k = all[2 * order[i]], gene = all[2 * order[i] + 1];
    PS_CALL(ps_strlist_push(&d->targets.perturbation, d->design.names.items[k]));
    PS_CALL(ps_strlist_push(&d->targets.gene, d->genes.items[gene]));
    used[gene] = 1;
  }
  int32_t m = 0;
  for (int64_t gene = 0; gene < d->n_genes; gene++) m += used[gene];
  PS_ALLOC(*candidates, m);
  m = 0;
  for (int64_t gene = 0; gene < d->n_genes; gene++)
    if (used[gene]) (*candidates)[m++] = (int32_t)gene;
  *n_candidates = m;
  free(counts), free(displs), free(all), free(start), free(order), free(used);
  if (m == 0)
    PS_FAIL(PS_ERR_INPUT, "no target gene was selected for any of the %d perturbations (SPEC section 1 thresholds: "
            "--min-pct %g, --logfc %g); give targets with --targets or relax the thresholds", K, opt->de.min_pct,
            opt->de.logfc);
  return PS_OK;
}

int ps_targets_select_cells(MPI_Comm comm, const ps_targets_options *opt, const ps_csr *x, const int64_t *keep,
                            const ps_strmap *gene_index, ps_progress *progress, ps_dataset *d, int32_t **candidates,
                            int32_t *n_candidates) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int32_t K = d->design.n_perturbations;
  de_groups groups = {0};
  ps_gene_shard shard = {0};
  /* de.* statistics (tools/bench): wall and CPU seconds, and the parts */
  double t0 = MPI_Wtime();
  double cpu0 = ps_cpu_seconds();
  if (d->n_analysed > INT32_MAX) /* the same on every rank */
    PS_FAIL(PS_ERR_INPUT, "target selection: %lld analysed cells; at most 2^31 - 1 are supported",
            (long long)d->n_analysed);
  PS_CALL(ps_error_sync(comm, gather_groups(comm, opt, d, &groups)));
  gene_batches batches = {0};
  PS_CALL(ps_error_sync(comm, plan_batches(comm, x, keep, d->n_genes, K, &batches)));
  record_list *out;
  PS_ALLOC(out, size);
  int64_t n_owned = batches.owned_start[batches.n_batches];
  double transpose_seconds = MPI_Wtime() - t0, test_seconds = 0;
  for (int64_t b = 0; b < batches.n_batches; b++) {
    double t1 = MPI_Wtime();
    int64_t lg0 = 0;
    PS_CALL(ps_error_sync(comm, build_batch(comm, x, keep, d->analysed_offset, &batches, b, &shard, &lg0)));
    double t2 = MPI_Wtime();
    PS_CALL(ps_error_sync(comm, test_owned_genes(comm, opt, &groups, &shard, batches.owned, lg0, n_owned, K, progress,
                                                 out)));
    ps_gene_shard_free(&shard);
    transpose_seconds += t2 - t1;
    test_seconds += MPI_Wtime() - t2;
  }
  double t2 = MPI_Wtime();
  ps_stats_add("de.transpose_seconds", transpose_seconds);
  ps_stats_add("de.test_seconds", test_seconds);
  ps_stats_add("de.batches", (double)batches.n_batches);
  gene_batches_free(&batches);
  de_groups_free(&groups);
  de_record *rec = NULL;
  int64_t n_rec = 0;
  PS_CALL(ps_error_sync(comm, exchange_records(comm, out, &rec, &n_rec)));
  for (int r = 0; r < size; r++) free(out[r].v);
  free(out);
  int32_t *pairs = NULL;
  int64_t n_pairs = 0;
  PS_ALLOC(d->target_threshold, K);
  PS_ALLOC(d->n_targets, K);
  PS_CALL(ps_error_sync(comm, select_owned(comm, opt, d, gene_index, rec, n_rec, &pairs, &n_pairs, d->target_threshold)));
  free(rec);
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, d->target_threshold, K, MPI_DOUBLE, MPI_SUM, comm));
  PS_CALL(ps_error_sync(comm, gather_pairs(comm, opt, pairs, n_pairs, d, candidates, n_candidates)));
  free(pairs);
  ps_stats_add("de.select_seconds", MPI_Wtime() - t2);
  ps_stats_add("de.seconds", MPI_Wtime() - t0);
  ps_stats_add("de.cpu_seconds", ps_cpu_seconds() - cpu0);
  return PS_OK;
}
