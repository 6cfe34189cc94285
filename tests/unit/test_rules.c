/*
 * test_rules.c - the dynamic rule engine (src/lib/rules.h): global and per-customer threshold
 * rules, control messages mid-stream, windows and re-arm, reload diffs, validation errors,
 * history replay from an archive, snapshots, and a randomized differential test of the
 * indexed evaluation against the naive one (every rule through tlm_expr_test).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "rng.h"
#include "rules.h"
#include "snapshot.h"

/* ---- helpers ----------------------------------------------------------------------- */

static struct tlm_rules *engine(const char *rules, int naive)
{
    struct tlm_rules_opts o = { .out_unit = TLM_UNIT_MS, .time_unit = TLM_UNIT_MS,
                                .naive = naive };
    struct tlm_error err;
    tlm_error_clear(&err);
    struct tlm_rules *rs = tlm_rules_create(&o, &err);
    assert_non_null(rs);
    if (rules) {
        int rc = tlm_rules_reload(rs, rules, strlen(rules), "rules", &err);
        if (rc < 0)
            fail_msg("reload: %s", err.text);
    }
    return rs;
}

/* Feeds one event at ms into rs, appending alerts to out. */
static void feed(struct tlm_rules *rs, long long ms, const char *line, struct tlm_buf *out)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    int rc = tlm_rules_event(rs, line, strlen(line), ms * 1000000, out, &err);
    if (rc < 0)
        fail_msg("event %s: %s", line, err.text);
}

static void control(struct tlm_rules *rs, const char *msg, int expect)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    int rc = tlm_rules_control(rs, msg, strlen(msg), &err);
    if (rc != expect)
        fail_msg("control %s: got %d (%s), want %d", msg, rc, err.text, expect);
}

static void expect_out(struct tlm_buf *out, const char *want)
{
    const char *got = out->data ? out->data : "";
    if (strcmp(got, want))
        fail_msg("got:\n%s\nwant:\n%s", got, want);
}

/* ---- semantics ------------------------------------------------------------------------ */

static void test_global_and_customer(void **state)
{
    (void)state;
    struct tlm_rules *rs = engine(
        "{\"id\":\"g1\",\"scope\":\"global\",\"when\":\"type == \\\"login\\\"\",\"threshold\":2,"
        "\"name\":\"two logins\"}\n"
        "# per customer\n"
        "{\"id\":\"c1\",\"scope\":{\"key\":\"c42\"},\"when\":\"amount > 100\",\"threshold\":1,"
        "\"description\":\"big spend\"}\n"
        "{\"id\":\"all\",\"key\":null,\"when\":\"type == 'login'\",\"threshold\":3}\n",
        0);
    struct tlm_buf out = TLM_BUF_INIT;
    feed(rs, 1000, "{\"customerId\":\"c1\",\"type\":\"login\"}", &out);
    feed(rs, 2000, "{\"customerId\":\"c42\",\"type\":\"login\",\"amount\":50}", &out);
    feed(rs, 3000, "{\"customerId\":\"c42\",\"type\":\"login\",\"amount\":150}", &out);
    feed(rs, 4000, "{\"customerId\":\"c1\",\"type\":\"login\"}", &out);
    feed(rs, 5000, "{\"customerId\":\"c1\",\"amount\":500}", &out);
    feed(rs, 6000, "{\"type\":\"login\",\"amount\":500}", &out); /* no key: not counted */
    expect_out(&out,
               "{\"rule\":\"g1\",\"name\":\"two logins\",\"key\":\"c42\",\"count\":2,"
               "\"threshold\":2,\"time\":3000}\n"
               "{\"rule\":\"c1\",\"description\":\"big spend\",\"key\":\"c42\",\"count\":1,"
               "\"threshold\":1,\"time\":3000}\n"
               "{\"rule\":\"all\",\"key\":null,\"count\":3,\"threshold\":3,\"time\":3000}\n"
               "{\"rule\":\"g1\",\"name\":\"two logins\",\"key\":\"c1\",\"count\":2,"
               "\"threshold\":2,\"time\":4000}\n");
    struct tlm_rules_stats st;
    tlm_rules_get_stats(rs, &st);
    assert_int_equal(st.events, 6);
    assert_int_equal(st.alerts, 4);
    assert_int_equal(st.indexed, 3); /* amount > 100: the range index */
    assert_int_equal(st.unindexed, 0);
    tlm_buf_free(&out);
    tlm_rules_destroy(rs);
}

