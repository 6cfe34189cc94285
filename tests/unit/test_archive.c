/*
 * test_archive.c - the raw archive: segment names, rotation by hour and by size, replay
 * through the line reader, restarts, and survival of kill -9 (a forked writer is killed
 * mid-stream; every segment it leaves must replay to its end).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "archive.h"
#include "reader.h"
#include "rng.h"

#define HOUR_NS (INT64_C(3600) * TLM_NS_PER_S)
/* 2024-01-01T10:00:00Z */
#define BASE ((tlm_time_t)INT64_C(1704103200) * TLM_NS_PER_S)

/* ---- helpers ----------------------------------------------------------------------- */

static char *make_dir(void)
{
    char tmpl[] = "/tmp/tlm-archive-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted full paths of DIR/raw-*.zst (what a shell glob gives); *n set. Caller frees. */
static char **list_segments(const char *dir, size_t *n)
{
    char **v = NULL;
    size_t cnt = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < 4 || strcmp(e->d_name + l - 4, ".zst"))
            continue;
        v = realloc(v, (cnt + 1) * sizeof *v);
        assert_non_null(v);
        v[cnt] = malloc(strlen(dir) + l + 2);
        sprintf(v[cnt], "%s/%s", dir, e->d_name);
        cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof *v, cmp_str);
    *n = cnt;
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static long long file_size(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return (long long)st.st_size;
}

typedef int (*line_fn)(void *arg, long long idx, const char *line, size_t len);

/* Replays paths[0..n) through tlm_reader, calling fn per line. Returns the reader's final
 * result (0 at a clean end); *lines gets the count. */
static int replay(char **paths, size_t n, line_fn fn, void *arg, long long *lines,
                  struct tlm_error *err)
{
    struct tlm_reader *r = tlm_reader_create((const char *const *)paths, n);
    assert_non_null(r);
    const char *line;
    size_t len;
    long long k = 0;
    int rc;
    while ((rc = tlm_reader_next(r, &line, &len, -1, err)) == 1) {
        if (fn && fn(arg, k, line, len))
            break;
        k++;
    }
    tlm_reader_destroy(r);
    *lines = k;
    return rc;
}

/* Record i of a deterministic stream: an id and 64 hex digits that compress poorly. */
static size_t make_record(char *buf, size_t cap, long long i)
{
    uint64_t x = (uint64_t)i * 7919u;
    uint64_t a = tlm_splitmix64(&x), b = tlm_splitmix64(&x), c = tlm_splitmix64(&x),
             d = tlm_splitmix64(&x);
    int n = snprintf(buf, cap, "{\"i\":%lld,\"v\":\"%016llx%016llx%016llx%016llx\"}", i,
                     (unsigned long long)a, (unsigned long long)b, (unsigned long long)c,
                     (unsigned long long)d);
    return (size_t)n;
}

static int check_stream(void *arg, long long idx, const char *line, size_t len)
{
    long long *bad = arg;
    char want[256];
    size_t n = make_record(want, sizeof want, idx);
    if (n != len || memcmp(want, line, len) != 0) {
        if (*bad < 0)
            *bad = idx;
        return 1;
    }
    return 0;
}

/* ---- exact names: one frame per segment, two hours ------------------------------- */

struct expect_lines {
    const char *const *want;
    size_t n;
};

static int check_lines(void *arg, long long idx, const char *line, size_t len)
{
    struct expect_lines *e = arg;
    assert_true((size_t)idx < e->n);
    assert_int_equal(len, strlen(e->want[idx]));
    assert_memory_equal(line, e->want[idx], len);
    return 0;
}

