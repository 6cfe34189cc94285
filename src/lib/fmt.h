/*
 * fmt.h - input formats of `telem ingest`: CSV, seed 000's tokens, InfluxDB line protocol,
 * Graphite plaintext and Prometheus text exposition, each turned into NDJSON events.
 *
 * The caller splits its input into lines and feeds them one at a time (without the "\n",
 * and without a trailing "\r"); each call appends zero or more complete events, one compact
 * JSON object per event, each ending in "\n", to a caller-owned buffer. Events are written
 * with jwrite (no DOM): keys appear in input order, strings are escaped as jansson does.
 *
 * Common rules (all formats)
 *  - Invalid UTF-8 anywhere a string is written (field names, values, tags, labels, keys)
 *    rejects the record ("invalid UTF-8 in field 'x'").
 *  - Number typing: a value whose text is a JSON number (RFC 8259 grammar) that telem's JSON
 *    reader accepts (an integer that fits 64-bit signed, a real that does not overflow a
 *    double) is written as a number with its ORIGINAL text, e.g. 1.50 stays 1.50. Anything
 *    else is a string: "007", "1.", ".5", "+1", "0x10", "1e999", "99999999999999999999",
 *    "NaN", "inf", "true" (CSV and tokens). Formats with typed values (influx, graphite,
 *    prom) normalise their own number spellings that JSON lacks (".5" -> 0.5, see below).
 *  - Time: when a record carries a time (CSV: the column named time_field; influx, graphite,
 *    prom: their timestamp), it is written as an integer in time_unit_out (default ms,
 *    floor division) under the name time_field (default "timestamp"). A time that cannot be
 *    read rejects the record with a reason naming the field. A record without a time gets
 *    no time field. Times are held as ns, so they must lie in 1677..2262.
 *  - Errors: a bad record appends nothing. err->column is the 1-based byte column of the
 *    offending token or field in its line; see tlm_fmt_record_lines for CSV records that
 *    span lines. Reasons are short and quote the offending text ("value 'abc' is not a
 *    number"); quoted input is cut at 40 bytes and control bytes or invalid UTF-8 in it are
 *    shown as '?'.
 *  - Several records on one line (tokens): with opts.on_bad NULL a line is all-or-nothing:
 *    the first bad record makes tlm_fmt_line return TLM_EPARSE and NOTHING of that line is
 *    appended. With opts.on_bad set, every bad record of every format is reported to the
 *    callback and skipped, the good records of the same line are appended, and the call
 *    returns their count (it never returns TLM_EPARSE then). The callback form is the one to
 *    use for --reject; the plain form suits --strict.
 *
 * csv (libcsv, strict mode)
 *  - The first record is the header unless opts.fields names the columns. Header names must
 *    be non-empty and unique ("empty field name in header", "duplicate field 'a' in header");
 *    a bad header is reported and the NEXT record is read as the header again.
 *  - Fields are separated by opts.delimiter (default ','); a field may be quoted with '"',
 *    and then hold the delimiter, "" for a quote, and line breaks: such a record spans lines
 *    and the parser carries it across calls (it returns 0 until the record is complete).
 *    A quote inside an unquoted field, or anything but blanks and the delimiter after a
 *    closing quote, is an error ("unexpected '\"' in unquoted field", "unexpected 'x' after
 *    closing quote"). A quoted field still open at end of input is "unterminated quoted
 *    field at end of input" (from tlm_fmt_end). A '\r' inside a line is data, never a line
 *    break.
 *  - Unquoted fields lose leading and trailing spaces and tabs (libcsv's rule; quote a
 *    field to keep them). Blank and whitespace-only lines are skipped.
 *  - Typing: number typing as above, whether the field was quoted or not (libcsv does not
 *    say); "true"/"false" stay strings (CSV has no booleans). An EMPTY UNQUOTED field is
 *    omitted from the event; an empty quoted field ("") is the empty string.
 *  - A record with more fields than the header is an error ("record has 5 fields, header
 *    has 4", at the first extra field); a record with fewer fields simply lacks the missing
 *    ones.
 *  - The column named time_field, if any, is the event time: a number (in time_unit_in, AUTO
 *    = by magnitude: s, ms, us, ns as time.h says; a plain decimal such as 1700000000.25 is
 *    read exactly, to the nanosecond) or an RFC 3339 string; it is written in place, in
 *    time_unit_out. An empty unquoted time field is omitted like any empty field.
 *  - A UTF-8 byte-order mark at the start of the first line is skipped.
 *
 * tokens (seed 000): whitespace-separated tokens (space, tab, \n, \r, \f, \v) of the form
 *    key-metric-value. The value is after the last '-', the metric between the last two '-',
 *    the key is everything before (so UUID keys work): "3f2b-9c1d-start-100" ->
 *    {"key":"3f2b-9c1d","metric":"start","value":100}. All three parts must be non-empty
 *    ("abc", "-x", "a-b-", "a--1" are bad: "expected key-metric-value"), so a value holding
 *    '-' (a negative number, 1e-3) cannot be written. The value is typed like a CSV field
 *    (100 -> 100, 1.50 -> 1.50, x -> "x", 007 -> "007"). Tokens carry no time.
 *
 * influx (InfluxDB 2.x line protocol)
 *    measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *  - Escapes: in the measurement "\," and "\ "; in tag keys, tag values and field keys "\,",
 *    "\=" and "\ "; any other backslash is literal. String field values are double-quoted
 *    with "\"" and "\\" as escapes (other backslashes literal) and may hold spaces, commas
 *    and '='.
 *  - Field values: float (1, 1.5, -1e3 keep their text; spellings JSON lacks, ".5", "1.",
 *    "+1", or integers beyond 64 bits, are written as reals in shortest form: 0.5, 1.0, 1.0,
 *    1e20; NaN, Inf and overflowing floats are errors), integer 12i (written 12, so 007i is
 *    7), unsigned 12u (written 12; above 2^63-1 written as a string, since telem's JSON
 *    reader holds signed 64-bit integers), string "..." and boolean (t T true True TRUE f F
 *    false False FALSE).
 *  - The optional timestamp is an integer in time_unit_in (AUTO = ns, the protocol default).
 *  - Lines starting with '#' (after optional blanks) and blank lines are skipped.
 *  - Output: {"measurement":"cpu","host":"a","usage":1.5,"count":3,"timestamp":...}: tags
 *    then fields in input order. A tag or field whose name repeats another tag or field, or
 *    "measurement", or time_field, is "duplicate field 'x'".
 *
 * graphite (plaintext protocol): path value [timestamp], blank-separated; the path may carry
 *    tags: path;tag=value;tag2=value2. The value is a finite number (normalised as influx
 *    floats are; nan and inf are errors); the timestamp is a number in seconds (time_unit_in,
 *    AUTO = s), may be fractional (read exactly) or have an exponent; a timestamp of -1
 *    (carbon's "now") or none means "no time field". Output:
 *    {"path":"servers.a.cpu","tag":"v",...,"value":1.5,"timestamp":...}. Tag names must be
 *    non-empty without ';' '!' '^' '='; tag values non-empty without ';' and not starting
 *    with '~'; a tag named "path", "value" or time_field, or repeated, is a duplicate field.
 *
 * prom (Prometheus text exposition format 0.0.4)
 *  - "# TYPE name counter|gauge|histogram|summary|untyped" is remembered per metric family
 *    (a later TYPE line for the same name replaces it, so concatenated scrapes work);
 *    "# HELP name text" is checked and otherwise ignored; other '#' lines and blank lines
 *    are comments.
 *  - Sample: name[{label="value",...}] value [timestamp]; blanks may surround the label
 *    set and its tokens, and a trailing ',' is allowed. Names match [a-zA-Z_:][a-zA-Z0-9_:]*,
 *    label names [a-zA-Z_][a-zA-Z0-9_]*. Label values escape "\\", "\"" and "\n"; any other
 *    escape is "bad escape '\x' in value of label 'l'". Invalid names, a missing value, a
 *    repeated label, an unterminated value or label set are errors with their reason.
 *  - The value is a float; NaN, +Inf and -Inf (any case, "Inf" without sign too), which JSON
 *    cannot hold, are written as the strings "NaN", "+Inf" and "-Inf". The optional timestamp
 *    is an integer in time_unit_in (AUTO = ms, the format's unit).
 *  - Output: {"__name__":"http_requests_total","method":"post","value":1027,
 *    "timestamp":1395066363000,"type":"counter"}. "type" is written when the family's TYPE
 *    is known: the sample name's own, else for a name ending in _bucket (histogram), _sum or
 *    _count (histogram or summary) the family's without the suffix. A label named
 *    "__name__", "value", time_field, or "type" when a type is written, or a repeated
 *    label, is "duplicate label 'x'".
 */
