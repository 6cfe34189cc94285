/*
 * remote_write.h - the sending half of `telem remote-write` (remote_write_send.c): shard
 * workers that post batches with libcurl, retry, split refused batches, spool.
 *
 * The command (remote_write.c) maps events to series, validates and batches them per
 * shard, encodes each batch as a remote write 1.0 WriteRequest and hands it to
 * rw_sender_submit. Each shard has one thread, one keep-alive connection and one request
 * in flight, so the samples of a series (always routed to the same shard) arrive in order.
 */
#ifndef TELEM_REMOTE_WRITE_H
#define TELEM_REMOTE_WRITE_H

#include <jansson.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

struct rw_send_opts {
    const char *url;
    int v2;                     /* --protocol v2 */
    int shards;
    long timeout_ms;
    long max_retries;           /* retries of one request; -1 = no limit */
    double min_backoff_ms, max_backoff_ms;
    const char *const *headers; /* "Name: value", user-supplied, NULL-terminated */
    const char *cacert, *cert, *key;
    const char *bearer;         /* token (from a file or the environment), or NULL */
    const char *basic;          /* "user:password" (file or environment), or NULL */
    const char *spool;          /* directory, or NULL */
    int64_t spool_max;          /* bytes */
    const char *reject;         /* --reject file for refused samples, or NULL (stderr) */
    int queue;                  /* batches waiting per shard (memory) */
};

struct rw_sender;

/* Creates the sender; nothing is sent yet. Returns NULL with err filled. */
struct rw_sender *rw_sender_create(const struct rw_send_opts *o, struct tlm_error *err);

/* Sends what the spool holds from an earlier run, oldest first, then starts the shard
 * threads. Returns 0 or a negative code with err filled (the spool could not be sent:
 * it is kept). */
int rw_sender_start(struct rw_sender *s, struct tlm_error *err);

/* Queues one batch (a 1.0 WriteRequest of nsamples samples) for shard. Takes the contents
 * of pb (left empty) and ownership of lines (the input line of each sample, in request
 * order, for --reject records; may be NULL; freed with free()). Blocks while the shard's
 * queue or the spool is full (back-pressure). Returns 0 or a negative code with err filled
 * (lines is freed then too). */
int rw_sender_submit(struct rw_sender *s, int shard, struct tlm_buf *pb, long nsamples,
                     long long *lines, struct tlm_error *err);

/* Waits until every queued batch is delivered, refused or given up, and stops the threads.
 * Returns 0, or TLM_EIO with err filled when samples were not delivered (given up, or left
 * in the spool). */
int rw_sender_finish(struct rw_sender *s, struct tlm_error *err);

/* Adds the counters to obj. */
void rw_sender_stats(struct rw_sender *s, json_t *obj);

/* Releases s (after rw_sender_finish); NULL is accepted. */
void rw_sender_destroy(struct rw_sender *s);

/* Appends the series of a decoded label set in Prometheus text form: name{k="v",...}. */
struct tlm_rw_series;
int rw_series_text(const struct tlm_rw_series *s, struct tlm_buf *out);

#endif
