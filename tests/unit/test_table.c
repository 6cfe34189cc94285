/* test_table.c - reference tables (lib/table.c): CSV typing, keys, fragments, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "table.h"

/* The CSV value s (NULL: empty unquoted field) typed, as JSON text. */
static const char *typed(const char *s, int quoted, int strings, enum tlm_table_empty empty)
{
    static struct tlm_buf b = TLM_BUF_INIT;
    int rc;
    tlm_buf_reset(&b);
    rc = tlm_table_csv_value(&b, s, s ? strlen(s) : 0, quoted, strings, empty);
    if (rc == 1)
        return "(skipped)";
    if (rc < 0)
        return "(error)";
    return b.data;
}

static void test_csv_types(void **state)
{
    (void)state;
    assert_string_equal(typed("17", 0, 0, 0), "17");
    assert_string_equal(typed("-3", 0, 0, 0), "-3");
    assert_string_equal(typed("0", 0, 0, 0), "0");
    assert_string_equal(typed("27.50", 0, 0, 0), "27.50");   /* original text kept */
    assert_string_equal(typed("1e3", 0, 0, 0), "1e3");
    assert_string_equal(typed("-0.5E-2", 0, 0, 0), "-0.5E-2");
    assert_string_equal(typed("true", 0, 0, 0), "true");
    assert_string_equal(typed("false", 0, 0, 0), "false");
    /* not JSON numbers or literals: strings */
    assert_string_equal(typed("007", 0, 0, 0), "\"007\"");
    assert_string_equal(typed("+5", 0, 0, 0), "\"+5\"");
    assert_string_equal(typed(".5", 0, 0, 0), "\".5\"");
    assert_string_equal(typed("1.", 0, 0, 0), "\"1.\"");
    assert_string_equal(typed("1e999", 0, 0, 0), "\"1e999\"");
    assert_string_equal(typed("1e-999", 0, 0, 0), "1e-999"); /* underflow is fine */
    assert_string_equal(typed("99999999999999999999", 0, 0, 0), "\"99999999999999999999\"");
    assert_string_equal(typed("NaN", 0, 0, 0), "\"NaN\"");
    assert_string_equal(typed("True", 0, 0, 0), "\"True\"");
    assert_string_equal(typed("null", 0, 0, 0), "\"null\"");
    assert_string_equal(typed("x\"y", 0, 0, 0), "\"x\\\"y\"");
    /* quoted fields and --strings stay strings */
    assert_string_equal(typed("17", 1, 0, 0), "\"17\"");
    assert_string_equal(typed("true", 1, 0, 0), "\"true\"");
    assert_string_equal(typed("17", 0, 1, 0), "\"17\"");
    /* empty fields */
    assert_string_equal(typed(NULL, 0, 0, TLM_EMPTY_NULL), "null");
    assert_string_equal(typed(NULL, 0, 0, TLM_EMPTY_STRING), "\"\"");
    assert_string_equal(typed(NULL, 0, 0, TLM_EMPTY_SKIP), "(skipped)");
    assert_string_equal(typed("", 1, 0, TLM_EMPTY_NULL), "\"\"");
    assert_string_equal(typed("\xff", 0, 0, 0), "(error)");
}

static char path[64];

