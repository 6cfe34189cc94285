/*
 * time.c - time units, RFC 3339, durations and watermark arithmetic (see time.h).
 *
 * Calendar arithmetic uses Howard Hinnant's days_from_civil / civil_from_days
 * algorithms (proleptic Gregorian, valid for all int64 day counts we can hold), so no
 * call depends on the process's time zone or on timegm().
 */
#include "time.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- units ------------------------------------------------------------------------ */

int tlm_time_unit_parse(const char *s, enum tlm_time_unit *unit, struct tlm_error *err)
{
    static const struct { const char *name; enum tlm_time_unit u; } names[] = {
        { "auto", TLM_UNIT_AUTO }, { "s", TLM_UNIT_S },   { "ms", TLM_UNIT_MS },
        { "us", TLM_UNIT_US },     { "\xc2\xb5s", TLM_UNIT_US }, { "ns", TLM_UNIT_NS },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *unit = names[i].u;
            return 0;
        }
    }
    return tlm_error_set(err, TLM_EINVAL, "unknown time unit '%s' (expected auto, s, ms, us or ns)", s);
}

const char *tlm_time_unit_name(enum tlm_time_unit unit)
{
    switch (unit) {
    case TLM_UNIT_S: return "s";
    case TLM_UNIT_MS: return "ms";
    case TLM_UNIT_US: return "us";
    case TLM_UNIT_NS: return "ns";
    default: return "auto";
    }
}

enum tlm_time_unit tlm_time_unit_guess(double v)
{
    double a = fabs(v);
    if (a < 1e10)
        return TLM_UNIT_S;
    if (a < 1e13)
        return TLM_UNIT_MS;
    if (a < 1e16)
        return TLM_UNIT_US;
    return TLM_UNIT_NS;
}

static int64_t unit_ns(enum tlm_time_unit unit)
{
    switch (unit) {
    case TLM_UNIT_S: return TLM_NS_PER_S;
    case TLM_UNIT_MS: return TLM_NS_PER_MS;
    case TLM_UNIT_US: return 1000;
    default: return 1;
    }
}

int tlm_time_from_int(long long v, enum tlm_time_unit unit, tlm_time_t *out,
                      struct tlm_error *err)
{
    int64_t m;
    if (unit == TLM_UNIT_AUTO)
        unit = tlm_time_unit_guess((double)v);
    m = unit_ns(unit);
    if (v > INT64_MAX / m || v < INT64_MIN / m)
        return tlm_error_set(err, TLM_ERANGE,
                             "timestamp %lld %s is out of range (years 1677..2262)", v,
                             tlm_time_unit_name(unit));
    *out = (tlm_time_t)v * m;
    return 0;
}

int tlm_time_from_double(double v, enum tlm_time_unit unit, tlm_time_t *out,
                         struct tlm_error *err)
{
    double ns;
    if (!isfinite(v))
        return tlm_error_set(err, TLM_ERANGE, "timestamp is not a finite number");
    if (unit == TLM_UNIT_AUTO)
        unit = tlm_time_unit_guess(v);
    ns = v * (double)unit_ns(unit);
    if (!(ns < 9.2233720368547748e18 && ns > -9.2233720368547748e18))
        return tlm_error_set(err, TLM_ERANGE,
                             "timestamp %.17g %s is out of range (years 1677..2262)", v,
                             tlm_time_unit_name(unit));
    *out = (tlm_time_t)llround(ns);
    return 0;
}

long long tlm_time_to_unit(tlm_time_t t, enum tlm_time_unit unit)
{
    int64_t m = unit_ns(unit == TLM_UNIT_AUTO ? TLM_UNIT_MS : unit);
    int64_t q = t / m;
    if ((t % m) < 0)
        q--; /* floor */
    return q;
}

/* ---- calendar --------------------------------------------------------------------- */

int64_t tlm_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void tlm_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int digits(const char *s, size_t n, size_t at, size_t count, int *v)
{
    int x = 0;
    if (at + count > n)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (s[at + i] < '0' || s[at + i] > '9')
            return -1;
        x = x * 10 + (s[at + i] - '0');
    }
    *v = x;
    return 0;
}

