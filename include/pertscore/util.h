/* pertscore/util.h: the one error path, small containers, RNG and progress.
 *
 * Every function that can fail returns an int status (PS_OK on success) and
 * records a message with ps_error_set(). Callers propagate with PS_CALL; MPI,
 * HDF5 and PETSc return codes are checked with PS_CHECK_MPI / PS_CHECK_H5 /
 * PS_CHECK_PETSC so that every failure names where it happened. */
#ifndef PERTSCORE_UTIL_H
#define PERTSCORE_UTIL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

enum {
  PS_OK = 0,
  PS_ERR_INPUT = 2,  /* the user's files or options are wrong */
  PS_ERR_SYSTEM = 3, /* MPI, HDF5, PETSc, out of memory, I/O */
};

/* Record an error message (printf-style) and return code. */
int ps_error_set(int code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Add "file:line" of a caller to the trace of the current error; returns code. */
int ps_error_trace(int code, const char *file, int line);
const char *ps_error_message(void);
const char *ps_error_where(void);
void ps_error_clear(void);

#define PS_FAIL(code, ...) return ps_error_set((code), __FILE__, __LINE__, __VA_ARGS__)
#define PS_CALL(expr)                                                      \
  do {                                                                     \
    int ps_e_ = (expr);                                                    \
    if (ps_e_ != PS_OK) return ps_error_trace(ps_e_, __FILE__, __LINE__);  \
  } while (0)
#define PS_CHECK_MPI(expr)                                                 \
  do {                                                                     \
    int ps_m_ = (expr);                                                    \
    if (ps_m_ != MPI_SUCCESS) return ps_error_mpi(ps_m_, #expr, __FILE__, __LINE__); \
  } while (0)
/* HDF5 calls return a negative value on failure. */
#define PS_CHECK_H5(expr)                                                  \
  do {                                                                     \
    if ((expr) < 0) return ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "HDF5 call failed: %s", #expr); \
  } while (0)
#define PS_CHECK_PETSC(expr)                                               \
  do {                                                                     \
    int ps_p_ = (int)(expr);                                               \
    if (ps_p_ != 0) return ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "PETSc error %d in %s", ps_p_, #expr); \
  } while (0)
/* Allocation a test can make fail (src/util/alloc.c): like calloc / malloc /
 * strdup (a zero size allocates one byte), except that once armed by
 * ps_alloc_fail_after(n) the n-th call from then on returns NULL (once). */
void *ps_calloc(size_t n, size_t size);
void *ps_malloc(size_t size);
char *ps_strdup(const char *s);
void ps_alloc_fail_after(long n);  /* n <= 0: off */
int ps_alloc_fail_pending(void);   /* armed and not yet reached */
#define PS_ALLOC(ptr, count)                                               \
  do {                                                                     \
    size_t ps_n_ = (size_t)(count);                                        \
    (ptr) = ps_calloc(ps_n_, sizeof *(ptr));                               \
    if (!(ptr)) return ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__,     \
                                    "out of memory allocating %zu x %zu bytes", ps_n_, sizeof *(ptr)); \
  } while (0)

/* PS_ALLOC before a collective: every rank learns at once whether any rank's
 * allocation failed, so that all return the error and none is left waiting in the
 * collective. The same sequence of PS_ALLOC_SYNC on every rank of comm. */
#define PS_ALLOC_SYNC(comm, ptr, count)                                                                 \
  do {                                                                                                 \
    size_t ps_n_ = (size_t)(count);                                                                    \
    (ptr) = ps_calloc(ps_n_, sizeof *(ptr));                                                           \
    PS_CALL(ps_error_sync((comm), (ptr) ? PS_OK                                                        \
                                        : ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__,              \
                                                       "out of memory allocating %zu x %zu bytes", ps_n_, \
                                                       sizeof *(ptr))));                               \
  } while (0)

int ps_error_mpi(int mpi_code, const char *call, const char *file, int line);

/* Make a possibly rank-local error collective: every rank learns whether any
 * rank failed, and the message of the lowest failing rank. Returns that code. */
int ps_error_sync(MPI_Comm comm, int err);

/* Output files that must not survive a failure (OUTPUT.partial, a summary's .partial;
 * up to four); unregister forgets them all. */
