/* test_rw.c - remote write encoding (lib/rw.c): golden vectors of 1.0 and 2.0, decoding,
 * splitting, snappy round trip, name rules, retry timing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "rw.h"
#include "rwspool.h"

#include <stdlib.h>
#include <unistd.h>

static char *hex(const struct tlm_buf *b, char *out)
{
    for (size_t i = 0; i < b->len; i++)
        sprintf(out + 2 * i, "%02x", (unsigned char)b->data[i]);
    out[2 * b->len] = '\0';
    return out;
}

#define L(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static const struct tlm_rw_label golden_labels[] = { L("__name__", "test_metric"),
                                                     L("job", "telem") };
static const struct tlm_rw_sample golden_sample = { 1.0, 1700000000000LL };

static void test_golden_v1(void **state)
{
    struct tlm_buf b = TLM_BUF_INIT, lpb = TLM_BUF_INIT;
    char h[1024];
    struct tlm_rw_series s = { golden_labels, 2, NULL, 0, &golden_sample, 1 };
    (void)state;
    assert_int_equal(tlm_rw_encode_v1(&s, 1, &b), 0);
    assert_string_equal(hex(&b, h),
                        "0a390a170a085f5f6e616d655f5f120b746573745f6d65747269630a0c0a036a6f62"
                        "120574656c656d121009000000000000f03f1080d095ffbc31");
    /* the same through pre-encoded labels */
    assert_int_equal(tlm_rw_labels_pb(golden_labels, 2, &lpb), 0);
    s.lpb = lpb.data;
    s.lpb_len = lpb.len;
    tlm_buf_reset(&b);
    assert_int_equal(tlm_rw_encode_v1(&s, 1, &b), 0);
    assert_string_equal(hex(&b, h),
                        "0a390a170a085f5f6e616d655f5f120b746573745f6d65747269630a0c0a036a6f62"
                        "120574656c656d121009000000000000f03f1080d095ffbc31");
    tlm_buf_free(&b);
    tlm_buf_free(&lpb);
}

static void test_golden_v2(void **state)
{
    struct tlm_buf b = TLM_BUF_INIT;
    char h[1024];
    struct tlm_rw_series s = { golden_labels, 2, NULL, 0, &golden_sample, 1 };
    struct tlm_rw_v2 *v = tlm_rw_v2_create();
    (void)state;
    assert_non_null(v);
    assert_int_equal(tlm_rw_encode_v2(v, &s, 1, TLM_RW_TYPE_GAUGE, &b), 0);
    assert_string_equal(hex(&b, h),
                        "220022085f5f6e616d655f5f220b746573745f6d657472696322036a6f62220574656c"
                        "656d2a1c0a0401020304121009000000000000f03f1080d095ffbc312a020802");
    /* a second call reuses the state and gives the same bytes */
    tlm_buf_reset(&b);
    assert_int_equal(tlm_rw_encode_v2(v, &s, 1, TLM_RW_TYPE_GAUGE, &b), 0);
    assert_string_equal(hex(&b, h),
                        "220022085f5f6e616d655f5f220b746573745f6d657472696322036a6f62220574656c"
                        "656d2a1c0a0401020304121009000000000000f03f1080d095ffbc312a020802");
    tlm_rw_v2_destroy(v);
    tlm_buf_free(&b);
}

/* two series sharing symbols: each symbol once, refs point at them */
static void test_v2_symbols(void **state)
{
    static const struct tlm_rw_label a[] = { L("__name__", "m"), L("host", "a") };
    static const struct tlm_rw_label c[] = { L("__name__", "m"), L("host", "b") };
    struct tlm_rw_sample x[2] = { { 1, 5 }, { 2, 6 } };
    struct tlm_rw_series s[2] = { { a, 2, NULL, 0, x, 1 }, { c, 2, NULL, 0, x + 1, 1 } };
    struct tlm_buf b = TLM_BUF_INIT;
    char h[1024];
    struct tlm_rw_v2 *v = tlm_rw_v2_create();
    (void)state;
    assert_int_equal(tlm_rw_encode_v2(v, s, 2, TLM_RW_TYPE_UNSPECIFIED, &b), 0);
    /* symbols "", __name__, m, host, a, b; refs [1,2,3,4] and [1,2,3,5] */
    assert_string_equal(hex(&b, h),
                        "220022085f5f6e616d655f5f22016d2204686f737422016122016"
                        "22a130a0401020304120b09000000000000f03f1005"
                        "2a130a0401020305120b0900000000000000401006");
    tlm_rw_v2_destroy(v);
    tlm_buf_free(&b);
}

