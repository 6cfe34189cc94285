/*
 * fuzz_cep.c - libFuzzer harness for CEP patterns and the engine.
 *
 * The input is split at the first NUL byte: the part before is a pattern in the one-line
 * language (or, when that does not parse, a JSON pattern document); the part after is
 * NDJSON events, each with an integer "t" (its time) and a "k" (its key). The events run
 * through the pattern, half of them before a snapshot that is loaded into a second engine,
 * and an emit template is evaluated over every match. Build with clang -fsanitize=fuzzer
 * (configure --enable-fuzzing).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int emit(void *arg, const struct tlm_cep_match *m, struct tlm_error *err)
{
    (void)arg;
    struct tlm_cep_template *t =
        tlm_cep_template_create(m->pattern, "{\"k\": key, \"n\": count(b), \"s\": a.t}", err);
    json_t *out = NULL;
    if (t && tlm_cep_template_eval(t, m, &out, err) > 0)
        json_decref(out);
    tlm_cep_template_destroy(t);
    return 0;
}

static int put(void *arg, const json_t *rec)
{
    return json_array_append(arg, (json_t *)rec);
}

static struct tlm_cep *engine(const char *src, size_t n)
{
    struct tlm_error err;
    struct tlm_cep_pattern *p = tlm_cep_pattern_parse(src, &err);
    if (!p) {
        json_t *doc = json_loadb(src, n, 0, NULL);
        p = doc ? tlm_cep_pattern_from_json(doc, &err) : NULL;
        json_decref(doc);
    }
    if (!p)
        return NULL;
    struct tlm_cep *c = tlm_cep_create();
    if (!c || tlm_cep_add(c, p, &err)) {
        tlm_cep_destroy(c);
        return NULL;
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = malloc(size + 1);
    if (!src)
        return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    size_t first = strlen(src);
    const char *ev = first < size ? src + first + 1 : "";
    struct tlm_cep *c = engine(src, first);
    if (!c) {
        free(src);
        return 0;
    }
    struct tlm_error err;
    struct tlm_cep_sink sink = { NULL, emit, 0 };
    size_t nlines = 0, half;
    for (const char *p = ev; *p; p++)
        nlines += *p == '\n';
    half = nlines / 2;
    size_t i = 0;
    for (const char *line = ev; *line && i < 200; i++) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        json_t *o = json_loadb(line, len, 0, NULL);
        if (json_is_object(o) && json_is_integer(json_object_get(o, "t"))) {
            char *key = json_dumps(json_object_get(o, "k"), JSON_ENCODE_ANY | JSON_COMPACT);
            long long t = json_integer_value(json_object_get(o, "t"));
            if (key && tlm_cep_push(c, key, strlen(key), t, line, len, NULL, &err) == 0)
                tlm_cep_advance(c, t - 2, &sink, &err);
            free(key);
        }
        json_decref(o);
        if (i == half) { /* a snapshot into a second engine */
            json_t *recs = json_array();
            struct tlm_cep *d = engine(src, first);
            if (recs && d && tlm_cep_save(c, put, recs, &err) == 0) {
                size_t k;
                json_t *r;
                json_array_foreach(recs, k, r)
                    tlm_cep_load(d, r, &err);
                tlm_cep_destroy(c);
                c = d;
                d = NULL;
            }
            tlm_cep_destroy(d);
            json_decref(recs);
        }
        line = end ? end + 1 : line + len;
    }
    tlm_cep_advance(c, INT64_MAX, &sink, &err);
    struct tlm_cep_stats st;
    tlm_cep_stats(c, &st);
    tlm_cep_destroy(c);
    free(src);
    return 0;
}
