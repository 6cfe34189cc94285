/*
 * archive.c - the raw archive: zstd segments rotated by size and by hour (see archive.h).
 *
 * Design. Records are appended, each with a "\n", to a pending buffer in memory. When the
 * next record would take the buffer past frame_bytes, and on tlm_archive_flush(), the
 * buffer is compressed *completely in memory* into one zstd frame (ZSTD_compress2 with the
 * content checksum on) and that frame is handed to the kernel with a single write(2)
 * (looping only on a short write). A process killed with SIGKILL either has finished that
 * write(2) to a regular file or has not started it: the kernel never leaves half of its copy
 * into the page cache behind, so after `kill -9` every segment is a sequence of whole
 * frames and replays to its end without error; what is lost is at most the records put
 * since the last flush. Power loss is another matter: pages not yet written back may be
 * lost or (on some file systems) show up as zeros, which the reader reports as a corrupt
 * stream. We fsync a segment when it is rotated and at close, and the directory after
 * that; a caller that needs more can rotate more often.
 *
 * A write(2) that fails part way (ENOSPC, EIO) does leave a partial frame: we cut the
 * segment back with ftruncate to its last complete frame and keep the records pending.
 *
 * Segments. A segment file is created only when its first frame is ready: the frame is
 * written to ".raw-...ndjson.zst.tmp" (a dot file, outside the `raw-*.zst` glob), which is then
 * linked to its final name (link(2) fails rather than replace a file; rename(2) is the
 * fallback on file systems without hard links) and unlinked. So no segment is ever empty
 * (zstdcat refuses an empty file) and a name is never reused. The name is
 * raw-YYYYMMDDTHH-NNNNNN.ndjson.zst: the UTC hour of the segment's first record, then a
 * sequence number one above the highest found in DIR at open, so shell glob order is
 * arrival order across restarts. Invariant: hours in names never decrease: if the wall
 * clock steps back across an hour, the new segment is named after the highest hour used
 * (the records' order, not the clock, is what replay needs). Sequence numbers are printed
 * with at least six digits; past 999999 in one hour lexical order would break (at the
 * default 64 MiB that is 64 TB in an hour).
 *
 * Rotation: after a frame, when the segment's compressed size reaches max_segment_bytes;
 * before a record whose UTC hour (of `now`) differs from the current segment's. An
 * archive never appends to a segment of an earlier run, so the first put after open
 * always starts a new segment.
 *
 * One writer per DIR: an flock(2) on DIR/.lock, released by the kernel when the process
 * dies, however it dies.
 */
#include "archive.h"
#include "buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define NS_PER_HOUR (INT64_C(3600) * TLM_NS_PER_S)
#define NO_HOUR INT64_MIN
#define NAME_MAX_LEN 64 /* ".raw-YYYYMMDDTHH-<20 digits>.ndjson.zst.tmp" fits */

struct tlm_archive {
    char *dir;                  /* owned copy of opts.dir */
    int lock_fd;                /* DIR/.lock, flock'ed; -1 if none */
    size_t max_segment;         /* rotate at this compressed size */
    size_t frame_bytes;         /* raw bytes per frame, at most (unless one record is more) */
    ZSTD_CCtx *cctx;            /* level and checksum set once; one frame per compress2 */
    struct tlm_buf pending;     /* raw records of the frame being built, "\n"-terminated */
    unsigned char *zbuf;        /* compressed frame awaiting write */
    size_t zcap;
    int fd;                     /* current segment, or -1 (next frame creates one) */
    long long seg_bytes;        /* compressed bytes in the current segment (= its size) */
    unsigned long long next_seq;/* sequence number of the next segment */
    int64_t hour;               /* UTC hour index (ns / 1 h) of pending records and the
                                   current segment; NO_HOUR before the first put */
    int64_t name_hour;          /* highest hour used in a segment name (names never go
                                   back); NO_HOUR if none */
    char *path;                 /* current / last segment path; "" before the first */
    char *tmp;                  /* scratch for the temporary name */
    size_t path_cap;
    long long records, raw_bytes, bytes;
    int segments;
};

