/*
 * reader.c - line reader over files, stdin and zstd streams (see reader.h).
 *
 * One buffer holds decoded bytes; [start, end) is not yet returned and memchr resumes
 * at scan. A line is returned in place: its "\n" (and a "\r" before it) is overwritten
 * by NUL, so the caller reads it without a copy. The buffer only grows when one line
 * does not fit, so memory is bounded by the longest line plus one block.
 *
 * For zstd inputs the raw bytes go through ZSTD_decompressStream; concatenated frames
 * (what `cat a.zst b.zst` and our archive segments produce) decode as one stream, and a
 * stream that ends inside a frame is reported as truncated.
 */
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define BLOCK (1u << 20)      /* bytes per read */
#define PREFIX 4096           /* leading bytes kept per input for the identity hash */
#define MAX_LINE (1ull << 31) /* a line longer than 2 GiB is refused */

struct tlm_reader {
    const char *const *paths; /* borrowed */
    size_t npaths;
    const char *stdin_name;
    long long *sizes;         /* st_size of regular files, -1 otherwise */

    /* current input */
    size_t cur;               /* index of the current input */
    int fd;                   /* -1 when none is open */
    int opened;               /* cur has been opened (fd may be closed again at EOF) */
    int live;                 /* pipe, socket or tty */
    int wake_fd;              /* see tlm_reader_wake_fd, -1 for none */
    int eof;                  /* raw input exhausted */
    int zstd;                 /* -1 undecided, 0 plain, 1 zstd */
    ZSTD_DCtx *dctx;
    unsigned char *raw;       /* compressed bytes awaiting decompression */
    size_t raw_pos, raw_len;
    size_t zstd_hint;         /* 0 when a frame ended exactly at the last byte fed */
    long long raw_read;       /* raw bytes read from the current input */
    long long done_bytes;     /* raw bytes of finished inputs */

    /* decoded bytes */
    char *buf;
    size_t cap, start, end, scan;

    /* accounting for the current input */
    long long consumed;       /* decoded bytes consumed (returned lines incl. newline) */
    long long line;           /* lines returned */
    long long last_offset;    /* offset of the last line returned */
    unsigned char prefix[PREFIX];
    size_t prefix_len;        /* decoded bytes of the input copied into prefix */

    tlm_reader_block_fn on_block;
    void *on_block_arg;

    int resume_pending;
    int resumed;
    struct tlm_reader_pos resume;
};

uint64_t tlm_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

struct tlm_reader *tlm_reader_create(const char *const *paths, size_t n)
{
    static const char *const stdin_only[] = { "-" };
    struct tlm_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->wake_fd = -1;
    if (n == 0) {
        paths = stdin_only;
        n = 1;
    }
    r->paths = paths;
    r->npaths = n;
    r->fd = -1;
    r->zstd = -1;
    r->cap = BLOCK + 1;
    r->buf = malloc(r->cap);
    r->sizes = calloc(n, sizeof(*r->sizes));
    if (!r->buf || !r->sizes) {
        tlm_reader_destroy(r);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        r->sizes[i] = -1;
        if (strcmp(paths[i], "-") != 0 && stat(paths[i], &st) == 0 && S_ISREG(st.st_mode))
            r->sizes[i] = (long long)st.st_size;
    }
    return r;
}

static void close_input(struct tlm_reader *r)
{
    if (r->fd > 0)
        close(r->fd);
    r->fd = -1;
    ZSTD_freeDCtx(r->dctx);
    r->dctx = NULL;
    free(r->raw);
    r->raw = NULL;
    r->raw_pos = r->raw_len = 0;
}

void tlm_reader_destroy(struct tlm_reader *r)
{
    if (!r)
        return;
    close_input(r);
    free(r->buf);
    free(r->sizes);
    free(r);
}

void tlm_reader_on_block(struct tlm_reader *r, tlm_reader_block_fn fn, void *arg)
{
    r->on_block = fn;
    r->on_block_arg = arg;
}

void tlm_reader_wake_fd(struct tlm_reader *r, int fd)
{
    r->wake_fd = fd;
}

/* Waits until fd is readable, the wake descriptor is, or timeout_ms (-1: no limit)
 * passes. Returns 1 when fd is ready, 0 on timeout, TLM_EAGAIN when woken or
 * interrupted. */
