/* Basal groups (SPEC.md sections 2 and 6): --control-by COLUMN gives every group
 * of cells its own intercept; --group-by COLUMN runs steps 1-3 within each
 * group by relabelling each cell's perturbation P as the pair (P, group), named
 * "P@group". With per-group intercepts the ridge system is then block-diagonal
 * by group (no cell carries perturbations of two groups), which is exactly
 * "beta within each group"; the target selection tests (P, g) against the
 * control cells of g only (src/data/targets_auto.c), and the winsorizing caps
 * are per group (src/data/dataset.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "pertscore/data.h"

/* Separates the perturbation and the group in a --group-by label. */
#define PS_GROUP_SEPARATOR "@"

static int compare_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* Prefix the recorded error with the option that asked for the column. */
static int with_option(int err, const char *option) {
  if (!err) return err;
  char message[2048];
  snprintf(message, sizeof message, "%s", ps_error_message());
  return ps_error_set(err, __FILE__, __LINE__, "%s: %s", option, message);
}

/* Each analysed local cell's label of the column; empty labels are an error. */
static int read_labels(MPI_Comm comm, const ps_dataset_options *opt, const char *option, const char *column,
                       const ps_matrix *m, const int64_t *keep, const ps_dataset *d, ps_strlist *labels) {
  ps_strlist block = {0};
  int err = ps_h5ad_read_obs_column(comm, opt->input, column, m->cell_begin, m->cell_begin + m->x.n_rows, &block);
  PS_CALL(ps_error_sync(comm, with_option(err, option)));
  memset(labels, 0, sizeof *labels);
  err = PS_OK;
  for (int64_t i = 0; i < m->x.n_rows && !err; i++) {
    if (keep[i] < 0) continue;
    if (block.items[i][0] == '\0')
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: cell '%s' has no value in obs column '%s' (%s)",
                         opt->input, m->cells.items[i], column, option);
    else err = ps_strlist_push(labels, block.items[i]);
  }
  if (!err && labels->n != d->design.n_cells)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "groups: %lld labels for %lld analysed cells",
                       (long long)labels->n, (long long)d->design.n_cells);
  ps_strlist_free(&block);
  err = ps_error_sync(comm, err);
  if (err) ps_strlist_free(labels);
  return err;
}

/* Control cells per group over all ranks; a group without any is an error naming it. */
static int check_controls(MPI_Comm comm, const ps_dataset_options *opt, const char *option, const char *column,
                          const ps_dataset *d) {
  const ps_design *D = &d->design;
  int64_t G = d->groups.n;
  int64_t *controls = calloc((size_t)G + 1, sizeof *controls), *cells = calloc((size_t)G + 1, sizeof *cells);
  int err = controls && cells ? PS_OK : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory counting "
                                                     "the control cells of %lld groups", (long long)G);
  err = ps_error_sync(comm, err); /* every rank reaches the sums below, or none */
  for (int64_t j = 0; j < D->n_cells && !err; j++) {
    cells[D->group[j]]++;
    controls[D->group[j]] += D->ptr[j + 1] == D->ptr[j];
  }
  int mpi = MPI_SUCCESS;
  if (!err) mpi = MPI_Allreduce(MPI_IN_PLACE, controls, (int)G, MPI_INT64_T, MPI_SUM, comm);
  if (!err && mpi == MPI_SUCCESS) mpi = MPI_Allreduce(MPI_IN_PLACE, cells, (int)G, MPI_INT64_T, MPI_SUM, comm);
  if (!err && mpi != MPI_SUCCESS) err = ps_error_mpi(mpi, "MPI_Allreduce (control cells per group)", __FILE__, __LINE__);
  for (int64_t g = 0; g < G && !err; g++)
    if (controls[g] == 0)
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__,
                         "%s: group '%s' of obs column '%s' (%s) has no control cells among its %lld analysed cells; "
                         "every group needs control cells for its basal expression",
                         opt->input, d->groups.items[g], column, option, (long long)cells[g]);
  free(controls);
  free(cells);
  return err;
}

