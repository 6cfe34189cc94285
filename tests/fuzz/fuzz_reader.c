/*
 * fuzz_reader.c - libFuzzer harness for the event reader path: tlm_reader, then the per-line
 * scan (tlm_jscan_run, tlm_json_validate, tlm_json_is_watermark) every stage runs.
 *
 * The input bytes are written to a temporary file (a memfd opened through /proc/self/fd,
 * or /tmp/telem-fuzz-reader.<pid>.* where there is none) and read back with tlm_reader.
 * Inputs shorter than 64 KiB are also compressed with zstd (one or two frames, content
 * checksum on or off, chosen from the input) and read as a two-input list "zst, plain", so
 * every input runs through the zstd path, frame concatenation and the switch to the next
 * input. A plain input that itself starts with the zstd magic is decoded here with
 * ZSTD_decompressStream (capped at 4 MiB of output: a decompression bomb is skipped, not
 * fuzzed) and the reader must agree with that decoding, including the corrupt/truncated
 * verdict.
 *
 * Invariants checked against a model of reader.h (split at "\n", one trailing "\r"
 * removed, a non-empty last segment without "\n" is a line), abort() on any violation:
 *  - each line equals the model's bytes, is NUL-terminated, strlen == len when it holds no
 *    NUL, and holds no "\n";
 *  - tlm_reader_line counts 1, 2, 3... per input; tlm_reader_offset is the offset of the
 *    line's first byte; tlm_reader_pos is just past the line (its "\n" included);
 *  - so the lines with their terminators rebuild each input exactly, and an input is fully
 *    consumed before the next one's lines appear; the end comes only after all of them,
 *    with tlm_reader_bytes_in == the sum of the file sizes and progress == 1;
 *  - an error is TLM_EPARSE with err filled (code, text, source) and only for a zstd input
 *    that our own decoding also finds corrupt or truncated;
 *  - resume: the position taken after line k (k from the input's hash) makes a new reader
 *    over the same inputs continue with line k + 1 (same bytes, number and offset, the
 *    inputs before the position skipped) and report tlm_reader_resumed() == 1; with a
 *    spoiled prefix hash it starts again at line 1 of the first input and reports 0; with
 *    a field out of range (negative or huge prefix_len, offset, line, input) it must stay
 *    memory-safe and return lines or a filled error;
 *  - scan (the first 4096 lines of a run, then one in 256): tlm_jscan_run and
 *    tlm_json_validate agree (same error column and text); spans lie inside the line and
 *    start and end with the right bytes; an error column is in [1, len + 1]; a watermark is
 *    valid JSON whose "__watermark" member the scanner reads as the same integer, and
 *    jansson sees an object with exactly that one member.
 *
 * Build: configure --enable-fuzzing (tests/fuzz/fuzz.am). Run: tests/fuzz/run-fuzz.sh.
 * Finds go to tests/data/fuzz/fuzz_reader-<name>.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memfd_create, memmem */
#endif

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include "buf.h"
#include "error.h"
#include "jscan.h"
#include "path.h"
#include "reader.h"

#define ZSTD_MAX_IN (64 * 1024)      /* inputs shorter than this are also read as zstd */
#define DECODE_CAP (4u * 1024 * 1024) /* skip plain inputs that decode to more than this */
#define SCAN_LINES 4096               /* lines per run given to the scanner (then 1 in 256) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz_reader: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                                 \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* ---- temporary files -------------------------------------------------------------- */

struct tmpf {
    int fd;
    char path[96];
};

static struct tmpf plain_file, zst_file;

static void tmpf_unlink(void)
{
    if (strncmp(plain_file.path, "/tmp/", 5) == 0)
        unlink(plain_file.path);
    if (strncmp(zst_file.path, "/tmp/", 5) == 0)
        unlink(zst_file.path);
}

