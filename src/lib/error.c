/*
 * error.c - filling and formatting struct tlm_error (see error.h).
 */
#include "error.h"

#include <stdio.h>
#include <string.h>

void tlm_error_clear(struct tlm_error *err)
{
    if (!err)
        return;
    /* field by field: this runs once per input line, and the text arrays are large */
    err->code = 0;
    err->source[0] = '\0';
    err->line = 0;
    err->column = 0;
    err->offset = -1;
    err->text[0] = '\0';
}

int tlm_error_set(struct tlm_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof(err->text), fmt, ap);
        va_end(ap);
    }
    return code;
}

void tlm_error_at(struct tlm_error *err, const char *source, long long line, long column,
                  long long offset)
{
    if (!err)
        return;
    if (source)
        snprintf(err->source, sizeof(err->source), "%s", source);
    else
        err->source[0] = '\0';
    err->line = line;
    err->column = column;
    err->offset = offset;
}

char *tlm_error_format(const struct tlm_error *err, char *buf, unsigned long n)
{
    size_t used = 0;
    if (n == 0)
        return buf;
    buf[0] = '\0';
    if (err->source[0])
        used += (size_t)snprintf(buf + used, n - used, "%s:", err->source);
    if (used < n && err->line > 0)
        used += (size_t)snprintf(buf + used, n - used, "%lld:", err->line);
    if (used < n && err->line > 0 && err->column > 0)
        used += (size_t)snprintf(buf + used, n - used, "%ld:", err->column);
    if (used < n)
        snprintf(buf + used, n - used, "%s%s", used ? " " : "",
                 err->text[0] ? err->text : tlm_code_name(err->code));
    return buf;
}

const char *tlm_code_name(int code)
{
    switch (code) {
    case TLM_OK: return "success";
    case TLM_ENOMEM: return "out of memory";
    case TLM_EINVAL: return "invalid argument";
    case TLM_EPARSE: return "parse error";
    case TLM_EIO: return "input/output error";
    case TLM_ERANGE: return "value out of range";
    case TLM_ESTATE: return "bad snapshot";
    case TLM_EPIPE: return "broken pipe";
    case TLM_EAGAIN: return "nothing ready";
    case TLM_ETYPE: return "wrong type";
    case TLM_ENOTFOUND: return "not found";
    default: return "unknown error";
    }
}