/* The sorted union over all ranks of the "k@g" pairs some cell carries. Collective. */
static int union_pairs(MPI_Comm comm, const ps_dataset *d, ps_strlist *pairs) {
  const ps_design *D = &d->design;
  char name[4096];
  ps_strlist local = {0};
  int err = PS_OK;
  for (int64_t j = 0; j < D->n_cells && !err; j++)
    for (int64_t p = D->ptr[j]; p < D->ptr[j + 1] && !err; p++) {
      snprintf(name, sizeof name, "%s" PS_GROUP_SEPARATOR "%s", D->names.items[D->ids[p]],
               d->groups.items[D->group[j]]);
      err = ps_strlist_push(&local, name);
    }
  err = ps_error_sync(comm, err); /* a rank's out-of-memory must not leave the others in the union */
  if (err) {
    ps_strlist_free(&local);
    return err;
  }
  ps_strlist_sort_unique(&local);
  err = ps_strlist_allgather_union(comm, &local, pairs);
  ps_strlist_free(&local);
  return err;
}

/* Relabel the design with the pairs, which become its names (*pairs is emptied).
 * Rank-local; on error the caller frees pairs. */
static int apply_pairs(ps_dataset *d, ps_strlist *pairs_in) {
  ps_design *D = &d->design;
  ps_strlist pairs = *pairs_in;
  char name[4096];
  if (pairs.n > INT32_MAX) PS_FAIL(PS_ERR_INPUT, "--group-by: too many (perturbation, group) pairs");
  /* base label and group of each pair: the group whose "@label" ends it with an old
   * perturbation label before (labels may hold '@' themselves) */
  int32_t K = (int32_t)pairs.n;
  PS_ALLOC(d->group_of, K);
  for (int32_t k = 0; k < K; k++) {
    int found = 0;
    size_t lp = strlen(pairs.items[k]);
    for (int64_t g = 0; g < d->groups.n && !found; g++) {
      size_t lg = strlen(d->groups.items[g]);
      if (lp < lg + 2 || pairs.items[k][lp - lg - 1] != PS_GROUP_SEPARATOR[0] ||
          strcmp(pairs.items[k] + lp - lg, d->groups.items[g]) != 0)
        continue;
      snprintf(name, sizeof name, "%.*s", (int)(lp - lg - 1), pairs.items[k]);
      if (ps_strlist_find_sorted(&D->names, name) < 0) continue;
      d->group_of[k] = (int32_t)g;
      found = 1;
    }
    if (!found) PS_FAIL(PS_ERR_SYSTEM, "--group-by: cannot split '%s' into perturbation and group", pairs.items[k]);
    PS_CALL(ps_strlist_push(&d->base, name));
  }
  /* new ids: per cell, looked up and re-sorted (the new labels need not sort like the old) */
  int32_t *top = d->top_perturbation;
  for (int64_t j = 0; j < D->n_cells; j++) {
    for (int64_t p = D->ptr[j]; p < D->ptr[j + 1]; p++) {
      int32_t old = D->ids[p];
      snprintf(name, sizeof name, "%s" PS_GROUP_SEPARATOR "%s", D->names.items[old], d->groups.items[D->group[j]]);
      D->ids[p] = (int32_t)ps_strlist_find_sorted(&pairs, name);
      if (top && top[j] == old) top[j] = D->ids[p];
    }
    qsort(D->ids + D->ptr[j], (size_t)(D->ptr[j + 1] - D->ptr[j]), sizeof *D->ids, compare_i32);
  }
  ps_strlist_free(&D->names);
  D->names = pairs;
  memset(pairs_in, 0, sizeof *pairs_in);
  D->n_perturbations = K;
  d->by_group = 1;
  return PS_OK;
}

/* --group-by: perturbation k of a cell of group g becomes "k@g"; the new
 * labels are the sorted union over all ranks of the pairs some cell carries. */
static int relabel_by_group(MPI_Comm comm, ps_dataset *d) {
  ps_strlist pairs = {0};
  int err = union_pairs(comm, d, &pairs);
  if (!err) err = apply_pairs(d, &pairs);
  ps_strlist_free(&pairs);
  return err;
}