/* ---- calendar: hour index <-> YYYYMMDDTHH (time.h's days/civil conversions) ---------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b < 0) ? q - 1 : q;
}

/* "raw-YYYYMMDDTHH-NNNNNN.ndjson.zst" into buf (NAME_MAX_LEN). */
static void segment_name(char *buf, size_t n, int64_t hour, unsigned long long seq)
{
    int64_t days = floor_div(hour, 24), y;
    unsigned m, d;
    tlm_civil_from_days(days, &y, &m, &d);
    snprintf(buf, n, "raw-%04lld%02u%02uT%02d-%06llu.ndjson.zst", (long long)y, m, d,
             (int)(hour - days * 24), seq);
}

static int parse_digits(const char *s, int n, int64_t *v)
{
    int64_t x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

/* Parses a segment name (or its ".<name>.tmp" temporary). Returns 1 for a segment, 2 for
 * a temporary, 0 for anything else. */
static int parse_segment_name(const char *s, int64_t *hour, unsigned long long *seq)
{
    int tmp = 0;
    size_t n = strlen(s);
    if (s[0] == '.') {
        if (n < 5 || strcmp(s + n - 4, ".tmp") != 0)
            return 0;
        tmp = 1;
        s++;
        n -= 5;
    }
    static const char suffix[] = ".ndjson.zst";
    const size_t slen = sizeof suffix - 1;
    /* raw- 8 T 2 - >=1 digits suffix */
    if (n < 4 + 8 + 1 + 2 + 1 + 1 + slen || memcmp(s, "raw-", 4) != 0 || s[12] != 'T' ||
        s[15] != '-' || memcmp(s + n - slen, suffix, slen) != 0)
        return 0;
    int64_t ymd, hh;
    if (parse_digits(s + 4, 8, &ymd) || parse_digits(s + 13, 2, &hh) || hh > 23)
        return 0;
    unsigned m = (unsigned)(ymd / 100 % 100), d = (unsigned)(ymd % 100);
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return 0;
    size_t ndig = n - slen - 16;
    if (ndig > 19)
        return 0;
    int64_t q;
    if (parse_digits(s + 16, (int)ndig, &q))
        return 0;
    *hour = tlm_days_from_civil(ymd / 10000, m, d) * 24 + hh;
    *seq = (unsigned long long)q;
    return tmp ? 2 : 1;
}

/* ---- file helpers --------------------------------------------------------------------- */

/* Writes all n bytes (one write(2) unless the kernel takes fewer). Returns 0 or -1 (errno). */
static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    /* some file systems refuse fsync on a directory; that is not a failure of ours */
    if (rc && (errno == EINVAL || errno == EROFS || errno == EBADF))
        rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* mkdir -p with mode 0755. Returns 0 or -1 (errno). */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return -1;
        }
        p[i] = c;
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static void join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* A temporary left by a run killed between writing a new segment's first frame and
 * naming it: keep its complete frames under the final name, or remove it. The final name
 * may already exist (killed between link and unlink): then the temporary is a copy. */
