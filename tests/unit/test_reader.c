/* test_reader.c - the line reader (lib/reader.c): files in order, zstd, CRLF, a last line
 * without newline, a 16 MiB line, positions, resume, errors, live input timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>
#include <cmocka.h>

#include "reader.h"

static char dir[] = "/tmp/telem-test-reader-XXXXXX";

static char *path_of(const char *name)
{
    static char p[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
    return p[k];
}

static void put_file(const char *name, const void *data, size_t n, int zstd)
{
    FILE *f = fopen(path_of(name), "wb");
    assert_non_null(f);
    if (zstd) {
        size_t cap = ZSTD_compressBound(n);
        void *z = malloc(cap);
        size_t zn = ZSTD_compress(z, cap, data, n, 3);
        assert_false(ZSTD_isError(zn));
        assert_int_equal(fwrite(z, 1, zn, f), zn);
        free(z);
    } else if (n) {
        assert_int_equal(fwrite(data, 1, n, f), n);
    }
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* Reads every line of r into one string joined by '|'. */
static char *read_all(struct tlm_reader *r, int *rc_out)
{
    static char out[4096];
    const char *line;
    size_t len, used = 0;
    int rc;
    struct tlm_error err;
    out[0] = '\0';
    while ((rc = tlm_reader_next(r, &line, &len, -1, &err)) == 1) {
        assert_int_equal(strlen(line), len); /* NUL-terminated, no embedded NUL here */
        used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s", used ? "|" : "", line);
    }
    *rc_out = rc;
    return out;
}

static void test_files_in_order(void **state)
{
    const char *a = "one\ntwo\r\nthree";      /* CRLF, no final newline */
    const char *b = "four\n\nfive\n";         /* an empty line */
    const char *paths[3];
    int rc;
    (void)state;
    put_file("a.txt", a, strlen(a), 0);
    put_file("b.zst", b, strlen(b), 1);
    put_file("c.txt", "", 0, 0);
    paths[0] = path_of("a.txt");
    paths[1] = path_of("b.zst");
    paths[2] = path_of("c.txt");
    struct tlm_reader *r = tlm_reader_create(paths, 3);
    assert_string_equal(read_all(r, &rc), "one|two|three|four||five");
    assert_int_equal(rc, 0);
    tlm_reader_destroy(r);
}

static void test_positions(void **state)
{
    const char *a = "ab\ncd\r\nef\n";
    const char *paths[1];
    const char *line;
    size_t len;
    (void)state;
    put_file("pos.txt", a, strlen(a), 0);
    paths[0] = path_of("pos.txt");
    struct tlm_reader *r = tlm_reader_create(paths, 1);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, NULL), 1);
    assert_int_equal(tlm_reader_line(r), 1);
    assert_int_equal(tlm_reader_offset(r), 0);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, NULL), 1);
    assert_string_equal(line, "cd");
    assert_int_equal(tlm_reader_line(r), 2);
    assert_int_equal(tlm_reader_offset(r), 3);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, NULL), 1);
    assert_int_equal(tlm_reader_offset(r), 7);
    assert_string_equal(tlm_reader_source(r), paths[0]);
    struct tlm_reader_pos pos;
    tlm_reader_pos(r, &pos);
    assert_int_equal(pos.offset, 10);
    assert_int_equal(pos.line, 3);
    assert_int_equal(pos.prefix_len, 10);
    assert_true(pos.prefix_hash == tlm_fnv1a(TLM_FNV_INIT, a, 10));
    assert_true(tlm_reader_progress(r) == 1.0);
    tlm_reader_destroy(r);
}

static void test_long_line(void **state)
{
    size_t n = 16u << 20;
    char *big = malloc(n + 8);
    const char *paths[1];
    const char *line;
    size_t len;
    (void)state;
    memset(big, 'x', n);
    memcpy(big + n, "\nok\n", 4);
    put_file("big.zst", big, n + 4, 1);
    paths[0] = path_of("big.zst");
    struct tlm_reader *r = tlm_reader_create(paths, 1);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, NULL), 1);
    assert_int_equal(len, n);
    assert_true(line[0] == 'x' && line[n - 1] == 'x' && line[n] == '\0');
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, NULL), 1);
    assert_string_equal(line, "ok");
    assert_int_equal(tlm_reader_offset(r), (long long)n + 1);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, NULL), 0);
    tlm_reader_destroy(r);
    free(big);
}

static void test_errors(void **state)
{
    const char *paths[1];
    const char *line;
    size_t len;
    struct tlm_error err;
    const char *text = "line one\nline two\n";
    size_t cap = ZSTD_compressBound(strlen(text));
    char *z = malloc(cap + 4);
    size_t zn = ZSTD_compress(z, cap, text, strlen(text), 3);
    (void)state;

    paths[0] = path_of("missing.txt");
    struct tlm_reader *r = tlm_reader_create(paths, 1);
    tlm_error_clear(&err);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, &err), TLM_EIO);
    assert_string_equal(err.source, paths[0]);
    assert_non_null(strstr(err.text, "No such file"));
    tlm_reader_destroy(r);

    put_file("trunc.zst", z, zn - 5, 0); /* a zstd stream cut short */
    paths[0] = path_of("trunc.zst");
    r = tlm_reader_create(paths, 1);
    tlm_error_clear(&err);
    int rc;
    while ((rc = tlm_reader_next(r, &line, &len, -1, &err)) == 1)
        ;
    assert_true(rc == TLM_EPARSE);
    assert_non_null(strstr(err.text, "zstd"));
    tlm_reader_destroy(r);

    /* a flipped bit in a stream with a content checksum (as snapshots have) */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    zn = ZSTD_compress2(cc, z, cap + 4, text, strlen(text));
    ZSTD_freeCCtx(cc);
    assert_false(ZSTD_isError(zn));
    z[zn / 2] ^= 0x55;
    put_file("flip.zst", z, zn, 0);
    paths[0] = path_of("flip.zst");
    r = tlm_reader_create(paths, 1);
    while ((rc = tlm_reader_next(r, &line, &len, -1, &err)) == 1)
        ;
    assert_true(rc == TLM_EPARSE);
    tlm_reader_destroy(r);
    free(z);
}