void ps_cleanup_register(const char *path);
void ps_cleanup_unregister(void);

/* Top-level exit on error: after ps_error_sync every rank holds the same
 * message; rank 0 prints it and all ranks leave with a non-zero status. For an
 * error seen by this rank only (not synced), print and MPI_Abort. */
void ps_die(MPI_Comm comm, int err, int collective) __attribute__((noreturn));

/* ---- compressed sparse rows, local block ---- */
typedef struct {
  int64_t n_rows; /* local rows */
  int64_t n_cols;
  int64_t *indptr; /* n_rows + 1, indptr[0] == 0 */
  int32_t *indices;
  double *data;
} ps_csr;

void ps_csr_free(ps_csr *m);
int64_t ps_csr_nnz(const ps_csr *m);
/* malloc for large arrays read at random rows (beta in the per-cell QPs): 2 MiB
 * aligned and marked for transparent huge pages (the kernel's "madvise" mode), which
 * cuts TLB misses (measured 5-10% more QPs per second at the jurkat-genome shape).
 * Small sizes are a plain malloc. Free with free(); NULL when out of memory. */
void *ps_alloc_huge(size_t bytes);

/* ---- growable array of strings ---- */
typedef struct {
  char **items;
  int64_t n, cap;
} ps_strlist;

int ps_strlist_push(ps_strlist *l, const char *s);
void ps_strlist_free(ps_strlist *l);
/* Sort and remove duplicates. */
void ps_strlist_sort_unique(ps_strlist *l);
/* Index of s in a sorted list, or -1. */
int64_t ps_strlist_find_sorted(const ps_strlist *l, const char *s);
/* Union of every rank's list, sorted and unique, identical on all ranks. */
int ps_strlist_allgather_union(MPI_Comm comm, const ps_strlist *local, ps_strlist *out);

/* ---- string -> int64 hash map (open addressing, keys copied) ---- */
typedef struct {
  char **keys;
  int64_t *values;
  int64_t cap, n;
} ps_strmap;

int ps_strmap_init(ps_strmap *m, int64_t expected);
/* Insert or overwrite. */
int ps_strmap_put(ps_strmap *m, const char *key, int64_t value);
/* Value for key, or -1. */
int64_t ps_strmap_get(const ps_strmap *m, const char *key);
void ps_strmap_free(ps_strmap *m);

/* ---- counter-based random numbers: value depends only on (seed, stream, counter),
 * so a cell's draws are the same whichever rank generates it ---- */
typedef struct {
  uint64_t key;
  uint64_t counter;
} ps_rng;

ps_rng ps_rng_make(uint64_t seed, uint64_t stream);
uint64_t ps_rng_next(ps_rng *r);
double ps_rng_uniform(ps_rng *r);  /* (0, 1) */
double ps_rng_normal(ps_rng *r);
double ps_rng_gamma(ps_rng *r, double shape); /* scale 1 */
int64_t ps_rng_poisson(ps_rng *r, double mean);

/* ---- bytes communicated (src/util/mpi_count.c): PMPI wrappers count what this
 * rank sends, including the MPI calls of ScaLAPACK, HDF5 and PETSc ---- */
typedef struct {
  double bytes, calls;         /* every counted call: point-to-point and collective */
  double p2p_bytes, p2p_calls; /* point-to-point only (ScaLAPACK/BLACS send this way) */
} ps_mpi_counts;
void ps_mpi_counts_get(ps_mpi_counts *c); /* totals since start */

/* Peak resident set size of this process in bytes (VmHWM), 0 when unknown. */
double ps_peak_rss_bytes(void);
/* Reset the peak to the current RSS (writes "5" to /proc/self/clear_refs). */
void ps_peak_rss_reset(void);
/* CPU seconds this process has used (all threads); on a shared machine
 * S.cpu_seconds / S.seconds shows how much of a stage's wall time it ran. */
double ps_cpu_seconds(void);

/* ---- progress on rank 0 ----
 * Every rank also records, for each stage S between ps_progress_stage and
 * ps_progress_done (or the next ps_progress_stage), the statistics S.seconds,
 * S.cpu_seconds, S.peak_rss_bytes (peak RSS reset at the stage start), S.mpi_bytes, S.mpi_calls,
 * S.mpi_p2p_bytes (see ps_stats_* below; tools/bench reads them). */