int tlm_time_parse_rfc3339(const char *s, size_t n, tlm_time_t *out, struct tlm_error *err)
{
    static const unsigned char mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int Y, M, D, h, mi, sec, oh = 0, om = 0;
    size_t i = 19;
    int64_t frac = 0, sign = 0;
    if (digits(s, n, 0, 4, &Y) || n < 20 || s[4] != '-' || digits(s, n, 5, 2, &M) ||
        s[7] != '-' || digits(s, n, 8, 2, &D) ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || digits(s, n, 11, 2, &h) ||
        s[13] != ':' || digits(s, n, 14, 2, &mi) || s[16] != ':' || digits(s, n, 17, 2, &sec))
        return tlm_error_set(err, TLM_EPARSE,
                             "not an RFC 3339 time (expected YYYY-MM-DDTHH:MM:SS[.frac]Z|+HH:MM)");
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && is_leap(Y)) || h > 23 ||
        mi > 59 || sec > 60)
        return tlm_error_set(err, TLM_EPARSE, "RFC 3339 time has a field out of range");
    if (i < n && s[i] == '.') {
        int64_t scale = 100000000;
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            frac += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start)
            return tlm_error_set(err, TLM_EPARSE, "RFC 3339 time has an empty fraction");
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        sign = s[i] == '-' ? -1 : 1;
        if (digits(s, n, i + 1, 2, &oh) || i + 3 >= n || s[i + 3] != ':' ||
            digits(s, n, i + 4, 2, &om) || oh > 23 || om > 59)
            return tlm_error_set(err, TLM_EPARSE, "RFC 3339 time has a bad UTC offset");
        i += 6;
    } else {
        return tlm_error_set(err, TLM_EPARSE, "RFC 3339 time needs 'Z' or a UTC offset");
    }
    if (i != n)
        return tlm_error_set(err, TLM_EPARSE, "trailing characters after RFC 3339 time");
    if (sec == 60)
        sec = 59; /* a leap second is folded into the second before it */
    int64_t days = tlm_days_from_civil(Y, (unsigned)M, (unsigned)D);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
    if (secs > INT64_MAX / TLM_NS_PER_S - 1 || secs < INT64_MIN / TLM_NS_PER_S + 1)
        return tlm_error_set(err, TLM_ERANGE, "RFC 3339 time out of range (years 1677..2262)");
    *out = secs * TLM_NS_PER_S + frac;
    return 0;
}