static void test_decode_split(void **state)
{
    static const struct tlm_rw_label a[] = { L("__name__", "m"), L("host", "a") };
    static const struct tlm_rw_label c[] = { L("__name__", "m"), L("host", "b") };
    struct tlm_rw_sample xa[3] = { { 1, 10 }, { 2, 20 }, { 3, 30 } };
    struct tlm_rw_sample xc[2] = { { NAN, 10 }, { 0, 20 } };
    struct tlm_rw_series s[2] = { { a, 2, NULL, 0, xa, 3 }, { c, 2, NULL, 0, xc, 2 } };
    struct tlm_buf b = TLM_BUF_INIT, b2 = TLM_BUF_INIT, part = TLM_BUF_INIT;
    struct tlm_rw_req r = TLM_RW_REQ_INIT;
    struct tlm_error err;
    (void)state;
    xc[1].value = tlm_rw_stale();
    assert_int_equal(tlm_rw_encode_v1(s, 2, &b), 0);
    assert_int_equal(tlm_rw_decode_v1(b.data, b.len, &r, &err), 0);
    assert_int_equal(r.nseries, 2);
    assert_int_equal(r.nsamples, 5);
    assert_int_equal(r.series[1].nlabels, 2);
    assert_memory_equal(r.series[1].labels[1].value, "b", 1);
    assert_true(isnan(r.samples[3].value) && !tlm_rw_is_stale(r.samples[3].value));
    assert_true(tlm_rw_is_stale(r.samples[4].value));
    assert_int_equal(r.samples[2].ts, 30);
    /* re-encoding the decoded request gives the same bytes */
    assert_int_equal(tlm_rw_encode_v1_range(&r, 0, 5, &b2), 0);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);
    /* samples 2..4: the last of series a and the first of series b */
    assert_int_equal(tlm_rw_req_series_of(&r, 2), 0);
    assert_int_equal(tlm_rw_req_series_of(&r, 3), 1);
    assert_int_equal(tlm_rw_encode_v1_range(&r, 2, 4, &part), 0);
    {
        struct tlm_rw_sample pa = xa[2], pc = xc[0];
        struct tlm_rw_series want[2] = { { a, 2, NULL, 0, &pa, 1 }, { c, 2, NULL, 0, &pc, 1 } };
        tlm_buf_reset(&b2);
        assert_int_equal(tlm_rw_encode_v1(want, 2, &b2), 0);
        assert_int_equal(part.len, b2.len);
        assert_memory_equal(part.data, b2.data, b2.len);
    }
    /* truncated input is an error, not a crash */
    for (size_t n = 1; n < b.len; n++) {
        int rc = tlm_rw_decode_v1(b.data, n, &r, &err);
        assert_true(rc == 0 || rc == TLM_EPARSE);
    }
    tlm_rw_req_free(&r);
    tlm_buf_free(&b);
    tlm_buf_free(&b2);
    tlm_buf_free(&part);
}

static void test_snappy(void **state)
{
    struct tlm_buf in = TLM_BUF_INIT, z = TLM_BUF_INIT, back = TLM_BUF_INIT;
    (void)state;
    for (int i = 0; i < 10000; i++)
        tlm_buf_printf(&in, "sample %d ", i % 97);
    assert_int_equal(tlm_rw_snappy(in.data, in.len, &z), 0);
    assert_true(z.len < in.len);
    /* block format: starts with the length varint, not the framed "sNaPpY" stream */
    assert_true(memcmp(z.data, "\xff\x06\x00\x00sNaPpY", 10) != 0);
    assert_int_equal(tlm_rw_unsnappy(z.data, z.len, &back), 0);
    assert_int_equal(back.len, in.len);
    assert_memory_equal(back.data, in.data, in.len);
    tlm_buf_reset(&back);
    assert_int_equal(tlm_rw_unsnappy("hello world", 11, &back), TLM_EPARSE);
    tlm_buf_free(&in);
    tlm_buf_free(&z);
    tlm_buf_free(&back);
}

static void test_names(void **state)
{
    struct tlm_buf b = TLM_BUF_INIT;
    (void)state;
    assert_true(tlm_rw_valid_metric("cpu:usage_p99", 13));
    assert_false(tlm_rw_valid_label("cpu:usage", 9));
    assert_false(tlm_rw_valid_metric("9bad", 4));
    assert_false(tlm_rw_valid_metric("", 0));
    assert_true(tlm_rw_valid_label("_x9", 3));
    assert_false(tlm_rw_valid_label("bad-name", 8));
    assert_int_equal(tlm_rw_sanitize("9bad.metric-x", 13, 1, &b), 0);
    assert_string_equal(b.data, "_9bad_metric_x");
    tlm_buf_reset(&b);
    assert_int_equal(tlm_rw_sanitize("a:b", 3, 0, &b), 0);
    assert_string_equal(b.data, "a_b");
    tlm_buf_reset(&b);
    assert_int_equal(tlm_rw_sanitize("é", 2, 0, &b), 0);
    assert_string_equal(b.data, "__");
    tlm_buf_free(&b);
}