static void tmpf_init(struct tmpf *t, const char *tag)
{
#ifdef MFD_CLOEXEC
    t->fd = memfd_create(tag, MFD_CLOEXEC);
    if (t->fd >= 0) {
        snprintf(t->path, sizeof(t->path), "/proc/self/fd/%d", t->fd);
        if (access(t->path, R_OK) == 0)
            return;
        close(t->fd);
    }
#endif
    snprintf(t->path, sizeof(t->path), "/tmp/telem-fuzz-reader.%ld.%s", (long)getpid(), tag);
    t->fd = open(t->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (t->fd < 0) {
        perror(t->path);
        abort();
    }
    atexit(tmpf_unlink);
}

static void tmpf_put(struct tmpf *t, const void *p, size_t n)
{
    const char *s = p;
    off_t at = 0;
    if (ftruncate(t->fd, 0) != 0) {
        perror("fuzz_reader: ftruncate");
        abort();
    }
    while (n) {
        ssize_t got = pwrite(t->fd, s, n, at);
        if (got <= 0) {
            perror("fuzz_reader: pwrite");
            abort();
        }
        s += got;
        at += got;
        n -= (size_t)got;
    }
}

/* ---- zstd ------------------------------------------------------------------------- */

static const unsigned char zmagic[4] = { 0x28, 0xb5, 0x2f, 0xfd };

/* Decodes p[0..n) as the reader should: returns 1 when the stream decodes completely and
 * ends at a frame boundary, 0 when it is corrupt or truncated (*out then holds what decoded
 * before the error), -1 when the output would pass DECODE_CAP. *out is malloc'ed (caller
 * frees) in every case. */
static int zdecode(const uint8_t *p, size_t n, uint8_t **out, size_t *outn)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer in = { p, n, 0 };
    size_t cap = 1 << 16, hint = 1;
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
        hint = r;
        if (in.pos == in.size && ob.pos < ob.size) {
            rc = hint == 0;
            break;
        }
    }
    ZSTD_freeDCtx(d);
    *out = buf;
    *outn = ob.pos;
    return rc;
}

/* ---- the model of reader.h -------------------------------------------------------- */

struct input {
    const char *path;
    const uint8_t *d; /* decoded content */
    size_t n;
    int ok;           /* 0: the reader must fail inside it (corrupt zstd); d is a prefix */
    long long size;   /* file size in bytes */
};

struct cursor {
    const uint8_t *d;
    size_t n;
    size_t pos;     /* offset of the next line */
    long long line; /* lines returned */
};

/* The next line of the model: returns 1 with the line in p/len (one "\r" before its "\n"
 * or at the end of the input removed) and *complete = whether a "\n" ended it, or 0 at the
 * end of the input. */
static int model_next(struct cursor *c, const uint8_t **p, size_t *len, int *complete)
{
    const uint8_t *s, *nl;
    size_t rest, seg, full;
    if (c->pos >= c->n)
        return 0;
    s = c->d + c->pos;
    rest = c->n - c->pos;
    nl = memchr(s, '\n', rest);
    seg = nl ? (size_t)(nl - s) : rest;
    full = nl ? seg + 1 : rest;
    *p = s;
    *len = seg > 0 && s[seg - 1] == '\r' ? seg - 1 : seg;
    *complete = nl != NULL;
    c->pos += full;
    c->line++;
    return 1;
}

/* ---- the per-line scan ------------------------------------------------------------ */

static struct tlm_jscan *scan;
#define NPATHS 4

static void init_scan(void)
{
    static char *s0[] = { "timestamp" }, *s1[] = { "deviceId" }, *s2[] = { "a", "b" },
                *s3[] = { "__watermark" };
    struct tlm_path paths[NPATHS] = { { 1, s0 }, { 1, s1 }, { 2, s2 }, { 1, s3 } };
    scan = tlm_jscan_create(paths, NPATHS);
    CHECK(scan && tlm_jscan_npaths(scan) == NPATHS);
}

