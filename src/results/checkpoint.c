/* Stage checkpoints in OUTPUT.partial for --resume (pertscore/results.h,
 * docs/reliability.md "Resume").
 *
 * Layout under uns/pertscore/checkpoint (all one-dimensional, global order, so a
 * resume on another number of ranks reads the same bytes):
 *   version, input_digest, parameters_digest      1 string each
 *   perturbations (K), regression_genes (N)       strings the stages were run on
 *   n_analysed                                    int64[1]
 *   ridge/shape int64[2] = (rows, N), ridge/lambda, ridge/beta (rows x N row-major),
 *   ridge/pvalue (same, only with permutations), ridge/complete
 *   score/indptr (n_analysed + 1), score/ids, score/ps (the scored design, CSR by
 *   analysed cell), score/max_raw (K), score/rescaled (K), score/summary
 *   (n_not_rescaled, max_kkt, n_qp, n_tao), score/complete
 * "complete" is written last: a stage without it is not used. The datasets go
 * through the io module's typed datasets (ps_h5file, pertscore/io.h): no HDF5 here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pertscore/io.h"
#include "pertscore/results.h"

#define CK "uns/pertscore/checkpoint"

/* The open file with what the stages need to know about the ranks. */
typedef struct {
  ps_h5file *file;
  MPI_Comm comm;
  int rank, size;
  const char *path;
} ck_file;

static void ck_begin(MPI_Comm comm, const char *path, ck_file *h) {
  h->file = NULL;
  h->comm = comm;
  h->path = path;
  MPI_Comm_rank(comm, &h->rank);
  MPI_Comm_size(comm, &h->size);
}

/* ---------------------------------------------------------------- writing */

static int write_string(const ck_file *h, const char *name, const char *value) {
  char *values[1] = {(char *)value};
  return ps_h5file_write_strings_replicated(h->file, name, 1, values);
}

static int mark_complete(const ck_file *h, const char *stage) {
  char name[128];
  int64_t one = 1;
  snprintf(name, sizeof name, CK "/%s/complete", stage);
  return ps_h5file_write_replicated(h->file, name, PS_H5_I64, 1, &one);
}

static int write_ridge_stage(ck_file *h, const char *input_digest, const char *params_digest, const ps_dataset *d,
                             const ps_ridge *ridge, const double *pvalues) {
  PS_CALL(ps_h5file_make_group(h->file, CK "/ridge"));
  PS_CALL(write_string(h, CK "/version", PS_VERSION));
  PS_CALL(write_string(h, CK "/input_digest", input_digest));
  PS_CALL(write_string(h, CK "/parameters_digest", params_digest));
  const ps_design *D = &d->design;
  PS_CALL(ps_h5file_write_strings_replicated(h->file, CK "/perturbations", D->names.n, D->names.items));
  char **genes;
  PS_ALLOC(genes, d->n_regression);
  for (int32_t n = 0; n < d->n_regression; n++) genes[n] = d->genes.items[d->regression_gene[n]];
  int err = ps_h5file_write_strings_replicated(h->file, CK "/regression_genes", d->n_regression, genes);
  free(genes);
  PS_CALL(err);
  PS_CALL(ps_h5file_write_replicated(h->file, CK "/n_analysed", PS_H5_I64, 1, &d->n_analysed));
  int64_t shape[2] = {ridge->n_rows, ridge->n_genes}, size = shape[0] * shape[1];
  PS_CALL(ps_h5file_write_replicated(h->file, CK "/ridge/shape", PS_H5_I64, 2, shape));
  PS_CALL(ps_h5file_write_replicated(h->file, CK "/ridge/lambda", PS_H5_F64, 1, &ridge->lambda));
  PS_CALL(ps_h5file_write_replicated(h->file, CK "/ridge/beta", PS_H5_F64, size, ridge->beta));
  if (pvalues) PS_CALL(ps_h5file_write_replicated(h->file, CK "/ridge/pvalue", PS_H5_F64, size, pvalues));
  return mark_complete(h, "ridge");
}

