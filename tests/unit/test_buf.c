/* test_buf.c - the growable buffer and error records (lib/buf.c, lib/error.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "error.h"

static void test_buf(void **state)
{
    struct tlm_buf b = TLM_BUF_INIT;
    (void)state;
    assert_int_equal(tlm_buf_puts(&b, "ab"), 0);
    assert_int_equal(tlm_buf_putc(&b, 'c'), 0);
    assert_int_equal(tlm_buf_printf(&b, "-%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "abc-42-x");
    assert_int_equal(b.len, 8);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(tlm_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 100008);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    tlm_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    tlm_buf_free(&b);
    assert_null(b.data);
    tlm_buf_free(&b); /* twice is fine */
}

static void test_error(void **state)
{
    struct tlm_error e;
    char out[600];
    (void)state;
    tlm_error_clear(&e);
    assert_int_equal(e.offset, -1);
    assert_int_equal(tlm_error_set(&e, TLM_EPARSE, "expected %s", "a number"), TLM_EPARSE);
    assert_string_equal(tlm_error_format(&e, out, sizeof(out)), "expected a number");
    tlm_error_at(&e, "events.ndjson", 12, 5, 100);
    assert_string_equal(tlm_error_format(&e, out, sizeof(out)),
                        "events.ndjson:12:5: expected a number");
    tlm_error_at(&e, "-", 3, 0, 10);
    assert_string_equal(tlm_error_format(&e, out, sizeof(out)), "-:3: expected a number");
    tlm_error_clear(&e);
    e.code = TLM_EIO;
    assert_string_equal(tlm_error_format(&e, out, sizeof(out)), "input/output error");
    assert_int_equal(tlm_error_set(NULL, TLM_ENOMEM, "x"), TLM_ENOMEM); /* NULL err is fine */
    assert_string_equal(tlm_code_name(TLM_ESTATE), "bad snapshot");
    assert_string_equal(tlm_code_name(12345), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_error),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