static void check_value(const char *line, size_t len, const struct tlm_jval *v)
{
    double dv;
    long long iv;
    struct tlm_buf b = { 0 };
    json_t *j;
    if (v->type == TLM_JNONE) {
        CHECK(v->p == NULL);
        return;
    }
    CHECK(v->p >= line && v->n > 0 && v->n <= len && (size_t)(v->p - line) <= len - v->n);
    switch (v->type) {
    case TLM_JOBJECT:
        CHECK(v->p[0] == '{' && v->p[v->n - 1] == '}');
        break;
    case TLM_JARRAY:
        CHECK(v->p[0] == '[' && v->p[v->n - 1] == ']');
        break;
    case TLM_JSTRING:
        CHECK(v->n >= 2 && v->p[0] == '"' && v->p[v->n - 1] == '"');
        CHECK(tlm_jval_string(v, &b) == 0);
        CHECK(b.len == 0 || memchr(b.data, '\0', b.len) == NULL);
        tlm_buf_free(&b);
        break;
    case TLM_JINT:
        CHECK(tlm_jval_int64(v, &iv) == 0);
        CHECK(tlm_jval_double(v, &dv) == 0);
        break;
    case TLM_JREAL:
        CHECK(tlm_jval_int64(v, &iv) == TLM_ETYPE);
        CHECK(tlm_jval_double(v, &dv) == 0);
        break;
    case TLM_JTRUE:
        CHECK(v->n == 4 && memcmp(v->p, "true", 4) == 0);
        break;
    case TLM_JFALSE:
        CHECK(v->n == 5 && memcmp(v->p, "false", 5) == 0);
        break;
    case TLM_JNULL:
        CHECK(v->n == 4 && memcmp(v->p, "null", 4) == 0);
        break;
    default:
        CHECK(!"unknown jtype");
    }
    if (v->type != TLM_JINT && v->type != TLM_JREAL)
        CHECK(tlm_jval_double(v, &dv) == TLM_ETYPE);
    j = tlm_jval_to_json(v);
    CHECK(j != NULL);
    json_decref(j);
}

static void scan_line(const char *line, size_t len)
{
    struct tlm_jval out[NPATHS];
    struct tlm_error e1, e2;
    long long ms = 0;
    int rc, vrc, wm;
    tlm_error_clear(&e1);
    tlm_error_clear(&e2);
    rc = tlm_jscan_run(scan, line, len, out, &e1);
    vrc = tlm_json_validate(line, len, &e2);
    CHECK(rc == 0 || rc == TLM_EPARSE);
    CHECK(rc == vrc);
    if (rc) {
        CHECK(e1.code == TLM_EPARSE && e1.text[0]);
        CHECK(e1.column >= 1 && (size_t)e1.column <= len + 1);
        CHECK(e1.column == e2.column && strcmp(e1.text, e2.text) == 0);
    } else {
        for (size_t i = 0; i < NPATHS; i++)
            check_value(line, len, &out[i]);
    }
    wm = tlm_json_is_watermark(line, len, &ms);
    CHECK(wm == 0 || wm == 1);
    CHECK(tlm_json_is_watermark(line, len, NULL) == wm);
    if (wm) {
        long long iv = 0;
        json_t *j = json_loadb(line, len, 0, NULL), *w;
        CHECK(rc == 0);
        CHECK(out[3].type == TLM_JINT && tlm_jval_int64(&out[3], &iv) == 0 && iv == ms);
        CHECK(json_is_object(j) && json_object_size(j) == 1);
        w = json_object_get(j, "__watermark");
        CHECK(json_is_integer(w) && (long long)json_integer_value(w) == ms);
        json_decref(j);
    }
}

/* ---- reading ---------------------------------------------------------------------- */

/* Checks one returned line against the model cursor of its input. Returns 0 when it
 * matched, 1 when the input is corrupt and the line runs past what we decoded (the rest of
 * that input is then not compared). */
static int check_line(struct tlm_reader *r, struct cursor *c, const struct input *in,
                      const char *line, size_t len)
{
    const uint8_t *mp;
    size_t mlen;
    size_t at = c->pos;
    int complete;
    struct tlm_reader_pos pos;

    CHECK(line != NULL && line[len] == '\0');
    CHECK(memchr(line, '\n', len) == NULL);
    if (memchr(line, '\0', len) == NULL)
        CHECK(strlen(line) == len);
    CHECK(tlm_reader_line(r) == c->line + 1);
    CHECK(tlm_reader_offset(r) == (long long)at);
    if (!model_next(c, &mp, &mlen, &complete) || (!in->ok && !complete)) {
        CHECK(!in->ok); /* the reader returned bytes the input does not have */
        return 1;
    }
    CHECK(mlen == len && memcmp(mp, line, len) == 0);
    /* the position hashes up to 4 KiB: look at it for the first lines, the last one and
     * every 1024th, so that an input of many short lines stays fast */
    if (c->line > 4 && c->pos != c->n && (c->line & 1023) != 0)
        return 0;
    tlm_reader_pos(r, &pos);
    CHECK(pos.offset == (long long)c->pos && pos.line == c->line);
    CHECK(strcmp(pos.name, in->path) == 0);
    CHECK(pos.prefix_len >= 0 && pos.prefix_len <= pos.offset && pos.prefix_len <= 4096);
    CHECK(pos.prefix_hash == tlm_fnv1a(TLM_FNV_INIT, in->d, (size_t)pos.prefix_len));
    CHECK(tlm_reader_is_live(r) == 0);
    return 0;
}