int ps_checkpoint_write_ridge(MPI_Comm comm, const char *path, const char *input_digest, const char *params_digest,
                              const ps_dataset *d, const ps_ridge *ridge, const double *pvalues) {
  ck_file h;
  ck_begin(comm, path, &h);
  PS_CALL(ps_h5file_create(comm, path, &h.file));
  int err = write_ridge_stage(&h, input_digest, params_digest, d, ridge, pvalues);
  int close_err = ps_h5file_close(&h.file); /* the close flushes: the stage is on disk before the next starts */
  PS_CALL(err);
  return close_err;
}

static int write_score_stage(ck_file *h, const ps_dataset *d, const ps_design *scored, const ps_scores *s) {
  PS_CALL(ps_h5file_make_group(h->file, CK "/score"));
  int64_t nnz = scored->ptr[scored->n_cells], before = 0, total = 0;
  PS_CHECK_MPI(MPI_Exscan(&nnz, &before, 1, MPI_INT64_T, MPI_SUM, h->comm));
  if (h->rank == 0) before = 0;
  PS_CHECK_MPI(MPI_Allreduce(&nnz, &total, 1, MPI_INT64_T, MPI_SUM, h->comm));
  /* indptr in global positions: each rank its n_cells entries, the last rank the final one */
  int64_t count = scored->n_cells + (h->rank == h->size - 1 ? 1 : 0);
  int64_t *ptr;
  PS_ALLOC(ptr, count);
  for (int64_t i = 0; i < count; i++) ptr[i] = scored->ptr[i] + before;
  int err = ps_h5file_write(h->file, CK "/score/indptr", PS_H5_I64, d->n_analysed + 1, d->analysed_offset, count, ptr);
  free(ptr);
  PS_CALL(err);
  PS_CALL(ps_h5file_write(h->file, CK "/score/ids", PS_H5_I32, total, before, nnz, scored->ids));
  PS_CALL(ps_h5file_write(h->file, CK "/score/ps", PS_H5_F64, total, before, nnz, s->ps));
  int32_t K = scored->n_perturbations;
  int32_t *rescaled;
  PS_ALLOC(rescaled, K);
  for (int32_t k = 0; k < K; k++) rescaled[k] = s->rescaled[k];
  err = ps_h5file_write_replicated(h->file, CK "/score/rescaled", PS_H5_I32, K, rescaled);
  free(rescaled);
  PS_CALL(err);
  PS_CALL(ps_h5file_write_replicated(h->file, CK "/score/max_raw", PS_H5_F64, K, s->max_raw));
  double summary[4] = {s->n_not_rescaled, s->max_kkt, (double)s->n_qp, (double)s->n_tao};
  PS_CALL(ps_h5file_write_replicated(h->file, CK "/score/summary", PS_H5_F64, 4, summary));
  return mark_complete(h, "score");
}

int ps_checkpoint_write_scores(MPI_Comm comm, const char *path, const ps_dataset *d, const ps_design *scored,
                               const ps_scores *scores) {
  ck_file h;
  ck_begin(comm, path, &h);
  PS_CALL(ps_h5file_open_update(comm, path, &h.file));
  int err = write_score_stage(&h, d, scored, scores);
  int close_err = ps_h5file_close(&h.file);
  PS_CALL(err);
  return close_err;
}

/* ---------------------------------------------------------------- reading */

void ps_checkpoint_free(ps_checkpoint *c) {
  if (!c) return;
  ps_ridge_free(&c->ridge);
  free(c->pvalues);
  ps_scores_free(&c->scores);
  memset(c, 0, sizeof *c);
}

