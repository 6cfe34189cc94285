/*
 * writer.h - buffered output of NDJSON lines.
 *
 * Lines collect in one large buffer (struct tlm_buf) that is written out when it passes
 * 1 MiB, when the stage's input has nothing ready (the reader's on_block hook calls
 * tlm_writer_flush), and at the end. Each write(2) is at most 64 KiB, the default pipe
 * buffer, so that a chain of stages runs in parallel instead of taking turns, and ends
 * on a line boundary, so that a killed process leaves only whole lines behind. A reader
 * that went away (`| head`) makes calls fail with TLM_EPIPE, which the command layer
 * treats as a quiet end; any other failed write is an error.
 */
#ifndef TLM_WRITER_H
#define TLM_WRITER_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

#define TLM_WRITER_HIGH (1u << 20) /* flush when this much is buffered */

struct tlm_writer {
    struct tlm_buf buf;  /* pending bytes; callers may append to it directly */
    int fd;              /* destination */
    int own_fd;          /* close fd in tlm_writer_close */
    int is_file;         /* a regular file: tlm_writer_sync fsyncs it */
    char name[256];      /* for error messages ("-" for stdout) */
    long long written;   /* bytes written so far */
    long long lines;     /* lines written through tlm_writer_line */
};

/* Opens path for writing ("-" or NULL is stdout): truncated, or appended to when append
 * is set. Returns 0 and a new writer in *out (caller owns; tlm_writer_close frees it),
 * or TLM_EIO / TLM_ENOMEM with err filled. */
int tlm_writer_open(const char *path, int append, struct tlm_writer **out,
                    struct tlm_error *err);

/* Writes everything buffered. Returns 0, TLM_EPIPE or TLM_EIO. */
int tlm_writer_flush(struct tlm_writer *w, struct tlm_error *err);

/* Flushes, then fsyncs a regular file (no-op for pipes). Returns 0 or an error. */
int tlm_writer_sync(struct tlm_writer *w, struct tlm_error *err);

/* Flushes, closes (when the writer owns the descriptor) and frees w. NULL is fine.
 * Returns the first error met, or 0. */
int tlm_writer_close(struct tlm_writer *w, struct tlm_error *err);

/* Appends a line (n bytes and "\n"). Returns 0, or an error from a flush. */
static inline int tlm_writer_line(struct tlm_writer *w, const char *p, size_t n,
                                  struct tlm_error *err)
{
    if (tlm_buf_reserve(&w->buf, n + 1))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    memcpy(w->buf.data + w->buf.len, p, n);
    w->buf.len += n;
    w->buf.data[w->buf.len++] = '\n';
    w->buf.data[w->buf.len] = '\0';
    w->lines++;
    return w->buf.len >= TLM_WRITER_HIGH ? tlm_writer_flush(w, err) : 0;
}

/* After appending to w->buf directly: counts a line and flushes past the high mark. */
static inline int tlm_writer_end_line(struct tlm_writer *w, struct tlm_error *err)
{
    w->lines++;
    return w->buf.len >= TLM_WRITER_HIGH ? tlm_writer_flush(w, err) : 0;
}

#endif
