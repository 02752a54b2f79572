/* `pertscore inspect`: what an .h5ad (input or results) or a 10x Genomics .h5 holds.
 * Serial, rank 0. A results file gets a summary (parameters, the head of the var
 * table, the calls when var/effect_fdr exists) before the list of its contents. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5.h"
#include "pertscore/io.h"

static herr_t print_object(hid_t loc, const char *name, const H5O_info_t *info, void *data) {
  (void)data;
  if (strcmp(name, ".") == 0) return 0;
  int depth = 0;
  for (const char *p = name; *p; p++) depth += *p == '/';
  if (depth > 2) return 0; /* keep it to a summary */
  char enc[64] = "";
  int found = 0;
  hid_t obj = H5Oopen(loc, name, H5P_DEFAULT);
  if (obj < 0) return 0;
  ps_h5_attr_string(obj, "encoding-type", enc, sizeof enc, &found);
  if (info->type == H5O_TYPE_DATASET) {
    hid_t space = H5Dget_space(obj), type = H5Dget_type(obj);
    hsize_t dims[4] = {0};
    int nd = H5Sget_simple_extent_ndims(space);
    H5Sget_simple_extent_dims(space, dims, NULL);
    const char *kind = H5Tget_class(type) == H5T_STRING ? "string" : H5Tget_class(type) == H5T_FLOAT ? "float" : "int";
    if (H5Tget_class(type) == H5T_STRING) printf("  %-44s %s", name, kind);
    else printf("  %-44s %s%zu", name, kind, 8 * H5Tget_size(type));
    for (int i = 0; i < nd; i++) printf("%s%llu", i ? " x " : " [", (unsigned long long)dims[i]);
    printf("%s%s%s\n", nd ? "]" : " scalar", found ? "  " : "", enc);
    H5Tclose(type);
    H5Sclose(space);
  } else if (info->type == H5O_TYPE_GROUP) {
    printf("  %-44s group%s%s\n", name, found ? "  " : "", enc);
  }
  H5Oclose(obj);
  return 0;
}

/* ---------------------------------------------------------------- 10x Genomics .h5 */

/* The count of each distinct string of a list (first-seen order), printed "name n, ...". */
static void print_counts(const ps_strlist *v) {
  int64_t *count = calloc((size_t)(v->n ? v->n : 1), sizeof *count);
  int64_t *first = calloc((size_t)(v->n ? v->n : 1), sizeof *first);
  if (!count || !first) {
    free(count);
    free(first);
    return;
  }
  int64_t m = 0;
  for (int64_t i = 0; i < v->n; i++) {
    int64_t k = 0;
    while (k < m && strcmp(v->items[first[k]], v->items[i]) != 0) k++;
    if (k == m) first[m++] = i;
    count[k]++;
  }
  for (int64_t k = 0; k < m; k++) printf("%s%s %lld", k ? ", " : "", v->items[first[k]], (long long)count[k]);
  printf("\n");
  free(count);
  free(first);
}

/* Examples of the features of one type: up to 4 names. */
static void print_examples(const ps_strlist *names, const ps_strlist *types, const char *type, const char *what) {
  int shown = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < names->n; i++)
    if (!types || strcmp(types->items[i], type) == 0) {
      if (shown < 4) {
        printf("%s%s", shown ? ", " : "  ", names->items[i]);
        shown++;
      }
      n++;
    }
  if (shown) printf("%s  (%s)\n", n > shown ? ", ..." : "", what);
}

static int is_tenx_v2(hid_t file, char *genome, size_t size) {
  hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  hsize_t n = 0;
  H5Gget_num_objs(root, &n);
  int found = 0;
  for (hsize_t i = 0; i < n && !found; i++) {
    char name[256];
    if (H5Gget_objname_by_idx(root, i, name, sizeof name) <= 0) continue;
    char path[300];
    snprintf(path, sizeof path, "%s/gene_names", name);
    if (ps_h5_exists(file, name) && ps_h5_exists(file, path)) {
      snprintf(genome, size, "%s", name);
      found = 1;
    }
  }
  H5Gclose(root);
  return found;
}

