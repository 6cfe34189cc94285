/*
 * writer.c - buffered NDJSON output (see writer.h).
 */
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIECE (64u << 10)

int tlm_writer_open(const char *path, int append, struct tlm_writer **out,
                    struct tlm_error *err)
{
    struct tlm_writer *w = calloc(1, sizeof(*w));
    struct stat st;
    if (!w)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    if (!path || strcmp(path, "-") == 0) {
        w->fd = 1;
        snprintf(w->name, sizeof(w->name), "-");
    } else {
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
        w->fd = open(path, flags, 0644);
        if (w->fd < 0) {
            int e = errno;
            free(w);
            tlm_error_at(err, path, 0, 0, -1);
            return tlm_error_set(err, TLM_EIO, "cannot open for writing: %s", strerror(e));
        }
        w->own_fd = 1;
        snprintf(w->name, sizeof(w->name), "%s", path);
    }
    w->is_file = fstat(w->fd, &st) == 0 && S_ISREG(st.st_mode);
    if (tlm_buf_grow(&w->buf, TLM_WRITER_HIGH + PIECE)) {
        tlm_writer_close(w, NULL);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    *out = w;
    return 0;
}

int tlm_writer_flush(struct tlm_writer *w, struct tlm_error *err)
{
    size_t off = 0;
    while (off < w->buf.len) {
        size_t n = w->buf.len - off;
        ssize_t got;
        if (n > PIECE) {
            /* end each write on a line boundary, so that a process killed between two
             * writes leaves whole lines (a line longer than a piece goes in one write) */
            const char *p = w->buf.data + off, *nl = NULL;
            for (size_t i = PIECE; i > 0; i--)
                if (p[i - 1] == '\n') {
                    nl = p + i - 1;
                    break;
                }
            if (!nl)
                nl = memchr(w->buf.data + off + PIECE, '\n', n - PIECE);
            n = nl ? (size_t)(nl - (w->buf.data + off)) + 1 : n;
        }
        got = write(w->fd, w->buf.data + off, n);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                /* a non-blocking descriptor from the parent: wait until it drains */
                fd_set fds;
                FD_ZERO(&fds);
                FD_SET(w->fd, &fds);
                select(w->fd + 1, NULL, &fds, NULL, NULL);
                continue;
            }
            int e = errno;
            memmove(w->buf.data, w->buf.data + off, w->buf.len - off);
            w->buf.len -= off;
            tlm_error_at(err, w->name, 0, 0, -1);
            if (e == EPIPE)
                return tlm_error_set(err, TLM_EPIPE, "reader closed the output");
            return tlm_error_set(err, TLM_EIO, "write failed: %s", strerror(e));
        }
        off += (size_t)got;
        w->written += got;
    }
    tlm_buf_reset(&w->buf);
    return 0;
}

int tlm_writer_sync(struct tlm_writer *w, struct tlm_error *err)
{
    int rc = tlm_writer_flush(w, err);
    if (rc)
        return rc;
    if (w->is_file && fsync(w->fd) != 0) {
        tlm_error_at(err, w->name, 0, 0, -1);
        return tlm_error_set(err, TLM_EIO, "fsync failed: %s", strerror(errno));
    }
    return 0;
}

int tlm_writer_close(struct tlm_writer *w, struct tlm_error *err)
{
    int rc;
    if (!w)
        return 0;
    rc = tlm_writer_flush(w, err);
    if (w->own_fd && close(w->fd) != 0 && rc == 0) {
        tlm_error_at(err, w->name, 0, 0, -1);
        rc = tlm_error_set(err, TLM_EIO, "close failed: %s", strerror(errno));
    }
    tlm_buf_free(&w->buf);
    free(w);
    return rc;
}
