/*
 * buf.c - growth and formatting for struct tlm_buf (see buf.h).
 * Capacity doubles, so n appends cost O(n) amortised.
 */
#include "buf.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int tlm_buf_grow(struct tlm_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap = b->cap ? b->cap : 64;
    char *p;
    if (need < b->len)
        return TLM_ENOMEM;
    while (cap < need) {
        if (cap > ((size_t)-1) / 2)
            return TLM_ENOMEM;
        cap *= 2;
    }
    if (cap == b->cap)
        return 0;
    p = realloc(b->data, cap);
    if (!p)
        return TLM_ENOMEM;
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';
    return 0;
}

void tlm_buf_free(struct tlm_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int tlm_buf_printf(struct tlm_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TLM_EINVAL;
    if (tlm_buf_reserve(b, (size_t)n))
        return TLM_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}
