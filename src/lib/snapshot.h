/*
 * snapshot.h - versioned, zstd-compressed state files written atomically.
 *
 * A snapshot is one zstd stream (with the content checksum on, so a flipped bit is
 * caught) holding NDJSON: a header line, any number of record lines, and a trailer line
 *
 *     {"telem_snapshot":1,"command":"window","options":{...},"input":{...},...}
 *     {...record...}
 *     {"telem_snapshot_end":<number of records>}
 *
 * so `zstdcat FILE | jq .` shows it. The header carries the format version, the options
 * that shaped the state (restoring under different ones is refused, naming the option)
 * and the input position. A file is written to "<path>.tmp.<pid>", fsynced, renamed
 * over path and the directory fsynced, so a crash leaves either the old or the new
 * snapshot, never a mix. A missing trailer (truncation), a bad checksum, a line that is
 * not JSON or a record count that differs from the trailer's is an error, never a
 * partial restore.
 */
#ifndef TLM_SNAPSHOT_H
#define TLM_SNAPSHOT_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

#define TLM_SNAPSHOT_VERSION 1

struct tlm_snap_writer;
struct tlm_snap_reader;

/* Starts a snapshot for path. header (borrowed) is an object whose fields follow
 * "telem_snapshot" in the header line. Returns a writer (caller owns; end it with
 * tlm_snap_commit or tlm_snap_abort) or NULL with err filled. */
struct tlm_snap_writer *tlm_snap_create(const char *path, const json_t *header,
                                        struct tlm_error *err);

/* Appends a record (borrowed; any JSON value, written compact with reals exact).
 * Returns 0 or an error. */
int tlm_snap_put(struct tlm_snap_writer *w, const json_t *rec, struct tlm_error *err);

/* Appends a record given as one line of JSON text (no newline inside). */
int tlm_snap_put_raw(struct tlm_snap_writer *w, const char *line, size_t n,
                     struct tlm_error *err);

/* Writes the trailer, fsyncs and renames the file into place, fsyncs the directory and
 * frees w. On failure the temporary file is removed, the old snapshot is untouched and
 * an error is returned. */
int tlm_snap_commit(struct tlm_snap_writer *w, struct tlm_error *err);

/* Drops an unfinished snapshot (removes the temporary file) and frees w. NULL is fine. */
void tlm_snap_abort(struct tlm_snap_writer *w);

/* Opens a snapshot and reads its header: returns a reader (caller owns; close with
 * tlm_snap_close) and a new reference in *header (caller owns), or NULL with err filled:
 * err->code is TLM_ENOTFOUND when the file does not exist, TLM_ESTATE when it is not a
 * telem snapshot or of a newer format. */
struct tlm_snap_reader *tlm_snap_open(const char *path, json_t **header,
                                      struct tlm_error *err);

/* Reads the next record: 1 with a new reference in *rec (caller owns), 0 at the trailer
 * (after checking the record count and that nothing follows), or TLM_ESTATE with err
 * filled for a truncated or corrupt file. */
int tlm_snap_next(struct tlm_snap_reader *r, json_t **rec, struct tlm_error *err);

/* Closes r. NULL is fine. */
void tlm_snap_close(struct tlm_snap_reader *r);

/* Compares the "options" object of a snapshot header with the current options (both
 * borrowed). Returns 0 when they are equal, else TLM_ESTATE with err naming the first
 * option that differs and both values. */
int tlm_snap_check_options(const json_t *header, const json_t *options,
                           struct tlm_error *err);

#endif
