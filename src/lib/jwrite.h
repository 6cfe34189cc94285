/*
 * jwrite.h - writing JSON text into a struct tlm_buf without building a DOM.
 *
 * Output is byte for byte what jansson's json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)
 * prints, with one deliberate difference: reals are printed in the shortest form that reads
 * back (strtod) to the same double, instead of jansson's "%.17g" (27.508, not
 * 27.507999999999999). The real format otherwise follows jansson's conventions:
 *  - "%.<P>g" with the smallest P in 15, 16, 17 that round-trips (so fixed notation for
 *    decimal exponents -5 < X < P, exponent notation otherwise); 15 digits always read back
 *    for normal doubles, so no "%.<N>g" with N < P does; subnormals search P from 1 (5e-324);
 *  - a real printed without '.' or 'e' gets ".0" (1.0, 100.0, -0.0);
 *  - the exponent has no '+' and no leading zeros: 1e300, 1e21, 1.2345678901234568e20,
 *    1e-7, 5e-324 (jansson prints the same exponent style).
 * Non-finite doubles (which jansson cannot hold) are written as null.
 */
#ifndef TLM_JWRITE_H
#define TLM_JWRITE_H

#include <stddef.h>

#include <jansson.h>

#include "buf.h"

/* Appends s[0..n) as a quoted JSON string escaped as jansson's compact dump does: \" \\ \b
 * \f \n \r \t, other bytes < 0x20 as \u00XX (upper-case hex), everything else (including
 * '/', 0x7f and non-ASCII UTF-8) as is. s is borrowed and may hold NUL bytes (written as
 * \u0000). Returns 0, TLM_EINVAL if s is not valid UTF-8 (b is then left as it was; jansson
 * refuses to dump such a string too), or TLM_ENOMEM. */
int tlm_json_put_string(struct tlm_buf *b, const char *s, size_t n);

/* Appends v in decimal. Returns 0 or TLM_ENOMEM. */
int tlm_json_put_int(struct tlm_buf *b, long long v);

/* Appends d as a JSON real in the shortest round-trip form described above ("27.508", "1.0",
 * "-0.0", "1e300"); a non-finite d is written as null. Returns 0 or TLM_ENOMEM. */
int tlm_json_put_double(struct tlm_buf *b, double d);

/* Appends a computed number: an integral d with |d| <= 2^53 as an integer ("3" for 3.0, "0"
 * for -0.0), anything else as tlm_json_put_double does. Readers then see an integer where the
 * value is one, as if it had been counted, not measured. Returns 0 or TLM_ENOMEM. */
int tlm_json_write_number(struct tlm_buf *b, double d);

/* Appends v (borrowed; any type, objects in their iteration order as jansson dumps them) as
 * compact JSON equal to json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) except for the shortest
 * reals. Returns 0, TLM_EINVAL if v is NULL or holds a string that is not valid UTF-8 (b is
 * then left as it was), or TLM_ENOMEM. Reference cycles are not detected (jansson refuses
 * to build them through its setters). */
int tlm_json_write(struct tlm_buf *b, const json_t *v);

/* 1 for the bytes a JSON string holds as they are (0x20..0x7f but '"' and '\\'): the
 * table the writer and the scanner share. */
extern const unsigned char tlm_json_plain[256];

/* Length of the valid UTF-8 sequence starting at p (p[0] >= 0x80, avail bytes readable):
 * 2, 3 or 4, or 0 when it is not valid UTF-8 (overlong, surrogate, above U+10FFFF,
 * truncated). The one UTF-8 check of the writers (jwrite, fmt). */
size_t tlm_utf8_seq(const unsigned char *p, size_t avail);

#endif