static void test_control_mid_stream(void **state)
{
    (void)state;
    struct tlm_rules *rs = engine(
        "{\"id\":\"r1\",\"when\":\"type == 'a'\",\"threshold\":3}\n"
        "{\"id\":\"r2\",\"when\":\"type == 'b'\",\"threshold\":2}\n",
        0);
    struct tlm_buf out = TLM_BUF_INIT;
    feed(rs, 1, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    feed(rs, 2, "{\"customerId\":\"c1\",\"type\":\"b\"}", &out);
    feed(rs, 3, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    /* a bad replace changes nothing */
    control(rs, "{\"op\":\"replace\",\"rule\":{\"id\":\"r1\",\"when\":\"type ==\",\"threshold\":3}}",
            TLM_EPARSE);
    control(rs, "{\"op\":\"add\",\"rule\":{\"id\":\"r1\",\"when\":\"true\",\"threshold\":3}}",
            TLM_EINVAL);
    control(rs, "{\"op\":\"delete\",\"id\":\"nope\"}", TLM_ENOTFOUND);
    control(rs, "{\"op\":\"frob\",\"id\":\"r1\"}", TLM_EINVAL);
    /* replace resets r1 only */
    control(rs, "{\"op\":\"replace\",\"rule\":{\"id\":\"r1\",\"when\":\"type == 'a'\","
                "\"threshold\":3,\"name\":\"three a\"}}",
            TLM_RULES_REPLACED);
    feed(rs, 4, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    feed(rs, 5, "{\"customerId\":\"c1\",\"type\":\"b\"}", &out); /* r2 kept its count: fires */
    control(rs, "{\"op\":\"delete\",\"id\":\"r2\"}", TLM_RULES_DELETED);
    feed(rs, 6, "{\"customerId\":\"c1\",\"type\":\"b\"}", &out);
    control(rs, "{\"op\":\"add\",\"rule\":{\"id\":\"r3\",\"when\":\"type == 'b'\",\"threshold\":1}}",
            TLM_RULES_ADDED);
    feed(rs, 7, "{\"customerId\":\"c1\",\"type\":\"b\"}", &out);
    feed(rs, 8, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    feed(rs, 9, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    feed(rs, 10, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out); /* fired already */
    expect_out(&out, "{\"rule\":\"r2\",\"key\":\"c1\",\"count\":2,\"threshold\":2,\"time\":5}\n"
                     "{\"rule\":\"r3\",\"key\":\"c1\",\"count\":1,\"threshold\":1,\"time\":7}\n"
                     "{\"rule\":\"r1\",\"name\":\"three a\",\"key\":\"c1\",\"count\":3,"
                     "\"threshold\":3,\"time\":9}\n");
    assert_int_equal(tlm_rules_count(rs), 2);
    assert_string_equal(tlm_rules_id(rs, 0), "r1");
    assert_string_equal(tlm_rules_id(rs, 1), "r3");
    tlm_buf_free(&out);
    tlm_rules_destroy(rs);
}

static void due(struct tlm_rules *rs, long long ms, int expect)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    int rc = tlm_rules_due(rs, ms * 1000000, &err);
    if (rc != expect)
        fail_msg("due %lld: got %d (%s), want %d", ms, rc, err.text, expect);
}

static void test_control_at(void **state)
{
    (void)state;
    struct tlm_rules *rs = engine("{\"id\":\"r1\",\"when\":\"type == 'a'\",\"threshold\":2}", 0);
    struct tlm_buf out = TLM_BUF_INIT;
    control(rs, "{\"at\":5,\"op\":\"delete\",\"id\":\"r1\"}", TLM_RULES_QUEUED);
    control(rs, "{\"at\":3,\"op\":\"add\",\"rule\":{\"id\":\"r2\",\"when\":\"type == 'a'\","
                "\"threshold\":1}}",
            TLM_RULES_QUEUED);
    control(rs, "{\"op\":\"replace\",\"at\":3,\"rule\":{\"id\":\"zz\",\"when\":\"true\","
                "\"threshold\":1}}",
            TLM_RULES_QUEUED);
    control(rs, "{\"at\":\"soon\",\"op\":\"delete\",\"id\":\"r1\"}", TLM_EINVAL);
    control(rs, "{\"at\":1,\"op\":\"add\",\"rule\":{\"id\":\"bad\"}}", TLM_EINVAL);
    assert_int_equal(tlm_rules_pending(rs), 3);
    due(rs, 1, 0);
    feed(rs, 1, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    due(rs, 3, TLM_ENOTFOUND); /* r2 added, then the replace of zz fails and is dropped */
    due(rs, 3, 0);
    feed(rs, 3, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    due(rs, 5, 1);
    feed(rs, 5, "{\"customerId\":\"c1\",\"type\":\"a\"}", &out);
    assert_int_equal(tlm_rules_pending(rs), 0);
    expect_out(&out, "{\"rule\":\"r1\",\"key\":\"c1\",\"count\":2,\"threshold\":2,\"time\":3}\n"
                     "{\"rule\":\"r2\",\"key\":\"c1\",\"count\":1,\"threshold\":1,\"time\":3}\n");
    assert_int_equal(tlm_rules_count(rs), 1);
    tlm_buf_free(&out);
    tlm_rules_destroy(rs);
}

static void test_window_rearm(void **state)
{
    (void)state;
    struct tlm_rules *rs = engine(
        "[{\"id\":\"w\",\"when\":\"type == 'x'\",\"threshold\":2,\"window\":\"10s\"},"
        " {\"id\":\"u\",\"when\":\"type == 'x'\",\"threshold\":2}]",
        0);
    struct tlm_buf out = TLM_BUF_INIT;
    const char *x = "{\"customerId\":\"c1\",\"type\":\"x\"}";
    feed(rs, -1, x, &out); /* window [-10000, 0) */
    feed(rs, 1000, x, &out);
    feed(rs, 2000, x, &out);
    feed(rs, 12000, x, &out);
    feed(rs, 5000, x, &out); /* out of order, no watermark yet: counts in [0, 10000) */
    assert_int_equal(tlm_rules_watermark(rs, 11000 * 1000000LL), 2); /* frees two windows */
    assert_int_equal(tlm_rules_watermark(rs, 10000 * 1000000LL), 0); /* never lowered */
    feed(rs, 9000, x, &out); /* late */
    feed(rs, 15000, x, &out);
    feed(rs, 21000, x, &out);
    feed(rs, 35000, x, &out);
    feed(rs, 22000, x, &out); /* an older open window still fires */
    expect_out(&out, "{\"rule\":\"u\",\"key\":\"c1\",\"count\":2,\"threshold\":2,\"time\":1000}\n"
                     "{\"rule\":\"w\",\"key\":\"c1\",\"count\":2,\"threshold\":2,"
                     "\"window_start\":0,\"window_end\":10000,\"time\":2000}\n"
                     "{\"rule\":\"w\",\"key\":\"c1\",\"count\":2,\"threshold\":2,"
                     "\"window_start\":10000,\"window_end\":20000,\"time\":15000}\n"
                     "{\"rule\":\"w\",\"key\":\"c1\",\"count\":2,\"threshold\":2,"
                     "\"window_start\":20000,\"window_end\":30000,\"time\":22000}\n");
    struct tlm_rules_stats st;
    tlm_rules_get_stats(rs, &st);
    assert_int_equal(st.late, 1);
    assert_int_equal(st.expired, 2);
    assert_int_equal(st.keys, 4);
    tlm_buf_free(&out);
    tlm_rules_destroy(rs);
}

static void test_reload_diff(void **state)
{
    (void)state;
    const char *v1 = "{\"id\":\"keep\",\"when\":\"k == 1\",\"threshold\":2}\n"
                     "{\"id\":\"chg\",\"when\":\"k == 1\",\"threshold\":2}\n"
                     "{\"id\":\"gone\",\"when\":\"k == 1\",\"threshold\":2}\n";
    const char *v2 = "{\"id\":\"new\",\"when\":\"k == 1\",\"threshold\":1}\n"
                     "{\"threshold\":2,\"when\":\"k == 1\",\"id\":\"keep\"}\n"
                     "{\"id\":\"chg\",\"when\":\"k == 1\",\"threshold\":3}\n";
    struct tlm_rules *rs = engine(v1, 0);
    struct tlm_buf out = TLM_BUF_INIT;
    const char *ev = "{\"customerId\":7,\"k\":1}";
    feed(rs, 1, ev, &out);
    struct tlm_error err;
    tlm_error_clear(&err);
    assert_int_equal(tlm_rules_reload(rs, v2, strlen(v2), "rules", &err), 3);
    feed(rs, 2, ev, &out);
    expect_out(&out, "{\"rule\":\"keep\",\"key\":\"7\",\"count\":2,\"threshold\":2,\"time\":2}\n"
                     "{\"rule\":\"new\",\"key\":\"7\",\"count\":1,\"threshold\":1,\"time\":2}\n");
    assert_int_equal(tlm_rules_count(rs), 3);
    assert_string_equal(tlm_rules_id(rs, 0), "keep");
    assert_string_equal(tlm_rules_id(rs, 1), "chg");
    assert_string_equal(tlm_rules_id(rs, 2), "new");
    /* the same file again changes nothing */
    assert_int_equal(tlm_rules_reload(rs, v2, strlen(v2), "rules", &err), 0);
    tlm_buf_free(&out);
    tlm_rules_destroy(rs);
}

static void expect_reload_error(const char *text, const char *want, long long line)
{
    struct tlm_rules *rs = engine("{\"id\":\"old\",\"when\":\"true\",\"threshold\":1}", 0);
    struct tlm_error err;
    tlm_error_clear(&err);
    int rc = tlm_rules_reload(rs, text, strlen(text), "rules.ndjson", &err);
    assert_true(rc < 0);
    if (strcmp(err.text, want))
        fail_msg("got '%s', want '%s'", err.text, want);
    assert_int_equal(err.line, line);
    assert_string_equal(err.source, "rules.ndjson");
    assert_int_equal(tlm_rules_count(rs), 1); /* unchanged */
    tlm_rules_destroy(rs);
}

static void test_validation(void **state)
{
    (void)state;
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":1,\"tresh\":2}",
                        "rule r1: unknown member \"tresh\" for a threshold rule", 1);
    expect_reload_error("\n{\"id\":\"r1\",\"when\":\"a ==\",\"threshold\":1}",
                        "rule r1: \"when\": 5: expected a value, found end of expression", 2);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":1}\n"
                        "{\"id\":\"r1\",\"when\":\"true\",\"threshold\":2}",
                        "rule r1: duplicate id (also at rule 1)", 2);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\"}",
                        "rule r1: \"threshold\" must be an integer >= 1", 1);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":0}",
                        "rule r1: \"threshold\" must be an integer >= 1", 1);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":1,\"window\":\"10\"}",
                        "rule r1: \"window\": duration '10' needs a unit (ns, us, ms, s, m, h, "
                        "d, w)",
                        1);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":1,\"window\":\"0\"}",
                        "rule r1: \"window\" must be longer than 0", 1);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":1,\"scope\":\"c1\"}",
                        "rule r1: \"scope\" must be \"global\" or {\"key\": \"<customer key>\"}",
                        1);
    expect_reload_error("{\"when\":\"true\",\"threshold\":1}",
                        "rule without an id: \"id\" must be a non-empty string", 1);
    expect_reload_error("{\"id\":\"p\",\"type\":\"pattern\",\"when\":\"x\"}",
                        "rule p: unknown member \"when\" for a pattern rule", 1);
    expect_reload_error("{\"id\":\"p\",\"type\":\"pattern\"}",
                        "rule p: a pattern rule needs \"pattern\" (a string)", 1);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":1,\"key\":\"a[0]\"}",
                        "rule r1: \"key\": 'a[0]' is not a plain field path", 1);
    expect_reload_error("{\"id\":\"r1\",\"when\":\"true\",\"threshold\":1,\"key\":null,"
                        "\"scope\":{\"key\":\"c1\"}}",
                        "rule r1: \"key\": null needs the global scope", 1);
    expect_reload_error("{\"id\":\"r1\",", "invalid JSON: string or '}' expected near end of file", 1);
}

