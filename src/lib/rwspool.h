/*
 * rwspool.h - the write-ahead spool of `telem remote-write --spool DIR`.
 *
 * One file per batch ("segment"): DIR/<seq>.seg, seq a 20-digit decimal number that grows
 * with every batch, so that the file names sort in sending order. A segment holds the magic
 * "TLMRWS1\n" and one zstd frame of the batch's remote write 1.0 WriteRequest. It is written
 * to a temporary name, fsynced and renamed, so a crash leaves either the whole segment or
 * none (temporary files "*.tmp" are ignored and removed by tlm_rwspool_list). A segment is
 * removed once the receiver acknowledged (or definitively refused) its samples.
 *
 * The functions keep no state and may be called from several threads for different seqs.
 */
#ifndef TLM_RWSPOOL_H
#define TLM_RWSPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

/* Creates dir if needed and lists its segments: *seqs (caller owns, free()) gets their
 * numbers in ascending order, *n their count, *bytes the sum of their sizes. Leftover
 * temporary files are removed. Returns 0 or a negative code with err filled. */
int tlm_rwspool_list(const char *dir, uint64_t **seqs, size_t *n, int64_t *bytes,
                     struct tlm_error *err);

/* Writes segment seq holding p[0..n) (compressed, durably). Returns its size in bytes on
 * disk (> 0), or a negative code with err filled. */
int64_t tlm_rwspool_write(const char *dir, uint64_t seq, const char *p, size_t n,
                          struct tlm_error *err);

/* Appends the request of segment seq to out. Returns 0, TLM_ENOTFOUND, TLM_ESTATE for a
 * corrupt segment, or another negative code, with err filled. */
int tlm_rwspool_read(const char *dir, uint64_t seq, struct tlm_buf *out, struct tlm_error *err);

/* Removes segment seq. Returns 0 or TLM_EIO with err filled. */
int tlm_rwspool_remove(const char *dir, uint64_t seq, struct tlm_error *err);

#endif
