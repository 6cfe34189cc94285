/*
 * rw.h - Prometheus remote write: wire encoding (1.0 and 2.0), snappy, name rules, retry
 * timing. The pieces of `telem remote-write` that need no network and no threads.
 *
 * A request is described by views (struct tlm_rw_series): label pairs and samples that
 * the caller owns. The encoders are hand-written protobuf writers (tag, length, bytes):
 * they size every nested message first and then write it once, with no allocation besides
 * growing the output buffer. bench/remote-write/encbench.c measures them against
 * protobuf-c (see notes). The 1.0 message is telem's canonical batch: it is what the spool
 * keeps, what --dry-run --format pb prints, and what tlm_rw_decode_v1 reads back, so that a
 * refused batch can be split and a 2.0 request built from it.
 *
 * References: remote write 1.0 and 2.0-rc specs (prometheus.io/docs/specs), written up in
 * our words in shared/docs/remote-write.md.
 */
#ifndef TLM_RW_H
#define TLM_RW_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

/* The stale marker: the one NaN that means "this series ended" (never produced by
 * arithmetic; compare bit patterns, never values). */
#define TLM_RW_STALE_BITS UINT64_C(0x7ff0000000000002)

struct tlm_rw_label {
    const char *name;   /* borrowed; not NUL-terminated necessarily */
    size_t nlen;
    const char *value;
    size_t vlen;
};

struct tlm_rw_sample {
    double value;
    int64_t ts;         /* milliseconds since the epoch */
};

/* One series of a request: its complete label set (sorted by name, unique, non-empty) and
 * its samples (oldest first). When lpb is set, it holds the label fields already encoded
 * by tlm_rw_labels_pb and labels is ignored by the 1.0 encoder. */
struct tlm_rw_series {
    const struct tlm_rw_label *labels;
    size_t nlabels;
    const char *lpb;
    size_t lpb_len;
    const struct tlm_rw_sample *samples;
    size_t nsamples;
};

/* Appends the label fields (1.0 TimeSeries.labels, field 1, repeated) of labels[0..n) to
 * out. Returns 0 or TLM_ENOMEM. */
int tlm_rw_labels_pb(const struct tlm_rw_label *labels, size_t n, struct tlm_buf *out);

/* Appends the 1.0 WriteRequest (prometheus.WriteRequest) of series[0..n) to out (caller
 * owns). Every sample is written with both fields, even zeros. Returns 0 or TLM_ENOMEM. */
int tlm_rw_encode_v1(const struct tlm_rw_series *series, size_t n, struct tlm_buf *out);

/* Metadata.type values of 2.0. */
enum { TLM_RW_TYPE_UNSPECIFIED = 0, TLM_RW_TYPE_COUNTER = 1, TLM_RW_TYPE_GAUGE = 2 };

struct tlm_rw_v2; /* symbol table and scratch of the 2.0 encoder (reusable) */

/* Returns a new encoder state (caller owns; tlm_rw_v2_destroy), or NULL without memory. */
struct tlm_rw_v2 *tlm_rw_v2_create(void);
void tlm_rw_v2_destroy(struct tlm_rw_v2 *v);

/* Appends the 2.0 request (io.prometheus.write.v2.Request) of series[0..n) to out: symbols
 * deduplicated in order of first use after "" (symbols[0]), each series with its label refs,
 * samples and Metadata.type = metric_type. Uses labels (not lpb). Returns 0 or TLM_ENOMEM. */
int tlm_rw_encode_v2(struct tlm_rw_v2 *v, const struct tlm_rw_series *series, size_t n,
                     int metric_type, struct tlm_buf *out);

/* A 1.0 request read back (tlm_rw_decode_v1). Arrays are owned by the struct; label
 * strings borrow from the decoded bytes, which must outlive their use. */
struct tlm_rw_req {
    struct tlm_rw_series *series;
    size_t nseries, cap_series;
    struct tlm_rw_label *labels;
    size_t nlabels, cap_labels;
    struct tlm_rw_sample *samples;
    size_t nsamples, cap_samples;
};

#define TLM_RW_REQ_INIT { NULL, 0, 0, NULL, 0, 0, NULL, 0, 0 }

/* Decodes the 1.0 WriteRequest p[0..n) into r (emptied first; series' lpb are set to their
 * encoded label fields, labels to the decoded pairs). Unknown fields are skipped. Returns 0,
 * TLM_EPARSE (truncated or malformed, err says where) or TLM_ENOMEM. */
int tlm_rw_decode_v1(const char *p, size_t n, struct tlm_rw_req *r, struct tlm_error *err);

/* Releases r's arrays; r is left empty. */
void tlm_rw_req_free(struct tlm_rw_req *r);

/* Appends the 1.0 request of the samples numbered [from, to) of r (samples are numbered
 * series by series, in order) to out: the series that own those samples, with only those
 * samples. Used to split a refused request. Returns 0 or TLM_ENOMEM. */
int tlm_rw_encode_v1_range(const struct tlm_rw_req *r, size_t from, size_t to,
                           struct tlm_buf *out);

/* The series (index into r->series) of sample number i of r. */
size_t tlm_rw_req_series_of(const struct tlm_rw_req *r, size_t i);

/* Snappy block format (not the framed format). Append compressed / uncompressed bytes of
 * p[0..n) to out. Return 0, TLM_ENOMEM, or TLM_EPARSE for corrupt input. */
int tlm_rw_snappy(const char *p, size_t n, struct tlm_buf *out);
int tlm_rw_unsnappy(const char *p, size_t n, struct tlm_buf *out);

/* Name rules of 1.0: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*.
 * Return 1 if s[0..n) is valid (non-empty), else 0. */
int tlm_rw_valid_metric(const char *s, size_t n);
int tlm_rw_valid_label(const char *s, size_t n);

/* Appends a valid name made from s[0..n) to out: every invalid byte becomes '_' (one per
 * byte), and a name that would start with a digit (or is empty) gets a '_' in front.
 * metric: apply the metric-name rule (':' allowed). Returns 0 or TLM_ENOMEM. */
int tlm_rw_sanitize(const char *s, size_t n, int metric, struct tlm_buf *out);

/* Back-off before retry number attempt (1 = first retry): min_ms * 2^(attempt-1), capped at
 * max_ms, with "equal jitter": half of it fixed, the other half scaled by u in [0, 1).
 * Returns milliseconds. */
double tlm_rw_backoff(int attempt, double min_ms, double max_ms, double u);

/* Parses a Retry-After header value (RFC 9110: delay-seconds or an HTTP-date) relative to
 * now (Unix seconds). Stores the delay in seconds (>= 0) in *secs. Returns 0, or TLM_EPARSE
 * if it is neither form. */
int tlm_rw_retry_after(const char *s, int64_t now, double *secs);

/* Appends the Prometheus text form of a sample value ("1.5", "NaN", "+Inf", "-Inf") to out. */
int tlm_rw_format_value(double v, struct tlm_buf *out);

/* Is d the stale marker? */
int tlm_rw_is_stale(double d);
/* The stale marker. */
double tlm_rw_stale(void);

#endif