char *tlm_time_format_rfc3339(tlm_time_t t, char *buf, size_t n)
{
    int64_t secs = t / TLM_NS_PER_S, frac = t % TLM_NS_PER_S;
    int64_t days, y, rem;
    unsigned m, d;
    if (frac < 0) {
        frac += TLM_NS_PER_S;
        secs--;
    }
    days = secs / 86400;
    rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    tlm_civil_from_days(days, &y, &m, &d);
    int len = snprintf(buf, n, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)y, m, d,
                       (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    if (frac && len > 0 && (size_t)len < n) {
        char f[16];
        int k = 9;
        snprintf(f, sizeof(f), "%09lld", (long long)frac);
        while (k > 1 && f[k - 1] == '0')
            k--;
        f[k] = '\0';
        len += snprintf(buf + len, n - (size_t)len, ".%s", f);
    }
    if (len > 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, "Z");
    return buf;
}

/* ---- durations -------------------------------------------------------------------- */

static const struct { const char *name; int64_t ns; } dur_units[] = {
    /* longest names first so that "ms" is not read as "m" */
    { "\xc2\xb5s", 1000 }, { "ns", 1 }, { "us", 1000 }, { "ms", TLM_NS_PER_MS },
    { "s", TLM_NS_PER_S }, { "m", 60 * TLM_NS_PER_S }, { "h", 3600 * TLM_NS_PER_S },
    { "d", 86400 * TLM_NS_PER_S }, { "w", 7 * 86400 * TLM_NS_PER_S },
};

int tlm_duration_parse(const char *s, int64_t *ns, struct tlm_error *err)
{
    const char *p = s;
    double total = 0;
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (!*p)
        return tlm_error_set(err, TLM_EINVAL, "empty duration");
    while (*p) {
        double v = 0, scale = 1;
        int any = 0, found = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            any = 1;
        }
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                scale /= 10;
                v += (*p++ - '0') * scale;
                any = 1;
            }
        }
        if (!any)
            return tlm_error_set(err, TLM_EINVAL,
                                 "bad duration '%s' (expected e.g. 250ms, 10s, 5m, 24h, 7d)", s);
        for (size_t i = 0; i < sizeof(dur_units) / sizeof(dur_units[0]); i++) {
            size_t l = strlen(dur_units[i].name);
            if (strncmp(p, dur_units[i].name, l) == 0 &&
                !(l == 1 && p[0] == 'm' && p[1] == 's')) {
                total += v * (double)dur_units[i].ns;
                p += l;
                found = 1;
                break;
            }
        }
        if (!found)
            return tlm_error_set(err, TLM_EINVAL,
                                 "duration '%s' needs a unit (ns, us, ms, s, m, h, d, w)", s);
    }
    if (total >= 9.2e18)
        return tlm_error_set(err, TLM_ERANGE, "duration '%s' is too long", s);
    *ns = (int64_t)llround(total);
    return 0;
}

char *tlm_duration_format(int64_t ns, char *buf, size_t n)
{
    static const struct { const char *name; int64_t ns; } units[] = {
        { "d", 86400 * TLM_NS_PER_S }, { "h", 3600 * TLM_NS_PER_S }, { "m", 60 * TLM_NS_PER_S },
        { "s", TLM_NS_PER_S }, { "ms", TLM_NS_PER_MS }, { "us", 1000 }, { "ns", 1 },
    };
    size_t used = 0;
    if (n == 0)
        return buf;
    buf[0] = '\0';
    if (ns == 0) {
        snprintf(buf, n, "0s");
        return buf;
    }
    if (ns < 0) {
        used += (size_t)snprintf(buf, n, "-");
        ns = -ns;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && ns && used < n; i++) {
        if (ns >= units[i].ns) {
            used += (size_t)snprintf(buf + used, n - used, "%lld%s",
                                     (long long)(ns / units[i].ns), units[i].name);
            ns %= units[i].ns;
        }
    }
    return buf;
}

/* ---- watermarks ------------------------------------------------------------------- */

void tlm_wm_init(struct tlm_wm *w, int64_t max_out_of_order)
{
    w->max_ts = TLM_TIME_MIN;
    w->wm = TLM_TIME_MIN;
    w->delay = max_out_of_order;
}

static int raise_to(struct tlm_wm *w, tlm_time_t cand)
{
    if (cand > w->wm) {
        w->wm = cand;
        return 1;
    }
    return 0;
}

static tlm_time_t bounded(tlm_time_t t, int64_t minus)
{
    return (t < TLM_TIME_MIN + minus) ? TLM_TIME_MIN : t - minus;
}

int tlm_wm_observe(struct tlm_wm *w, tlm_time_t ts)
{
    if (ts <= w->max_ts)
        return 0;
    w->max_ts = ts;
    return raise_to(w, bounded(ts, w->delay + TLM_NS_PER_MS));
}

int tlm_wm_raise(struct tlm_wm *w, tlm_time_t wm)
{
    return raise_to(w, wm);
}

int tlm_wm_idle(struct tlm_wm *w, int64_t idle_ns)
{
    if (w->max_ts == TLM_TIME_MIN)
        return 0;
    tlm_time_t t = (w->max_ts > TLM_TIME_MAX - idle_ns) ? TLM_TIME_MAX : w->max_ts + idle_ns;
    return raise_to(w, bounded(t, w->delay + TLM_NS_PER_MS));
}
