/*
 * fuzz_expr.c - libFuzzer harness for the expression compiler and JSONPath.
 *
 * The input is split at the first NUL byte: the part before is compiled as an
 * expression (with bindings "start" and "items") and evaluated against a small fixed
 * event; the part after (or the whole input) is compiled as an RFC 9535 query and run.
 * Build with clang -fsanitize=fuzzer (configure --enable-fuzzing).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char doc_text[] =
    "{\"a\": 1, \"b\": [1, 2.5, \"x\", null, true, {\"c\": [3, {\"d\": \"e\"}]}],"
    " \"s\": \"h\\u00e9llo\\nworld\", \"o\": {\"k\": -7, \"x y\": []}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = malloc(size + 1);
    if (!src)
        return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    size_t first = strlen(src);
    const char *second = first < size ? src + first + 1 : src;

    json_t *doc = json_loads(doc_text, 0, NULL);
    json_t *start = json_pack("{s:i,s:s}", "timestamp", 5, "metric", "m");
    json_t *items = json_pack("[{s:i},{s:f}]", "price", 2, "price", 3.5);
    const char *names[] = { "start", "items" };
    json_t *vals[] = { start, items };
    struct tlm_expr_env env = { 2, names, vals };
    struct tlm_error err;

    struct tlm_expr *e = tlm_expr_compile_with(src, names, 2, &err);
    if (e) {
        json_t *out = NULL;
        if (tlm_expr_eval(e, doc, &env, &out, &err) == 1)
            json_decref(out);
        (void)tlm_expr_test(e, doc, &env, &err);
        const struct tlm_path *paths;
        (void)tlm_expr_root_paths(e, &paths);
        tlm_expr_destroy(e);
    }
    struct tlm_jsonpath *p = tlm_jsonpath_compile(second, &err);
    if (p) {
        json_t *paths = NULL;
        json_t *r = tlm_jsonpath_query(p, doc, &paths);
        json_decref(r);
        json_decref(paths);
        tlm_jsonpath_destroy(p);
    }
    json_decref(items);
    json_decref(start);
    json_decref(doc);
    free(src);
    return 0;
}
