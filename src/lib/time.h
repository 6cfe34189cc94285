/*
 * time.h - event time, time units, durations and watermarks.
 *
 * telem keeps event time as signed 64-bit nanoseconds since the Unix epoch (tlm_time_t),
 * which covers 1677-09-21 to 2262-04-11 with room for any input unit. Input numbers are
 * read in the unit the user names (--time-unit) or, by default, in the unit their
 * magnitude suggests:
 *
 *     |v| < 1e10  seconds       (up to year 2286)
 *     |v| < 1e13  milliseconds  (1970-04-26 .. 2286)
 *     |v| < 1e16  microseconds
 *     otherwise   nanoseconds
 *
 * RFC 3339 strings ("2024-05-01T12:00:00.250+02:00") are accepted wherever a number is.
 * Durations read as "250ms", "10s", "5m", "24h", "7d", combinations ("1h30m") and "0".
 *
 * Watermarks follow Apache Flink's bounded-out-of-orderness strategy (see telem(7)):
 * watermark = highest event time seen - max_out_of_order - 1 ms, raised by upstream
 * watermark records and never lowered; an event whose time is at or below the
 * current watermark is late.
 */
#ifndef TLM_TIME_H
#define TLM_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef int64_t tlm_time_t;                 /* nanoseconds since 1970-01-01T00:00:00Z */
#define TLM_TIME_MIN INT64_MIN              /* "no time yet" */
#define TLM_TIME_MAX INT64_MAX              /* "time has ended" */
#define TLM_NS_PER_MS INT64_C(1000000)
#define TLM_NS_PER_S INT64_C(1000000000)

enum tlm_time_unit {
    TLM_UNIT_AUTO = 0, /* by magnitude, see above */
    TLM_UNIT_S,
    TLM_UNIT_MS,
    TLM_UNIT_US,
    TLM_UNIT_NS
};

/* Parses "auto", "s", "ms", "us" (also "µs") or "ns". Returns 0 or TLM_EINVAL. */
int tlm_time_unit_parse(const char *s, enum tlm_time_unit *unit, struct tlm_error *err);

/* The name of a unit as tlm_time_unit_parse reads it; never NULL. */
const char *tlm_time_unit_name(enum tlm_time_unit unit);

/* The unit auto-detection picks for an integer of this magnitude (never AUTO). */
enum tlm_time_unit tlm_time_unit_guess(double v);

/* Converts a number in unit to nanoseconds. Returns 0, or TLM_ERANGE when the result
 * does not fit (err says so). Reals keep their fraction to the nanosecond. */
int tlm_time_from_int(long long v, enum tlm_time_unit unit, tlm_time_t *out,
                      struct tlm_error *err);
int tlm_time_from_double(double v, enum tlm_time_unit unit, tlm_time_t *out,
                         struct tlm_error *err);

/* Parses an RFC 3339 date-time (s, n bytes, not NUL-terminated). 'T' or 't' or ' ' between
 * date and time; 'Z', 'z' or a numeric offset required; fractions up to nanoseconds
 * (more digits are truncated). Returns 0 or TLM_EPARSE / TLM_ERANGE. */
int tlm_time_parse_rfc3339(const char *s, size_t n, tlm_time_t *out, struct tlm_error *err);

/* Writes t as RFC 3339 in UTC ("2024-05-01T10:00:00.25Z", fraction only when non-zero,
 * without trailing zeros) into buf (>= 40 bytes). Returns buf. */
char *tlm_time_format_rfc3339(tlm_time_t t, char *buf, size_t n);

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12, d 1..31), and back
 * (Howard Hinnant's days_from_civil / civil_from_days). */
int64_t tlm_days_from_civil(int64_t y, unsigned m, unsigned d);
void tlm_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

/* Converts nanoseconds to unit (floor division for integers). */
long long tlm_time_to_unit(tlm_time_t t, enum tlm_time_unit unit);

/* Parses a duration ("250ms", "10s", "1.5s", "5m", "24h", "7d", "1h30m", "0"; units
 * ns, us, µs, ms, s, m, h, d, w). A bare number is refused, so that "10" is never
 * silently read as nanoseconds. Returns 0, TLM_EINVAL or TLM_ERANGE. */
int tlm_duration_parse(const char *s, int64_t *ns, struct tlm_error *err);

/* Writes a duration in the largest exact units ("1h30m", "250ms", "0s") into buf (>= 48
 * bytes). Returns buf. */
char *tlm_duration_format(int64_t ns, char *buf, size_t n);

/* ---- watermarks ------------------------------------------------------------------- */

struct tlm_wm {
    tlm_time_t max_ts;       /* highest event time seen, TLM_TIME_MIN before any */
    tlm_time_t wm;           /* current watermark, TLM_TIME_MIN before any */
    int64_t delay;           /* --max-out-of-order, ns */
};

/* Starts a tracker with no time seen. */
void tlm_wm_init(struct tlm_wm *w, int64_t max_out_of_order);

/* Is an event at ts late (at or below the current watermark)? */
static inline int tlm_wm_is_late(const struct tlm_wm *w, tlm_time_t ts)
{
    return w->wm != TLM_TIME_MIN && ts <= w->wm;
}

/* Accounts for an event at ts. Returns 1 if the watermark advanced, else 0. */
int tlm_wm_observe(struct tlm_wm *w, tlm_time_t ts);

/* Raises the watermark to an upstream watermark (never lowers it). Returns 1 if it
 * advanced, else 0. */
int tlm_wm_raise(struct tlm_wm *w, tlm_time_t wm);

/* Idle input: event time is taken to have moved on with the wall clock by idle_ns since
 * the last event, so the watermark becomes max_ts + idle_ns - delay - 1 ms (if higher).
 * Returns 1 if it advanced. */
int tlm_wm_idle(struct tlm_wm *w, int64_t idle_ns);

#endif
