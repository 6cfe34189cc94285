/*
 * kafka.h - Kafka input and output over librdkafka, for the stage loop's
 * -i kafka://... and -o kafka://...
 *
 * Addresses are URLs:
 *     kafka://HOST[:PORT][,HOST[:PORT]...]/TOPIC[?NAME=VALUE[&NAME=VALUE...]]
 * Parameters telem reads itself (every other one is handed to librdkafka as a
 * configuration property, e.g. security.protocol=SASL_SSL):
 *     group=G            input: the consumer group (required for input)
 *     key-field=NAME     input: add the message key as the string field NAME
 *     partition-field=NAME   input: add the partition number as the field NAME
 *     offset-field=NAME  input: add the message offset as the field NAME
 *     eof=1              input: end of input when every assigned partition is at its end
 *     key=FIELD          output: the message key is FIELD's value (dotted name)
 * Credentials never come from the URL (it is on the command line): sasl.password and
 * ssl.key.password are refused there; sasl.password is read from the environment
 * variable TELEM_KAFKA_PASSWORD, or from the file named by the parameter
 * password-file=PATH.
 *
 * Input is a member of a consumer group with automatic offset commits off: the caller
 * decides what offset each assigned partition starts at (the hooks below) and commits
 * offsets when its own state covering them is safe (tlm_kafka_in_commit). Messages are
 * taken from the client in batches (rd_kafka_consume_batch_queue); each message value
 * is one line (a JSON object for the key/partition fields; raw newlines, which valid
 * JSON can only have as white space, are turned into spaces).
 *
 * Output runs a thread that reads NDJSON lines from a pipe (the stage's writer writes
 * into it as into any file) and produces one message per line, keyed by key=FIELD.
 * When the client's queue is full the thread waits (the pipe then fills and the stage
 * blocks: back-pressure, nothing is dropped). Watermark records are not produced.
 * A delivery failure is kept and reported by the next tlm_kafka_out_check/_sync/_close.
 */
#ifndef TLM_KAFKA_H
#define TLM_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Is name a kafka:// address? */
int tlm_kafka_is_url(const char *name);

/* ---- input -------------------------------------------------------------------------- */

struct tlm_kafka_in;

/* Called from inside tlm_kafka_in_next when the group assigns or revokes partitions
 * (eager protocol: a rebalance revokes everything, then assigns the new set). */
struct tlm_kafka_in_hooks {
    void *arg;
    /* partition was assigned: set *offset to the offset to start at, or leave it -1
     * for the group's committed offset (or the partition's beginning). Return 0 or a
     * negative code with err filled (the input then fails with it). */
    int (*assigned)(void *arg, int32_t partition, int64_t *offset, struct tlm_error *err);
    /* partition is revoked: every message of it that was handed out has been handled.
     * Return 0 or a negative code with err filled. */
    int (*revoked)(void *arg, int32_t partition, struct tlm_error *err);
};

/* Connects a consumer for url (see above) and subscribes. hooks is copied. Returns a
 * new input (caller owns; tlm_kafka_in_destroy) or NULL with err filled (bad URL,
 * missing group, bad librdkafka property). */
struct tlm_kafka_in *tlm_kafka_in_create(const char *url, const struct tlm_kafka_in_hooks *hooks,
                                         struct tlm_error *err);

/* The next message: 1 with *line, *len (borrowed until the next call, NUL-terminated),
 * *partition and *offset set; 0 at the end (eof=1 only: every assigned partition is at
 * its end); TLM_EAGAIN when nothing came within timeout_ms (-1 waits); or a negative
 * code with err filled (topic does not exist, fatal client error, a hook's error). */
int tlm_kafka_in_next(struct tlm_kafka_in *k, const char **line, size_t *len,
                      int32_t *partition, int64_t *offset, int timeout_ms,
                      struct tlm_error *err);

/* Commits next_offset (the offset of the first message not yet covered) of partition to
 * the group, asynchronously. Returns 0 or a negative code with err filled. */
int tlm_kafka_in_commit(struct tlm_kafka_in *k, int32_t partition, int64_t next_offset,
                        struct tlm_error *err);

/* The topic (borrowed until destroy) and the address without parameters, for messages. */
const char *tlm_kafka_in_topic(const struct tlm_kafka_in *k);
const char *tlm_kafka_in_name(const struct tlm_kafka_in *k);

/* Leaves the group (the hooks are not called any more) and frees k. NULL is fine. */
void tlm_kafka_in_destroy(struct tlm_kafka_in *k);

/* The number of partitions the topic had when k was created. */
int32_t tlm_kafka_in_partitions(const struct tlm_kafka_in *k);

/* The partition a message keyed by key[0..n) goes to among npartitions, by the producer's
 * default partitioner (librdkafka's consistent_random for a non-empty key: CRC32 of the
 * key; what `-o kafka://...?key=FIELD` produces). -1 when npartitions <= 0. */
int32_t tlm_kafka_key_partition(const void *key, size_t n, int32_t npartitions);

/* ---- output ------------------------------------------------------------------------- */

struct tlm_kafka_out;

/* Connects a producer for url and starts its thread. *fd is the write end of the pipe
 * the thread reads (caller owns it and closes it to end the stream). Returns the output
 * (caller owns; tlm_kafka_out_close) or NULL with err filled. */
struct tlm_kafka_out *tlm_kafka_out_create(const char *url, int *fd, struct tlm_error *err);

/* Reports a delivery failure met so far: 0, or TLM_EIO with err filled. */
int tlm_kafka_out_check(struct tlm_kafka_out *o, struct tlm_error *err);

/* Whether a delivery has failed (cheap: for the caller's loop; the reason comes from
 * tlm_kafka_out_check). NULL is fine. */
int tlm_kafka_out_failed(struct tlm_kafka_out *o);

/* Waits until the first `written` bytes written into the pipe are produced and every
 * message is acknowledged by the brokers. Returns 0 or TLM_EIO with err filled. */
int tlm_kafka_out_sync(struct tlm_kafka_out *o, long long written, struct tlm_error *err);

/* After the caller closed the pipe: produces the rest, waits for acknowledgements,
 * stops the thread and frees o. Returns 0 or TLM_EIO with err filled. NULL is fine. */
int tlm_kafka_out_close(struct tlm_kafka_out *o, struct tlm_error *err);

#endif