static int inspect_tenx(ps_h5 *h, const char *path) {
  int64_t shape[2] = {0, 0}, n_shape = 0, nnz = 0;
  PS_CALL(ps_h5_length(h, "matrix/shape", &n_shape));
  if (n_shape != 2) PS_FAIL(PS_ERR_INPUT, "%s: /matrix/shape has %lld entries, expected 2", path, (long long)n_shape);
  PS_CALL(ps_h5_read_range(h, "matrix/shape", H5T_NATIVE_INT64, 0, 2, shape));
  if (ps_h5_exists(h->file, "matrix/data")) PS_CALL(ps_h5_length(h, "matrix/data", &nnz));
  printf("%s: 10x Genomics feature-barcode matrix (.h5 of Cell Ranger >= 3)\n", path);
  printf("matrix: %lld features x %lld barcodes, %lld stored values\n", (long long)shape[0], (long long)shape[1],
         (long long)nnz);
  ps_strlist names = {0}, types = {0};
  int has_names = ps_h5_exists(h->file, "matrix/features/name");
  int has_types = ps_h5_exists(h->file, "matrix/features/feature_type");
  if (has_names) PS_CALL(ps_h5_read_strings(h, "matrix/features/name", 0, shape[0], &names));
  if (has_types) {
    PS_CALL(ps_h5_read_strings(h, "matrix/features/feature_type", 0, shape[0], &types));
    printf("feature types: ");
    print_counts(&types);
  }
  if (has_names) {
    print_examples(&names, has_types ? &types : NULL, "Gene Expression", "Gene Expression");
    if (has_types) print_examples(&names, &types, "CRISPR Guide Capture", "CRISPR Guide Capture");
  }
  int n_guides = 0;
  for (int64_t i = 0; has_types && i < types.n; i++) n_guides += strcmp(types.items[i], "CRISPR Guide Capture") == 0;
  if (ps_h5_exists(h->file, "matrix/barcodes")) {
    ps_strlist b = {0};
    PS_CALL(ps_h5_read_strings(h, "matrix/barcodes", 0, shape[1] < 3 ? shape[1] : 3, &b));
    printf("barcodes: ");
    for (int64_t i = 0; i < b.n; i++) printf("%s%s", i ? ", " : "", b.items[i]);
    printf("%s\n", shape[1] > b.n ? ", ..." : "");
    ps_strlist_free(&b);
  }
  if (n_guides)
    printf("pertscore run --input %s reads the genes and the guide calls (CRISPR Guide Capture, --min-guide-umi, "
           "default 3); no --guides needed\n", path);
  else
    printf("no CRISPR Guide Capture features: give the guides with --guides (docs/user-guide.md)\n");
  ps_strlist_free(&names);
  ps_strlist_free(&types);
  return PS_OK;
}

/* ---------------------------------------------------------------- results summary */

static int read_doubles(ps_h5 *h, const char *name, int64_t n, double **out) {
  *out = NULL;
  if (!ps_h5_exists(h->file, name)) return PS_OK;
  int64_t len = 0;
  PS_CALL(ps_h5_length(h, name, &len));
  if (len != n) return PS_OK;  /* not a column of this table: left out */
  PS_ALLOC(*out, n ? n : 1);
  PS_CALL(ps_h5_read_range(h, name, H5T_NATIVE_DOUBLE, 0, n, *out));
  return PS_OK;
}