/* pattern rules are stored and reported through the callbacks */
struct pat_log {
    char text[512];
};

static int pat_check(void *arg, const char *id, const char *pattern, struct tlm_error *err)
{
    (void)arg;
    (void)id;
    if (strstr(pattern, "bad"))
        return tlm_error_set(err, TLM_EPARSE, "1: bad pattern");
    return 0;
}

static void pat_changed(void *arg, enum tlm_rules_change what, const char *id,
                        const json_t *doc)
{
    struct pat_log *l = arg;
    const char *pattern = json_string_value(json_object_get(doc, "pattern"));
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%d %s %s;", (int)what, id,
             pattern ? pattern : "-");
}

static void test_pattern_rules(void **state)
{
    (void)state;
    struct pat_log log = { "" };
    struct tlm_rules_opts o = { .pattern_check = pat_check, .on_change = pat_changed,
                                .arg = &log };
    struct tlm_error err;
    tlm_error_clear(&err);
    struct tlm_rules *rs = tlm_rules_create(&o, &err);
    assert_non_null(rs);
    control(rs, "{\"op\":\"add\",\"rule\":{\"id\":\"p1\",\"type\":\"pattern\",\"pattern\":\"a -> b\"}}",
            TLM_RULES_ADDED);
    control(rs, "{\"op\":\"replace\",\"rule\":{\"id\":\"p1\",\"type\":\"pattern\",\"pattern\":\"bad\"}}",
            TLM_EPARSE);
    control(rs, "{\"op\":\"upsert\",\"rule\":{\"id\":\"p1\",\"type\":\"pattern\",\"pattern\":\"c\"}}",
            TLM_RULES_REPLACED);
    control(rs, "{\"op\":\"delete\",\"id\":\"p1\"}", TLM_RULES_DELETED);
    control(rs, "{\"op\":\"add\",\"rule\":{\"id\":\"t\",\"when\":\"true\",\"threshold\":1}}",
            TLM_RULES_ADDED);
    assert_string_equal(log.text, "1 p1 a -> b;2 p1 c;3 p1 -;1 t -;");
    struct tlm_buf out = TLM_BUF_INIT;
    feed(rs, 1, "{\"a\":1}", &out);
    assert_int_equal(out.len, 0);
    tlm_rules_destroy(rs);
}