/* A one-string dataset into buf ("" if absent). */
static int read_string(const ck_file *h, const char *name, char *buf, size_t size) {
  buf[0] = '\0';
  if (!ps_h5file_exists(h->file, name)) return PS_OK;
  ps_strlist l;
  PS_CALL(ps_h5file_read_strings(h->file, name, 0, 1, &l));
  if (l.n == 1) snprintf(buf, size, "%s", l.items[0]);
  ps_strlist_free(&l);
  return PS_OK;
}

/* 1 when the string dataset NAME holds exactly the n strings of want. */
static int read_same_strings(const ck_file *h, const char *name, char *const *want, int64_t n, int *same) {
  int64_t len = -1;
  *same = 0;
  if (!ps_h5file_exists(h->file, name)) return PS_OK;
  PS_CALL(ps_h5file_length(h->file, name, &len));
  if (len != n) return PS_OK;
  ps_strlist got;
  PS_CALL(ps_h5file_read_strings(h->file, name, 0, n, &got));
  *same = 1;
  for (int64_t i = 0; i < n && *same; i++) *same = strcmp(got.items[i], want[i]) == 0;
  ps_strlist_free(&got);
  return PS_OK;
}

/* A small array of exactly n values (the same on every rank). */
static int read_small(const ck_file *h, const char *name, ps_h5_type type, int64_t n, void *buf) {
  int64_t len;
  PS_CALL(ps_h5file_length(h->file, name, &len));
  if (len != n) PS_FAIL(PS_ERR_INPUT, "%s: /%s has %lld values, expected %lld", h->path, name, (long long)len, (long long)n);
  return ps_h5file_read(h->file, name, type, 0, n, buf);
}

/* The identity of the run: digests, then the dataset the stages were run on. */
static int check_identity(const ck_file *h, const char *input_digest, const char *params_digest, const ps_dataset *d,
                          ps_checkpoint *out) {
  char text[1024];
  PS_CALL(read_string(h, CK "/input_digest", text, sizeof text));
  if (strcmp(text, input_digest) != 0) {
    snprintf(out->reason, sizeof out->reason, "%s", text[0] ? "it was written for other input files (their digests differ)"
                                                            : "it holds no checkpoint");
    return PS_OK;
  }
  PS_CALL(read_string(h, CK "/parameters_digest", text, sizeof text));
  if (strcmp(text, params_digest) != 0) {
    snprintf(out->reason, sizeof out->reason, "it was written with other parameters (their digest differs)");
    return PS_OK;
  }
  /* the digests cover inputs and options, not the code: another version's numerics
   * (targets, ridge, QP) would mix into this run's results */
  PS_CALL(read_string(h, CK "/version", text, sizeof text));
  if (strcmp(text, PS_VERSION) != 0) {
    snprintf(out->reason, sizeof out->reason, "it was written by pertscore %.64s, this is %s", text[0] ? text : "?",
             PS_VERSION);
    return PS_OK;
  }
  int same_k, same_n;
  int64_t n_analysed = -1;
  PS_CALL(read_same_strings(h, CK "/perturbations", d->design.names.items, d->design.names.n, &same_k));
  char **genes;
  PS_ALLOC(genes, d->n_regression);
  for (int32_t n = 0; n < d->n_regression; n++) genes[n] = d->genes.items[d->regression_gene[n]];
  int err = read_same_strings(h, CK "/regression_genes", genes, d->n_regression, &same_n);
  free(genes);
  PS_CALL(err);
  PS_CALL(read_small(h, CK "/n_analysed", PS_H5_I64, 1, &n_analysed));
  if (!same_k || !same_n || n_analysed != d->n_analysed) {
    snprintf(out->reason, sizeof out->reason,
             "its perturbations, regression genes or analysed cells differ from this run's (another pertscore version?)");
    return PS_OK;
  }
  out->stage = PS_CHECKPOINT_RIDGE; /* provisionally: the identity matches */
  return PS_OK;
}

