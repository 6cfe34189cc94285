/*
 * fuzz_snapshot.c - libFuzzer harness for the snapshot loader (snapshot.c over reader.c).
 *
 * Two modes, chosen by the first input byte:
 *  - 0x28 (the first byte of the zstd magic), or an input shorter than 4 bytes: the input is
 *    the file itself, so truncated, bit-flipped and foreign zstd streams reach the loader;
 *  - anything else: the input is the *uncompressed* content, written as one zstd frame with
 *    the content checksum on (as tlm_snap_commit writes it), which reaches the header,
 *    record and trailer logic on nearly every run.
 * The file (a memfd opened through /proc/self/fd, or /tmp/telem-fuzz-snapshot.<pid>) is
 * loaded with tlm_snap_open, tlm_snap_next to the end and tlm_snap_check_options against a
 * fixed options object.
 *
 * The oracle is a model of snapshot.h written with jansson over the decoded content (our
 * own ZSTD_decompressStream in the raw mode, capped at 4 MiB: a decompression bomb is
 * skipped), split into lines as reader.h says: the header must be a JSON object with
 * "telem_snapshot": 1; then records; then the trailer {"telem_snapshot_end": <records>}
 * (an object with that one member) and nothing after it. abort() unless:
 *  - the loader succeeds exactly when the model does, with a json_equal header and the same
 *    records in order; a stream that is corrupt or truncated never loads (the records
 *    returned before the error are a prefix of the model's);
 *  - every failure returns TLM_ESTATE, TLM_ENOTFOUND or TLM_EIO, equal to err.code, with a
 *    non-empty err.text; tlm_snap_next keeps returning 0 after the trailer;
 *  - tlm_snap_check_options returns 0 exactly when the header's "options" is json_equal to
 *    the fixed object (else TLM_ESTATE with text), 0 for a copy of the header's own options
 *    and TLM_ESTATE when one of those options is changed.
 * Leaks are LeakSanitizer's to find.
 *
 * Build: configure --enable-fuzzing (tests/fuzz/fuzz.am). Run: tests/fuzz/run-fuzz.sh.
 * Finds go to tests/data/fuzz/fuzz_snapshot-<name>.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memfd_create */
#endif

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include "error.h"
#include "snapshot.h"