/* ---- replay from an archive ----------------------------------------------------------- */

static void test_replay_archive(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/tlm-rules-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    struct tlm_archive_opts ao = { .dir = dir };
    struct tlm_error err;
    tlm_error_clear(&err);
    struct tlm_archive *a = tlm_archive_open(&ao, &err);
    assert_non_null(a);
    const char *hist[] = {
        "{\"timestamp\":1,\"customerId\":\"c1\",\"type\":\"login\"}",
        "{\"timestamp\":2,\"customerId\":\"c2\",\"type\":\"login\"}",
        "not json",
        "{\"timestamp\":3,\"customerId\":\"c1\",\"type\":\"login\"}",
        "{\"customerId\":\"c1\",\"type\":\"login\"}",
        "{\"timestamp\":100,\"customerId\":\"c1\",\"type\":\"login\"}",
    };
    for (size_t i = 0; i < sizeof hist / sizeof *hist; i++)
        assert_int_equal(tlm_archive_put(a, hist[i], strlen(hist[i]), 0, &err), 0);
    assert_int_equal(tlm_archive_flush(a, &err), 0);
    char seg[4096];
    snprintf(seg, sizeof seg, "%s", tlm_archive_segment_path(a));
    assert_int_equal(tlm_archive_close(a, &err), 0);

    struct tlm_rules_opts o = { .out_unit = TLM_UNIT_S, .time_unit = TLM_UNIT_S };
    struct tlm_rules *rs = tlm_rules_create(&o, &err);
    assert_non_null(rs);
    struct tlm_buf out = TLM_BUF_INIT;
    control(rs, "{\"op\":\"add\",\"rule\":{\"id\":\"A\",\"scope\":{\"key\":\"c1\"},"
                "\"when\":\"type == 'login'\",\"threshold\":3}}",
            TLM_RULES_ADDED);
    control(rs, "{\"op\":\"add\",\"rule\":{\"id\":\"B\",\"when\":\"type == 'login'\","
                "\"threshold\":2}}",
            TLM_RULES_ADDED);
    const char *paths[] = { seg };
    struct tlm_rules_replay_info info;
    tlm_time_t until = 50 * TLM_NS_PER_S;
    assert_int_equal(tlm_rules_replay(rs, "A", paths, 1, until, &out, &info, &err), 0);
    assert_int_equal(info.read, 3);
    assert_int_equal(info.counted, 2);
    assert_int_equal(info.after, 1);
    assert_int_equal(info.skipped, 2);
    assert_int_equal(info.alerts, 0);
    assert_int_equal(tlm_rules_replay(rs, "B", paths, 1, until, &out, &info, &err), 1);
    assert_int_equal(info.counted, 3);
    assert_int_equal(tlm_rules_replay(rs, "nope", paths, 1, until, &out, NULL, &err),
                     TLM_ENOTFOUND);
    const char *missing[] = { "/nonexistent/raw.zst" };
    assert_true(tlm_rules_replay(rs, "B", missing, 1, until, &out, NULL, &err) < 0);
    struct tlm_error e2;
    tlm_error_clear(&e2);
    char t[128];
    feed(rs, 0, "{}", &out); /* nothing */
    snprintf(t, sizeof t, "{\"customerId\":\"c1\",\"type\":\"login\"}");
    assert_int_equal(tlm_rules_event(rs, t, strlen(t), 60 * TLM_NS_PER_S, &out, &e2), 1);
    expect_out(&out, "{\"rule\":\"B\",\"key\":\"c1\",\"count\":2,\"threshold\":2,\"time\":3,"
                     "\"replay\":true}\n"
                     "{\"rule\":\"A\",\"key\":\"c1\",\"count\":3,\"threshold\":3,\"time\":60}\n");
    unlink(seg);
    rmdir(dir);
    tlm_buf_free(&out);
    tlm_rules_destroy(rs);
}