static int wait_readable(const struct tlm_reader *r, int timeout_ms)
{
    struct pollfd p[2] = { { r->fd, POLLIN, 0 }, { r->wake_fd, POLLIN, 0 } };
    int pr = poll(p, r->wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (pr < 0)
        return TLM_EAGAIN; /* EINTR: a signal; the caller looks at its flags */
    if (pr == 0)
        return 0;
    if (r->wake_fd >= 0 && (p[1].revents & POLLIN) && !p[0].revents)
        return TLM_EAGAIN;
    return 1;
}

static int open_input(struct tlm_reader *r, struct tlm_error *err)
{
    const char *path = r->paths[r->cur];
    struct stat st;
    if (strcmp(path, "-") == 0) {
        r->fd = 0;
    } else {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            tlm_error_at(err, path, 0, 0, -1);
            return tlm_error_set(err, TLM_EIO, "cannot open: %s", strerror(errno));
        }
    }
    r->live = fstat(r->fd, &st) == 0 && !S_ISREG(st.st_mode);
    r->opened = 1;
    r->eof = 0;
    r->zstd = -1;
    r->zstd_hint = 1;
    r->raw_read = 0;
    r->consumed = 0;
    r->line = 0;
    r->prefix_len = 0;
    r->start = r->end = r->scan = 0;
    return 0;
}

/* Reads raw bytes into dst (at most n). Returns bytes read, 0 at EOF, TLM_EAGAIN on
 * timeout, or a negative error. */
static long raw_read(struct tlm_reader *r, void *dst, size_t n, int timeout_ms,
                     struct tlm_error *err)
{
    struct pollfd pfd = { r->fd, POLLIN, 0 };
    if (r->live) {
        if (poll(&pfd, 1, 0) == 0) {
            if (r->on_block) {
                int rc = r->on_block(r->on_block_arg);
                if (rc < 0)
                    return rc;
            }
            if (timeout_ms >= 0 || r->wake_fd >= 0) {
                int pr = wait_readable(r, timeout_ms);
                if (pr <= 0)
                    return TLM_EAGAIN;
            }
        }
    } else if (r->on_block && r->fd == 0 && poll(&pfd, 1, 0) == 0) {
        int rc = r->on_block(r->on_block_arg);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        ssize_t got = read(r->fd, dst, n);
        if (got >= 0) {
            r->raw_read += got;
            return (long)got;
        }
        if (errno == EINTR) {
            /* a signal (SIGINT, SIGHUP) arrived: let the caller look at its flags */
            return TLM_EAGAIN;
        }
        if (errno == EAGAIN) {
            int pr = wait_readable(r, timeout_ms >= 0 ? timeout_ms : -1);
            if (pr <= 0)
                return TLM_EAGAIN;
            continue;
        }
        tlm_error_at(err, r->paths[r->cur], 0, 0, -1);
        return tlm_error_set(err, TLM_EIO, "read failed: %s", strerror(errno));
    }
}

/* Decodes more bytes into buf[end..cap-1). Returns bytes added, 0 at end of input,
 * TLM_EAGAIN, or an error. */