/* What the model expects next: the input being read and a cursor per input. */
struct state {
    size_t k;
    struct cursor cur[2];
};

static void state_init(struct state *st, const struct input *in, size_t nin)
{
    st->k = 0;
    for (size_t i = 0; i < nin; i++)
        st->cur[i] = (struct cursor){ in[i].d, in[i].n, 0, 0 };
}

/* Reads paths in[0..nin) with one reader and checks everything against the model, which
 * starts at *st. With resume, the reader is first resumed there (spoiled: with a wrong
 * prefix hash, so it must start again from the top, which *st then says). When the reader
 * has returned `capture` lines, its position and the model's state are stored in *pos_out
 * and *st_out (capture < 0: never). */
static void run_reader(const struct input *in, size_t nin, struct state st,
                       const struct tlm_reader_pos *resume, int spoiled, long long capture,
                       struct tlm_reader_pos *pos_out, struct state *st_out)
{
    const char *paths[2];
    struct tlm_reader *r;
    struct tlm_error err;
    const char *line;
    size_t len, i;
    int rc, lost = 0;
    long long total = 0, total_read = 0, nret = 0;

    for (i = 0; i < nin; i++) {
        paths[i] = in[i].path;
        total += in[i].size;
        /* a resumed reader skips the inputs before the position (never opens them) */
        if (!resume || spoiled || (long long)i >= resume->input)
            total_read += in[i].size;
    }
    r = tlm_reader_create(paths, nin);
    CHECK(r);
    if (resume)
        tlm_reader_resume(r, resume);
    for (;;) {
        if (nret == capture) {
            tlm_reader_pos(r, pos_out);
            *st_out = st;
        }
        tlm_error_clear(&err);
        rc = tlm_reader_next(r, &line, &len, -1, &err);
        if (rc != 1)
            break;
        if (resume && nret == 0)
            CHECK(tlm_reader_resumed(r) == !spoiled);
        nret++;
        const char *src = tlm_reader_source(r);
        while (st.k < nin && src != in[st.k].path) {
            /* the reader moved on: the input before must be complete */
            CHECK(in[st.k].ok && st.cur[st.k].pos == st.cur[st.k].n);
            st.k++;
            lost = 0;
        }
        CHECK(st.k < nin);
        if (!lost)
            lost = check_line(r, &st.cur[st.k], &in[st.k], line, len);
        if (!resume && (nret <= SCAN_LINES || (nret & 255) == 0))
            scan_line(line, len);
        double pr = tlm_reader_progress(r);
        CHECK(pr >= 0 && pr <= 1);
        CHECK(tlm_reader_bytes_in(r) >= 0 && tlm_reader_bytes_in(r) <= total_read);
    }
    if (rc == 0) {
        for (; st.k < nin; st.k++)
            CHECK(in[st.k].ok && st.cur[st.k].pos == st.cur[st.k].n);
        CHECK(tlm_reader_bytes_in(r) == total_read);
        if (total_read == total)
            CHECK(tlm_reader_progress(r) == 1);
        /* the end is sticky */
        CHECK(tlm_reader_next(r, &line, &len, -1, &err) == 0);
    } else {
        /* an error: only inside a corrupt input, after the inputs before it */
        const char *src = tlm_reader_source(r);
        CHECK(rc == TLM_EPARSE && err.code == rc && err.text[0]);
        while (st.k < nin && src != in[st.k].path) {
            CHECK(in[st.k].ok && st.cur[st.k].pos == st.cur[st.k].n);
            st.k++;
        }
        CHECK(st.k < nin && !in[st.k].ok);
        CHECK(strcmp(err.source, in[st.k].path) == 0);
    }
    tlm_reader_destroy(r);
}

/* Resumes at a position whose fields are out of range (a hand-edited or damaged snapshot
 * header feeds tlm_reader_resume through the stage): reader.h does not say what happens,
 * so only memory safety and well-formed results are checked. */