/* ---- snapshots ----------------------------------------------------------------------- */

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    const char *rules = "{\"id\":\"w\",\"when\":\"type == 'x'\",\"threshold\":3,\"window\":\"10s\"}\n"
                        "{\"id\":\"u\",\"scope\":{\"key\":\"c2\"},\"when\":\"n > 1\",\"threshold\":2}\n"
                        "{\"id\":\"p\",\"type\":\"pattern\",\"pattern\":\"a -> b\"}\n";
    struct tlm_rules *a = engine(rules, 0);
    struct tlm_buf out = TLM_BUF_INIT, out2 = TLM_BUF_INIT;
    feed(a, 1000, "{\"customerId\":\"c1\",\"type\":\"x\"}", &out);
    feed(a, 2000, "{\"customerId\":\"c1\",\"type\":\"x\"}", &out);
    feed(a, 3000, "{\"customerId\":\"c2\",\"type\":\"x\",\"n\":5}", &out);
    assert_int_equal(tlm_rules_watermark(a, 500 * 1000000LL), 0);
    control(a, "{\"at\":\"2030-01-01T00:00:00Z\",\"op\":\"delete\",\"id\":\"u\"}",
            TLM_RULES_QUEUED);
    char path[] = "/tmp/tlm-rules-snap-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct tlm_error err;
    tlm_error_clear(&err);
    json_t *hdr = json_pack("{ss}", "command", "cep");
    struct tlm_snap_writer *w = tlm_snap_create(path, hdr, &err);
    assert_non_null(w);
    assert_int_equal(tlm_rules_save(a, w, &err), 0);
    json_t *mine = json_pack("{si}", "other", 1);
    assert_int_equal(tlm_snap_put(w, mine, &err), 0);
    assert_int_equal(tlm_snap_commit(w, &err), 0);
    json_decref(hdr);

    /* b starts with a rule of its own: the snapshot replaces it (reported to on_change) */
    struct pat_log log = { "" };
    struct tlm_rules_opts bo = { .out_unit = TLM_UNIT_MS, .time_unit = TLM_UNIT_MS,
                                 .on_change = pat_changed, .arg = &log };
    struct tlm_rules *b = tlm_rules_create(&bo, &err);
    assert_non_null(b);
    const char *own = "{\"id\":\"mine\",\"when\":\"true\",\"threshold\":1}";
    assert_int_equal(tlm_rules_reload(b, own, strlen(own), "mine", &err), 1);
    json_t *h2 = NULL, *rec;
    struct tlm_snap_reader *r = tlm_snap_open(path, &h2, &err);
    assert_non_null(r);
    int ours = 0, other = 0, rc;
    while ((rc = tlm_snap_next(r, &rec, &err)) == 1) {
        int l = tlm_rules_load(b, rec, &err);
        assert_true(l >= 0);
        if (l)
            ours++;
        else
            other += json_equal(rec, mine);
        json_decref(rec);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(ours, 3 + 3 + 1 + 1);
    assert_int_equal(tlm_rules_pending(b), 1);
    assert_int_equal(other, 1);
    tlm_snap_close(r);
    json_decref(h2);
    json_decref(mine);
    unlink(path);
    assert_int_equal(tlm_rules_count(b), 3);
    assert_true(tlm_rules_is_pattern(b, 2));
    assert_string_equal(log.text, "1 mine -;3 mine -;1 w -;1 u -;1 p a -> b;");
    /* the rules file re-applied after a restore: unchanged rules keep their state */
    assert_int_equal(tlm_rules_reload(b, rules, strlen(rules), "rules", &err), 0);
    /* both continue identically */
    const char *evs[] = { "{\"customerId\":\"c1\",\"type\":\"x\"}",
                          "{\"customerId\":\"c2\",\"type\":\"x\",\"n\":5}" };
    for (int i = 0; i < 2; i++) {
        feed(a, 4000 + i, evs[i], &out);
        feed(b, 4000 + i, evs[i], &out2);
    }
    assert_true(out.len > 0);
    assert_int_equal(out.len, out2.len);
    assert_memory_equal(out.data, out2.data, out.len);
    expect_out(&out2, "{\"rule\":\"w\",\"key\":\"c1\",\"count\":3,\"threshold\":3,"
                      "\"window_start\":0,\"window_end\":10000,\"time\":4000}\n"
                      "{\"rule\":\"u\",\"key\":\"c2\",\"count\":2,\"threshold\":2,\"time\":4001}\n");
    tlm_buf_free(&out);
    tlm_buf_free(&out2);
    tlm_rules_destroy(a);
    tlm_rules_destroy(b);
}

