/* Content digests for provenance (issue: idempotent reprocessing): a run records
 * the digest of its input files and of its effective parameters, and a rerun whose
 * digests match is "up to date". Change detection, not security: a 64-bit
 * multiply-xorshift hash over 8-byte words, fast enough to run at disk speed. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pertscore/util.h"

/* Chunks have a fixed size so the digest does not depend on the number of ranks. */
#define DIGEST_CHUNK (64 << 20)
#define DIGEST_PIECE (1 << 20)

static uint64_t mix(uint64_t h, uint64_t word) {
  h ^= word + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h *= 0xbf58476d1ce4e5b9ULL;
  return h ^ (h >> 31);
}

static uint64_t hash_words(const unsigned char *p, size_t n, uint64_t h) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = mix(h, w);
  }
  return h;
}

/* The last n bytes of a total-byte message whose earlier words are in h. */
static uint64_t hash_bytes(const unsigned char *p, size_t n, uint64_t h, size_t total) {
  size_t i = n & ~(size_t)7;
  h = hash_words(p, i, h);
  uint64_t tail = 0;
  memcpy(&tail, p + i, n - i);
  return mix(mix(h, tail), (uint64_t)total);
}

int ps_digest_string(const char *text, char out[17]) {
  size_t len = strlen(text);
  uint64_t h = hash_bytes((const unsigned char *)text, len, 0x70657274ULL, len);
  snprintf(out, 17, "%016llx", (unsigned long long)h);
  return PS_OK;
}

int ps_digest_file(MPI_Comm comm, const char *path, char out[17]) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int fd = open(path, O_RDONLY);
  struct stat st;
  int ok = fd >= 0 && fstat(fd, &st) == 0, all_ok = 0;
  PS_CHECK_MPI(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm));
  if (!all_ok) {
    if (fd >= 0) close(fd);
    PS_FAIL(PS_ERR_INPUT, "%s: cannot open: no such file or not readable", path);
  }
  int64_t n_chunks = ((int64_t)st.st_size + DIGEST_CHUNK - 1) / DIGEST_CHUNK;
  uint64_t *chunk_hash;
  PS_ALLOC(chunk_hash, n_chunks + 1);
  /* each chunk hashed as it streams through a small buffer that stays in cache (a 64 MiB
   * buffer cost more in first-touch page faults than the hashing, tools/bench/stage_ratios.py);
   * the words are mixed in the same order, so the digest is hash_bytes of the chunk */
  unsigned char *buf = malloc(DIGEST_PIECE);
  if (!buf) PS_FAIL(PS_ERR_SYSTEM, "out of memory computing a digest");
  int bad = 0;
  for (int64_t c = rank; c < n_chunks && !bad; c += size) { /* chunks round-robin over ranks */
    off_t at = (off_t)c * DIGEST_CHUNK;
    size_t want = (size_t)((int64_t)st.st_size - at < DIGEST_CHUNK ? (int64_t)st.st_size - at : DIGEST_CHUNK);
    uint64_t h = (uint64_t)c;
    for (size_t done = 0; done < want && !bad;) {
      size_t piece = want - done < DIGEST_PIECE ? want - done : DIGEST_PIECE, got = 0;
      while (got < piece) {
        ssize_t r = pread(fd, buf + got, piece - got, at + (off_t)(done + got));
        if (r <= 0) {
          bad = 1;
          break;
        }
        got += (size_t)r;
      }
      done += piece;
      if (done < want) h = hash_words(buf, piece, h); /* DIGEST_PIECE: a multiple of 8 */
      else h = hash_bytes(buf, piece, h, want);
    }
    chunk_hash[c] = h;
  }
  free(buf);
  close(fd);
  int any_bad = 0;
  PS_CHECK_MPI(MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, comm));
  if (any_bad) PS_FAIL(PS_ERR_INPUT, "%s: read error while computing its digest", path);
  /* every chunk hash is nonzero on exactly one rank: a sum gathers them */
  PS_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, chunk_hash, (int)n_chunks, MPI_UINT64_T, MPI_SUM, comm));
  uint64_t h = mix(0x70736469ULL, (uint64_t)st.st_size);
  for (int64_t c = 0; c < n_chunks; c++) h = mix(h, chunk_hash[c]);
  free(chunk_hash);
  snprintf(out, 17, "%016llx", (unsigned long long)h);
  return PS_OK;
}
