/* Job files (YAML, parsed with libyaml): the options of `pertscore run` as keys,
 * an optional `sweep` section (option -> list of values, every combination is
 * one point) and an optional `slurm` section (resources for the sbatch scripts).
 *
 *   input: screen.h5ad
 *   guides: barcode_rec.txt
 *   control: [NonTargeting, SafeTargeting]
 *   output: results.h5ad
 *   permutations: 100
 *   exclude-perturbed-gene: true
 *   sweep:
 *     lambda: [0.001, 0.01, 0.1]
 *   slurm: {ntasks: 4, mem: 8G, time: "01:00:00"}
 *
 * Keys are validated against the options `run` knows; a wrong key or type is an
 * error naming the file, line and key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cli.h"

void ps_job_free(ps_job *job) {
  if (!job) return;
  ps_strlist_free(&job->keys);
  ps_strlist_free(&job->values);
  ps_strlist_free(&job->sweep_keys);
  for (int64_t i = 0; i < job->sweep_keys_capacity; i++) ps_strlist_free(&job->sweep_values[i]);
  free(job->sweep_values);
  ps_strlist_free(&job->slurm_keys);
  ps_strlist_free(&job->slurm_values);
  memset(job, 0, sizeof *job);
}

/* More points than any Slurm array allows (MaxArraySize is at most 4000001);
 * also keeps the product of the list lengths far from int64 overflow. */
#define PS_JOB_MAX_POINTS INT64_C(1000000)

static const char *slurm_keys[] = {"nodes", "ntasks", "ntasks-per-node", "cpus-per-task", "mem", "mem-per-cpu",
                                   "time", "partition", "account", "qos", "job-name", NULL};

static int fail_at(const ps_job *job, const yaml_node_t *node, const char *what, const char *key) {
  PS_FAIL(PS_ERR_INPUT, "%s: line %lu: %s%s%s%s", job->path, (unsigned long)node->start_mark.line + 1, what,
          key ? " '" : "", key ? key : "", key ? "'" : "");
}

/* A scalar, or a sequence of scalars joined with commas (how `run` takes lists). */
static int scalar_or_list(const ps_job *job, yaml_document_t *doc, yaml_node_t *node, const char *key, char *buf,
                          size_t size) {
  buf[0] = '\0';
  if (node->type == YAML_SCALAR_NODE) {
    snprintf(buf, size, "%s", (const char *)node->data.scalar.value);
    return PS_OK;
  }
  if (node->type != YAML_SEQUENCE_NODE) return fail_at(job, node, "expected a value or a list of values for", key);
  size_t used = 0; /* not strlen(buf) per item: quadratic in a long list */
  for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
    yaml_node_t *item = yaml_document_get_node(doc, *it);
    if (!item || item->type != YAML_SCALAR_NODE) return fail_at(job, node, "expected a list of plain values for", key);
    if (used + 1 < size) used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? "," : "", (const char *)item->data.scalar.value);
  }
  return PS_OK;
}

/* Flags take true/false; everything else takes a value. */
static int add_option(ps_job *job, yaml_document_t *doc, yaml_node_t *key_node, yaml_node_t *value, ps_strlist *keys,
                      ps_strlist *values) {
  const char *key = (const char *)key_node->data.scalar.value;
  int arity = ps_run_option_arity(key);
  if (arity < 0) {
    const char *hint = ps_run_option_suggest(key);
    char what[256];
    snprintf(what, sizeof what, "unknown key (not an option of pertscore run%s%s%s):", hint ? "; did you mean '" : "",
             hint ? hint : "", hint ? "'?" : "");
    return fail_at(job, key_node, what, key);
  }
  if (strcmp(key, "config") == 0 || strcmp(key, "help") == 0) return fail_at(job, key_node, "key not allowed in a job file:", key);
  char buf[8192];
  PS_CALL(scalar_or_list(job, doc, value, key, buf, sizeof buf));
  if (arity == 0) {
    if (strcmp(buf, "true") != 0 && strcmp(buf, "false") != 0)
      return fail_at(job, value, "expected true or false for", key);
    if (strcmp(buf, "false") == 0) return PS_OK;
    buf[0] = '\0';
  }
  PS_CALL(ps_strlist_push(keys, key));
  PS_CALL(ps_strlist_push(values, buf));
  return PS_OK;
}

