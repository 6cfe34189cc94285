/*
 * fuzz_jscan.c - libFuzzer differential harness: jscan/jwrite against jansson 2.14.
 *
 * For every input: tlm_json_validate must accept it exactly when json_loadb(data, size, 0)
 * returns an object; tlm_jscan_run must agree; every top-level member (and every member of a
 * member object) extracted by the scanner must be json_equal to jansson's; and
 * tlm_json_write of jansson's value must read back (json_loadb) to an equal value and, when
 * the value holds no reals, be byte-identical to json_dumps(JSON_COMPACT). Any disagreement
 * calls abort(). Build (see jscan.am, or by hand):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/lib tests/fuzz/fuzz_jscan.c \
 *     src/lib/{jscan,jwrite,error,buf}.c -ljansson -lm
 * Finds go to tests/data/jscan/regressions.ndjson (checked by tests/unit/test_jscan.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "error.h"
#include "jscan.h"
#include "jwrite.h"

static int has_real(const json_t *v)
{
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_real(v))
        return 1;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)(uintptr_t)v, k, x)
        {
            if (has_real(x))
                return 1;
        }
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            if (has_real(x))
                return 1;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    json_t *j = json_loadb(line, size, 0, NULL);
    int want = j && json_is_object(j);
    struct tlm_error err;
    tlm_error_clear(&err);
    int got = tlm_json_validate(line, size, &err) == 0;
    if (want != got) {
        fprintf(stderr, "accept mismatch: jansson %d jscan %d (%s)\n", want, got, err.text);
        abort();
    }
    if (!want) {
        json_decref(j);
        return 0;
    }
    struct tlm_path paths[32];
    char *segs[32][2];
    size_t np = 0;
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        if (np >= 31)
            break;
        segs[np][0] = (char *)key;
        paths[np].nseg = 1;
        paths[np].seg = segs[np];
        np++;
        if (json_is_object(val)) {
            const char *k2;
            json_t *v2;
            json_object_foreach(val, k2, v2)
            {
                if (np >= 31)
                    break;
                segs[np][0] = (char *)key;
                segs[np][1] = (char *)k2;
                paths[np].nseg = 2;
                paths[np].seg = segs[np];
                np++;
            }
        }
    }
    struct tlm_jscan *s = tlm_jscan_create(paths, np);
    struct tlm_jval out[32];
    if (!s || tlm_jscan_run(s, line, size, out, &err) != 0)
        abort();
    for (size_t i = 0; i < np; i++) {
        json_t *expect = json_object_get(j, paths[i].seg[0]);
        if (paths[i].nseg == 2)
            expect = json_object_get(expect, paths[i].seg[1]);
        json_t *mine = tlm_jval_to_json(&out[i]);
        if (!json_equal(mine, expect)) {
            fprintf(stderr, "value mismatch on path %zu\n", i);
            abort();
        }
        json_decref(mine);
    }
    tlm_jscan_destroy(s);

    /* the writer: reads back equal; byte-identical to jansson when there are no reals */
    struct tlm_buf b = TLM_BUF_INIT;
    if (tlm_json_write(&b, j) != 0)
        abort();
    json_t *back = json_loadb(b.data, b.len, 0, NULL);
    if (!json_equal(back, j))
        abort();
    json_decref(back);
    if (!has_real(j)) {
        char *d = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!d || strlen(d) != b.len || memcmp(d, b.data, b.len) != 0)
            abort();
        free(d);
    }
    tlm_buf_free(&b);
    json_decref(j);
    return 0;
}