typedef struct {
  int enabled;
  double t_start, t_stage;
  const char *stage;
  int last_percent;
  int in_stage;              /* a stage is open: its statistics are not recorded yet */
  ps_mpi_counts mpi_at_stage; /* counters at the stage start */
  double cpu_at_stage;        /* process CPU seconds at the stage start (S.cpu_seconds) */
  int log_stage_pushed;       /* the stage's PETSc log stage is open (ps_log_stage_push) */
} ps_progress;

/* A PETSc log stage named name for `-log_view` (src/util/log_stage.c): returns whether
 * it was pushed, to give to ps_log_stage_pop. Collective in the sense of PETSc's
 * registration: every rank pushes the same names in the same order. ps_progress_stage
 * opens one per progress stage; library stages inside those (targets, permutations)
 * push their own. */
int ps_log_stage_push(const char *name);
void ps_log_stage_pop(int pushed);

void ps_progress_init(ps_progress *p, MPI_Comm comm, int quiet);
void ps_progress_stage(ps_progress *p, const char *stage);
void ps_progress_update(ps_progress *p, double fraction);
/* Stage finished; returns its seconds. */
double ps_progress_done(ps_progress *p);
double ps_wtime(void);

/* ---- digests for provenance (src/util/digest.c): 16 hex digits, change detection only ---- */
/* Digest of a file's bytes, read in fixed 64 MiB chunks spread over the ranks;
 * the same for any number of ranks. Collective. */
int ps_digest_file(MPI_Comm comm, const char *path, char out[17]);
int ps_digest_string(const char *text, char out[17]);

/* In-place MPI_SUM of count items of type (type_size bytes each), in pieces because
 * MPI counts are int. Collective. */
int ps_allreduce_sum(MPI_Comm comm, void *buf, int64_t count, MPI_Datatype type, size_t type_size);
/* A committed struct type of the given blocks, resized to extent (sizeof the C struct)
 * (src/util/exchange.c). */
int ps_mpi_struct_type(MPI_Datatype *out, int n, const int *blocks, const MPI_Aint *offsets,
                       const MPI_Datatype *types, size_t extent);
/* The counts step of an Alltoallv: from this rank's send counts (per destination),
 * the int counts and displacements of both sides, and the totals. Fails on every
 * rank, before any data moves, if some rank's total exceeds the int counts of MPI.
 * Arrays have comm's size entries. Collective. */
int ps_exchange_counts(MPI_Comm comm, const int64_t *send_count, int *scount, int *sdispl, int *rcount, int *rdispl,
                       int64_t *s_total, int64_t *r_total);

/* Contiguous block [begin, end) of n items for rank r of p (uniform split). */
void ps_block_range(int64_t n, int r, int p, int64_t *begin, int64_t *end);

/* ---- fault injection (tests/fault, docs/reliability.md) ----
 * A named point of the pipeline where a test may stall or kill a rank. Does
 * nothing unless the environment variable PERTSCORE_FAULT names this stage, e.g.
 * PERTSCORE_FAULT=score:sleep=30 or score:kill@1 (see src/util/fault.c). Not
 * collective; cheap enough to call once per stage. */
void ps_fault_point(const char *stage);
/* Collective: with PERTSCORE_FAULT=STAGE:mpi-error every rank makes an invalid MPI call
 * here and returns its error (MPI_ERRORS_RETURN); otherwise PS_OK. */
int ps_fault_mpi_error(const char *stage, MPI_Comm comm);

/* ---- run statistics for benchmarks (src/util/stats.c, tools/bench) ----
 * Named per-process counters (seconds, flops, bytes, cells...). Cheap, not
 * collective. When the environment variable PERTSCORE_STATS=PREFIX is set,
 * ps_stats_write_env() writes PREFIX.rank<R>.json at exit; tools/bench reads them. */
void ps_stats_add(const char *name, double value);   /* counter += value */
void ps_stats_max(const char *name, double value);   /* counter = max(counter, value) */
void ps_stats_set(const char *name, double value);
double ps_stats_get(const char *name);               /* 0 when never set */
/* Writes PREFIX.rank<rank>.json when PERTSCORE_STATS is set; 0 or an error code. */
int ps_stats_write_env(int rank);
void ps_stats_clear(void);

#endif
