/*
 * archive.h - the raw archive of `telem ingest --archive DIR`: every accepted raw record
 * is appended to zstd segments that any telem stage (or zstdcat) can replay later.
 *
 * Layout: DIR/raw-YYYYMMDDTHH-NNNNNN.ndjson.zst, one record per line. YYYYMMDDTHH is the
 * UTC hour in which the segment's first record arrived, NNNNNN a sequence number that
 * keeps increasing across runs, so `ls DIR/raw-*.zst` (shell glob order) is arrival order and
 *
 *     telem window -i DIR/raw-*.zst ...    zstdcat DIR/raw-*.zst | telem window ...
 *
 * replay history for a backfill. A segment is rotated when its compressed size passes
 * max_segment_bytes and when the UTC hour of arrival changes. Each segment is a sequence
 * of complete, checksummed zstd frames, each written with one write(2), so a process
 * killed with SIGKILL at any moment leaves every segment readable to its end; records put
 * since the last tlm_archive_flush() may be lost, nothing else. A DIR is written by one
 * process at a time (an flock on DIR/.lock says so).
 */
#ifndef TLM_ARCHIVE_H
#define TLM_ARCHIVE_H

#include <stddef.h>

#include "error.h"
#include "time.h"

#define TLM_ARCHIVE_DEFAULT_SEGMENT (64u << 20) /* 64 MiB compressed */
#define TLM_ARCHIVE_DEFAULT_FRAME (1u << 20)    /* 1 MiB raw per zstd frame */
#define TLM_ARCHIVE_DEFAULT_LEVEL 3

struct tlm_archive_opts {
    const char *dir;          /* created with its parents if missing (mode 0755); borrowed
                                 for the call only */
    size_t max_segment_bytes; /* rotate when a segment's compressed size reaches this;
                                 0 = TLM_ARCHIVE_DEFAULT_SEGMENT */
    size_t frame_bytes;       /* end a zstd frame after this many raw bytes;
                                 0 = TLM_ARCHIVE_DEFAULT_FRAME */
    int level;                /* zstd level; 0 = TLM_ARCHIVE_DEFAULT_LEVEL */
};

struct tlm_archive;

/* Opens (creating if needed) the archive directory o->dir, takes its lock, and scans it
 * for existing segments: the next segment gets a number above the highest found (an
 * existing segment is never appended to). A temporary segment left by a run killed
 * while creating it is renamed into place if it holds data, removed if empty. No file
 * is created until the first frame is written, so an archive never holds an empty
 * segment. Returns a new archive (caller owns it; release with tlm_archive_close), or
 * NULL with err filled (TLM_EINVAL for bad options, TLM_EIO when DIR cannot be created,
 * read or locked, TLM_ENOMEM). */
struct tlm_archive *tlm_archive_open(const struct tlm_archive_opts *o, struct tlm_error *err);

/* Appends one raw record (rec, len bytes, borrowed for the call; no newline: the archive
 * adds "\n") received at wall time now, whose UTC hour picks the segment: when the hour
 * differs from the current segment's, the pending frame is written to that segment and
 * the next record starts a new one. A record containing "\n" is refused (TLM_EINVAL),
 * as it would replay as two lines. Records are buffered until frame_bytes are pending,
 * then compressed and written as one frame. Returns 0, or TLM_EINVAL / TLM_EIO /
 * TLM_ENOMEM with err filled; after TLM_EIO the segment is cut back to its last complete
 * frame and the pending records are kept, so a later flush may retry. */
int tlm_archive_put(struct tlm_archive *a, const char *rec, size_t len, tlm_time_t now,
                    struct tlm_error *err);

/* Ends the current frame: everything put so far is written to the segment as complete
 * frames (in the kernel's page cache: safe against a killed process, not against power
 * loss; segments are fsync'ed when rotated and at close). Call it when input is idle
 * and at least every second. Nothing pending is a no-op. Returns 0 or TLM_EIO /
 * TLM_ENOMEM with err filled. */
int tlm_archive_flush(struct tlm_archive *a, struct tlm_error *err);

/* Flushes, fsyncs and closes the current segment and the directory, releases the lock
 * and frees a (even on error). NULL is fine. Returns 0 or the first error (err filled). */
int tlm_archive_close(struct tlm_archive *a, struct tlm_error *err);

/* Counters for --stats, over this archive's lifetime (this run only). */
long long tlm_archive_records(const struct tlm_archive *a);   /* records put */
long long tlm_archive_raw_bytes(const struct tlm_archive *a); /* raw bytes put, with "\n" */
long long tlm_archive_bytes(const struct tlm_archive *a);     /* compressed bytes written */
int tlm_archive_segments(const struct tlm_archive *a);        /* segments created */

/* Path of the segment being written, or of the last one closed; "" before the first.
 * Borrowed until the next put/flush/close. */
const char *tlm_archive_segment_path(const struct tlm_archive *a);

#endif