#ifndef TLM_FMT_H
#define TLM_FMT_H

#include <stddef.h>

#include "buf.h"
#include "error.h"
#include "time.h"

enum tlm_fmt_kind {
    TLM_FMT_CSV = 1,
    TLM_FMT_TOKENS,   /* seed 000's key-metric-value tokens */
    TLM_FMT_INFLUX,   /* InfluxDB line protocol */
    TLM_FMT_GRAPHITE, /* Graphite plaintext */
    TLM_FMT_PROM      /* Prometheus text exposition 0.0.4 */
};

struct tlm_fmt_opts {
    enum tlm_fmt_kind kind;
    char delimiter;                   /* csv; 0 means ','; must not be '"', '\n' or '\r' */
    const char *const *fields;        /* csv: names for headerless input (borrowed for
                                         tlm_fmt_create only), or NULL: the first record
                                         is the header */
    size_t nfields;                   /* entries in fields */
    const char *time_field;           /* name of the event time (NULL = "timestamp"); csv:
                                         the column holding the time, if present (borrowed
                                         for tlm_fmt_create only) */
    enum tlm_time_unit time_unit_in;  /* csv: unit of numeric times (AUTO = by magnitude);
                                         influx: precision (AUTO = ns); graphite: AUTO = s;
                                         prom: AUTO = ms */
    enum tlm_time_unit time_unit_out; /* unit written (AUTO = ms) */
    /* Optional: called once per bad record (see the header comment), with the 1-based byte
     * column in the current line and the reason (borrowed for the call only). While it runs,
     * tlm_fmt_record_lines tells how many lines back that column lies. NULL: bad records
     * make tlm_fmt_line / tlm_fmt_end return TLM_EPARSE instead. */
    void (*on_bad)(void *arg, long column, const char *reason);
    void *on_bad_arg;                 /* passed to on_bad; borrowed while the parser lives */
};

