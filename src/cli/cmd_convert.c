/* pertscore convert MEXDIR --out DATA.h5ad: a Cell Ranger MEX folder to AnnData
 * (SPEC.md section 0). Parsing is serial on rank 0 (mex.c); the write is collective. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "pertscore/io.h"

static const char *convert_usage =
    "usage: mpirun -n P pertscore convert MEXDIR --output DATA.h5ad [options]\n"
    "\n"
    "  --output FILE         output .h5ad (written as FILE.partial, renamed when complete); --out: the same\n"
    "  --min-guide-umi N     UMIs for a guide-capture feature to be called in a cell (3)\n"
    "  --var-names name|id   var index: gene names (default; must be unique) or gene ids\n"
    "  --force               replace OUTPUT if it exists (always done; accepted as for run)\n"
    "  --quiet               no progress on stderr\n"
    "\n"
    "MEXDIR holds matrix.mtx, barcodes.tsv and features.tsv (or genes.tsv), each plain or\n"
    "gzipped. X = the 'Gene Expression' features as counts (CSR by cell), obs index =\n"
    "barcodes, var index = gene names with columns gene_ids and feature_types. 'CRISPR\n"
    "Guide Capture' features are not put in X: they are written next to the output as a\n"
    "Cell Ranger protospacer calls table PREFIX.guides.csv (PREFIX = FILE without .h5ad),\n"
    "for `pertscore run --guides`. Features of other types are dropped. Parsing is serial\n"
    "on rank 0 (about 16 bytes per nonzero); more ranks only share the write.\n";

typedef struct {
  const char *dir, *out;
  double min_guide_umi;
  int by_id, quiet, help;
} convert_options;

static int parse_convert(int argc, char **argv, convert_options *o) {
  enum { O_OUT = 1, O_UMI, O_VAR, O_QUIET, O_HELP, O_FORCE };
  static const struct option longs[] = {{"output", required_argument, 0, O_OUT},
                                        {"out", required_argument, 0, O_OUT},
                                        {"force", no_argument, 0, O_FORCE},
                                        {"min-guide-umi", required_argument, 0, O_UMI},
                                        {"var-names", required_argument, 0, O_VAR},
                                        {"quiet", no_argument, 0, O_QUIET},
                                        {"help", no_argument, 0, O_HELP},
                                        {0, 0, 0, 0}};
  memset(o, 0, sizeof *o);
  o->min_guide_umi = 3;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (c) {
      case O_OUT: o->out = optarg; break;
      case O_UMI:
        PS_CALL(ps_cli_number("--min-guide-umi", optarg, &o->min_guide_umi));
        if (o->min_guide_umi < 0) PS_FAIL(PS_ERR_INPUT, "--min-guide-umi must be >= 0, got '%s'", optarg);
        break;
      case O_VAR:
        if (strcmp(optarg, "name") != 0 && strcmp(optarg, "id") != 0)
          PS_FAIL(PS_ERR_INPUT, "--var-names expects 'name' or 'id', got '%s'", optarg);
        o->by_id = strcmp(optarg, "id") == 0;
        break;
      case O_FORCE: break; /* OUTPUT is always replaced; --force as for run (one vocabulary) */
      case O_QUIET: o->quiet = 1; break;
      case O_HELP: o->help = 1; return PS_OK;
      default: return ps_cli_unknown_option_in("convert", argv[optind - 1], longs);
    }
  }
  if (optind != argc - 1)
    PS_FAIL(PS_ERR_INPUT, "convert: expected one MEX folder, got %d arguments (see pertscore convert --help)",
            argc - optind);
  o->dir = argv[optind];
  if (!o->out) PS_FAIL(PS_ERR_INPUT, "convert: --output DATA.h5ad is required");
  return PS_OK;
}

/* PREFIX.guides.csv next to the output, PREFIX = OUT without ".h5ad". */
static void guides_path(const char *out, char *path, size_t size) {
  size_t len = strlen(out);
  int strip = len > 5 && strcmp(out + len - 5, ".h5ad") == 0;
  snprintf(path, size, "%.*s.guides.csv", (int)(strip ? len - 5 : len), out);
}

static int convert(MPI_Comm comm, const convert_options *o) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  ps_progress progress;
  ps_progress_init(&progress, comm, o->quiet);
  ps_progress_stage(&progress, "parse");
  ps_mex mex;
  memset(&mex, 0, sizeof mex);
  PS_CALL(ps_error_sync(comm, rank == 0 ? ps_mex_read(o->dir, o->by_id, &progress, &mex) : PS_OK));
  ps_progress_done(&progress);
  ps_progress_stage(&progress, "write");
  char partial[4200], guides[4200], guides_partial[4300];
  snprintf(partial, sizeof partial, "%s.partial", o->out);
  guides_path(o->out, guides, sizeof guides);
  snprintf(guides_partial, sizeof guides_partial, "%s.partial", guides);
  ps_cleanup_register(partial);
  PS_CALL(ps_error_sync(comm, ps_mex_write_h5ad(comm, rank == 0 ? &mex : NULL, o->by_id, partial)));
  int64_t called = 0;
  int with_guides = rank == 0 && mex.guide_names.n > 0;
  int err = with_guides ? ps_mex_write_guide_calls(&mex, guides_partial, o->min_guide_umi, &called) : PS_OK;
  if (with_guides && !err && rename(guides_partial, guides) != 0)
    err = ps_error_set(PS_ERR_SYSTEM, __FILE__, __LINE__, "cannot rename %s to %s", guides_partial, guides);
  if (with_guides && err) unlink(guides_partial);
  PS_CALL(ps_error_sync(comm, err));
  err = ps_output_commit(comm, partial, o->out);
  if (err && with_guides) unlink(guides);
  PS_CALL(ps_error_sync(comm, err));
  ps_cleanup_unregister();
  ps_progress_done(&progress);
  if (rank == 0 && !o->quiet) {
    fprintf(stderr, "pertscore: converted %s: %lld cells x %lld genes, %lld nonzeros -> %s\n", o->dir,
            (long long)mex.x.n_rows, (long long)mex.x.n_cols, (long long)ps_csr_nnz(&mex.x), o->out);
    if (with_guides)
      fprintf(stderr, "pertscore: %lld guide-capture features: %lld cells with a guide at >= %g UMIs -> %s\n",
              (long long)mex.guide_names.n, (long long)called, o->min_guide_umi, guides);
    else
      fprintf(stderr, "pertscore: no CRISPR Guide Capture features (give the guide table to `run` separately)\n");
    if (mex.n_other)
      fprintf(stderr, "pertscore: %lld features of other types (not Gene Expression or CRISPR Guide Capture) dropped\n",
              (long long)mex.n_other);
  }
  ps_mex_free(&mex);
  return PS_OK;
}

int ps_cmd_convert(MPI_Comm comm, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  convert_options o;
  int err = parse_convert(argc, argv, &o);
  if (!err && o.help) {
    if (rank == 0) fputs(convert_usage, stdout);
    return 0;
  }
  if (!err) err = convert(comm, &o);
  err = ps_error_sync(comm, err);
  if (err) ps_die(comm, err, 1);
  return 0;
}