#define DECODE_CAP (4u * 1024 * 1024) /* skip raw inputs that decode to more than this */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz_snapshot: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                                   \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* The options the loaded snapshot is compared with (what `telem window --key deviceId
 * --tumble 10s --agg count` would record); the seed corpus holds a snapshot with them. */
static const char options_text[] =
    "{\"key\":[\"deviceId\"],\"tumble\":\"10s\",\"agg\":[\"count\",\"p99(cpu)\"],"
    "\"time_field\":\"timestamp\",\"time_unit\":\"auto\",\"max_out_of_order\":\"5m\"}";

/* ---- temporary file --------------------------------------------------------------- */

static int snap_fd = -1;
static char snap_path[96];

static void snap_unlink(void)
{
    unlink(snap_path);
}

static void tmp_init(void)
{
#ifdef MFD_CLOEXEC
    snap_fd = memfd_create("snapshot", MFD_CLOEXEC);
    if (snap_fd >= 0) {
        snprintf(snap_path, sizeof(snap_path), "/proc/self/fd/%d", snap_fd);
        if (access(snap_path, R_OK) == 0)
            return;
        close(snap_fd);
    }
#endif
    snprintf(snap_path, sizeof(snap_path), "/tmp/telem-fuzz-snapshot.%ld", (long)getpid());
    snap_fd = open(snap_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (snap_fd < 0) {
        perror(snap_path);
        abort();
    }
    atexit(snap_unlink);
}

static void tmp_put(const void *p, size_t n)
{
    const char *s = p;
    off_t at = 0;
    if (ftruncate(snap_fd, 0) != 0) {
        perror("fuzz_snapshot: ftruncate");
        abort();
    }
    while (n) {
        ssize_t got = pwrite(snap_fd, s, n, at);
        if (got <= 0) {
            perror("fuzz_snapshot: pwrite");
            abort();
        }
        s += got;
        at += got;
        n -= (size_t)got;
    }
}

/* ---- zstd ------------------------------------------------------------------------- */

/* Decodes p[0..n) as the line reader does: returns 1 when the stream decodes completely and
 * ends at a frame boundary, 0 when it is corrupt or truncated (*out holds what decoded
 * before the error), -1 when the output would pass DECODE_CAP. *out: caller frees. */
static int zdecode(const uint8_t *p, size_t n, uint8_t **out, size_t *outn)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer in = { p, n, 0 };
    size_t cap = 1 << 16;
    int rc = 0;
    uint8_t *buf = malloc(cap);
    ZSTD_outBuffer ob = { buf, cap, 0 };
    CHECK(d && buf);
    for (;;) {
        if (ob.pos == ob.size) {
            if (cap >= DECODE_CAP) {
                rc = -1;
                break;
            }
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf);
            ob.dst = buf;
            ob.size = cap;
        }
        size_t r = ZSTD_decompressStream(d, &ob, &in);
        if (ZSTD_isError(r)) {
            rc = 0;
            break;
        }
        if (in.pos == in.size && ob.pos < ob.size) {
            rc = r == 0;
            break;
        }
    }
    ZSTD_freeDCtx(d);
    *out = buf;
    *outn = ob.pos;
    return rc;
}

/* ---- the model of snapshot.h ------------------------------------------------------ */

struct model {
    json_t *header;    /* NULL when the header is refused */
    json_t **recs;     /* records the loader returns before the end or the error */
    size_t nrecs, cap;
    int ok;            /* 1: loads completely */
};

/* Splits d[0..n) into lines as reader.h does. Returns 1 with the line, 0 at the end. */
static int next_line(const uint8_t *d, size_t n, size_t *pos, const char **p, size_t *len)
{
    const uint8_t *s, *nl;
    size_t rest, seg;
    if (*pos >= n)
        return 0;
    s = d + *pos;
    rest = n - *pos;
    nl = memchr(s, '\n', rest);
    seg = nl ? (size_t)(nl - s) : rest;
    *pos += nl ? seg + 1 : rest;
    *p = (const char *)s;
    *len = seg > 0 && s[seg - 1] == '\r' ? seg - 1 : seg;
    return 1;
}

static void model_run(struct model *m, const uint8_t *d, size_t n)
{
    size_t pos = 0, len;
    const char *p;
    json_t *v, *ver, *end;
    memset(m, 0, sizeof(*m));
    if (!next_line(d, n, &pos, &p, &len))
        return;
    v = json_loadb(p, len, JSON_DECODE_ANY, NULL);
    ver = json_object_get(v, "telem_snapshot");
    if (!json_is_object(v) || !json_is_integer(ver) ||
        json_integer_value(ver) != TLM_SNAPSHOT_VERSION) {
        json_decref(v);
        return;
    }
    m->header = v;
    while (next_line(d, n, &pos, &p, &len)) {
        v = json_loadb(p, len, JSON_DECODE_ANY, NULL);
        if (!v)
            return;
        end = json_is_object(v) ? json_object_get(v, "telem_snapshot_end") : NULL;
        if (end && json_object_size(v) == 1) {
            int good = json_is_integer(end) && json_integer_value(end) == (json_int_t)m->nrecs;
            json_decref(v);
            m->ok = good && !next_line(d, n, &pos, &p, &len);
            return;
        }
        if (m->nrecs == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 16;
            m->recs = realloc(m->recs, m->cap * sizeof(*m->recs));
            CHECK(m->recs);
        }
        m->recs[m->nrecs++] = v;
    }
}

static void model_free(struct model *m)
{
    for (size_t i = 0; i < m->nrecs; i++)
        json_decref(m->recs[i]);
    free(m->recs);
    json_decref(m->header);
}

/* ---- the loader ------------------------------------------------------------------- */

static void check_failure(int rc, const struct tlm_error *err)
{
    CHECK(rc == TLM_ESTATE || rc == TLM_ENOTFOUND || rc == TLM_EIO);
    CHECK(err->code == rc);
    CHECK(err->text[0] != '\0');
}

static void check_options(const json_t *header, const json_t *options)
{
    struct tlm_error err;
    json_t *old = json_object_get(header, "options");
    int rc;

    tlm_error_clear(&err);
    rc = tlm_snap_check_options(header, options, &err);
    if (json_equal(old, (json_t *)options)) {
        CHECK(rc == 0);
    } else {
        CHECK(rc == TLM_ESTATE);
        check_failure(rc, &err);
    }

    if (json_is_object(old)) {
        /* its own options, copied: equal */
        json_t *same = json_deep_copy(old);
        CHECK(same);
        tlm_error_clear(&err);
        CHECK(tlm_snap_check_options(header, same, &err) == 0);
        /* one of them changed: refused */
        void *it = json_object_iter(same);
        if (it) {
            json_t *v = json_object_iter_value(it);
            CHECK(json_object_iter_set_new(same, it, json_is_null(v) ? json_true()
                                                                     : json_null()) == 0);
            tlm_error_clear(&err);
            rc = tlm_snap_check_options(header, same, &err);
            CHECK(rc == TLM_ESTATE);
            check_failure(rc, &err);
        }
        json_decref(same);
    }
}

/* Loads snap_path and compares with the model (ok: whether the stream itself is sound). */
static void load(const struct model *m, int stream_ok, const json_t *options)
{
    struct tlm_error err;
    json_t *h = NULL, *rec;
    struct tlm_snap_reader *r;
    size_t k = 0;
    int rc;
    int want_ok = stream_ok && m->ok;

    tlm_error_clear(&err);
    r = tlm_snap_open(snap_path, &h, &err);
    if (!r) {
        check_failure(err.code, &err);
        CHECK(err.code != TLM_ENOTFOUND); /* the file is there */
        CHECK(!want_ok);
        return;
    }
    CHECK(h && json_is_object(h));
    /* a header the loader accepts is a complete line, so the model has it too */
    CHECK(m->header && json_equal(h, m->header));
    check_options(h, options);

    for (;;) {
        rec = NULL;
        tlm_error_clear(&err);
        rc = tlm_snap_next(r, &rec, &err);
        if (rc != 1)
            break;
        CHECK(rec);
        CHECK(k < m->nrecs && json_equal(rec, m->recs[k]));
        json_decref(rec);
        k++;
    }
    if (rc == 0) {
        CHECK(want_ok && k == m->nrecs);
        /* done is done */
        CHECK(tlm_snap_next(r, &rec, &err) == 0);
    } else {
        CHECK(rc < 0);
        check_failure(rc, &err);
        CHECK(!want_ok);
        if (stream_ok)
            CHECK(k == m->nrecs);
    }
    tlm_snap_close(r);
    json_decref(h);
}

/* ---- entry -------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *options;
    static ZSTD_CCtx *cctx;
    struct model m;
    uint8_t *buf = NULL;

    if (!options) {
        options = json_loads(options_text, 0, NULL);
        cctx = ZSTD_createCCtx();
        CHECK(options && cctx);
        tmp_init();
    }

    if (size < 4 || data[0] == 0x28) {
        /* the file itself */
        size_t n = 0;
        int zr = 0;
        static const uint8_t magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
        if (size >= 4 && memcmp(data, magic, 4) == 0) {
            zr = zdecode(data, size, &buf, &n);
            if (zr < 0) {
                free(buf);
                return 0;
            }
        }
        model_run(&m, buf, n);
        tmp_put(data, size);
        load(&m, zr == 1, options);
    } else {
        /* the content, compressed as tlm_snap_commit does */
        size_t cap = ZSTD_compressBound(size), zn;
        buf = malloc(cap);
        CHECK(buf);
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
        zn = ZSTD_compress2(cctx, buf, cap, data, size);
        CHECK(!ZSTD_isError(zn));
        model_run(&m, data, size);
        tmp_put(buf, zn);
        load(&m, 1, options);
    }
    model_free(&m);
    free(buf);
    return 0;
}
