/* test_snapshot.c - versioned zstd state files (lib/snapshot.c): round trip, atomic
 * replace, and clear errors for missing, truncated, bit-flipped, foreign and newer files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <cmocka.h>

#include "snapshot.h"

static char dir[] = "/tmp/telem-test-snap-XXXXXX";
static char path[300];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/state.zst", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static void write_snapshot(const char *p, int nrec)
{
    json_t *h = json_pack("{sss{sssi}}", "command", "window", "options", "tumble", "1m", "n", 3);
    struct tlm_error err;
    struct tlm_snap_writer *w = tlm_snap_create(p, h, &err);
    assert_non_null(w);
    for (int i = 0; i < nrec; i++) {
        json_t *r = json_pack("{sisf}", "key", i, "avg", 27.508 + i);
        assert_int_equal(tlm_snap_put(w, r, &err), 0);
        json_decref(r);
    }
    assert_int_equal(tlm_snap_put_raw(w, "{\"kind\":\"raw\"}", 14, &err), 0);
    assert_int_equal(tlm_snap_commit(w, &err), 0);
    json_decref(h);
}

static unsigned char *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    struct stat st;
    unsigned char *b;
    assert_non_null(f);
    fstat(fileno(f), &st);
    b = malloc((size_t)st.st_size + 1);
    *n = fread(b, 1, (size_t)st.st_size, f);
    fclose(f);
    return b;
}

static void spit(const char *p, const void *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Reads the whole snapshot; returns 0 or the first error code. With dump, appends the
 * header and records as text so that two reads can be compared. */
static int read_dump(const char *p, long long *nrec, struct tlm_error *err, char **dump)
{
    json_t *h = NULL, *r;
    int rc;
    size_t used = 0;
    struct tlm_snap_reader *rd = tlm_snap_open(p, &h, err);
    *nrec = 0;
    if (dump)
        *dump = NULL;
    if (!rd)
        return err->code;
    if (dump) {
        *dump = json_dumps(h, JSON_COMPACT);
        used = strlen(*dump);
    }
    while ((rc = tlm_snap_next(rd, &r, err)) == 1) {
        if (dump) {
            char *s = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(17));
            *dump = realloc(*dump, used + strlen(s) + 2);
            used += (size_t)sprintf(*dump + used, "\n%s", s);
            free(s);
        }
        json_decref(r);
        (*nrec)++;
    }
    tlm_snap_close(rd);
    json_decref(h);
    return rc;
}

static int read_all(const char *p, long long *nrec, struct tlm_error *err)
{
    return read_dump(p, nrec, err, NULL);
}

static void test_round_trip(void **state)
{
    json_t *h = NULL, *r;
    struct tlm_error err;
    struct tlm_snap_reader *rd;
    (void)state;
    write_snapshot(path, 3);
    rd = tlm_snap_open(path, &h, &err);
    assert_non_null(rd);
    assert_int_equal(json_integer_value(json_object_get(h, "telem_snapshot")), 1);
    assert_string_equal(json_string_value(json_object_get(h, "command")), "window");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tlm_snap_next(rd, &r, &err), 1);
        assert_int_equal(json_integer_value(json_object_get(r, "key")), i);
        /* reals come back exactly */
        assert_true(json_real_value(json_object_get(r, "avg")) == 27.508 + i);
        json_decref(r);
    }
    assert_int_equal(tlm_snap_next(rd, &r, &err), 1);
    assert_string_equal(json_string_value(json_object_get(r, "kind")), "raw");
    json_decref(r);
    assert_int_equal(tlm_snap_next(rd, &r, &err), 0);
    assert_int_equal(tlm_snap_next(rd, &r, &err), 0);
    tlm_snap_close(rd);

    /* options check */
    json_t *same = json_pack("{sssi}", "tumble", "1m", "n", 3);
    json_t *other = json_pack("{sssi}", "tumble", "5m", "n", 3);
    json_t *fewer = json_pack("{ss}", "tumble", "1m");
    assert_int_equal(tlm_snap_check_options(h, same, &err), 0);
    assert_int_equal(tlm_snap_check_options(h, other, &err), TLM_ESTATE);
    assert_string_equal(err.text, "snapshot was written with tumble=\"1m\", now tumble=\"5m\"; "
                                  "use another --state file or the same options");
    assert_int_equal(tlm_snap_check_options(h, fewer, &err), TLM_ESTATE);
    assert_string_equal(err.text, "snapshot was written with option n, which is now unset");
    json_decref(same);
    json_decref(other);
    json_decref(fewer);
    json_decref(h);
}

