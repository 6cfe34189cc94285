/*
 * test_expr_table.c - runs the expression tables tests/expr/NAME.test and prints TAP.
 *
 * A case (jq's layout, see tests/expr/ops.test for the full description):
 *   # comment lines (optional)
 *   env: {"start": {...}, "items": [...]}   (optional: bindings, by name)
 *   expression
 *   input event (JSON)
 *   expected: compact JSON | nothing | error: <substring of the message>
 * and a blank line between cases. A compile error reads "1:<column>: <reason>", a runtime
 * error "<reason>". Reals print in their shortest round-trip form, always with a '.' or
 * an exponent, so 2.0 and 2 differ. Usage: test_expr_table [FILE...]; without files it
 * reads $top_srcdir/tests/expr/NAME.test (or ./tests/expr).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "expr.h"

struct tcase {
    char *file;
    int line;
    char *env, *expr, *input, *expect;
};

static struct tcase *cases;
static size_t ncases, capcases;

static char *xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (!d)
        abort();
    memcpy(d, s, n + 1);
    return d;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static int load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("Bail out! cannot open %s\n", path);
        return -1;
    }
    char line[8192];
    int lineno = 0, have = 0, startline = 0;
    char *parts[4];
    size_t np = 0;
    for (;;) {
        char *got = fgets(line, sizeof line, f);
        if (got) {
            lineno++;
            chomp(line);
        }
        if (!got || line[0] == '\0') {
            if (have) {
                if (np == 3 && strncmp(parts[0], "env:", 4)) {
                    parts[3] = parts[2];
                    parts[2] = parts[1];
                    parts[1] = parts[0];
                    parts[0] = NULL;
                    np = 4;
                }
                if (np != 4) {
                    printf("Bail out! %s:%d: a case needs [env:] expression, input, "
                           "expected\n", path, startline);
                    fclose(f);
                    return -1;
                }
                if (ncases == capcases) {
                    capcases = capcases ? capcases * 2 : 64;
                    cases = realloc(cases, capcases * sizeof *cases);
                    if (!cases)
                        abort();
                }
                struct tcase *c = &cases[ncases++];
                c->file = xstrdup(path);
                c->line = startline;
                c->env = parts[0];
                c->expr = parts[1];
                c->input = parts[2];
                c->expect = parts[3];
                have = 0;
                np = 0;
            }
            if (!got)
                break;
            continue;
        }
        if (line[0] == '#' && !have)
            continue;
        if (!have) {
            have = 1;
            startline = lineno;
        }
        if (np >= 4) {
            printf("Bail out! %s:%d: too many lines in a case\n", path, startline);
            fclose(f);
            return -1;
        }
        parts[np++] = xstrdup(line);
    }
    fclose(f);
    return 0;
}

/* ---- compact printing with shortest reals ---- */

static void dump(struct tlm_buf *b, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_REAL: {
        char tmp[40];
        double d = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
        if (!strpbrk(tmp, ".eE"))
            strcat(tmp, ".0");
        tlm_buf_puts(b, tmp);
        return;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        tlm_buf_putc(b, '[');
        json_array_foreach(v, i, x) {
            if (i)
                tlm_buf_putc(b, ',');
            dump(b, x);
        }
        tlm_buf_putc(b, ']');
        return;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        tlm_buf_putc(b, '{');
        json_object_foreach(v, k, x) {
            if (!first)
                tlm_buf_putc(b, ',');
            first = 0;
            json_t *ks = json_string(k);
            char *s = json_dumps(ks, JSON_ENCODE_ANY);
            tlm_buf_puts(b, s);
            free(s);
            json_decref(ks);
            tlm_buf_putc(b, ':');
            dump(b, x);
        }
        tlm_buf_putc(b, '}');
        return;
    }
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        tlm_buf_puts(b, s);
        free(s);
    }
    }
}

