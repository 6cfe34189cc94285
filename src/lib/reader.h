/*
 * reader.h - the line reader every stage reads its input with.
 *
 * Reads one or more inputs in order (a path, or "-" for stdin; no path means stdin),
 * each plain or zstd-compressed (detected by the frame magic 28 b5 2f fd, so
 * `telem window -i hour.ndjson.zst` and `zstdcat x | telem window` both work). Lines
 * are split with memchr over 1 MiB blocks and may be of any length; a trailing "\r"
 * is removed (CRLF input) and a last line without "\n" is still a line.
 *
 * For errors and for resuming, the reader knows, for the line it returned last, the
 * input's name, the 1-based line number and the byte offset of its first byte in the
 * uncompressed input. Its position (struct tlm_reader_pos) can be stored in a
 * snapshot; a new reader over the same inputs can resume there. "The same input" is
 * checked, not assumed: the position records a hash of the input's first bytes, and an
 * input that starts differently (next hour's log fed to the same --state) is read from
 * its beginning.
 */
#ifndef TLM_READER_H
#define TLM_READER_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

struct tlm_reader;

/* Where a reader stands: everything before it has been returned. */
struct tlm_reader_pos {
    int input;              /* index into the input list */
    char name[256];         /* that input's name, for the identity check */
    long long offset;       /* uncompressed bytes consumed from that input */
    long long line;         /* lines consumed from that input */
    long long prefix_len;   /* how many leading bytes prefix_hash covers */
    uint64_t prefix_hash;   /* FNV-1a of the first prefix_len bytes of that input */
};

/* Called before the reader makes a read that may block (no complete line buffered and
 * the descriptor has nothing ready). Stages flush their output here, so a live pipe sees
 * results at once while a batch run makes few large writes. Return 0, or a negative
 * TLM_E* code to make tlm_reader_next fail with it. */
typedef int (*tlm_reader_block_fn)(void *arg);

/* Creates a reader over paths[0..n-1] ("-" is stdin; n == 0 reads stdin). The path
 * strings are borrowed until tlm_reader_destroy. Inputs are opened lazily, in order;
 * a missing file is reported when it is reached. Returns NULL on OOM. */
struct tlm_reader *tlm_reader_create(const char *const *paths, size_t n);

/* Closes what is open and frees r. NULL is fine. */
void tlm_reader_destroy(struct tlm_reader *r);

/* Sets the hook called before a read that may block (NULL to remove). */
void tlm_reader_on_block(struct tlm_reader *r, tlm_reader_block_fn fn, void *arg);

/* A descriptor that becomes readable when the caller must look at its flags (the read
 * end of a signal handler's self-pipe): a read from a pipe, socket or tty that would
 * block returns TLM_EAGAIN as soon as it is readable, so a signal that arrives just
 * before the wait is not lost. The reader never reads it. -1 (the default) for none. */
void tlm_reader_wake_fd(struct tlm_reader *r, int fd);

/* Returns the next line: 1 with *line and *len set (borrowed until the next call; the line
 * has no "\n" or "\r\n" and is followed by a NUL byte), 0 at the end of the last input,
 * TLM_EAGAIN if timeout_ms >= 0 and no complete line arrived within it (live input),
 * or a negative code with err filled (unreadable file, corrupt zstd stream). */
int tlm_reader_next(struct tlm_reader *r, const char **line, size_t *len, int timeout_ms,
                    struct tlm_error *err);

/* Name of the input the last line came from ("-" for stdin). Borrowed. */
const char *tlm_reader_source(const struct tlm_reader *r);
/* Index in the input list of the input the last line came from. */
int tlm_reader_input(const struct tlm_reader *r);
/* 1-based line number and byte offset of the last line returned. */
long long tlm_reader_line(const struct tlm_reader *r);
long long tlm_reader_offset(const struct tlm_reader *r);
/* Total bytes read from all inputs so far (compressed bytes for zstd inputs). */
long long tlm_reader_bytes_in(const struct tlm_reader *r);
/* Fraction of the inputs' total size read so far, in [0,1], or -1 when unknown (stdin,
 * pipes). */
double tlm_reader_progress(const struct tlm_reader *r);
/* Is the current input a live stream (pipe, socket or terminal) rather than a file? */
int tlm_reader_is_live(const struct tlm_reader *r);

/* Current position (after the last returned line). */
void tlm_reader_pos(const struct tlm_reader *r, struct tlm_reader_pos *pos);

/* Asks the reader to resume at pos before the first call of tlm_reader_next. Inputs
 * before pos->input are skipped when the input list matches by name; the input at
 * pos->input is skipped up to pos->offset only when its first prefix_len bytes hash to
 * prefix_hash. After the first line is returned, tlm_reader_resumed() tells whether the
 * position was honoured (1), or the inputs differed and reading began at the start (0). */
void tlm_reader_resume(struct tlm_reader *r, const struct tlm_reader_pos *pos);
int tlm_reader_resumed(const struct tlm_reader *r);

/* FNV-1a 64-bit, continuing from h (start with TLM_FNV_INIT). */
#define TLM_FNV_INIT UINT64_C(0xcbf29ce484222325)
uint64_t tlm_fnv1a(uint64_t h, const void *p, size_t n);

#endif