static int recover_tmp(struct tlm_archive *a, const char *tmpname, struct tlm_error *err)
{
    char *tmp = a->tmp, *fin = a->path;
    join(tmp, a->path_cap, a->dir, tmpname);
    snprintf(fin, a->path_cap, "%s/%.*s", a->dir, (int)(strlen(tmpname) - 5), tmpname + 1);
    struct stat st;
    if (lstat(fin, &st) == 0 || lstat(tmp, &st) != 0 || !S_ISREG(st.st_mode))
        goto drop;
    int fd = open(tmp, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        goto drop;
    size_t len = 0;
    unsigned char *data = NULL;
    if (fstat(fd, &st) == 0 && st.st_size > 0 && (data = malloc((size_t)st.st_size))) {
        ssize_t r = pread(fd, data, (size_t)st.st_size, 0);
        size_t have = r > 0 ? (size_t)r : 0;
        /* keep the longest prefix of whole frames */
        while (len < have) {
            size_t f = ZSTD_findFrameCompressedSize(data + len, have - len);
            if (ZSTD_isError(f))
                break;
            len += f;
        }
    }
    free(data);
    if (len > 0 && ftruncate(fd, (off_t)len) == 0 && fsync(fd) == 0) {
        close(fd);
        if (rename(tmp, fin) != 0)
            return tlm_error_set(err, TLM_EIO, "%s: cannot rename to %s: %s", tmp, fin,
                                 strerror(errno));
        a->path[0] = '\0';
        return 0;
    }
    close(fd);
drop:
    a->path[0] = '\0';
    if (unlink(tmp) != 0 && errno != ENOENT)
        return tlm_error_set(err, TLM_EIO, "%s: cannot remove: %s", tmp, strerror(errno));
    return 0;
}

/* Scans DIR: next_seq above every segment and temporary, name_hour the highest hour;
 * then recovers temporaries. */
static int scan_dir(struct tlm_archive *a, struct tlm_error *err)
{
    DIR *d = opendir(a->dir);
    if (!d)
        return tlm_error_set(err, TLM_EIO, "%s: cannot read directory: %s", a->dir,
                             strerror(errno));
    char **tmps = NULL;
    size_t ntmp = 0, tcap = 0;
    int rc = 0;
    unsigned long long max_seq = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t hour;
        unsigned long long seq;
        int kind = parse_segment_name(e->d_name, &hour, &seq);
        if (!kind)
            continue;
        if (seq > max_seq)
            max_seq = seq;
        if (a->name_hour == NO_HOUR || hour > a->name_hour)
            a->name_hour = hour;
        if (kind == 2) {
            if (ntmp == tcap) {
                size_t nc = tcap ? 2 * tcap : 8;
                char **nt = realloc(tmps, nc * sizeof *nt);
                if (!nt) {
                    rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
                    break;
                }
                tmps = nt;
                tcap = nc;
            }
            if (!(tmps[ntmp] = strdup(e->d_name))) {
                rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
                break;
            }
            ntmp++;
        }
    }
    closedir(d);
    a->next_seq = max_seq + 1;
    for (size_t i = 0; i < ntmp; i++) {
        if (!rc && strlen(tmps[i]) < NAME_MAX_LEN)
            rc = recover_tmp(a, tmps[i], err);
        free(tmps[i]);
    }
    free(tmps);
    return rc;
}

/* ---- segments ------------------------------------------------------------------------- */

/* fsyncs and closes the current segment, then fsyncs DIR. */
static int close_segment(struct tlm_archive *a, struct tlm_error *err)
{
    if (a->fd < 0)
        return 0;
    int rc = 0;
    if (fsync(a->fd) != 0)
        rc = tlm_error_set(err, TLM_EIO, "%s: fsync failed: %s", a->path, strerror(errno));
    if (close(a->fd) != 0 && !rc)
        rc = tlm_error_set(err, TLM_EIO, "%s: close failed: %s", a->path, strerror(errno));
    a->fd = -1;
    a->seg_bytes = 0;
    if (fsync_dir(a->dir) != 0 && !rc)
        rc = tlm_error_set(err, TLM_EIO, "%s: fsync failed: %s", a->dir, strerror(errno));
    return rc;
}

/* Creates the next segment holding the frame zbuf[0..n): written under a temporary name,
 * then linked into place. On success a->fd is the open segment. */