static long fill(struct tlm_reader *r, int timeout_ms, struct tlm_error *err)
{
    size_t room;
    long got;
    if (r->start > 0 && (r->start >= r->cap / 2 || r->end == r->cap - 1)) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->scan -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap - 1) {
        size_t ncap = (r->cap - 1) * 2 + 1;
        char *nb;
        if (ncap - 1 > MAX_LINE) {
            tlm_error_at(err, r->paths[r->cur], r->line + 1, 0, r->consumed);
            return tlm_error_set(err, TLM_ERANGE, "line longer than 2 GiB");
        }
        nb = realloc(r->buf, ncap);
        if (!nb)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory for a %zu-byte line", r->cap);
        r->buf = nb;
        r->cap = ncap;
    }
    room = r->cap - 1 - r->end;
    if (r->eof)
        return 0;

    if (r->zstd < 0) {
        /* decide on the first bytes: read until we have 4 or reach EOF */
        static const unsigned char magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
        unsigned char head[4];
        size_t have = 0;
        /* stop early once the bytes so far cannot start a zstd frame: a live client
         * that sent "a\n" must not wait for a fourth byte */
        while (have < 4 && memcmp(head, magic, have) == 0) {
            long n = raw_read(r, head + have, 4 - have, timeout_ms, err);
            if (n == TLM_EAGAIN && have > 0)
                continue;
            if (n < 0)
                return n;
            if (n == 0)
                break;
            have += (size_t)n;
        }
        r->zstd = have == 4 && memcmp(head, magic, 4) == 0;
        if (r->zstd) {
            r->dctx = ZSTD_createDCtx();
            r->raw = malloc(ZSTD_DStreamInSize());
            if (!r->dctx || !r->raw)
                return tlm_error_set(err, TLM_ENOMEM, "out of memory for zstd");
            memcpy(r->raw, head, 4);
            r->raw_pos = 0;
            r->raw_len = 4;
        } else {
            memcpy(r->buf + r->end, head, have);
            got = (long)have;
            if (have == 0)
                r->eof = 1;
            goto account;
        }
    }

    if (!r->zstd) {
        got = raw_read(r, r->buf + r->end, room, timeout_ms, err);
        if (got < 0)
            return got;
        if (got == 0)
            r->eof = 1;
    } else {
        ZSTD_outBuffer out = { r->buf + r->end, room, 0 };
        for (;;) {
            if (r->raw_pos == r->raw_len) {
                long n = raw_read(r, r->raw, ZSTD_DStreamInSize(), timeout_ms, err);
                if (n == TLM_EAGAIN && out.pos > 0)
                    break;
                if (n < 0)
                    return n;
                if (n == 0) {
                    r->eof = 1;
                    if (r->zstd_hint != 0) {
                        tlm_error_at(err, r->paths[r->cur], 0, 0, -1);
                        return tlm_error_set(err, TLM_EPARSE,
                                             "truncated zstd stream (ends inside a frame)");
                    }
                    break;
                }
                r->raw_pos = 0;
                r->raw_len = (size_t)n;
            }
            ZSTD_inBuffer in = { r->raw, r->raw_len, r->raw_pos };
            size_t rc = ZSTD_decompressStream(r->dctx, &out, &in);
            r->raw_pos = in.pos;
            if (ZSTD_isError(rc)) {
                tlm_error_at(err, r->paths[r->cur], 0, 0, -1);
                return tlm_error_set(err, TLM_EPARSE, "corrupt zstd stream: %s",
                                     ZSTD_getErrorName(rc));
            }
            r->zstd_hint = rc;
            if (out.pos == out.size || (out.pos > 0 && r->raw_pos == r->raw_len))
                break;
        }
        got = (long)out.pos;
    }
account:
    if (r->prefix_len < PREFIX && got > 0) {
        size_t k = PREFIX - r->prefix_len;
        if (k > (size_t)got)
            k = (size_t)got;
        memcpy(r->prefix + r->prefix_len, r->buf + r->end, k);
        r->prefix_len += k;
    }
    r->end += (size_t)got;
    return got;
}

/* Makes sure the first `want` decoded bytes of the current input are in prefix (or the
 * input ended). */
static int need_prefix(struct tlm_reader *r, size_t want, struct tlm_error *err)
{
    while (r->prefix_len < want) {
        long n = fill(r, -1, err);
        if (n == TLM_EAGAIN)
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
    }
    return 0;
}

static int do_resume(struct tlm_reader *r, struct tlm_error *err)
{
    const struct tlm_reader_pos *p = &r->resume;
    long long skip;
    int rc;
    r->resume_pending = 0;
    r->resumed = 0;
    if (p->prefix_len < 0 || p->prefix_len > PREFIX || p->offset < p->prefix_len ||
        p->line < 0 || p->line > p->offset)
        return tlm_error_set(err, TLM_ESTATE, "snapshot input position is invalid");
    if (p->input < 0 || (size_t)p->input >= r->npaths || strcmp(r->paths[p->input], p->name))
        return 0;
    r->cur = (size_t)p->input;
    if ((rc = open_input(r, err)) < 0)
        return rc;
    if ((rc = need_prefix(r, (size_t)p->prefix_len, err)) < 0)
        return rc;
    if ((long long)r->prefix_len < p->prefix_len ||
        tlm_fnv1a(TLM_FNV_INIT, r->prefix, (size_t)p->prefix_len) != p->prefix_hash) {
        /* another input under the same name: read everything from the start */
        if (r->cur != 0) {
            if (strcmp(r->paths[r->cur], "-") == 0)
                return tlm_error_set(err, TLM_ESTATE,
                                     "cannot resume: standard input differs from the snapshot's");
            close_input(r);
            r->cur = 0;
            r->opened = 0;
        }
        return 0;
    }
    /* the same input: drop what the snapshot already covers */
    skip = p->offset;
    while (skip > 0) {
        size_t have = r->end - r->start;
        if (have == 0) {
            long n = fill(r, -1, err);
            if (n == TLM_EAGAIN)
                continue;
            if (n < 0)
                return (int)n;
            if (n == 0) {
                tlm_error_at(err, r->paths[r->cur], 0, 0, -1);
                return tlm_error_set(err, TLM_ESTATE,
                                     "input is shorter (%lld bytes) than the snapshot position "
                                     "(%lld bytes)", p->offset - skip, p->offset);
            }
            continue;
        }
        if ((long long)have > skip)
            have = (size_t)skip;
        r->start += have;
        skip -= (long long)have;
    }
    r->scan = r->start;
    r->consumed = p->offset;
    r->line = p->line;
    r->resumed = 1;
    return 0;
}