int ps_groups_assign(MPI_Comm comm, const ps_dataset_options *opt, const ps_matrix *m, const int64_t *keep,
                     ps_dataset *d) {
  if (!opt->group_by && !opt->control_by) return PS_OK;
  if (opt->group_by && opt->control_by && strcmp(opt->group_by, opt->control_by) != 0)
    PS_FAIL(PS_ERR_INPUT, "--group-by %s and --control-by %s name different columns; within each --group-by group "
            "the intercept is already per group, so give one of them (or the same column to both)",
            opt->group_by, opt->control_by);
  const char *option = opt->group_by ? "--group-by" : "--control-by";
  const char *column = opt->group_by ? opt->group_by : opt->control_by;
  d->group_column = strdup(column);
  PS_CALL(ps_error_sync(comm, d->group_column ? PS_OK /* read_labels is collective */
                                              : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory")));
  ps_strlist labels, local = {0};
  PS_CALL(read_labels(comm, opt, option, column, m, keep, d, &labels));
  int err = PS_OK;
  for (int64_t j = 0; j < labels.n && !err; j++) err = ps_strlist_push(&local, labels.items[j]);
  err = ps_error_sync(comm, err); /* before the collective union, as in relabel_by_group */
  if (err) {
    ps_strlist_free(&local);
    ps_strlist_free(&labels);
    return err;
  }
  ps_strlist_sort_unique(&local);
  err = ps_strlist_allgather_union(comm, &local, &d->groups);
  ps_strlist_free(&local);
  if (err) {
    ps_strlist_free(&labels);
    return err;
  }
  if (d->groups.n > INT32_MAX / 2) {
    ps_strlist_free(&labels);
    PS_FAIL(PS_ERR_INPUT, "%s: too many groups in obs column '%s'", option, column);
  }
  ps_design *D = &d->design;
  D->n_groups = (int32_t)d->groups.n;
  D->group = calloc((size_t)D->n_cells + 1, sizeof *D->group);
  err = D->group ? PS_OK : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory assigning cells to groups");
  err = ps_error_sync(comm, err); /* check_controls is collective */
  if (err) {
    ps_strlist_free(&labels);
    return err;
  }
  for (int64_t j = 0; j < D->n_cells; j++) D->group[j] = (int32_t)ps_strlist_find_sorted(&d->groups, labels.items[j]);
  ps_strlist_free(&labels);
  PS_CALL(ps_error_sync(comm, check_controls(comm, opt, option, column, d)));
  if (opt->group_by) PS_CALL(ps_error_sync(comm, relabel_by_group(comm, d)));
  return PS_OK;
}

int ps_groups_list(MPI_Comm comm, const char *input, const char *column, const char *option, ps_strlist *groups) {
  memset(groups, 0, sizeof *groups);
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int64_t shape[3];
  PS_CALL(ps_error_sync(comm, ps_input_shape(comm, input, NULL, shape)));
  int64_t begin = shape[0] * rank / size, end = shape[0] * (rank + 1) / size;
  ps_strlist block = {0}, local = {0};
  int err = ps_h5ad_read_obs_column(comm, input, column, begin, end, &block);
  err = ps_error_sync(comm, with_option(err, option));
  for (int64_t i = 0; i < block.n && !err; i++)
    if (block.items[i][0] != '\0') err = ps_strlist_push(&local, block.items[i]);
  ps_strlist_free(&block);
  err = ps_error_sync(comm, err); /* before the collective union */
  if (!err) {
    ps_strlist_sort_unique(&local);
    err = ps_strlist_allgather_union(comm, &local, groups);
  }
  ps_strlist_free(&local);
  if (!err && groups->n == 0)
    err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: obs column '%s' of %s has no non-empty value", option,
                       column, input);
  if (err) ps_strlist_free(groups);
  return err;
}

int ps_groups_subset_calls(MPI_Comm comm, const ps_dataset_options *opt, const ps_matrix *m, ps_guide_calls *calls) {
  if (!opt->subset_column) return PS_OK;
  ps_strlist block = {0};
  int err = ps_h5ad_read_obs_column(comm, opt->input, opt->subset_column, m->cell_begin, m->cell_begin + m->x.n_rows,
                                    &block);
  PS_CALL(ps_error_sync(comm, with_option(err, "--group-by")));
  int64_t w = 0, cells = 0;
  for (int64_t i = 0; i < m->x.n_rows; i++) cells += strcmp(block.items[i], opt->subset_value) == 0;
  for (int64_t i = 0; i < calls->n; i++) {
    if (strcmp(block.items[calls->cell[i]], opt->subset_value) != 0) { /* another group's cell: no guide */
      free(calls->unit[i]);
      free(calls->guide[i]);
      continue;
    }
    calls->cell[w] = calls->cell[i];
    calls->unit[w] = calls->unit[i];
    calls->guide[w] = calls->guide[i];
    calls->umi[w++] = calls->umi[i];
  }
  calls->n = w;
  ps_strlist_free(&block);
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &cells, 1, MPI_INT64_T, MPI_SUM, comm));
  if (cells == 0)
    PS_FAIL(PS_ERR_INPUT, "%s: no cell has '%s' in obs column '%s' (--group-by)", opt->input, opt->subset_value,
            opt->subset_column);
  return PS_OK;
}