static int read_ridge_stage(const ck_file *h, const ps_dataset *d, int with_pvalues, ps_checkpoint *out) {
  out->stage = PS_CHECKPOINT_NONE;
  if (!ps_h5file_exists(h->file, CK "/ridge/complete")) {
    snprintf(out->reason, sizeof out->reason, "its ridge stage is incomplete");
    return PS_OK;
  }
  int64_t shape[2], rows = (int64_t)d->design.n_perturbations + ps_design_n_basal(&d->design);
  PS_CALL(read_small(h, CK "/ridge/shape", PS_H5_I64, 2, shape));
  if (shape[0] != rows || shape[1] != d->n_regression) /* perturbation rows, then one basal row per group */
    PS_FAIL(PS_ERR_INPUT, "%s: checkpoint beta is %lld x %lld, this run needs %lld x %d", h->path,
            (long long)shape[0], (long long)shape[1], (long long)rows, d->n_regression);
  ps_ridge *r = &out->ridge;
  r->n_rows = (int32_t)shape[0];
  r->n_genes = (int32_t)shape[1];
  PS_CALL(read_small(h, CK "/ridge/lambda", PS_H5_F64, 1, &r->lambda));
  PS_ALLOC(r->beta, shape[0] * shape[1]);
  PS_CALL(read_small(h, CK "/ridge/beta", PS_H5_F64, shape[0] * shape[1], r->beta));
  if (with_pvalues) {
    if (!ps_h5file_exists(h->file, CK "/ridge/pvalue")) {
      snprintf(out->reason, sizeof out->reason, "it holds no permutation p-values");
      return PS_OK;
    }
    PS_ALLOC(out->pvalues, shape[0] * shape[1]);
    PS_CALL(read_small(h, CK "/ridge/pvalue", PS_H5_F64, shape[0] * shape[1], out->pvalues));
  }
  out->stage = PS_CHECKPOINT_RIDGE;
  return PS_OK;
}

/* This rank's rows of the score stage, checked entry by entry against the scored
 * design; *usable = 0 when they differ, *first = where its PS start. Every rank
 * takes part in both collective reads, also after an error of its own. */
static int read_score_rows(const ck_file *h, const ps_dataset *d, const ps_design *scored, int *usable,
                           int64_t *first) {
  *usable = 0;
  *first = 0;
  int64_t n = scored->n_cells, *ptr;
  PS_ALLOC(ptr, n + 1);
  int err = ps_h5file_read(h->file, CK "/score/indptr", PS_H5_I64, d->analysed_offset, n + 1, ptr);
  int64_t nnz = err ? 0 : ptr[n] - ptr[0];
  if (!err) *first = ptr[0];
  int same = !err && nnz == scored->ptr[n];
  for (int64_t i = 0; i < n && same; i++) same = ptr[i + 1] - ptr[i] == scored->ptr[i + 1] - scored->ptr[i];
  free(ptr);
  int64_t count = same ? nnz : 0; /* nothing to read if its rows differ */
  int32_t *ids;
  PS_ALLOC(ids, count);
  int ids_err = ps_h5file_read(h->file, CK "/score/ids", PS_H5_I32, *first, count, ids);
  for (int64_t p = 0; p < count && same && !ids_err; p++) same = ids[p] == scored->ids[p];
  free(ids);
  *usable = same;
  return err ? err : ids_err;
}