static void test_retry(void **state)
{
    double s;
    (void)state;
    assert_true(tlm_rw_backoff(1, 30, 5000, 0) == 15);
    assert_true(tlm_rw_backoff(1, 30, 5000, 0.999999) < 30);
    assert_true(tlm_rw_backoff(3, 30, 5000, 0) == 60);
    assert_true(tlm_rw_backoff(30, 30, 5000, 0) == 2500);
    assert_true(tlm_rw_backoff(30, 30, 5000, 1) == 5000);
    assert_int_equal(tlm_rw_retry_after("7", 0, &s), 0);
    assert_true(s == 7);
    assert_int_equal(tlm_rw_retry_after(" 2\r\n", 0, &s), 0);
    assert_true(s == 2);
    /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
    assert_int_equal(tlm_rw_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770, &s), 0);
    assert_true(s == 7);
    assert_int_equal(tlm_rw_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800, &s), 0);
    assert_true(s == 0);
    assert_int_equal(tlm_rw_retry_after("soon", 0, &s), TLM_EPARSE);
    assert_int_equal(tlm_rw_retry_after("-1", 0, &s), TLM_EPARSE);
}

static void test_values(void **state)
{
    struct tlm_buf b = TLM_BUF_INIT;
    (void)state;
    tlm_rw_format_value(27.508, &b);
    tlm_buf_putc(&b, ' ');
    tlm_rw_format_value(3, &b);
    tlm_buf_putc(&b, ' ');
    tlm_rw_format_value(NAN, &b);
    tlm_buf_putc(&b, ' ');
    tlm_rw_format_value(-INFINITY, &b);
    tlm_buf_putc(&b, ' ');
    tlm_rw_format_value(1e-7, &b);
    tlm_buf_putc(&b, ' ');
    tlm_rw_format_value(40, &b);
    tlm_buf_putc(&b, ' ');
    tlm_rw_format_value(-1200, &b);
    tlm_buf_putc(&b, ' ');
    tlm_rw_format_value(1e20, &b);
    assert_string_equal(b.data, "27.508 3 NaN -Inf 1e-07 40 -1200 1e+20");
    assert_true(tlm_rw_is_stale(tlm_rw_stale()));
    assert_false(tlm_rw_is_stale(NAN));
    tlm_buf_free(&b);
}

static void test_spool(void **state)
{
    char dir[] = "/tmp/test_rw.XXXXXX", path[256];
    uint64_t *seqs;
    size_t n;
    int64_t bytes, b1, b2;
    struct tlm_buf back = TLM_BUF_INIT;
    struct tlm_error err;
    FILE *f;
    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tlm_rwspool_list(dir, &seqs, &n, &bytes, &err), 0);
    assert_int_equal(n, 0);
    free(seqs);
    b2 = tlm_rwspool_write(dir, 12, "second", 6, &err);
    b1 = tlm_rwspool_write(dir, 3, "first batch", 11, &err);
    assert_true(b1 > 0 && b2 > 0);
    /* a temporary file left by a crash is ignored and removed */
    snprintf(path, sizeof(path), "%s/00000000000000000099.tmp", dir);
    f = fopen(path, "w");
    fputs("partial", f);
    fclose(f);
    assert_int_equal(tlm_rwspool_list(dir, &seqs, &n, &bytes, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(seqs[0], 3);
    assert_int_equal(seqs[1], 12);
    assert_int_equal(bytes, b1 + b2);
    assert_int_equal(access(path, F_OK), -1);
    free(seqs);
    assert_int_equal(tlm_rwspool_read(dir, 3, &back, &err), 0);
    assert_int_equal(back.len, 11);
    assert_memory_equal(back.data, "first batch", 11);
    assert_int_equal(tlm_rwspool_remove(dir, 3, &err), 0);
    assert_int_equal(tlm_rwspool_read(dir, 3, &back, &err), TLM_ENOTFOUND);
    /* a corrupt segment is an error, not garbage */
    snprintf(path, sizeof(path), "%s/00000000000000000012.seg", dir);
    f = fopen(path, "w");
    fputs("TLMRWS1\nnot zstd", f);
    fclose(f);
    tlm_buf_reset(&back);
    assert_int_equal(tlm_rwspool_read(dir, 12, &back, &err), TLM_ESTATE);
    assert_int_equal(tlm_rwspool_remove(dir, 12, &err), 0);
    assert_int_equal(rmdir(dir), 0);
    tlm_buf_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_v1),  cmocka_unit_test(test_golden_v2),
        cmocka_unit_test(test_v2_symbols), cmocka_unit_test(test_decode_split),
        cmocka_unit_test(test_snappy),     cmocka_unit_test(test_names),
        cmocka_unit_test(test_retry),      cmocka_unit_test(test_values),
        cmocka_unit_test(test_spool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
