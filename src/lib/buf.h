/*
 * buf.h - a growable byte buffer (the one string builder of libtelem).
 *
 * Invariant: data is NULL with len == cap == 0, or points to cap bytes of which the first
 * len are used; after any append data[len] is a NUL byte (cap > len), so the contents can
 * be read as a C string when they hold no NUL of their own.
 */
#ifndef TLM_BUF_H
#define TLM_BUF_H

#include <stddef.h>
#include <string.h>

struct tlm_buf {
    char *data;   /* caller owns through the buffer; released by tlm_buf_free */
    size_t len;   /* bytes in use */
    size_t cap;   /* bytes allocated */
};

#define TLM_BUF_INIT { NULL, 0, 0 }

/* Makes room for at least extra more bytes plus the NUL. Returns 0 or TLM_ENOMEM. */
int tlm_buf_grow(struct tlm_buf *b, size_t extra);

/* Releases the memory; b is left empty and reusable. */
void tlm_buf_free(struct tlm_buf *b);

/* Appends printf-style text. Returns 0 or TLM_ENOMEM. */
int tlm_buf_printf(struct tlm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline int tlm_buf_reserve(struct tlm_buf *b, size_t extra)
{
    return (b->cap > b->len + extra) ? 0 : tlm_buf_grow(b, extra);
}

/* Appends n bytes. Returns 0 or TLM_ENOMEM. */
static inline int tlm_buf_append(struct tlm_buf *b, const void *p, size_t n)
{
    if (tlm_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static inline int tlm_buf_puts(struct tlm_buf *b, const char *s)
{
    return tlm_buf_append(b, s, strlen(s));
}

static inline int tlm_buf_putc(struct tlm_buf *b, char c)
{
    if (tlm_buf_reserve(b, 1))
        return -1;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return 0;
}

/* Empties the buffer, keeping its memory. */
static inline void tlm_buf_reset(struct tlm_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

#endif