static int read_sweep(ps_job *job, yaml_document_t *doc, yaml_node_t *map) {
  if (map->type != YAML_MAPPING_NODE) return fail_at(job, map, "sweep: expected a mapping of option -> list of values", NULL);
  int64_t points = 1;
  int64_t n = map->data.mapping.pairs.top - map->data.mapping.pairs.start;
  PS_ALLOC(job->sweep_values, n);
  job->sweep_keys_capacity = n;
  int64_t i = 0;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++, i++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
    if (k->type != YAML_SCALAR_NODE) return fail_at(job, k, "sweep: expected an option name", NULL);
    const char *key = (const char *)k->data.scalar.value;
    int arity = ps_run_option_arity(key);
    if (arity != 1 || strcmp(key, "output") == 0 || strcmp(key, "config") == 0) {
      const char *hint = arity < 0 ? ps_run_option_suggest(key) : NULL;
      char what[256];
      snprintf(what, sizeof what, "sweep: not an option that takes a value%s%s%s", hint ? " (did you mean '" : "",
               hint ? hint : "", hint ? "'?)" : "");
      return fail_at(job, k, what, key);
    }
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top == v->data.sequence.items.start)
      return fail_at(job, v, "sweep: expected a non-empty list of values for", key);
    for (int64_t s = 0; s < job->sweep_keys.n; s++)
      if (strcmp(job->sweep_keys.items[s], key) == 0) return fail_at(job, k, "sweep: option given twice:", key);
    points *= v->data.sequence.items.top - v->data.sequence.items.start;
    if (points > PS_JOB_MAX_POINTS)
      return fail_at(job, v, "sweep: more than 1000000 points (the product of the lists' lengths) with", key);
    PS_CALL(ps_strlist_push(&job->sweep_keys, key));
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
      yaml_node_t *item = yaml_document_get_node(doc, *it);
      char buf[4096];
      PS_CALL(scalar_or_list(job, doc, item, key, buf, sizeof buf));
      PS_CALL(ps_strlist_push(&job->sweep_values[i], buf));
    }
  }
  return PS_OK;
}

static int read_slurm(ps_job *job, yaml_document_t *doc, yaml_node_t *map) {
  if (map->type != YAML_MAPPING_NODE) return fail_at(job, map, "slurm: expected a mapping of resource -> value", NULL);
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
    if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE)
      return fail_at(job, k, "slurm: expected resource: value pairs", NULL);
    const char *key = (const char *)k->data.scalar.value;
    int known = 0;
    for (const char **s = slurm_keys; *s; s++) known |= strcmp(*s, key) == 0;
    if (!known) return fail_at(job, k, "slurm: unknown resource (nodes, ntasks, ntasks-per-node, cpus-per-task, mem, "
                                       "mem-per-cpu, time, partition, account, qos, job-name)", key);
    PS_CALL(ps_strlist_push(&job->slurm_keys, key));
    PS_CALL(ps_strlist_push(&job->slurm_values, (const char *)v->data.scalar.value));
  }
  return PS_OK;
}