/* ---- randomized differential test: indexed == naive ------------------------------------ */

static const char *const fields[] = { "type", "amount", "country", "flag", "nested.x",
                                      "$.s", "tenant.id" };
static const char *const consts[] = { "'a'", "'b'", "'c'", "'d'", "1", "2", "1.0", "100",
                                      "50.5", "-3", "true", "false", "null", "'a\"b'",
                                      "'é'", "0", "-0.0", "'100'" };

static void rnd_atom(struct tlm_rng *g, struct tlm_buf *b, int full)
{
    const char *f = fields[tlm_rng_below(g, 7)];
    const char *c = consts[tlm_rng_below(g, 18)];
    static const char *const ops[] = { "==", "!=", "<", "<=", ">", ">=" };
    switch (tlm_rng_below(g, 9)) {
    case 0:
    case 1:
    case 2:
        tlm_buf_printf(b, "%s == %s", f, c);
        break;
    case 3:
        tlm_buf_printf(b, "%s %s %s", f, ops[tlm_rng_below(g, 6)], c);
        break;
    case 4:
        tlm_buf_printf(b, "%s %s %s", c, ops[tlm_rng_below(g, 6)], f);
        break;
    case 5:
        tlm_buf_printf(b, "%s in [%s, %s, %s]", f, c, consts[tlm_rng_below(g, 18)],
                       consts[tlm_rng_below(g, 18)]);
        break;
    case 6:
        tlm_buf_printf(b, "%s", f);
        break;
    case 7:
        tlm_buf_printf(b, "(%s == %s || %s > 10)", f, c, fields[tlm_rng_below(g, 7)]);
        break;
    default: {
        static const char *const complex[] = { "contains(type, 'a')", "!(flag == true)",
                                               "length(nested) >= 1", "exists($.nested.x)",
                                               "nested", "tenant.id == 't1' || s",
                                               "count($..x) > 0" };
        /* the last one reads the whole document; without it the sparse DOM is used */
        tlm_buf_printf(b, "%s", complex[tlm_rng_below(g, full ? 7 : 6)]);
        break;
    }
    }
}