static int create_segment(struct tlm_archive *a, size_t n, struct tlm_error *err)
{
    int64_t hour = a->hour;
    if (a->name_hour != NO_HOUR && a->name_hour > hour)
        hour = a->name_hour; /* the wall clock went back: keep names in order */
    char name[NAME_MAX_LEN];
    for (int attempt = 0; attempt < 1000; attempt++) {
        unsigned long long seq = a->next_seq++;
        segment_name(name, sizeof name, hour, seq);
        join(a->path, a->path_cap, a->dir, name);
        snprintf(a->tmp, a->path_cap, "%s/.%s.tmp", a->dir, name);
        int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            return tlm_error_set(err, TLM_EIO, "%s: cannot create: %s", a->tmp,
                                 strerror(errno));
        }
        if (write_all(fd, a->zbuf, n) != 0) {
            int e = errno;
            close(fd);
            unlink(a->tmp);
            a->path[0] = '\0';
            return tlm_error_set(err, TLM_EIO, "%s: write failed: %s", a->tmp, strerror(e));
        }
        int linked = link(a->tmp, a->path) == 0;
        if (!linked && errno != EEXIST) {
            /* no hard links here (some FUSE, vfat): rename, after a check for a
             * concurrent writer that the lock makes unlikely */
            struct stat st;
            if (lstat(a->path, &st) != 0) {
                if (rename(a->tmp, a->path) == 0) {
                    a->fd = fd;
                    break;
                }
                int e = errno;
                close(fd);
                unlink(a->tmp);
                return tlm_error_set(err, TLM_EIO, "%s: cannot rename to %s: %s", a->tmp,
                                     a->path, strerror(e));
            }
        }
        unlink(a->tmp);
        if (linked) {
            a->fd = fd;
            break;
        }
        close(fd); /* the name was taken: try the next number */
    }
    if (a->fd < 0) {
        a->path[0] = '\0';
        return tlm_error_set(err, TLM_EIO, "%s: cannot name a new segment", a->dir);
    }
    a->name_hour = hour;
    a->seg_bytes = 0;
    a->segments++;
    return 0;
}

/* Compresses the pending records into one frame and writes it; rotates by size. */
static int emit_frame(struct tlm_archive *a, struct tlm_error *err)
{
    if (a->pending.len == 0)
        return 0;
    size_t bound = ZSTD_compressBound(a->pending.len);
    if (bound > a->zcap) {
        unsigned char *z = realloc(a->zbuf, bound);
        if (!z)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory for a %zu-byte frame",
                                 bound);
        a->zbuf = z;
        a->zcap = bound;
    }
    size_t n = ZSTD_compress2(a->cctx, a->zbuf, a->zcap, a->pending.data, a->pending.len);
    if (ZSTD_isError(n))
        return tlm_error_set(err, TLM_EIO, "zstd compression failed: %s",
                             ZSTD_getErrorName(n));
    if (a->fd < 0) {
        int rc = create_segment(a, n, err);
        if (rc)
            return rc;
    } else if (write_all(a->fd, a->zbuf, n) != 0) {
        int e = errno;
        /* cut the partial frame off, so the segment stays whole frames */
        if (ftruncate(a->fd, (off_t)a->seg_bytes) != 0)
            return tlm_error_set(err, TLM_EIO, "%s: write failed: %s (and truncating "
                                 "back failed: %s)", a->path, strerror(e), strerror(errno));
        return tlm_error_set(err, TLM_EIO, "%s: write failed: %s", a->path, strerror(e));
    }
    a->seg_bytes += (long long)n;
    a->bytes += (long long)n;
    tlm_buf_reset(&a->pending);
    if ((size_t)a->seg_bytes >= a->max_segment)
        return close_segment(a, err);
    return 0;
}

/* ---- API ---------------------------------------------------------------------------------- */

