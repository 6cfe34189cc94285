/*
 * test_jsonpath_cts.c - runs the RFC 9535 JSONPath Compliance Test Suite against
 * tlm_jsonpath_compile/tlm_jsonpath_query and prints TAP, one line per case.
 *
 * The suite is $TELEM_SHARED_DATA/jsonpath-cts.json (see ../shared/data/README.md). When
 * the variable is unset or the file is absent the test is skipped ("1..0 # SKIP"). A case
 * with invalid_selector must fail to compile; otherwise the values must equal `result`
 * (in order) or one entry of `results`, and the normalized paths `result_paths` (or the
 * matching entry of `results_paths`). Known failures: none at the time of writing. The
 * lines of failing cases are "not ok"; the final line is "ok" while at least 95% pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

/* Values compare with json_equal except that 1 and 1.0 are the same number. */
static int same(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return 0;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    if (json_is_object(a)) {
        const char *k;
        json_t *v;
        if (json_object_size(a) != json_object_size(b))
            return 0;
        json_object_foreach(a, k, v) {
            json_t *w = json_object_get(b, k);
            if (!w || !same(v, w))
                return 0;
        }
        return 1;
    }
    return json_equal(a, b);
}

int main(void)
{
    const char *dir = getenv("TELEM_SHARED_DATA");
    char path[4096];
    if (!dir || !*dir) {
        printf("1..0 # SKIP no suite (TELEM_SHARED_DATA unset)\n");
        return 0;
    }
    snprintf(path, sizeof path, "%s/jsonpath-cts.json", dir);
    json_error_t jerr;
    json_t *suite = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!suite) {
        printf("1..0 # SKIP no suite (%s)\n", jerr.text);
        return 0;
    }
    json_t *tests = json_object_get(suite, "tests");
    size_t n = json_array_size(tests), passed = 0;
    printf("1..%zu\n", n + 1);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tests, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *sel = json_string_value(json_object_get(t, "selector"));
        int invalid = json_is_true(json_object_get(t, "invalid_selector"));
        struct tlm_error err;
        struct tlm_jsonpath *p = tlm_jsonpath_compile(sel, &err);
        int ok;
        char why[600] = "";
        if (invalid) {
            ok = p == NULL;
            if (!ok)
                snprintf(why, sizeof why, "compiled an invalid selector");
        } else if (!p) {
            ok = 0;
            snprintf(why, sizeof why, "compile failed: %ld: %s", err.column, err.text);
        } else {
            json_t *paths = NULL;
            json_t *got = tlm_jsonpath_query(p, json_object_get(t, "document"), &paths);
            json_t *result = json_object_get(t, "result");
            json_t *rpaths = json_object_get(t, "result_paths");
            ok = 0;
            if (result) {
                ok = got && same(got, result) && (!rpaths || json_equal(paths, rpaths));
            } else {
                json_t *results = json_object_get(t, "results");
                json_t *rps = json_object_get(t, "results_paths");
                for (size_t k = 0; k < json_array_size(results) && !ok; k++)
                    ok = got && same(got, json_array_get(results, k)) &&
                         (!rps || json_equal(paths, json_array_get(rps, k)));
            }
            if (!ok) {
                char *g = json_dumps(got, JSON_COMPACT);
                char *gp = json_dumps(paths, JSON_COMPACT);
                snprintf(why, sizeof why, "got %.250s paths %.250s", g ? g : "NULL",
                         gp ? gp : "NULL");
                free(g);
                free(gp);
            }
            json_decref(got);
            json_decref(paths);
        }
        tlm_jsonpath_destroy(p);
        passed += ok;
        printf("%s %zu - %s\n", ok ? "ok" : "not ok", i + 1, name);
        if (!ok) {
            char *s = json_dumps(json_object_get(t, "selector"), JSON_ENCODE_ANY);
            printf("#   selector %s: %s\n", s, why);
            free(s);
        }
    }
    double pct = n ? 100.0 * (double)passed / (double)n : 100.0;
    printf("# jsonpath-cts: %zu/%zu passed (%.1f%%)\n", passed, n, pct);
    printf("%s %zu - at least 95%% of the suite passes\n", pct >= 95.0 ? "ok" : "not ok", n + 1);
    json_decref(suite);
    return pct >= 95.0 ? 0 : 1;
}