static void test_names_and_hours(void **state)
{
    (void)state;
    char *dir = make_dir();
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/a/b", dir); /* created with parents */
    struct tlm_error err;
    /* 49 bytes + "\n" = 50 per record; 100 raw bytes per frame -> 2 records per frame;
     * max 1 byte -> every frame closes its segment */
    struct tlm_archive_opts o = { .dir = sub, .max_segment_bytes = 1, .frame_bytes = 100 };
    struct tlm_archive *a = tlm_archive_open(&o, &err);
    assert_non_null(a);
    static char recs[9][64];
    const char *want[9];
    for (int i = 0; i < 9; i++) {
        snprintf(recs[i], sizeof recs[i], "{\"rec\":%d,\"pad\":\"%031d\"}", i, 0);
        assert_int_equal(strlen(recs[i]), 49);
        want[i] = recs[i];
        tlm_time_t now = i < 5 ? BASE + i * TLM_NS_PER_S * 60 : BASE + HOUR_NS + i;
        assert_int_equal(tlm_archive_put(a, recs[i], 49, now, &err), 0);
    }
    assert_int_equal(tlm_archive_records(a), 9);
    assert_int_equal(tlm_archive_raw_bytes(a), 450);
    long long bytes_before_close = tlm_archive_bytes(a);
    assert_int_equal(tlm_archive_segments(a), 4); /* the last frame is still pending */
    assert_int_equal(tlm_archive_close(a, &err), 0);

    size_t n;
    char **segs = list_segments(sub, &n);
    static const char *names[] = {
        "raw-20240101T10-000001.ndjson.zst", "raw-20240101T10-000002.ndjson.zst",
        "raw-20240101T10-000003.ndjson.zst", "raw-20240101T11-000004.ndjson.zst",
        "raw-20240101T11-000005.ndjson.zst",
    };
    assert_int_equal(n, 5);
    long long total = 0;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(base_name(segs[i]), names[i]);
        total += file_size(segs[i]);
    }
    assert_true(total > bytes_before_close);
    struct expect_lines e = { want, 9 };
    long long lines;
    assert_int_equal(replay(segs, n, check_lines, &e, &lines, &err), 0);
    assert_int_equal(lines, 9);
    /* segment 3 holds just record 4 (flushed by the change of hour) */
    assert_int_equal(replay(segs + 2, 1, NULL, NULL, &lines, &err), 0);
    assert_int_equal(lines, 1);
    free_list(segs, n);
    remove_dir(strdup(sub));
    snprintf(sub, sizeof sub, "%s/a", dir);
    remove_dir(strdup(sub));
    remove_dir(dir);
}

/* ---- rotation by size ------------------------------------------------------------- */

struct hour_check {
    long long first; /* index of the first record expected in this file */
};