struct tlm_archive *tlm_archive_open(const struct tlm_archive_opts *o, struct tlm_error *err)
{
    if (!o || !o->dir || !*o->dir) {
        tlm_error_set(err, TLM_EINVAL, "archive: no directory given");
        return NULL;
    }
    int level = o->level ? o->level : TLM_ARCHIVE_DEFAULT_LEVEL;
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
        tlm_error_set(err, TLM_EINVAL, "archive: zstd level %d out of range %d..%d", level,
                      ZSTD_minCLevel(), ZSTD_maxCLevel());
        return NULL;
    }
    struct tlm_archive *a = calloc(1, sizeof *a);
    if (!a) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    a->fd = -1;
    a->lock_fd = -1;
    a->hour = NO_HOUR;
    a->name_hour = NO_HOUR;
    a->max_segment = o->max_segment_bytes ? o->max_segment_bytes : TLM_ARCHIVE_DEFAULT_SEGMENT;
    a->frame_bytes = o->frame_bytes ? o->frame_bytes : TLM_ARCHIVE_DEFAULT_FRAME;
    size_t dl = strlen(o->dir);
    while (dl > 1 && o->dir[dl - 1] == '/')
        dl--;
    a->path_cap = dl + NAME_MAX_LEN + 2;
    a->dir = malloc(dl + 1);
    a->path = malloc(a->path_cap);
    a->tmp = malloc(a->path_cap);
    a->cctx = ZSTD_createCCtx();
    if (!a->dir || !a->path || !a->tmp || !a->cctx) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(a->dir, o->dir, dl);
    a->dir[dl] = '\0';
    a->path[0] = '\0';
    if (ZSTD_isError(ZSTD_CCtx_setParameter(a->cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(a->cctx, ZSTD_c_checksumFlag, 1))) {
        tlm_error_set(err, TLM_EINVAL, "archive: cannot set zstd parameters");
        goto fail;
    }
    if (make_dirs(a->dir) != 0) {
        tlm_error_set(err, TLM_EIO, "%s: cannot create directory: %s", a->dir,
                      strerror(errno));
        goto fail;
    }
    join(a->tmp, a->path_cap, a->dir, ".lock");
    a->lock_fd = open(a->tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (a->lock_fd < 0) {
        tlm_error_set(err, TLM_EIO, "%s: cannot open: %s", a->tmp, strerror(errno));
        goto fail;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            tlm_error_set(err, TLM_EIO, "%s: archive is in use by another process", a->dir);
        else
            tlm_error_set(err, TLM_EIO, "%s: cannot lock: %s", a->tmp, strerror(errno));
        goto fail;
    }
    if (scan_dir(a, err) != 0)
        goto fail;
    return a;
fail:
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    ZSTD_freeCCtx(a->cctx);
    free(a->dir);
    free(a->path);
    free(a->tmp);
    free(a);
    return NULL;
}

int tlm_archive_put(struct tlm_archive *a, const char *rec, size_t len, tlm_time_t now,
                    struct tlm_error *err)
{
    if (len && memchr(rec, '\n', len))
        return tlm_error_set(err, TLM_EINVAL, "archive: a record may not contain a newline");
    int64_t hour = floor_div(now, NS_PER_HOUR);
    int rc;
    if (a->hour != NO_HOUR && hour != a->hour) {
        /* the hour changed: the pending frame belongs to the old segment */
        if ((rc = emit_frame(a, err)) || (rc = close_segment(a, err)))
            return rc;
    } else if (a->pending.len && a->pending.len + len + 1 > a->frame_bytes) {
        if ((rc = emit_frame(a, err)))
            return rc;
    }
    a->hour = hour;
    if (tlm_buf_reserve(&a->pending, len + 1))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    tlm_buf_append(&a->pending, rec, len);
    tlm_buf_putc(&a->pending, '\n');
    a->records++;
    a->raw_bytes += (long long)len + 1;
    return 0;
}

int tlm_archive_flush(struct tlm_archive *a, struct tlm_error *err)
{
    return emit_frame(a, err);
}

int tlm_archive_close(struct tlm_archive *a, struct tlm_error *err)
{
    if (!a)
        return 0;
    int rc = emit_frame(a, err);
    int rc2 = close_segment(a, rc ? NULL : err);
    if (!rc)
        rc = rc2;
    if (a->lock_fd >= 0)
        close(a->lock_fd); /* releases the flock */
    ZSTD_freeCCtx(a->cctx);
    tlm_buf_free(&a->pending);
    free(a->zbuf);
    free(a->dir);
    free(a->path);
    free(a->tmp);
    free(a);
    return rc;
}

long long tlm_archive_records(const struct tlm_archive *a)
{
    return a ? a->records : 0;
}

long long tlm_archive_raw_bytes(const struct tlm_archive *a)
{
    return a ? a->raw_bytes : 0;
}

long long tlm_archive_bytes(const struct tlm_archive *a)
{
    return a ? a->bytes : 0;
}

int tlm_archive_segments(const struct tlm_archive *a)
{
    return a ? a->segments : 0;
}

const char *tlm_archive_segment_path(const struct tlm_archive *a)
{
    return a && a->path ? a->path : "";
}