/* Runs one case; returns 1 on pass and fills got. */
static int run(const struct tcase *c, struct tlm_buf *got)
{
    struct tlm_error err;
    json_error_t jerr;
    json_t *env = NULL, *in = NULL, *out = NULL;
    const char *names[32];
    json_t *values[32];
    size_t nb = 0;
    struct tlm_expr *e = NULL;

    tlm_buf_reset(got);
    if (c->env) {
        env = json_loads(c->env + 4, 0, &jerr);
        if (!json_is_object(env)) {
            tlm_buf_printf(got, "(bad env line: %s)", jerr.text);
            goto done;
        }
        const char *k;
        json_t *x;
        json_object_foreach(env, k, x) {
            if (nb < 32) {
                names[nb] = k;
                values[nb] = json_is_null(x) ? NULL : x;
                nb++;
            }
        }
    }
    in = json_loads(c->input, JSON_DECODE_ANY, &jerr);
    if (!in) {
        tlm_buf_printf(got, "(bad input line: %s)", jerr.text);
        goto done;
    }
    e = tlm_expr_compile_with(c->expr, names, nb, &err);
    if (!e) {
        tlm_buf_printf(got, "error: 1:%ld: %s", err.column, err.text);
    } else {
        struct tlm_expr_env ev = { nb, names, values };
        int r = tlm_expr_eval(e, in, &ev, &out, &err);
        if (r < 0)
            tlm_buf_printf(got, "error: %s", err.text);
        else if (r == 0)
            tlm_buf_puts(got, "nothing");
        else
            dump(got, out);
        /* tlm_expr_test must agree with the value */
        int t = tlm_expr_test(e, in, &ev, &err);
        int want = r < 0 ? r : r == 0 ? 0 : !json_is_false(out) && !json_is_null(out);
        if ((r < 0) != (t < 0) || (r >= 0 && t != want))
            tlm_buf_printf(got, " (tlm_expr_test gave %d)", t);
    }
done:
    tlm_expr_destroy(e);
    json_decref(out);
    json_decref(in);
    json_decref(env);
    if (!got->data)
        tlm_buf_puts(got, "");
    if (!strncmp(c->expect, "error:", 6))
        return !strncmp(got->data, "error:", 6) && strstr(got->data + 6, c->expect + 7) != NULL;
    return !strcmp(got->data, c->expect);
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (load(argv[i]))
                return 1;
    } else {
        const char *top = getenv("top_srcdir");
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tests/expr", top ? top : ".");
        DIR *d = opendir(dir);
        if (!d) {
            printf("Bail out! cannot open %s\n", dir);
            return 1;
        }
        char *names[256];
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)) && n < 256) {
            size_t l = strlen(de->d_name);
            if (l > 5 && !strcmp(de->d_name + l - 5, ".test")) {
                char p[4400];
                snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
                names[n++] = xstrdup(p);
            }
        }
        closedir(d);
        qsort(names, n, sizeof names[0], cmpstr);
        for (size_t i = 0; i < n; i++) {
            if (load(names[i]))
                return 1;
            free(names[i]);
        }
    }
    printf("1..%zu\n", ncases);
    int failed = 0;
    struct tlm_buf got = TLM_BUF_INIT;
    for (size_t i = 0; i < ncases; i++) {
        struct tcase *c = &cases[i];
        const char *base = strrchr(c->file, '/');
        base = base ? base + 1 : c->file;
        if (run(c, &got)) {
            printf("ok %zu - %s:%d %s\n", i + 1, base, c->line, c->expr);
        } else {
            failed++;
            printf("not ok %zu - %s:%d %s\n", i + 1, base, c->line, c->expr);
            printf("#   expected: %s\n#   got:      %s\n", c->expect, got.data);
        }
        free(c->file);
        free(c->env);
        free(c->expr);
        free(c->input);
        free(c->expect);
    }
    tlm_buf_free(&got);
    free(cases);
    return failed ? 1 : 0;
}
