/*
 * fmt_tokens.c - seed 000's format: whitespace-separated tokens key-metric-value.
 *
 * A line is split at runs of whitespace (space, tab, \n, \r, \f, \v); each token is one
 * record. The value is after the last '-', the metric between the last two, and the key is
 * the rest, so keys may hold '-' (UUIDs) while metrics and values may not. Every part must
 * be non-empty. The event is {"key":K,"metric":M,"value":V}, V typed by fmt_put_value
 * (JSON numbers stay numbers with their original text, anything else is a string).
 *
 * Hot path: one pass with a 256-entry class table, two memrchr-style backward scans per
 * token, three appends; no allocation once out has grown. A bad token is reported through
 * fmt_bad; without on_bad the whole line is dropped (fmt.c rolls out back).
 */
#include <string.h>

#include "fmt_int.h"
#include "jwrite.h"

/* 1 for the bytes that separate tokens */
static const unsigned char ws[256] = {
    ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1,
};

static const char *last_dash(const char *b, const char *e)
{
    while (e > b) {
        if (*--e == '-')
            return e;
    }
    return NULL;
}

static int tokens_line(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                       struct tlm_error *err)
{
    const char *p = line, *end = line + len;
    int count = 0, rc;
    while (p < end) {
        const char *tok, *te, *d2, *d1;
        size_t mark;
        while (p < end && ws[(unsigned char)*p])
            p++;
        if (p == end)
            break;
        tok = p;
        while (p < end && !ws[(unsigned char)*p])
            p++;
        te = p;
        d2 = last_dash(tok, te);
        d1 = d2 ? last_dash(tok, d2) : NULL;
        if (!d1 || d1 == tok || d2 == d1 + 1 || d2 + 1 == te) {
            char show[FMT_SHOW_SIZE];
            rc = fmt_bad(f, err, (long)(tok - line) + 1, "expected key-metric-value, got '%s'",
                         fmt_show(show, sizeof(show), tok, (size_t)(te - tok)));
            if (rc)
                return rc;
            continue;
        }
        mark = out->len;
        if (tlm_buf_reserve(out, (size_t)(te - tok) + 32))
            return TLM_ENOMEM;
        memcpy(out->data + out->len, "{\"key\":", 7);
        out->len += 7;
        rc = tlm_json_put_string(out, tok, (size_t)(d1 - tok));
        if (rc == 0 && !(rc = tlm_buf_append(out, ",\"metric\":", 10) ? TLM_ENOMEM : 0))
            rc = tlm_json_put_string(out, d1 + 1, (size_t)(d2 - d1 - 1));
        if (rc == 0 && !(rc = tlm_buf_append(out, ",\"value\":", 9) ? TLM_ENOMEM : 0))
            rc = fmt_put_value(out, d2 + 1, (size_t)(te - d2 - 1));
        if (rc == 0)
            rc = tlm_buf_append(out, "}\n", 2) ? TLM_ENOMEM : 0;
        if (rc == TLM_EINVAL) {
            out->len = mark;
            out->data[mark] = '\0';
            rc = fmt_bad(f, err, (long)(tok - line) + 1, "invalid UTF-8 in token");
            if (rc)
                return rc;
            continue;
        }
        if (rc)
            return rc;
        count++;
    }
    return count;
}

const struct fmt_ops fmt_tokens_ops = { NULL, tokens_line, NULL, NULL, NULL, NULL };
