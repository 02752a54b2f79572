/* libFuzzer harness: job files (src/cli/job.c, libyaml), as `pertscore run
 * --config FILE` and `pertscore sweep --config FILE --task T` read them.
 *
 * The input is a whole job file. A successful ps_job_read is expanded the way
 * run and sweep do: ps_job_argv for the job without its sweep (-1) and for the
 * first, second and last sweep points, with ps_job_output and
 * ps_job_sweep_value for every swept option. No MPI_Init, so LeakSanitizer sees
 * every path; a failed read or expansion must leave nothing to free.
 *
 * Checked beyond memory safety: every key is an option of run
 * (ps_run_option_arity >= 0) with a value list as long as the key list; the
 * sweep has at least one point and a non-empty value list per swept option,
 * each a value-taking option; an argv starts with "run", every option in it is
 * "--NAME" of a run option and is followed by its value when it takes one; a
 * sweep point's argv carries each swept option once with that point's value.
 * A failure is an input error with a message. */
#include "cli.h"
#include "fuzz_common.h"

static int job_is_empty(const ps_job *job) {
  static const ps_job empty;
  return memcmp(job, &empty, sizeof empty) == 0;
}

static void check_argv(const ps_job *job, int64_t point, const ps_strlist *argv) {
  FUZZ_CHECK(argv->n >= 1 && strcmp(argv->items[0], "run") == 0);
  int64_t swept_seen = 0;
  for (int64_t i = 1; i < argv->n; i++) {
    const char *arg = argv->items[i];
    FUZZ_CHECK(arg != NULL && strncmp(arg, "--", 2) == 0);
    int arity = ps_run_option_arity(arg + 2);
    FUZZ_CHECK(arity >= 0);
    if (arity == 0) continue;
    FUZZ_CHECK(i + 1 < argv->n && argv->items[i + 1] != NULL);
    for (int64_t s = 0; point >= 0 && s < job->sweep_keys.n; s++)
      if (strcmp(job->sweep_keys.items[s], arg + 2) == 0) {
        FUZZ_CHECK(strcmp(argv->items[i + 1], ps_job_sweep_value(job, point, s)) == 0);
        swept_seen++;
      }
    i++;
  }
  if (point >= 0) FUZZ_CHECK(swept_seen == job->sweep_keys.n);
}

static void expand(const ps_job *job, int64_t point) {
  char output[4096];
  int err = ps_job_output(job, point, output, sizeof output);
  if (err != PS_OK) FUZZ_CHECK(err == PS_ERR_INPUT && ps_error_message()[0] != '\0');
  ps_error_clear();
  ps_strlist argv;
  err = ps_job_argv(job, point, &argv);
  if (err == PS_OK) {
    check_argv(job, point, &argv);
    ps_strlist_free(&argv);
  } else {
    FUZZ_CHECK(err == PS_ERR_INPUT && ps_error_message()[0] != '\0');
    FUZZ_CHECK(argv.n == 0 && argv.items == NULL);
  }
  ps_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write(".yaml", data, size);
  ps_job job;
  int err = ps_job_read(path, &job);
  if (err != PS_OK) {
    FUZZ_CHECK(err == PS_ERR_INPUT && ps_error_message()[0] != '\0');
    FUZZ_CHECK(job_is_empty(&job));
    ps_error_clear();
    return 0;
  }
  FUZZ_CHECK(job.keys.n == job.values.n && job.slurm_keys.n == job.slurm_values.n);
  for (int64_t i = 0; i < job.keys.n; i++) FUZZ_CHECK(ps_run_option_arity(job.keys.items[i]) >= 0);
  FUZZ_CHECK(job.sweep_keys.n <= job.sweep_keys_capacity);
  for (int64_t s = 0; s < job.sweep_keys.n; s++) {
    FUZZ_CHECK(ps_run_option_arity(job.sweep_keys.items[s]) == 1);
    FUZZ_CHECK(job.sweep_values[s].n > 0);
  }
  int64_t points = ps_job_points(&job);
  FUZZ_CHECK(points >= 1);
  for (int64_t s = 0; s < job.sweep_keys.n; s++) {
    /* the last point takes the last value of every list */
    FUZZ_CHECK(ps_job_sweep_value(&job, points - 1, s) ==
               job.sweep_values[s].items[job.sweep_values[s].n - 1]);
    FUZZ_CHECK(ps_job_sweep_value(&job, 0, s) == job.sweep_values[s].items[0]);
  }
  expand(&job, -1);
  expand(&job, 0);
  if (points > 1) expand(&job, 1);
  if (points > 2) expand(&job, points - 1);
  ps_job_free(&job);
  FUZZ_CHECK(job_is_empty(&job));
  return 0;
}
