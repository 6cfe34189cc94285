/*
 * snapshot.c - versioned zstd state files (see snapshot.h for the format).
 *
 * Writing streams records through ZSTD_compressStream2 into a temporary file; reading
 * goes through the ordinary line reader (which already detects zstd, reports truncated
 * and corrupt streams, and splits lines), so a snapshot is exactly as readable as any
 * other telem input.
 */
#include "snapshot.h"
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

struct tlm_snap_writer {
    char *path;            /* final name */
    char *tmp;             /* temporary name */
    int fd;
    ZSTD_CCtx *cctx;
    unsigned char *out;    /* compressed bytes awaiting write */
    size_t out_cap;
    long long records;
};

struct tlm_snap_reader {
    struct tlm_reader *rd;
    const char *paths[1];
    char *path;
    long long records;
    int done;
};

/* ---- writing ---------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t got = write(fd, s, n);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += got;
        n -= (size_t)got;
    }
    return 0;
}

static int feed(struct tlm_snap_writer *w, const void *p, size_t n, ZSTD_EndDirective end,
                struct tlm_error *err)
{
    ZSTD_inBuffer in = { p, n, 0 };
    for (;;) {
        ZSTD_outBuffer out = { w->out, w->out_cap, 0 };
        size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, end);
        if (ZSTD_isError(rem))
            return tlm_error_set(err, TLM_EIO, "zstd: %s", ZSTD_getErrorName(rem));
        if (out.pos && write_all(w->fd, w->out, out.pos)) {
            tlm_error_at(err, w->tmp, 0, 0, -1);
            return tlm_error_set(err, TLM_EIO, "write failed: %s", strerror(errno));
        }
        if (end == ZSTD_e_end ? rem == 0 : in.pos == in.size)
            return 0;
    }
}

static int put_line(struct tlm_snap_writer *w, const char *s, size_t n, struct tlm_error *err)
{
    int rc = feed(w, s, n, ZSTD_e_continue, err);
    return rc ? rc : feed(w, "\n", 1, ZSTD_e_continue, err);
}

static int put_json(struct tlm_snap_writer *w, const json_t *v, struct tlm_error *err)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    int rc;
    if (!s)
        return tlm_error_set(err, TLM_ENOMEM, "cannot serialise snapshot record");
    rc = put_line(w, s, strlen(s), err);
    free(s);
    return rc;
}

struct tlm_snap_writer *tlm_snap_create(const char *path, const json_t *header,
                                        struct tlm_error *err)
{
    struct tlm_snap_writer *w = calloc(1, sizeof(*w));
    json_t *h = NULL;
    if (!w)
        goto oom;
    w->fd = -1;
    w->path = strdup(path);
    w->tmp = malloc(strlen(path) + 32);
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = malloc(w->out_cap);
    w->cctx = ZSTD_createCCtx();
    if (!w->path || !w->tmp || !w->out || !w->cctx)
        goto oom;
    sprintf(w->tmp, "%s.tmp.%ld", path, (long)getpid());
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        tlm_error_at(err, w->tmp, 0, 0, -1);
        tlm_error_set(err, TLM_EIO, "cannot create snapshot: %s", strerror(errno));
        tlm_snap_abort(w);
        return NULL;
    }
    h = json_object();
    if (!h || json_object_set_new(h, "telem_snapshot", json_integer(TLM_SNAPSHOT_VERSION)))
        goto oom;
    if (header && json_object_update(h, (json_t *)header))
        goto oom;
    if (put_json(w, h, err)) {
        json_decref(h);
        tlm_snap_abort(w);
        return NULL;
    }
    json_decref(h);
    return w;
oom:
    json_decref(h);
    tlm_snap_abort(w);
    tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return NULL;
}

int tlm_snap_put(struct tlm_snap_writer *w, const json_t *rec, struct tlm_error *err)
{
    int rc = put_json(w, rec, err);
    if (!rc)
        w->records++;
    return rc;
}

int tlm_snap_put_raw(struct tlm_snap_writer *w, const char *line, size_t n,
                     struct tlm_error *err)
{
    int rc = put_line(w, line, n, err);
    if (!rc)
        w->records++;
    return rc;
}

static void fsync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int tlm_snap_commit(struct tlm_snap_writer *w, struct tlm_error *err)
{
    char trailer[64];
    int n = snprintf(trailer, sizeof(trailer), "{\"telem_snapshot_end\":%lld}", w->records);
    int rc = put_line(w, trailer, (size_t)n, err);
    if (!rc)
        rc = feed(w, NULL, 0, ZSTD_e_end, err);
    if (!rc && fsync(w->fd) != 0) {
        tlm_error_at(err, w->tmp, 0, 0, -1);
        rc = tlm_error_set(err, TLM_EIO, "fsync failed: %s", strerror(errno));
    }
    if (!rc && close(w->fd) != 0) {
        tlm_error_at(err, w->tmp, 0, 0, -1);
        rc = tlm_error_set(err, TLM_EIO, "close failed: %s", strerror(errno));
    }
    if (!rc)
        w->fd = -1;
    if (!rc && rename(w->tmp, w->path) != 0) {
        tlm_error_at(err, w->path, 0, 0, -1);
        rc = tlm_error_set(err, TLM_EIO, "cannot rename snapshot into place: %s",
                           strerror(errno));
    }
    if (rc) {
        tlm_snap_abort(w);
        return rc;
    }
    fsync_dir(w->path);
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    free(w->tmp);
    free(w->path);
    free(w);
    return 0;
}

void tlm_snap_abort(struct tlm_snap_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
    } else if (w->tmp) {
        unlink(w->tmp);
    }
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    free(w->tmp);
    free(w->path);
    free(w);
}

/* ---- reading ---------------------------------------------------------------------- */

