/* Internal: reading compressed-sparse matrices (CSR/CSC pointer + indices + data
 * datasets) by nnz-balanced blocks of major rows. Shared by the AnnData reader
 * (h5ad_read.c) and the 10x Genomics reader (tenx.c); not a public header. */
#ifndef PS_IO_COMPRESSED_H
#define PS_IO_COMPRESSED_H

#include "h5.h"

/* Split points of the pointer array INDPTR_NAME (n_major + 1 entries) so that
 * every rank gets about the same number of nonzeros, each rank reading only 1/P
 * of the pointer array. bounds has size + 1 entries: rank r gets major rows
 * [bounds[r], bounds[r+1]). Validates the pointer array. Collective. */
int ps_compressed_bounds(const ps_h5 *h, const char *indptr_name, int64_t n_major, int64_t *bounds,
                         int64_t *nnz_total);

/* Read major rows [begin, end) of GROUP/{indptr,indices,data}; out->n_cols must be
 * set (indices are checked against it). Collective; the index check is rank-local,
 * so wrap the call in ps_error_sync. */
int ps_compressed_read_block(const ps_h5 *h, const char *group, int64_t begin, int64_t end, int64_t nnz_total,
                             ps_csr *out);

/* Values finite and >= 0, and (sorted_check) indices strictly increasing within a
 * row; messages name the file, ELEMENT and global row (row0 + local row). Rank-local. */
int ps_compressed_check_values(const ps_h5 *h, const char *element, const ps_csr *m, int64_t row0,
                               int sorted_check);

#endif