static void rnd_rule(struct tlm_rng *g, int id, struct tlm_buf *b, int full)
{
    struct tlm_buf when = TLM_BUF_INIT;
    int n = 1 + (int)tlm_rng_below(g, 3);
    for (int i = 0; i < n; i++) {
        if (i)
            tlm_buf_puts(&when, " && ");
        rnd_atom(g, &when, full);
    }
    json_t *doc = json_pack("{sssssi}", "id", "", "when", when.data, "threshold",
                            1 + (int)tlm_rng_below(g, 4));
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "r%d", id);
    json_object_set_new(doc, "id", json_string(idbuf));
    int scoped = tlm_rng_below(g, 3) == 0;
    if (scoped) {
        char k[8];
        snprintf(k, sizeof k, "c%d", (int)tlm_rng_below(g, 4));
        json_object_set_new(doc, "scope", json_pack("{ss}", "key", k));
    }
    if (tlm_rng_below(g, 3) == 0)
        json_object_set_new(doc, "window", json_string("5s"));
    if (tlm_rng_below(g, 8) == 0)
        json_object_set_new(doc, "key", json_string("tenant.id"));
    else if (!scoped && tlm_rng_below(g, 10) == 0)
        json_object_set_new(doc, "key", json_null());
    char *s = json_dumps(doc, JSON_COMPACT);
    tlm_buf_reset(b);
    tlm_buf_puts(b, s);
    free(s);
    json_decref(doc);
    tlm_buf_free(&when);
}

static const char *const evals[] = { "\"a\"", "\"b\"", "\"c\"", "1", "2", "1.0", "100", "50.5",
                                     "-3", "true", "false", "null", "\"a\\\"b\"", "\"\\u00e9\"",
                                     "\"é\"", "0", "-0.0", "\"100\"", "[1]", "{\"x\":1}",
                                     "1e2", "100.0", "9007199254740993" };

static void rnd_event(struct tlm_rng *g, struct tlm_buf *b)
{
    tlm_buf_reset(b);
    tlm_buf_putc(b, '{');
    int first = 1;
    if (tlm_rng_below(g, 10)) {
        tlm_buf_printf(b, "\"customerId\":\"c%d\"", (int)tlm_rng_below(g, 5));
        first = 0;
    }
    static const char *const top[] = { "type", "amount", "country", "flag", "s" };
    for (int i = 0; i < 5; i++) {
        if (tlm_rng_below(g, 4) == 0)
            continue;
        tlm_buf_printf(b, "%s\"%s\":%s", first ? "" : ",", top[i],
                       evals[tlm_rng_below(g, 23)]);
        first = 0;
    }
    if (tlm_rng_below(g, 2)) {
        tlm_buf_printf(b, "%s\"nested\":{\"x\":%s}", first ? "" : ",",
                       evals[tlm_rng_below(g, 23)]);
        first = 0;
    }
    if (tlm_rng_below(g, 3)) {
        tlm_buf_printf(b, "%s\"tenant\":{\"id\":%s}", first ? "" : ",",
                       tlm_rng_below(g, 2) ? "\"t1\"" : "2");
        first = 0;
    }
    tlm_buf_putc(b, '}');
}