static void test_resume(void **state)
{
    const char *a = "l1\nl2\nl3\n", *b = "m1\nm2\n";
    const char *paths[2];
    const char *line;
    size_t len;
    struct tlm_reader_pos pos;
    int rc;
    (void)state;
    put_file("ra.txt", a, strlen(a), 0);
    put_file("rb.zst", b, strlen(b), 1);
    paths[0] = path_of("ra.txt");
    paths[1] = path_of("rb.zst");

    struct tlm_reader *r = tlm_reader_create(paths, 2);
    for (int i = 0; i < 4; i++)
        assert_int_equal(tlm_reader_next(r, &line, &len, -1, NULL), 1);
    assert_string_equal(line, "m1");
    tlm_reader_pos(r, &pos);
    tlm_reader_destroy(r);
    assert_int_equal(pos.input, 1);
    assert_int_equal(pos.offset, 3);

    /* same inputs: continue after m1 */
    r = tlm_reader_create(paths, 2);
    tlm_reader_resume(r, &pos);
    assert_string_equal(read_all(r, &rc), "m2");
    assert_int_equal(tlm_reader_resumed(r), 1);
    assert_int_equal(tlm_reader_line(r), 2);
    tlm_reader_destroy(r);

    /* same name, other content (next hour's file): read all from the start */
    put_file("rb.zst", "n1\nn2\n", 6, 1);
    r = tlm_reader_create(paths, 2);
    tlm_reader_resume(r, &pos);
    assert_string_equal(read_all(r, &rc), "l1|l2|l3|n1|n2");
    assert_int_equal(tlm_reader_resumed(r), 0);
    tlm_reader_destroy(r);

    /* other names: read all */
    const char *other[1] = { paths[0] };
    r = tlm_reader_create(other, 1);
    tlm_reader_resume(r, &pos);
    assert_string_equal(read_all(r, &rc), "l1|l2|l3");
    tlm_reader_destroy(r);

    /* a damaged position is refused, never trusted */
    struct tlm_reader_pos bad = pos;
    struct tlm_error err;
    bad.prefix_len = -4096;
    r = tlm_reader_create(paths, 2);
    tlm_reader_resume(r, &bad);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, &err), TLM_ESTATE);
    assert_string_equal(err.text, "snapshot input position is invalid");
    tlm_reader_destroy(r);
    bad = pos;
    bad.line = INT64_MAX;
    r = tlm_reader_create(paths, 2);
    tlm_reader_resume(r, &bad);
    assert_int_equal(tlm_reader_next(r, &line, &len, -1, &err), TLM_ESTATE);
    tlm_reader_destroy(r);

    /* a log that grew since the snapshot: continue where it stopped */
    pos.input = 0;
    snprintf(pos.name, sizeof(pos.name), "%s", paths[0]);
    pos.offset = 6;
    pos.line = 2;
    pos.prefix_len = 6;
    pos.prefix_hash = tlm_fnv1a(TLM_FNV_INIT, a, 6);
    r = tlm_reader_create(paths, 1);
    tlm_reader_resume(r, &pos);
    assert_string_equal(read_all(r, &rc), "l3");
    tlm_reader_destroy(r);
}

static int blocked;
static int on_block(void *arg)
{
    (void)arg;
    blocked++;
    return 0;
}

static void test_live_timeout(void **state)
{
    int fds[2], saved = dup(0);
    const char *line;
    size_t len;
    (void)state;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(dup2(fds[0], 0), 0);
    close(fds[0]);
    assert_int_equal(write(fds[1], "a\nb", 3), 3);
    struct tlm_reader *r = tlm_reader_create(NULL, 0);
    tlm_reader_on_block(r, on_block, NULL);
    assert_int_equal(tlm_reader_next(r, &line, &len, 50, NULL), 1);
    assert_string_equal(line, "a");
    assert_int_equal(tlm_reader_is_live(r), 1);
    assert_int_equal(tlm_reader_next(r, &line, &len, 50, NULL), TLM_EAGAIN); /* "b" is partial */
    assert_true(blocked >= 1);
    assert_int_equal(write(fds[1], "c\n", 2), 2);
    assert_int_equal(tlm_reader_next(r, &line, &len, 50, NULL), 1);
    assert_string_equal(line, "bc");
    close(fds[1]);
    assert_int_equal(tlm_reader_next(r, &line, &len, 50, NULL), 0);
    assert_true(tlm_reader_progress(r) < 0);
    tlm_reader_destroy(r);
    dup2(saved, 0);
    close(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_in_order), cmocka_unit_test(test_positions),
        cmocka_unit_test(test_long_line),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_resume),         cmocka_unit_test(test_live_timeout),
    };
    return cmocka_run_group_tests_name("reader", tests, setup, teardown);
}