static void write_file(const char *name, const char *text)
{
    FILE *f;
    snprintf(path, sizeof(path), "/tmp/test_table.%d.%s", (int)getpid(), name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *find(struct tlm_table *t, const char *key, size_t n)
{
    static char out[512];
    size_t len;
    const char *f = tlm_table_find(t, key, n, tlm_table_hash(key, n), &len);
    if (!f)
        return NULL;
    snprintf(out, sizeof(out), "%.*s", (int)len, f);
    return out;
}

static void test_csv_load(void **state)
{
    const char *keys[] = { "id" };
    struct tlm_table_opts o = { .key_cols = keys, .nkeys = 1 };
    struct tlm_error err;
    struct tlm_table *t;
    struct tlm_table_stats s;
    size_t n;
    (void)state;
    tlm_error_clear(&err);
    write_file("a.csv", "\xef\xbb\xbfid,make,rate,ok,note\r\n"
                        "d1,Acme,1.5,true,\"quoted, \"\"text\"\"\"\n"
                        "\n"
                        "\"d2\", \"17\" ,17,,\"multi\nline\"\n"
                        "d3,,\"\",false\n"
                        "d1,Later,2,false,x\n");
    t = tlm_table_load(path, &o, &err);
    assert_non_null(t);
    const char *const *cols = tlm_table_columns(t, &n);
    assert_int_equal(n, 4);
    assert_string_equal(cols[0], "make");
    assert_string_equal(cols[3], "note");
    /* the last d1 wins */
    assert_string_equal(find(t, "d1", 2), "\"make\":\"Later\",\"rate\":2,\"ok\":false,\"note\":\"x\"");
    assert_string_equal(find(t, "d2", 2), "\"make\":\"17\",\"rate\":17,\"ok\":null,\"note\":\"multi\\nline\"");
    assert_string_equal(find(t, "d3", 2), "\"make\":null,\"rate\":\"\",\"ok\":false,\"note\":null");
    assert_null(find(t, "d4", 2));
    tlm_table_stats(t, &s);
    assert_int_equal(s.rows, 3);
    assert_int_equal(s.duplicates, 1);
    tlm_table_destroy(t);

    /* --add, --prefix, --empty skip */
    const char *add[] = { "ok", "make" };
    o.add_cols = add;
    o.nadd = 2;
    o.frag.prefix = "dev_";
    o.empty = TLM_EMPTY_SKIP;
    t = tlm_table_load(path, &o, &err);
    assert_non_null(t);
    assert_string_equal(find(t, "d3", 2), "\"dev_ok\":false");
    assert_string_equal(find(t, "d2", 2), "\"dev_make\":\"17\"");
    tlm_table_destroy(t);

    /* --into */
    o.frag.prefix = NULL;
    o.frag.into = "dev";
    o.empty = TLM_EMPTY_NULL;
    t = tlm_table_load(path, &o, &err);
    assert_non_null(t);
    assert_string_equal(find(t, "d1", 2), "\"dev\":{\"ok\":false,\"make\":\"Later\"}");
    tlm_table_destroy(t);
    unlink(path);
}

static void test_csv_errors(void **state)
{
    const char *keys[] = { "id" };
    struct tlm_table_opts o = { .key_cols = keys, .nkeys = 1 };
    struct tlm_error err;
    (void)state;
    tlm_error_clear(&err);
    write_file("b.csv", "name,make\nx,y\n");
    assert_null(tlm_table_load(path, &o, &err));
    assert_string_equal(err.text, "no column 'id' (columns: name, make)");
    assert_int_equal(err.line, 1);
    write_file("b.csv", "id,make\nx,y\nz,w,extra\n");
    assert_null(tlm_table_load(path, &o, &err));
    assert_string_equal(err.text, "record has 3 fields, the header 2");
    assert_int_equal(err.line, 3);
    write_file("b.csv", "id,make\nx,\"open\n");
    assert_null(tlm_table_load(path, &o, &err));
    assert_int_equal(err.line, 2);
    write_file("b.csv", "id,make\nx,a\"b\n");
    assert_null(tlm_table_load(path, &o, &err));
    assert_int_equal(err.line, 2);
    unlink(path);
    assert_null(tlm_table_load(path, &o, &err));
    assert_int_equal(err.code, TLM_ENOTFOUND);
}

static void test_json_load(void **state)
{
    const char *keys[] = { "id" }, *keys2[] = { "site", "n" };
    struct tlm_table_opts o = { .key_cols = keys, .nkeys = 1 };
    struct tlm_error err;
    struct tlm_table *t;
    (void)state;
    tlm_error_clear(&err);
    write_file("c.json", "[{\"id\":7,\"make\":\"A\",\"tags\":[1,2]},{\"id\":\"x\",\"make\":null}]");
    t = tlm_table_load(path, &o, &err);
    assert_non_null(t);
    assert_string_equal(find(t, "7", 1), "\"make\":\"A\",\"tags\":[1,2]");
    assert_string_equal(find(t, "x", 1), "\"make\":null");
    tlm_table_destroy(t);
    write_file("c.ndjson", "{\"site\":\"s\",\"n\":1,\"v\":2.5}\n\n{\"site\":\"s\",\"n\":2,\"v\":3}\n");
    o.key_cols = keys2;
    o.nkeys = 2;
    t = tlm_table_load(path, &o, &err);
    assert_non_null(t);
    assert_string_equal(find(t, "s\0" "2", 3), "\"v\":3");
    tlm_table_destroy(t);
    write_file("c.ndjson", "{\"site\":\"s\",\"n\":1}\n{\"site\":\"s\"}\n");
    assert_null(tlm_table_load(path, &o, &err));
    assert_string_equal(err.text, "no key 'n'");
    assert_int_equal(err.line, 2);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_types),
        cmocka_unit_test(test_csv_load),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_json_load),
    };
    return cmocka_run_group_tests_name("table", tests, NULL, NULL);
}