static int read_document(ps_job *job, yaml_document_t *doc) {
  yaml_node_t *root = yaml_document_get_root_node(doc);
  if (!root || root->type != YAML_MAPPING_NODE)
    PS_FAIL(PS_ERR_INPUT, "%s: expected a YAML mapping of option: value (see jobs/example.yaml)", job->path);
  int sweep_seen = 0, slurm_seen = 0;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
    if (k->type != YAML_SCALAR_NODE) return fail_at(job, k, "expected a plain key", NULL);
    const char *key = (const char *)k->data.scalar.value;
    for (int64_t i = 0; i < job->keys.n; i++)
      if (strcmp(job->keys.items[i], key) == 0) return fail_at(job, k, "key given twice:", key);
    /* sections are not in job->keys: a second one would replace the first */
    int *seen = strcmp(key, "sweep") == 0 ? &sweep_seen : strcmp(key, "slurm") == 0 ? &slurm_seen : NULL;
    if (seen && (*seen)++) return fail_at(job, k, "key given twice:", key);
    if (strcmp(key, "sweep") == 0) PS_CALL(read_sweep(job, doc, v));
    else if (strcmp(key, "slurm") == 0) PS_CALL(read_slurm(job, doc, v));
    else PS_CALL(add_option(job, doc, k, v, &job->keys, &job->values));
  }
  return PS_OK;
}

/* libyaml's scanner takes time quadratic in the nesting depth of flow
 * collections ("[[[...]]]": 19 s for a 80 kB file of 40,000 levels); a job file
 * needs 3 levels, so one pass over the events refuses deep nesting before the
 * document is loaded. Syntax errors are left to the loader's message. */
#define PS_JOB_MAX_DEPTH 16
/* A job file is a few hundred bytes; this only keeps a wrong path (a matrix) from filling memory. */
#define PS_JOB_MAX_BYTES (16u << 20)

static int check_depth(const char *path, const unsigned char *text, size_t size) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) PS_FAIL(PS_ERR_SYSTEM, "cannot initialize the YAML parser");
  yaml_parser_set_input_string(&parser, text, size);
  int depth = 0, err = PS_OK, done = 0;
  while (!done && !err) {
    yaml_event_t event;
    if (!yaml_parser_parse(&parser, &event)) break;
    if (event.type == YAML_SEQUENCE_START_EVENT || event.type == YAML_MAPPING_START_EVENT) {
      if (++depth > PS_JOB_MAX_DEPTH)
        err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lu: nested deeper than %d levels (lists and "
                           "mappings in a job file go 3 deep)", path, (unsigned long)event.start_mark.line + 1,
                           PS_JOB_MAX_DEPTH);
    } else if (event.type == YAML_SEQUENCE_END_EVENT || event.type == YAML_MAPPING_END_EVENT) {
      depth--;
    }
    done = event.type == YAML_DOCUMENT_END_EVENT || event.type == YAML_STREAM_END_EVENT; /* the loader reads one */
    yaml_event_delete(&event);
  }
  yaml_parser_delete(&parser);
  return err;
}

/* The whole file in memory (read once: a pipe or /dev/stdin works too). */
static int read_file(const char *path, unsigned char **text, size_t *size) {
  *text = NULL;
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) PS_FAIL(PS_ERR_INPUT, "%s: cannot open the job file", path);
  size_t capacity = 0;
  int err = PS_OK;
  for (;;) {
    if (*size == capacity) {
      if (capacity >= PS_JOB_MAX_BYTES) {
        err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: larger than %u MiB: not a job file", path,
                           PS_JOB_MAX_BYTES >> 20);
        break;
      }
      capacity = capacity ? 2 * capacity : 4096;
      unsigned char *grown = realloc(*text, capacity);
      if (!grown) {
        err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "out of memory reading %s", path);
        break;
      }
      *text = grown;
    }
    size_t got = fread(*text + *size, 1, capacity - *size, f);
    *size += got;
    if (got == 0) break;
  }
  if (!err && ferror(f)) err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: cannot read the job file", path);
  fclose(f);
  if (err) {
    free(*text);
    *text = NULL;
  }
  return err;
}