/* One parameter dataset: its scalar value as text (strings as they are, numbers %.6g). */
static void print_parameter(hid_t group, const char *name) {
  hid_t d = H5Dopen2(group, name, H5P_DEFAULT);
  if (d < 0) return;
  hid_t type = H5Dget_type(d), space = H5Dget_space(d);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  if (H5Tget_class(type) == H5T_STRING && n == 1) {
    char *value = NULL;
    if (H5Tis_variable_str(type) > 0) {
      hid_t mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(type));
      if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) >= 0 && value) {
        printf("  %-22s %s\n", name, value);
        H5free_memory(value);
      }
      H5Tclose(mt);
    } else {
      size_t size = H5Tget_size(type);
      value = calloc(size + 1, 1);
      hid_t mt = H5Tcopy(type); /* same size and character set */
      if (value && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, value) >= 0) printf("  %-22s %s\n", name, value);
      H5Tclose(mt);
      free(value);
    }
  } else if ((H5Tget_class(type) == H5T_FLOAT || H5Tget_class(type) == H5T_INTEGER) && n == 1) {
    double v = 0;
    if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0) printf("  %-22s %.6g\n", name, v);
  }
  H5Sclose(space);
  H5Tclose(type);
  H5Dclose(d);
}

static herr_t parameter_cb(hid_t group, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  (void)data;
  print_parameter(group, name);
  return 0;
}

typedef struct {
  int64_t k;
  double fdr;
} call;

static int by_fdr(const void *a, const void *b) {
  const call *x = a, *y = b;
  return x->fdr < y->fdr ? -1 : x->fdr > y->fdr ? 1 : (x->k > y->k) - (x->k < y->k);
}

#define PS_INSPECT_HEAD 10
#define PS_INSPECT_FDR 0.05

static int summarize_results(ps_h5 *h, int64_t n_cells) {
  if (ps_h5_exists(h->file, "uns/pertscore/parameters")) {
    printf("parameters (uns/pertscore/parameters):\n");
    hid_t g = H5Gopen2(h->file, "uns/pertscore/parameters", H5P_DEFAULT);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, parameter_cb, NULL);
    H5Gclose(g);
  }
  if (!ps_h5_exists(h->file, "var/_index")) return PS_OK;
  int64_t K = 0;
  PS_CALL(ps_h5_length(h, "var/_index", &K));
  ps_strlist labels = {0};
  PS_CALL(ps_h5_read_strings(h, "var/_index", 0, K, &labels));
  if (ps_h5_exists(h->file, "obs/n_perturbations")) {
    double *np = NULL;
    PS_CALL(read_doubles(h, "obs/n_perturbations", n_cells, &np));
    int64_t n_control = 0;
    for (int64_t j = 0; np && j < n_cells; j++) n_control += np[j] == 0;
    if (np) printf("cells: %lld analysed, %lld control, %lld perturbed\n", (long long)n_cells, (long long)n_control,
                   (long long)(n_cells - n_control));
    free(np);
  }
  const char *names[] = {"n_cells", "n_targets", "mean_ps", "cumulative_score",
                         "effect_pvalue", "effect_fdr"};
  enum { NC = sizeof names / sizeof *names };
  double *col[NC] = {0};
  for (int c = 0; c < NC; c++) {
    char path[64];
    snprintf(path, sizeof path, "var/%s", names[c]);
    PS_CALL(read_doubles(h, path, K, &col[c]));
  }
  int64_t shown = K < PS_INSPECT_HEAD ? K : PS_INSPECT_HEAD;
  int width = 12;
  for (int64_t k = 0; k < shown; k++) {
    int len = (int)strlen(labels.items[k]);
    if (len > width) width = len < 40 ? len : 40;
  }
  printf("var (perturbations; the first %lld of %lld):\n  %-*s", (long long)shown, (long long)K, width, "");
  for (int c = 0; c < NC; c++)
    if (col[c]) printf(" %16s", names[c]);
  printf("\n");
  for (int64_t k = 0; k < shown; k++) {
    printf("  %-*.*s", width, 40, labels.items[k]);
    for (int c = 0; c < NC; c++)
      if (col[c]) printf(" %16.6g", col[c][k]);
    printf("\n");
  }
  double *fdr = col[NC - 1];
  if (fdr) {
    call *calls;
    PS_ALLOC(calls, K ? K : 1);
    int64_t n = 0;
    for (int64_t k = 0; k < K; k++)
      if (isfinite(fdr[k]) && fdr[k] <= PS_INSPECT_FDR) calls[n++] = (call){k, fdr[k]};
    qsort(calls, (size_t)n, sizeof *calls, by_fdr);
    printf("calls (var/effect_fdr <= %g): %lld of %lld perturbations", PS_INSPECT_FDR, (long long)n, (long long)K);
    for (int64_t i = 0; i < n && i < PS_INSPECT_HEAD; i++)
      printf("%s%s (%.3g)", i ? ", " : ": ", labels.items[calls[i].k], calls[i].fdr);
    printf("%s\n", n > PS_INSPECT_HEAD ? ", ..." : "");
    free(calls);
  } else {
    printf("calls: no var/effect_fdr in this file (a pertscore without per-perturbation effect tests)\n");
  }
  for (int c = 0; c < NC; c++) free(col[c]);
  ps_strlist_free(&labels);
  return PS_OK;
}