static void run_wild(const struct input *in, size_t nin, struct tlm_reader_pos pos, uint64_t h)
{
    static const long long wild[] = { -1, LLONG_MIN, LLONG_MAX, 4097, 1LL << 40, -4096 };
    const char *paths[2];
    struct tlm_reader *r;
    struct tlm_error err;
    const char *line;
    size_t len;
    long long v = wild[(h >> 44) % (sizeof(wild) / sizeof(wild[0]))];
    int rc;

    switch ((h >> 52) % 5) {
    case 0: pos.prefix_len = v; break;
    case 1: pos.offset = v; break;
    case 2: pos.line = v; break;
    case 3: pos.prefix_len = pos.prefix_len + 1; break;
    default: pos.input = (int)(v < 0 ? -1 : (long long)nin); break;
    }
    for (size_t i = 0; i < nin; i++)
        paths[i] = in[i].path;
    r = tlm_reader_create(paths, nin);
    CHECK(r);
    tlm_reader_resume(r, &pos);
    do {
        tlm_error_clear(&err);
        rc = tlm_reader_next(r, &line, &len, -1, &err);
        if (rc == 1) {
            CHECK(line != NULL && line[len] == '\0');
            CHECK(memchr(line, '\n', len) == NULL);
            (void)tlm_reader_line(r);
            (void)tlm_reader_offset(r);
        }
    } while (rc == 1);
    if (rc < 0)
        CHECK(err.code == rc && err.text[0]);
    tlm_reader_destroy(r);
}

/* ---- entry -------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ZSTD_CCtx *cctx;
    struct input in[2];
    size_t nin = 0;
    uint8_t *decoded = NULL, *z = NULL;
    uint64_t h = tlm_fnv1a(TLM_FNV_INIT, data, size);
    static const uint8_t empty[1];
    const uint8_t *d = size ? data : empty;
    struct state st, at;
    struct tlm_reader_pos pos;
    long long lines = 0;
    int all_ok = 1;

    if (!scan) {
        init_scan();
        tmpf_init(&plain_file, "plain");
        tmpf_init(&zst_file, "zst");
        cctx = ZSTD_createCCtx();
        CHECK(cctx);
    }

    /* the zstd copy: one or two frames, checksum from the hash */
    if (size < ZSTD_MAX_IN) {
        size_t cap = 2 * ZSTD_compressBound(size) + 64, zn = 0;
        size_t cut = (h & 1) && size > 1 ? (size_t)((h >> 8) % size) : size;
        z = malloc(cap);
        CHECK(z);
        ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, (int)((h >> 1) & 1));
        size_t a = ZSTD_compress2(cctx, z, cap, d, cut);
        CHECK(!ZSTD_isError(a));
        zn = a;
        if (cut < size) {
            size_t b = ZSTD_compress2(cctx, z + zn, cap - zn, d + cut, size - cut);
            CHECK(!ZSTD_isError(b));
            zn += b;
        }
        tmpf_put(&zst_file, z, zn);
        in[nin++] = (struct input){ zst_file.path, d, size, 1, (long long)zn };
    }

    /* the plain file, decoded here when it starts like a zstd frame */
    tmpf_put(&plain_file, d, size);
    if (size >= 4 && memcmp(data, zmagic, 4) == 0) {
        size_t dn;
        int zr = zdecode(data, size, &decoded, &dn);
        if (zr >= 0)
            in[nin++] = (struct input){ plain_file.path, decoded, dn, zr, (long long)size };
    } else {
        in[nin++] = (struct input){ plain_file.path, d, size, 1, (long long)size };
    }
    if (!nin)
        goto out;

    /* how many lines, to pick where to take the position for the resume run */
    state_init(&st, in, nin);
    for (size_t i = 0; i < nin; i++) {
        struct cursor c = st.cur[i];
        const uint8_t *mp;
        size_t ml;
        int complete;
        while (model_next(&c, &mp, &ml, &complete))
            ;
        lines += c.line;
        all_ok &= in[i].ok;
    }
    long long capture = all_ok ? (long long)((h >> 16) % (uint64_t)(lines + 1)) : -1;
    run_reader(in, nin, st, NULL, 0, capture, &pos, &at);

    /* resume where the position was taken; one run in eight with a spoiled prefix hash
     * and one in eight with a field out of range */
    if (capture >= 0) {
        unsigned mode = (unsigned)(h >> 40) & 7;
        if (mode == 1) {
            run_wild(in, nin, pos, h);
        } else {
            if (mode == 0) {
                pos.prefix_hash ^= 1;
                state_init(&at, in, nin);
            }
            run_reader(in, nin, at, &pos, mode == 0, -1, NULL, NULL);
        }
    }
out:
    free(decoded);
    free(z);
    return 0;
}