static void differential(uint64_t seed, int full)
{
    struct tlm_rng g;
    tlm_rng_seed(&g, seed);
    struct tlm_rules *ix = engine(NULL, 0), *nv = engine(NULL, 1);
    struct tlm_buf r = TLM_BUF_INIT, ev = TLM_BUF_INIT, o1 = TLM_BUF_INIT, o2 = TLM_BUF_INIT;
    struct tlm_buf msg = TLM_BUF_INIT;
    struct tlm_error err;
    int next = 0;
    for (int i = 0; i < 300; i++) {
        rnd_rule(&g, next++, &r, full);
        tlm_buf_reset(&msg);
        tlm_buf_printf(&msg, "{\"op\":\"add\",\"rule\":%s}", r.data);
        tlm_error_clear(&err);
        int a = tlm_rules_control(ix, msg.data, msg.len, &err);
        if (a < 0)
            fail_msg("%s: %s", msg.data, err.text);
        assert_int_equal(tlm_rules_control(nv, msg.data, msg.len, &err), a);
    }
    long long ms = 0;
    for (int i = 0; i < 20000; i++) {
        if (i % 2000 == 1999) { /* change rules mid-stream, identically */
            int victim = (int)tlm_rng_below(&g, (uint64_t)next);
            tlm_buf_reset(&msg);
            tlm_buf_printf(&msg, "{\"op\":\"delete\",\"id\":\"r%d\"}", victim);
            int a = tlm_rules_control(ix, msg.data, msg.len, &err);
            assert_int_equal(tlm_rules_control(nv, msg.data, msg.len, &err), a);
            rnd_rule(&g, next++, &r, full);
            tlm_buf_reset(&msg);
            tlm_buf_printf(&msg, "{\"op\":\"add\",\"rule\":%s}", r.data);
            assert_int_equal(tlm_rules_control(ix, msg.data, msg.len, &err), TLM_RULES_ADDED);
            assert_int_equal(tlm_rules_control(nv, msg.data, msg.len, &err), TLM_RULES_ADDED);
        }
        rnd_event(&g, &ev);
        ms += (long long)tlm_rng_below(&g, 1000) - 100; /* a little out of order */
        if (i % 5 == 4) /* watermarks close windows, in both engines alike */
            assert_int_equal(tlm_rules_watermark(ix, (ms - 20) * 1000000),
                             tlm_rules_watermark(nv, (ms - 20) * 1000000));
        int a = tlm_rules_event(ix, ev.data, ev.len, ms * 1000000, &o1, &err);
        int b = tlm_rules_event(nv, ev.data, ev.len, ms * 1000000, &o2, &err);
        if (a != b || o1.len != o2.len || memcmp(o1.data, o2.data, o1.len))
            fail_msg("event %d %s: indexed %d naive %d\n%s\n---\n%s", i, ev.data, a, b,
                     o1.data ? o1.data : "", o2.data ? o2.data : "");
    }
    struct tlm_rules_stats s1, s2;
    tlm_rules_get_stats(ix, &s1);
    tlm_rules_get_stats(nv, &s2);
    assert_int_equal(s1.alerts, s2.alerts);
    assert_int_equal(s1.matched, s2.matched);
    assert_true(s1.alerts > 100);
    assert_true(s1.candidates < s2.candidates / 2);
    assert_true(s1.indexed > 0 && s1.unindexed > 0);
    assert_int_equal(s1.late, s2.late);
    assert_int_equal(s1.expired, s2.expired);
    assert_true(s1.late > 0 && s1.expired > 0);
    tlm_buf_free(&r);
    tlm_buf_free(&ev);
    tlm_buf_free(&o1);
    tlm_buf_free(&o2);
    tlm_buf_free(&msg);
    tlm_rules_destroy(ix);
    tlm_rules_destroy(nv);
}

static void test_differential(void **state)
{
    (void)state;
    differential(20261121, 1);
}

static void test_differential_sparse_dom(void **state)
{
    (void)state;
    differential(7, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_global_and_customer),
        cmocka_unit_test(test_control_mid_stream),
        cmocka_unit_test(test_control_at),
        cmocka_unit_test(test_window_rearm),
        cmocka_unit_test(test_reload_diff),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_pattern_rules),
        cmocka_unit_test(test_replay_archive),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_differential),
        cmocka_unit_test(test_differential_sparse_dom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