int tlm_reader_next(struct tlm_reader *r, const char **line, size_t *len, int timeout_ms,
                    struct tlm_error *err)
{
    int rc;
    if (r->resume_pending && (rc = do_resume(r, err)) < 0)
        return rc;
    for (;;) {
        if (!r->opened) {
            if (r->cur >= r->npaths)
                return 0;
            if ((rc = open_input(r, err)) < 0)
                return rc;
        }
        if (r->scan < r->end) {
            char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
            if (nl) {
                char *s = r->buf + r->start;
                size_t n = (size_t)(nl - s);
                size_t full = n + 1;
                if (n > 0 && s[n - 1] == '\r')
                    n--;
                s[n] = '\0';
                r->last_offset = r->consumed;
                r->consumed += (long long)full;
                r->line++;
                r->start += full;
                r->scan = r->start;
                *line = s;
                *len = n;
                return 1;
            }
            r->scan = r->end;
        }
        long got = fill(r, timeout_ms, err);
        if (got < 0) {
            if (got != TLM_EAGAIN && err && !err->source[0])
                tlm_error_at(err, r->paths[r->cur], r->line + 1, 0, r->consumed);
            return (int)got;
        }
        if (got > 0)
            continue;
        /* end of this input: a last line without a newline is still a line */
        if (r->end > r->start) {
            char *s = r->buf + r->start;
            size_t n = r->end - r->start;
            r->last_offset = r->consumed;
            r->consumed += (long long)n;
            r->line++;
            r->start = r->scan = r->end;
            if (n > 0 && s[n - 1] == '\r')
                n--;
            s[n] = '\0';
            *line = s;
            *len = n;
            return 1;
        }
        r->done_bytes += r->raw_read;
        r->raw_read = 0;
        close_input(r);
        if (r->cur + 1 >= r->npaths) {
            r->eof = 1;
            return 0;
        }
        r->cur++;
        r->opened = 0;
        r->consumed = r->line = 0;
        r->prefix_len = 0;
    }
}

const char *tlm_reader_source(const struct tlm_reader *r)
{
    return r->paths[r->cur < r->npaths ? r->cur : r->npaths - 1];
}

int tlm_reader_input(const struct tlm_reader *r)
{
    return (int)(r->cur < r->npaths ? r->cur : r->npaths - 1);
}

long long tlm_reader_line(const struct tlm_reader *r)
{
    return r->line;
}

long long tlm_reader_offset(const struct tlm_reader *r)
{
    return r->last_offset;
}

long long tlm_reader_bytes_in(const struct tlm_reader *r)
{
    return r->done_bytes + (r->fd >= 0 ? r->raw_read : 0);
}

double tlm_reader_progress(const struct tlm_reader *r)
{
    long long total = 0;
    for (size_t i = 0; i < r->npaths; i++) {
        if (r->sizes[i] < 0)
            return -1;
        total += r->sizes[i];
    }
    if (total == 0)
        return 1;
    double f = (double)tlm_reader_bytes_in(r) / (double)total;
    return f > 1 ? 1 : f;
}

int tlm_reader_is_live(const struct tlm_reader *r)
{
    return r->live;
}

void tlm_reader_pos(const struct tlm_reader *r, struct tlm_reader_pos *pos)
{
    size_t plen;
    memset(pos, 0, sizeof(*pos));
    pos->input = (int)(r->cur < r->npaths ? r->cur : r->npaths - 1);
    snprintf(pos->name, sizeof(pos->name), "%s", r->paths[pos->input]);
    pos->offset = r->consumed;
    pos->line = r->line;
    plen = r->prefix_len;
    if ((long long)plen > r->consumed)
        plen = (size_t)r->consumed;
    pos->prefix_len = (long long)plen;
    pos->prefix_hash = tlm_fnv1a(TLM_FNV_INIT, r->prefix, plen);
}

void tlm_reader_resume(struct tlm_reader *r, const struct tlm_reader_pos *pos)
{
    r->resume = *pos;
    r->resume_pending = 1;
}

int tlm_reader_resumed(const struct tlm_reader *r)
{
    return r->resumed;
}