struct tlm_fmt; /* one parser, for one format, with its state between lines */

/* Reads a format name: "csv", "tokens", "influx", "graphite" or "prom". Returns 0 and sets
 * *kind, or TLM_EINVAL (kind untouched). */
int tlm_fmt_parse_kind(const char *name, enum tlm_fmt_kind *kind);

/* The name of a kind as tlm_fmt_parse_kind reads it ("csv"), or "?"; never NULL. */
const char *tlm_fmt_kind_name(enum tlm_fmt_kind kind);

/* Creates a parser. o and the strings it points to are borrowed for this call only (the
 * parser copies what it keeps), except on_bad_arg. Returns a parser the caller owns
 * (release with tlm_fmt_destroy), or NULL with err (may be NULL) filled: TLM_EINVAL for bad
 * options (unknown kind, a delimiter that is '"' or a line break, an empty or repeated name
 * in fields, an empty time_field), TLM_ENOMEM. */
struct tlm_fmt *tlm_fmt_create(const struct tlm_fmt_opts *o, struct tlm_error *err);

/* Releases f and everything it holds; NULL is accepted. */
void tlm_fmt_destroy(struct tlm_fmt *f);

/* Feeds one input line line[0..len) (borrowed for the call; need not be NUL-terminated;
 * without its "\n" and trailing "\r"). Appends zero or more complete events, each ending in
 * "\n", to out (caller owns). Returns the number of events appended (0 for a header, a
 * comment, a blank line, or a CSV record continuing on the next line); or, only when
 * opts.on_bad is NULL, TLM_EPARSE with err->column and err->text set (other err fields are
 * left alone) and nothing of this line appended; or TLM_ENOMEM (out then holds what it held
 * before the call). After TLM_EPARSE the parser is ready for the next line. */
int tlm_fmt_line(struct tlm_fmt *f, const char *line, size_t len, struct tlm_buf *out,
                 struct tlm_error *err);

/* End of input: completes or reports a pending record (csv: a quoted field still open ->
 * "unterminated quoted field at end of input", err->column at its opening quote). Returns
 * the number of events appended (always 0 today), TLM_EPARSE (only when on_bad is NULL) or
 * TLM_ENOMEM. Afterwards f is back in its initial state (csv expects a header again unless
 * fields were given; prom forgets TYPE lines), so it can read another input. */
int tlm_fmt_end(struct tlm_fmt *f, struct tlm_buf *out, struct tlm_error *err);

/* Lines spanned by a CSV record: after tlm_fmt_line or tlm_fmt_end reported a bad record
 * (by its return value or during on_bad), how many lines before the last line fed the
 * line of err->column lies (0 = the last line fed); otherwise, how many lines back the
 * record still pending began (0 when none is pending). Always 0 for other formats. */
long tlm_fmt_record_lines(const struct tlm_fmt *f);

/* State a later run over the rest of the same input needs (the CSV header), appended to
 * out as a JSON array of names; nothing is appended when there is none. Returns 0 or
 * TLM_ENOMEM. */
int tlm_fmt_save(struct tlm_fmt *f, struct tlm_buf *out);
/* Takes back names saved by tlm_fmt_save (borrowed), as if the header had been read.
 * Returns 0 or TLM_ESTATE. */
int tlm_fmt_restore(struct tlm_fmt *f, const char *const *names, size_t n,
                    struct tlm_error *err);

#endif