int ps_h5ad_inspect(const char *path) {
  ps_h5 h;
  PS_CALL(ps_h5_open_read(MPI_COMM_SELF, path, &h));
  if (ps_h5_exists(h.file, "matrix") && ps_h5_exists(h.file, "matrix/shape") && !ps_h5_exists(h.file, "X")) {
    int err = inspect_tenx(&h, path);
    if (err == PS_OK) printf("contents:\n"), H5Ovisit(h.file, H5_INDEX_NAME, H5_ITER_INC, print_object, NULL);
    ps_h5_close(&h);
    return err;
  }
  char genome[256];
  if (!ps_h5_exists(h.file, "X") && is_tenx_v2(h.file, genome, sizeof genome)) {
    printf("%s: 10x Genomics .h5 of Cell Ranger 2 (genome group '%s'): pertscore reads Cell Ranger >= 3 .h5 files; "
           "convert the MEX folder with `pertscore convert`\n", path, genome);
    ps_h5_close(&h);
    return PS_OK;
  }
  char enc[64];
  int found = 0;
  hid_t root = H5Gopen2(h.file, "/", H5P_DEFAULT);
  PS_CALL(ps_h5_attr_string(root, "encoding-type", enc, sizeof enc, &found));
  H5Gclose(root);
  int is_results = ps_h5_exists(h.file, "uns/pertscore/version");
  printf("%s: %s%s\n", path, found ? enc : "HDF5 (no AnnData encoding)", is_results ? " (pertscore results)" : "");
  int64_t shape[2] = {0, 0};
  if (ps_h5_exists(h.file, "X")) {
    hid_t x = H5Oopen(h.file, "X", H5P_DEFAULT);
      if (H5Aexists(x, "shape") > 0) {
      hid_t a = H5Aopen(x, "shape", H5P_DEFAULT);
      H5Aread(a, H5T_NATIVE_INT64, shape);
      H5Aclose(a);
      int64_t nnz = 0;
      if (ps_h5_exists(h.file, "X/data")) ps_h5_length(&h, "X/data", &nnz);
      printf("X: %lld x %lld %s, %lld stored values\n", (long long)shape[0], (long long)shape[1],
             is_results ? "(cells x perturbations, PS)" : "(cells x genes)", (long long)nnz);
    }
    H5Oclose(x);
  }
  if (is_results) {
    ps_strlist v;
    if (ps_h5_read_strings(&h, "uns/pertscore/version", 0, 1, &v) == PS_OK) {
      printf("written by pertscore %s\n", v.n ? v.items[0] : "?");
      ps_strlist_free(&v);
    }
    int err = summarize_results(&h, shape[0]);
    if (err) {
      ps_h5_close(&h);
      return err;
    }
  }
  printf("contents:\n");
  H5Ovisit(h.file, H5_INDEX_NAME, H5_ITER_INC, print_object, NULL);
  PS_CALL(ps_h5_close(&h));
  return PS_OK;
}
