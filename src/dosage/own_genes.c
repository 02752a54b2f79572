/* Own-gene values for the dosage analysis (SPEC.md section 5): the log-normalized,
 * not winsorized, expression of each perturbation's own (targeted) gene, taken
 * from the full matrix block that ps_dataset_read leaves in the dataset, before
 * ps_regression_prepare frees it.
 *
 * Layout choice: one local CSR, analysed cells x K, column k = perturbation k's
 * own gene. A perturbed cell stores only the perturbations it carries (the
 * dosage fit of X needs the X cells' own-gene values, nothing else of them), a
 * control cell stores every own gene (each fit needs the control median of its
 * gene). So memory is O(nnz of the controls over K_own genes + cells x MOI),
 * never cells x K. */
#include <stdlib.h>
#include <string.h>

#include "pertscore/dosage.h"

/* Value of gene g in row i of x (columns ascending), 0 if not stored. */
static double row_value(const ps_csr *x, int64_t i, int32_t g) {
  int64_t lo = x->indptr[i], hi = x->indptr[i + 1];
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (x->indices[mid] < g) lo = mid + 1;
    else hi = mid;
  }
  return lo < x->indptr[i + 1] && x->indices[lo] == g ? x->data[lo] : 0.0;
}

typedef struct {
  int32_t k;
  double v;
} own_entry;

static int compare_entry(const void *a, const void *b) {
  const own_entry *p = a, *q = b;
  return (p->k > q->k) - (p->k < q->k);
}

int ps_own_genes_extract(const ps_csr *x, const int64_t *keep, const ps_design *design, const ps_strmap *gene_index,
                         int unit_guide, int32_t **own_gene, ps_csr *own) {
  int32_t K = design->n_perturbations;
  int64_t n_genes = x->n_cols;
  memset(own, 0, sizeof *own);
  int32_t *og, *perturbation_of;
  int64_t *of_ptr; /* gene g -> the perturbations named like it: perturbation_of[of_ptr[g] .. of_ptr[g + 1]) */
  PS_ALLOC(og, K);
  PS_ALLOC(of_ptr, n_genes + 1);
  PS_ALLOC(perturbation_of, K); /* several only with --group-by (names are P per group) */
  for (int32_t k = 0; k < K; k++) {
    int64_t g = unit_guide ? -1 : ps_strmap_get(gene_index, design->names.items[k]);
    og[k] = g >= 0 && g < n_genes ? (int32_t)g : -1;
    if (og[k] >= 0) of_ptr[og[k] + 1]++;
  }
  for (int64_t g = 0; g < n_genes; g++) of_ptr[g + 1] += of_ptr[g];
  int64_t *fill;
  PS_ALLOC(fill, n_genes);
  for (int32_t k = 0; k < K; k++)
    if (og[k] >= 0) perturbation_of[of_ptr[og[k]] + fill[og[k]]++] = k;
  free(fill);
  own->n_rows = design->n_cells;
  own->n_cols = K;
  PS_ALLOC(own->indptr, own->n_rows + 1);
  /* two passes over the rows: count, then fill */
  for (int pass = 0; pass < 2; pass++) {
    int64_t w = 0;
    for (int64_t i = 0; i < x->n_rows; i++) {
      int64_t j = keep[i];
      if (j < 0) continue;
      int64_t first = w;
      if (design->ptr[j + 1] > design->ptr[j]) { /* perturbed: its own perturbations */
        for (int64_t p = design->ptr[j]; p < design->ptr[j + 1]; p++) {
          int32_t k = design->ids[p];
          double v = og[k] >= 0 ? row_value(x, i, og[k]) : 0.0;
          if (v == 0.0) continue;
          if (pass) {
            own->indices[w] = k;
            own->data[w] = v;
          }
          w++;
        }
      } else { /* control: every own gene it expresses */
        for (int64_t p = x->indptr[i]; p < x->indptr[i + 1]; p++) {
          if (x->data[p] == 0.0) continue;
          for (int64_t q = of_ptr[x->indices[p]]; q < of_ptr[x->indices[p] + 1]; q++) {
            if (pass) {
              own->indices[w] = perturbation_of[q];
              own->data[w] = x->data[p];
            }
            w++;
          }
        }
        if (pass && w - first > 1) { /* gene order -> perturbation order */
          own_entry *e = malloc((size_t)(w - first) * sizeof *e);
          if (!e) PS_FAIL(PS_ERR_SYSTEM, "out of memory sorting own-gene values");
          for (int64_t t = first; t < w; t++) e[t - first] = (own_entry){own->indices[t], own->data[t]};
          qsort(e, (size_t)(w - first), sizeof *e, compare_entry);
          for (int64_t t = first; t < w; t++) {
            own->indices[t] = e[t - first].k;
            own->data[t] = e[t - first].v;
          }
          free(e);
        }
      }
      if (pass) own->indptr[j + 1] = w;
    }
    if (!pass) {
      PS_ALLOC(own->indices, w);
      PS_ALLOC(own->data, w);
    }
  }
  free(perturbation_of);
  free(of_ptr);
  *own_gene = og;
  return PS_OK;
}

int ps_dosage_own_genes(MPI_Comm comm, ps_dataset *d) {
  ps_design named = d->design; /* --group-by: "P@g" has P's own gene */
  if (d->by_group) named.names = d->base;
  int err = ps_error_sync(comm, ps_own_genes_extract(&d->block, d->block_keep, &named, &d->gene_index, d->unit_guide,
                                                     &d->own_gene, &d->own));
  if (err) ps_dataset_free(d);
  return err;
}