static int read_score_stage(const ck_file *h, const ps_dataset *d, const ps_design *scored, ps_checkpoint *out) {
  if (!scored || !ps_h5file_exists(h->file, CK "/score/complete")) return PS_OK;
  int usable;
  int64_t first;
  PS_CALL(ps_error_sync(h->comm, read_score_rows(h, d, scored, &usable, &first)));
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &usable, 1, MPI_INT, MPI_MIN, h->comm));
  if (!usable) {
    snprintf(out->reason, sizeof out->reason, "its scored cells differ from this run's");
    return PS_OK;
  }
  ps_scores *s = &out->scores;
  int32_t K = scored->n_perturbations;
  int64_t nnz = scored->ptr[scored->n_cells];
  PS_ALLOC(s->ps, nnz);
  PS_ALLOC(s->max_raw, K);
  PS_ALLOC(s->rescaled, K);
  PS_CALL(ps_error_sync(h->comm, ps_h5file_read(h->file, CK "/score/ps", PS_H5_F64, first, nnz, s->ps)));
  PS_CALL(read_small(h, CK "/score/max_raw", PS_H5_F64, K, s->max_raw));
  int32_t *rescaled;
  PS_ALLOC(rescaled, K);
  int err = read_small(h, CK "/score/rescaled", PS_H5_I32, K, rescaled);
  for (int32_t k = 0; k < K; k++) s->rescaled[k] = (uint8_t)(rescaled[k] != 0);
  free(rescaled);
  PS_CALL(err);
  double summary[4];
  PS_CALL(read_small(h, CK "/score/summary", PS_H5_F64, 4, summary));
  s->n_not_rescaled = (int32_t)summary[0];
  s->max_kkt = summary[1];
  s->n_qp = (int64_t)summary[2];
  s->n_tao = (int64_t)summary[3];
  out->stage = PS_CHECKPOINT_SCORE;
  return PS_OK;
}

static int read_checkpoint(MPI_Comm comm, const char *path, const char *input_digest, const char *params_digest,
                           const ps_dataset *d, const ps_design *scored, int with_pvalues, ps_checkpoint *out) {
  ck_file h;
  ck_begin(comm, path, &h);
  PS_CALL(ps_h5file_open_read(comm, path, &h.file));
  int err = check_identity(&h, input_digest, params_digest, d, out);
  if (!err && out->stage == PS_CHECKPOINT_RIDGE) err = read_ridge_stage(&h, d, with_pvalues, out);
  if (!err && out->stage == PS_CHECKPOINT_RIDGE) err = read_score_stage(&h, d, scored, out);
  int close_err = ps_h5file_close(&h.file);
  PS_CALL(err);
  return close_err;
}

int ps_checkpoint_read(MPI_Comm comm, const char *path, const char *input_digest, const char *params_digest,
                       const ps_dataset *d, const ps_design *scored, int with_pvalues, ps_checkpoint *out) {
  memset(out, 0, sizeof *out);
  int rank, exists = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) exists = access(path, R_OK) == 0;
  PS_CHECK_MPI(MPI_Bcast(&exists, 1, MPI_INT, 0, comm));
  if (!exists) {
    snprintf(out->reason, sizeof out->reason, "there is none (no %s)", path);
    return PS_OK;
  }
  int err = ps_error_sync(comm, read_checkpoint(comm, path, input_digest, params_digest, d, scored, with_pvalues, out));
  if (err) { /* a damaged or foreign file: not an error of this run, start over */
    char reason[sizeof out->reason];
    snprintf(reason, sizeof reason, "it cannot be read (%s)", ps_error_message());
    ps_error_clear();
    ps_checkpoint_free(out);
    snprintf(out->reason, sizeof out->reason, "%s", reason);
  }
  /* the stage was decided from data every rank read alike; make sure, and keep
   * only what the agreed stage needs */
  int stage = out->stage, lowest = stage;
  PS_CHECK_MPI(MPI_Allreduce(&stage, &lowest, 1, MPI_INT, MPI_MIN, comm));
  if (lowest < stage && !out->reason[0]) snprintf(out->reason, sizeof out->reason, "the ranks disagree about it");
  out->stage = (ps_checkpoint_stage)lowest;
  if (out->stage < PS_CHECKPOINT_SCORE) ps_scores_free(&out->scores);
  if (out->stage == PS_CHECKPOINT_NONE) {
    ps_ridge_free(&out->ridge);
    free(out->pvalues);
    out->pvalues = NULL;
  }
  return PS_OK;
}