static void test_atomic_replace(void **state)
{
    struct tlm_error err;
    long long n;
    char tmp[400];
    (void)state;
    write_snapshot(path, 2);
    /* an aborted snapshot leaves the old one and no temporary file */
    json_t *h = json_object();
    struct tlm_snap_writer *w = tlm_snap_create(path, h, &err);
    json_decref(h);
    assert_non_null(w);
    tlm_snap_abort(w);
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(read_all(path, &n, &err), 0);
    assert_int_equal(n, 3);
    /* a new one replaces it whole */
    write_snapshot(path, 5);
    assert_int_equal(read_all(path, &n, &err), 0);
    assert_int_equal(n, 6);
    /* cannot create in a missing directory: clear error */
    h = json_object();
    assert_null(tlm_snap_create("/nonexistent-dir/s.zst", h, &err));
    assert_int_equal(err.code, TLM_EIO);
    json_decref(h);
}

static void test_bad_files(void **state)
{
    struct tlm_error err;
    long long n;
    size_t len;
    char bad[400];
    unsigned char *b;
    (void)state;
    snprintf(bad, sizeof(bad), "%s/bad.zst", dir);

    tlm_error_clear(&err);
    assert_int_equal(read_all("/nonexistent-dir/none.zst", &n, &err), TLM_ENOTFOUND);

    spit(bad, "{\"telem_snapshot\":1}\n", 21);
    assert_int_equal(read_all(bad, &n, &err), TLM_ESTATE);
    assert_string_equal(err.text, "not a telem snapshot (not zstd-compressed)");

    /* valid zstd, but not our header */
    char z[256];
    size_t zn = ZSTD_compress(z, sizeof(z), "{\"a\":1}\n", 8, 1);
    spit(bad, z, zn);
    assert_int_equal(read_all(bad, &n, &err), TLM_ESTATE);
    assert_string_equal(err.text, "not a telem snapshot (no telem_snapshot header)");

    const char *newer = "{\"telem_snapshot\":2}\n{\"telem_snapshot_end\":0}\n";
    zn = ZSTD_compress(z, sizeof(z), newer, strlen(newer), 1);
    spit(bad, z, zn);
    assert_int_equal(read_all(bad, &n, &err), TLM_ESTATE);
    assert_string_equal(err.text, "snapshot format 2 is not supported (this telem reads format 1)");

    const char *count = "{\"telem_snapshot\":1}\n{\"a\":1}\n{\"telem_snapshot_end\":2}\n";
    zn = ZSTD_compress(z, sizeof(z), count, strlen(count), 1);
    spit(bad, z, zn);
    assert_int_equal(read_all(bad, &n, &err), TLM_ESTATE);
    assert_string_equal(err.text, "snapshot is corrupt: trailer counts 2 records, file has 1");

    const char *after = "{\"telem_snapshot\":1}\n{\"telem_snapshot_end\":0}\n{}\n";
    zn = ZSTD_compress(z, sizeof(z), after, strlen(after), 1);
    spit(bad, z, zn);
    assert_int_equal(read_all(bad, &n, &err), TLM_ESTATE);
    assert_string_equal(err.text, "snapshot is corrupt: data after the trailer");

    /* every truncation of a real snapshot is an error, never a partial state */
    write_snapshot(path, 50);
    b = slurp(path, &len);
    for (size_t cut = 0; cut < len; cut++) {
        spit(bad, b, cut);
        assert_int_equal(read_all(bad, &n, &err), TLM_ESTATE);
    }
    /* a flipped bit is either caught, or it did not change what is read (zstd header
     * fields such as the window size are advisory): never a silently different state */
    char *want, *got;
    assert_int_equal(read_dump(path, &n, &err, &want), 0);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b[i] ^= (unsigned char)(1u << bit);
            spit(bad, b, len);
            int rc = read_dump(bad, &n, &err, &got);
            b[i] ^= (unsigned char)(1u << bit);
            if (rc == 0 && strcmp(want, got) != 0)
                fail_msg("flip at byte %zu bit %d changed the state silently", i, bit);
            if (rc != 0 && rc != TLM_ESTATE)
                fail_msg("flip at byte %zu bit %d: unexpected code %d", i, bit, rc);
            free(got);
        }
    }
    free(want);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_atomic_replace),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests_name("snapshot", tests, setup, teardown);
}