int ps_job_read(const char *path, ps_job *job) {
  memset(job, 0, sizeof *job);
  snprintf(job->path, sizeof job->path, "%s", path);
  unsigned char *text;
  size_t size;
  PS_CALL(read_file(path, &text, &size));
  int err = check_depth(path, text, size);
  yaml_parser_t parser;
  if (!err && !yaml_parser_initialize(&parser)) err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "cannot initialize the YAML parser");
  if (!err) {
    yaml_document_t doc;
    yaml_parser_set_input_string(&parser, text, size);
    if (!yaml_parser_load(&parser, &doc)) {
      err = ps_error_set(PS_ERR_INPUT, __FILE__, __LINE__, "%s: line %lu: not valid YAML: %s", path,
                         (unsigned long)parser.problem_mark.line + 1, parser.problem ? parser.problem : "parse error");
    } else {
      err = read_document(job, &doc);
      yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
  }
  free(text);
  if (err) ps_job_free(job); /* a failed read leaves nothing to free */
  return err;
}

int64_t ps_job_points(const ps_job *job) {
  int64_t n = 1;
  for (int64_t i = 0; i < job->sweep_keys.n; i++) n *= job->sweep_values[i].n;
  return n;
}

/* Point t of the sweep: the mixed-radix digits of t pick one value per swept
 * option, the first option varying slowest. */
const char *ps_job_sweep_value(const ps_job *job, int64_t point, int64_t key) {
  int64_t stride = 1;
  for (int64_t i = job->sweep_keys.n - 1; i > key; i--) stride *= job->sweep_values[i].n;
  return job->sweep_values[key].items[(point / stride) % job->sweep_values[key].n];
}

int ps_job_output(const ps_job *job, int64_t point, char *buf, size_t size) {
  const char *out = NULL;
  for (int64_t i = 0; i < job->keys.n; i++)
    if (strcmp(job->keys.items[i], "output") == 0) out = job->values.items[i];
  if (!out) PS_FAIL(PS_ERR_INPUT, "%s: the job file needs an output key", job->path);
  if (point < 0 || !job->sweep_keys.n) {
    snprintf(buf, size, "%s", out);
    return PS_OK;
  }
  size_t len = strlen(out);
  int ext = len > 5 && strcmp(out + len - 5, ".h5ad") == 0;
  snprintf(buf, size, "%.*s.point%03lld.h5ad", (int)(ext ? len - 5 : len), out, (long long)point);
  return PS_OK;
}

static int job_argv(const ps_job *job, int64_t point, ps_strlist *argv) {
  PS_CALL(ps_strlist_push(argv, "run"));
  char output[4096], option[512];
  PS_CALL(ps_job_output(job, point, output, sizeof output));
  for (int64_t i = 0; i < job->keys.n; i++) {
    int swept = 0;
    for (int64_t s = 0; s < job->sweep_keys.n; s++) swept |= strcmp(job->sweep_keys.items[s], job->keys.items[i]) == 0;
    if (swept && point >= 0) continue;
    snprintf(option, sizeof option, "--%s", job->keys.items[i]);
    PS_CALL(ps_strlist_push(argv, option));
    if (strcmp(job->keys.items[i], "output") == 0) PS_CALL(ps_strlist_push(argv, output));
    else if (ps_run_option_arity(job->keys.items[i]) == 1) PS_CALL(ps_strlist_push(argv, job->values.items[i]));
  }
  for (int64_t s = 0; point >= 0 && s < job->sweep_keys.n; s++) {
    snprintf(option, sizeof option, "--%s", job->sweep_keys.items[s]);
    PS_CALL(ps_strlist_push(argv, option));
    PS_CALL(ps_strlist_push(argv, ps_job_sweep_value(job, point, s)));
  }
  return PS_OK;
}

int ps_job_argv(const ps_job *job, int64_t point, ps_strlist *argv) {
  memset(argv, 0, sizeof *argv);
  int err = job_argv(job, point, argv);
  if (err) ps_strlist_free(argv); /* a failed expansion leaves nothing to free */
  return err;
}
