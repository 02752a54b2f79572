/* Small containers: CSR block, string lists, string hash map; huge-page arrays. */
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE */
#include "pertscore/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *ps_alloc_huge(size_t bytes) {
  const size_t huge = (size_t)2 << 20;
  if (bytes < huge) return malloc(bytes ? bytes : 1);
  void *p = NULL;
  if (posix_memalign(&p, huge, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  (void)madvise(p, bytes & ~(size_t)4095, MADV_HUGEPAGE); /* advice only: without huge pages it still works */
#endif
  return p;
}

void ps_csr_free(ps_csr *m) {
  if (!m) return;
  free(m->indptr);
  free(m->indices);
  free(m->data);
  memset(m, 0, sizeof *m);
}

int64_t ps_csr_nnz(const ps_csr *m) { return m->indptr ? m->indptr[m->n_rows] : 0; }

int ps_strlist_push(ps_strlist *l, const char *s) {
  if (l->n == l->cap) {
    int64_t cap = l->cap ? 2 * l->cap : 16;
    char **items = realloc(l->items, (size_t)cap * sizeof *items);
    if (!items) PS_FAIL(PS_ERR_SYSTEM, "out of memory growing a string list");
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n] = strdup(s);
  if (!l->items[l->n]) PS_FAIL(PS_ERR_SYSTEM, "out of memory copying a string");
  l->n++;
  return PS_OK;
}

void ps_strlist_free(ps_strlist *l) {
  if (!l) return;
  for (int64_t i = 0; i < l->n; i++) free(l->items[i]);
  free(l->items);
  memset(l, 0, sizeof *l);
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void ps_strlist_sort_unique(ps_strlist *l) {
  if (l->n < 2) return;
  qsort(l->items, (size_t)l->n, sizeof *l->items, compare_strings);
  int64_t w = 1;
  for (int64_t i = 1; i < l->n; i++) {
    if (strcmp(l->items[i], l->items[w - 1]) == 0)
      free(l->items[i]);
    else
      l->items[w++] = l->items[i];
  }
  l->n = w;
}

int64_t ps_strlist_find_sorted(const ps_strlist *l, const char *s) {
  int64_t lo = 0, hi = l->n - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(l->items[mid], s);
    if (c == 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

int ps_strlist_allgather_union(MPI_Comm comm, const ps_strlist *local, ps_strlist *out) {
  int size;
  MPI_Comm_size(comm, &size);
  int64_t bytes = 0;
  for (int64_t i = 0; i < local->n; i++) bytes += (int64_t)strlen(local->items[i]) + 1;
  if (bytes > INT32_MAX) PS_FAIL(PS_ERR_SYSTEM, "label list too large to exchange (%lld bytes)", (long long)bytes);
  char *send;
  PS_ALLOC(send, bytes);
  int64_t pos = 0;
  for (int64_t i = 0; i < local->n; i++) {
    size_t len = strlen(local->items[i]) + 1;
    memcpy(send + pos, local->items[i], len);
    pos += (int64_t)len;
  }
  int mine = (int)bytes, *counts, *displs;
  PS_ALLOC(counts, size);
  PS_ALLOC(displs, size);
  PS_CHECK_MPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm));
  int64_t total = 0;
  for (int r = 0; r < size; r++) {
    displs[r] = (int)total;
    total += counts[r];
  }
  if (total > INT32_MAX) PS_FAIL(PS_ERR_SYSTEM, "label list too large to exchange (%lld bytes)", (long long)total);
  char *recv;
  PS_ALLOC(recv, total);
  PS_CHECK_MPI(MPI_Allgatherv(send, mine, MPI_CHAR, recv, counts, displs, MPI_CHAR, comm));
  memset(out, 0, sizeof *out);
  for (int64_t p = 0; p < total; p += (int64_t)strlen(recv + p) + 1) PS_CALL(ps_strlist_push(out, recv + p));
  ps_strlist_sort_unique(out);
  free(send);
  free(counts);
  free(displs);
  free(recv);
  return PS_OK;
}

static uint64_t hash_string(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

int ps_strmap_init(ps_strmap *m, int64_t expected) {
  int64_t cap = 16;
  while (cap < 2 * expected + 16) cap *= 2;
  memset(m, 0, sizeof *m);
  PS_ALLOC(m->keys, cap);
  PS_ALLOC(m->values, cap);
  m->cap = cap;
  return PS_OK;
}

static int strmap_grow(ps_strmap *m) {
  ps_strmap bigger;
  PS_CALL(ps_strmap_init(&bigger, m->cap));
  for (int64_t i = 0; i < m->cap; i++) {
    if (!m->keys[i]) continue;
    uint64_t h = hash_string(m->keys[i]) & (uint64_t)(bigger.cap - 1);
    while (bigger.keys[h]) h = (h + 1) & (uint64_t)(bigger.cap - 1);
    bigger.keys[h] = m->keys[i];
    bigger.values[h] = m->values[i];
    bigger.n++;
  }
  free(m->keys);
  free(m->values);
  *m = bigger;
  return PS_OK;
}

int ps_strmap_put(ps_strmap *m, const char *key, int64_t value) {
  if (2 * (m->n + 1) > m->cap) PS_CALL(strmap_grow(m));
  uint64_t h = hash_string(key) & (uint64_t)(m->cap - 1);
  while (m->keys[h] && strcmp(m->keys[h], key) != 0) h = (h + 1) & (uint64_t)(m->cap - 1);
  if (!m->keys[h]) {
    m->keys[h] = strdup(key);
    if (!m->keys[h]) PS_FAIL(PS_ERR_SYSTEM, "out of memory in a hash map");
    m->n++;
  }
  m->values[h] = value;
  return PS_OK;
}

int64_t ps_strmap_get(const ps_strmap *m, const char *key) {
  if (!m->cap) return -1;
  uint64_t h = hash_string(key) & (uint64_t)(m->cap - 1);
  while (m->keys[h]) {
    if (strcmp(m->keys[h], key) == 0) return m->values[h];
    h = (h + 1) & (uint64_t)(m->cap - 1);
  }
  return -1;
}

void ps_strmap_free(ps_strmap *m) {
  if (!m) return;
  for (int64_t i = 0; i < m->cap; i++) free(m->keys[i]);
  free(m->keys);
  free(m->values);
  memset(m, 0, sizeof *m);
}

void ps_block_range(int64_t n, int r, int p, int64_t *begin, int64_t *end) {
  int64_t base = n / p, extra = n % p;
  *begin = r * base + (r < extra ? r : extra);
  *end = *begin + base + (r < extra ? 1 : 0);
}