static void test_size_rotation(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct tlm_error err;
    const size_t max = 4096;
    struct tlm_archive_opts o = { .dir = dir, .max_segment_bytes = max, .frame_bytes = 1024,
                                  .level = 1 };
    struct tlm_archive *a = tlm_archive_open(&o, &err);
    assert_non_null(a);
    char rec[256];
    const long long per_hour = 300;
    for (long long i = 0; i < 2 * per_hour; i++) {
        size_t len = make_record(rec, sizeof rec, i);
        tlm_time_t now = BASE + (i / per_hour) * HOUR_NS + (i % per_hour) * TLM_NS_PER_S;
        assert_int_equal(tlm_archive_put(a, rec, len, now, &err), 0);
    }
    assert_int_equal(tlm_archive_close(a, &err), 0);

    size_t n;
    char **segs = list_segments(dir, &n);
    assert_true(n >= 4);
    int h10 = 0, h11 = 0;
    long long total = 0, next = 0;
    for (size_t i = 0; i < n; i++) {
        const char *b = base_name(segs[i]);
        int is10 = strncmp(b, "raw-20240101T10-", 16) == 0;
        assert_true(is10 || strncmp(b, "raw-20240101T11-", 16) == 0);
        h10 += is10;
        h11 += !is10;
        /* sequence numbers are 1..n in glob order */
        char seq[24];
        snprintf(seq, sizeof seq, "%06zu", i + 1);
        assert_memory_equal(b + 16, seq, 6);
        /* walk the frames: all checksummed; the size limit was first reached by the last */
        long long sz = file_size(segs[i]);
        total += sz;
        unsigned char *buf = malloc((size_t)sz);
        FILE *f = fopen(segs[i], "rb");
        assert_non_null(f);
        assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
        fclose(f);
        size_t off = 0, last = 0;
        int frames = 0;
        while (off < (size_t)sz) {
            /* magic, then the frame header descriptor: bit 2 = content checksum */
            assert_true((size_t)sz - off > 5);
            assert_memory_equal(buf + off, "\x28\xb5\x2f\xfd", 4);
            assert_true(buf[off + 4] & 4);
            size_t fs = ZSTD_findFrameCompressedSize(buf + off, (size_t)sz - off);
            assert_false(ZSTD_isError(fs));
            last = off;
            off += fs;
            frames++;
        }
        assert_int_equal(off, (size_t)sz);
        assert_true(last < max); /* no frame was added after the limit was reached */
        free(buf);
        int last_of_hour = i + 1 == n || (is10 && strncmp(base_name(segs[i + 1]),
                                                          "raw-20240101T10-", 16) != 0);
        if (!last_of_hour)
            assert_true((size_t)sz >= max);
        /* each file holds a contiguous run of records, of its own hour */
        long long bad = -1, lines;
        struct tlm_reader *r = tlm_reader_create((const char *const *)&segs[i], 1);
        const char *line;
        size_t len;
        int rc;
        lines = 0;
        while ((rc = tlm_reader_next(r, &line, &len, -1, &err)) == 1) {
            size_t wl = make_record(rec, sizeof rec, next + lines);
            if (wl != len || memcmp(rec, line, len))
                bad = next + lines;
            assert_int_equal((next + lines) / per_hour, is10 ? 0 : 1);
            lines++;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(bad, -1);
        tlm_reader_destroy(r);
        next += lines;
    }
    assert_true(h10 >= 2 && h11 >= 2);
    assert_int_equal(next, 2 * per_hour);
    /* and all of it in one go */
    long long bad = -1, lines;
    assert_int_equal(replay(segs, n, check_stream, &bad, &lines, &err), 0);
    assert_int_equal(bad, -1);
    assert_int_equal(lines, 2 * per_hour);
    (void)total;
    free_list(segs, n);
    remove_dir(dir);
}

/* ---- flush: readable while the archive is open ------------------------------------ */

static void test_flush_readable(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct tlm_error err;
    struct tlm_archive_opts o = { .dir = dir };
    struct tlm_archive *a = tlm_archive_open(&o, &err);
    assert_non_null(a);
    assert_string_equal(tlm_archive_segment_path(a), "");
    size_t n;
    char **segs = list_segments(dir, &n);
    assert_int_equal(n, 0); /* nothing until the first frame */
    free_list(segs, n);
    assert_int_equal(tlm_archive_flush(a, &err), 0); /* nothing pending: no-op */
    assert_int_equal(tlm_archive_segments(a), 0);
    char rec[256];
    for (long long i = 0; i < 10; i++) {
        size_t len = make_record(rec, sizeof rec, i);
        assert_int_equal(tlm_archive_put(a, rec, len, BASE + i, &err), 0);
    }
    segs = list_segments(dir, &n);
    assert_int_equal(n, 0); /* still pending (1 MiB frames) */
    free_list(segs, n);
    assert_int_equal(tlm_archive_flush(a, &err), 0);
    segs = list_segments(dir, &n);
    assert_int_equal(n, 1);
    assert_string_equal(segs[0], tlm_archive_segment_path(a));
    long long bad = -1, lines;
    assert_int_equal(replay(segs, n, check_stream, &bad, &lines, &err), 0);
    assert_int_equal(lines, 10);
    for (long long i = 10; i < 15; i++) {
        size_t len = make_record(rec, sizeof rec, i);
        assert_int_equal(tlm_archive_put(a, rec, len, BASE + i, &err), 0);
    }
    assert_int_equal(tlm_archive_flush(a, &err), 0);
    assert_int_equal(tlm_archive_flush(a, &err), 0);
    assert_int_equal(replay(segs, n, check_stream, &bad, &lines, &err), 0);
    assert_int_equal(lines, 15);
    assert_int_equal(bad, -1);
    assert_int_equal(tlm_archive_bytes(a), file_size(segs[0]));
    free_list(segs, n);
    /* a newline inside a record is refused and changes nothing */
    assert_int_equal(tlm_archive_put(a, "a\nb", 3, BASE, &err), TLM_EINVAL);
    assert_int_equal(err.code, TLM_EINVAL);
    assert_int_equal(tlm_archive_records(a), 15);
    /* an empty record is an empty line */
    assert_int_equal(tlm_archive_put(a, "", 0, BASE, &err), 0);
    assert_int_equal(tlm_archive_close(a, &err), 0);
    assert_int_equal(tlm_archive_close(NULL, &err), 0);
    remove_dir(dir);
}

/* ---- restarts, the lock, a clock that goes back ------------------------------------ */

static void test_reopen_and_lock(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct tlm_error err;
    struct tlm_archive_opts o = { .dir = dir };
    struct tlm_archive *a = tlm_archive_open(&o, &err);
    assert_non_null(a);
    /* one writer per directory */
    struct tlm_archive *b = tlm_archive_open(&o, &err);
    assert_null(b);
    assert_int_equal(err.code, TLM_EIO);
    assert_non_null(strstr(err.text, "in use"));
    assert_int_equal(tlm_archive_put(a, "one", 3, BASE + HOUR_NS, &err), 0);
    assert_int_equal(tlm_archive_close(a, &err), 0);

    /* same hour, new run: a new segment, never an append */
    a = tlm_archive_open(&o, &err);
    assert_non_null(a);
    assert_int_equal(tlm_archive_put(a, "two", 3, BASE + HOUR_NS + 5, &err), 0);
    assert_int_equal(tlm_archive_flush(a, &err), 0);
    /* the wall clock steps back an hour: rotate, but the name keeps order */
    assert_int_equal(tlm_archive_put(a, "three", 5, BASE, &err), 0);
    assert_int_equal(tlm_archive_close(a, &err), 0);

    size_t n;
    char **segs = list_segments(dir, &n);
    assert_int_equal(n, 3);
    assert_string_equal(base_name(segs[0]), "raw-20240101T11-000001.ndjson.zst");
    assert_string_equal(base_name(segs[1]), "raw-20240101T11-000002.ndjson.zst");
    assert_string_equal(base_name(segs[2]), "raw-20240101T11-000003.ndjson.zst");
    static const char *want[] = { "one", "two", "three" };
    struct expect_lines e = { want, 3 };
    long long lines;
    assert_int_equal(replay(segs, n, check_lines, &e, &lines, &err), 0);
    assert_int_equal(lines, 3);
    free_list(segs, n);

    /* a temporary left by a killed run: whole frames kept, a torn tail cut, empty ones
     * removed; numbering continues above it */
    char p[4200], q[4200];
    size_t cap = ZSTD_compressBound(16);
    char *frame = malloc(2 * cap);
    size_t f1 = ZSTD_compress(frame, cap, "left\nover\n", 10, 1);
    assert_false(ZSTD_isError(f1));
    size_t f2 = ZSTD_compress(frame + f1, cap, "torn\n", 5, 1);
    assert_false(ZSTD_isError(f2));
    snprintf(p, sizeof p, "%s/.raw-20240101T12-000040.ndjson.zst.tmp", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(frame, 1, f1 + f2 - 3, f), f1 + f2 - 3);
    fclose(f);
    free(frame);
    snprintf(q, sizeof q, "%s/.raw-20240101T12-000041.ndjson.zst.tmp", dir);
    f = fopen(q, "wb");
    assert_non_null(f);
    fclose(f);
    a = tlm_archive_open(&o, &err);
    assert_non_null(a);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(access(q, F_OK), -1);
    assert_int_equal(tlm_archive_put(a, "four", 4, BASE + 2 * HOUR_NS, &err), 0);
    assert_int_equal(tlm_archive_close(a, &err), 0);
    segs = list_segments(dir, &n);
    assert_int_equal(n, 5);
    assert_string_equal(base_name(segs[3]), "raw-20240101T12-000040.ndjson.zst");
    assert_string_equal(base_name(segs[4]), "raw-20240101T12-000042.ndjson.zst");
    static const char *want2[] = { "one", "two", "three", "left", "over", "four" };
    struct expect_lines e2 = { want2, 6 };
    assert_int_equal(replay(segs, n, check_lines, &e2, &lines, &err), 0);
    assert_int_equal(lines, 6);
    free_list(segs, n);

    /* bad options */
    struct tlm_archive_opts bad = { .dir = dir, .level = 1000 };
    assert_null(tlm_archive_open(&bad, &err));
    assert_int_equal(err.code, TLM_EINVAL);
    struct tlm_archive_opts nodir = { .dir = NULL };
    assert_null(tlm_archive_open(&nodir, &err));
    assert_int_equal(err.code, TLM_EINVAL);
    snprintf(p, sizeof p, "%s/raw-20240101T11-000001.ndjson.zst", dir);
    struct tlm_archive_opts notdir = { .dir = p };
    assert_null(tlm_archive_open(&notdir, &err));
    assert_int_equal(err.code, TLM_EIO);
    remove_dir(dir);
}

/* ---- kill -9 mid-stream --------------------------------------------------------------- */

static void child_writer(const char *dir, int wfd)
{
    struct tlm_error err;
    struct tlm_archive_opts o = { .dir = dir, .max_segment_bytes = 8192, .frame_bytes = 700,
                                  .level = 1 };
    struct tlm_archive *a = tlm_archive_open(&o, &err);
    if (!a)
        _exit(2);
    char rec[256];
    for (long long i = 0; i < 100000000; i++) {
        size_t len = make_record(rec, sizeof rec, i);
        /* two seconds apart: a new hour every 1800 records */
        if (tlm_archive_put(a, rec, len, BASE + i * 2 * TLM_NS_PER_S, &err))
            _exit(3);
        if (i % 37 == 36) {
            if (tlm_archive_flush(a, &err))
                _exit(4);
            long long done = i + 1;
            if (write(wfd, &done, sizeof done) != (ssize_t)sizeof done)
                _exit(5);
        }
    }
    _exit(6);
}

static void kill9_round(int round)
{
    char *dir = make_dir();
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        child_writer(dir, pfd[1]);
    }
    close(pfd[1]);
    long long flushed = 0, v;
    while (flushed < 20000 && read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v)
        flushed = v;
    usleep((useconds_t)(round * 397)); /* land somewhere else in the writer's cycle */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    /* flushes the child finished before it died (read after the kill: all in the pipe) */
    while (read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v)
        flushed = v;
    close(pfd[0]);
    assert_true(flushed >= 20000);

    size_t n;
    char **segs = list_segments(dir, &n);
    assert_true(n > 10);
    struct tlm_error err;
    long long bad = -1, lines;
    /* every segment on its own reads to the end... */
    for (size_t i = 0; i < n; i++) {
        long long l;
        int rc = replay(&segs[i], 1, NULL, NULL, &l, &err);
        if (rc != 0)
            fail_msg("%s: %s", segs[i], err.text);
        assert_true(l > 0);
    }
    /* ...and all of them give a prefix of what was put, with all that was flushed */
    int rc = replay(segs, n, check_stream, &bad, &lines, &err);
    if (rc != 0)
        fail_msg("replay: %s", err.text);
    assert_int_equal(bad, -1);
    assert_true(lines >= flushed);
    print_message("# round %d: killed after %lld records flushed; %lld replayed from %zu "
                  "segments\n", round, flushed, lines, n);
    unsigned long long max_seq = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned long long s = strtoull(base_name(segs[i]) + 16, NULL, 10);
        if (s > max_seq)
            max_seq = s;
    }
    free_list(segs, n);

    /* a restart continues after the highest number (the dead writer's lock is gone) */
    struct tlm_archive_opts o = { .dir = dir };
    struct tlm_archive *a = tlm_archive_open(&o, &err);
    assert_non_null(a);
    /* opening may have recovered a temporary the writer was killed with: count again */
    segs = list_segments(dir, &n);
    long long now_lines;
    assert_int_equal(replay(segs, n, check_stream, &bad, &now_lines, &err), 0);
    assert_int_equal(bad, -1);
    assert_true(now_lines >= lines);
    free_list(segs, n);
    char rec[256];
    size_t len = make_record(rec, sizeof rec, now_lines);
    assert_int_equal(tlm_archive_put(a, rec, len, BASE + 100 * HOUR_NS, &err), 0);
    assert_int_equal(tlm_archive_close(a, &err), 0);
    segs = list_segments(dir, &n);
    const char *last = base_name(segs[n - 1]);
    assert_true(strtoull(last + 16, NULL, 10) > max_seq);
    long long after;
    bad = -1;
    assert_int_equal(replay(segs, n, check_stream, &bad, &after, &err), 0);
    assert_int_equal(after, now_lines + 1);
    assert_int_equal(bad, -1);
    free_list(segs, n);
    remove_dir(dir);
}

static void test_kill9(void **state)
{
    (void)state;
    for (int round = 0; round < 6; round++)
        kill9_round(round);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_hours), cmocka_unit_test(test_size_rotation),
        cmocka_unit_test(test_flush_readable),  cmocka_unit_test(test_reopen_and_lock),
        cmocka_unit_test(test_kill9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