static int next_line(struct tlm_snap_reader *r, json_t **v, struct tlm_error *err)
{
    const char *line;
    size_t len;
    json_error_t je;
    int rc = tlm_reader_next(r->rd, &line, &len, -1, err);
    if (rc == 0) {
        tlm_error_at(err, r->path, 0, 0, -1);
        return tlm_error_set(err, TLM_ESTATE, "snapshot is truncated (no trailer)");
    }
    if (rc < 0) {
        char why[TLM_ERROR_TEXT];
        snprintf(why, sizeof(why), "%s", err ? err->text : "");
        tlm_error_at(err, r->path, 0, 0, -1);
        return tlm_error_set(err, TLM_ESTATE, "snapshot is unreadable: %s", why);
    }
    *v = json_loadb(line, len, JSON_DECODE_ANY, &je);
    if (!*v) {
        tlm_error_at(err, r->path, tlm_reader_line(r->rd), je.column, -1);
        return tlm_error_set(err, TLM_ESTATE, "snapshot is corrupt: %s", je.text);
    }
    return 1;
}

struct tlm_snap_reader *tlm_snap_open(const char *path, json_t **header, struct tlm_error *err)
{
    struct tlm_snap_reader *r;
    json_t *h = NULL, *ver;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char magic[4];
    ssize_t got;
    if (fd < 0) {
        int e = errno;
        tlm_error_at(err, path, 0, 0, -1);
        tlm_error_set(err, e == ENOENT ? TLM_ENOTFOUND : TLM_EIO, "cannot open snapshot: %s",
                      strerror(e));
        return NULL;
    }
    got = read(fd, magic, 4);
    close(fd);
    if (got != 4 || magic[0] != 0x28 || magic[1] != 0xb5 || magic[2] != 0x2f ||
        magic[3] != 0xfd) {
        tlm_error_at(err, path, 0, 0, -1);
        tlm_error_set(err, TLM_ESTATE, "not a telem snapshot (not zstd-compressed)");
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r || !(r->path = strdup(path))) {
        free(r);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    r->paths[0] = r->path;
    r->rd = tlm_reader_create(r->paths, 1);
    if (!r->rd) {
        tlm_snap_close(r);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    if (next_line(r, &h, err) < 0) {
        tlm_snap_close(r);
        return NULL;
    }
    ver = json_object_get(h, "telem_snapshot");
    if (!json_is_object(h) || !json_is_integer(ver)) {
        tlm_error_at(err, path, 1, 0, -1);
        tlm_error_set(err, TLM_ESTATE, "not a telem snapshot (no telem_snapshot header)");
        goto fail;
    }
    if (json_integer_value(ver) != TLM_SNAPSHOT_VERSION) {
        tlm_error_at(err, path, 1, 0, -1);
        tlm_error_set(err, TLM_ESTATE,
                      "snapshot format %lld is not supported (this telem reads format %d)",
                      (long long)json_integer_value(ver), TLM_SNAPSHOT_VERSION);
        goto fail;
    }
    *header = h;
    return r;
fail:
    json_decref(h);
    tlm_snap_close(r);
    return NULL;
}

int tlm_snap_next(struct tlm_snap_reader *r, json_t **rec, struct tlm_error *err)
{
    json_t *v, *end;
    int rc;
    if (r->done)
        return 0;
    if ((rc = next_line(r, &v, err)) < 0)
        return rc;
    end = json_is_object(v) ? json_object_get(v, "telem_snapshot_end") : NULL;
    if (end && json_object_size(v) == 1) {
        long long want = json_is_integer(end) ? (long long)json_integer_value(end) : -1;
        const char *line;
        size_t len;
        json_decref(v);
        if (want != r->records) {
            tlm_error_at(err, r->path, 0, 0, -1);
            return tlm_error_set(err, TLM_ESTATE,
                                 "snapshot is corrupt: trailer counts %lld records, file has %lld",
                                 want, r->records);
        }
        rc = tlm_reader_next(r->rd, &line, &len, -1, err);
        if (rc != 0) {
            tlm_error_at(err, r->path, 0, 0, -1);
            return tlm_error_set(err, TLM_ESTATE, "snapshot is corrupt: data after the trailer");
        }
        r->done = 1;
        return 0;
    }
    r->records++;
    *rec = v;
    return 1;
}

void tlm_snap_close(struct tlm_snap_reader *r)
{
    if (!r)
        return;
    tlm_reader_destroy(r->rd);
    free(r->path);
    free(r);
}

int tlm_snap_check_options(const json_t *header, const json_t *options, struct tlm_error *err)
{
    json_t *old = json_object_get(header, "options");
    const char *key;
    json_t *v;
    if (json_equal(old, (json_t *)options))
        return 0;
    json_object_foreach((json_t *)options, key, v) {
        json_t *o = json_object_get(old, key);
        if (!json_equal(o, v)) {
            char *a = o ? json_dumps(o, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            char *b = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            tlm_error_set(err, TLM_ESTATE,
                          "snapshot was written with %s=%s, now %s=%s; use another --state file "
                          "or the same options",
                          key, a ? a : "(unset)", key, b ? b : "?");
            free(a);
            free(b);
            return TLM_ESTATE;
        }
    }
    json_object_foreach(old, key, v) {
        if (!json_object_get(options, key))
            return tlm_error_set(err, TLM_ESTATE,
                                 "snapshot was written with option %s, which is now unset", key);
    }
    return tlm_error_set(err, TLM_ESTATE, "snapshot options differ");
}
