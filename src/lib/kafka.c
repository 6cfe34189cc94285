/*
 * kafka.c - Kafka input (a consumer-group member handing out one line per message) and
 * output (a producer thread fed through a pipe) over librdkafka. See kafka.h.
 *
 * Input: messages are taken in batches of up to BATCH from the consumer queue
 * (rd_kafka_consume_batch_queue with no wait; when nothing is there, one blocking
 * rd_kafka_consume_queue for the first message, then the rest of the batch without
 * waiting), so a busy topic costs one call per BATCH messages and a quiet one still
 * hands each message over at once. The rebalance callback (eager protocol) runs inside
 * those calls, between messages the caller has finished with: revoke calls the revoked
 * hook for each partition, assign asks the assigned hook for the start offset.
 * Invariant: a message is handed out only if its partition is assigned and its offset
 * is at or past the partition's next expected offset, so messages fetched before a
 * rebalance (and fetched again after it) are never handed out twice.
 *
 * Output: the producer thread reads the pipe in 1 MiB blocks, produces every complete
 * line (RD_KAFKA_MSG_F_COPY), waits in rd_kafka_poll while the client's queue is full,
 * and counts the bytes it consumed so that tlm_kafka_out_sync can wait for them.
 */
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "expr.h"
#include "jscan.h"
#include "jwrite.h"
#include "path.h"

#define BATCH 4096
#define SLICE_MS 100 /* the longest a call waits, so that the caller sees signals */
#define CLOSE_MS 10000 /* the longest leaving the group may take */
#define CLOSE_POLL_MS 10 /* a wait while leaving: the close ends between two events */

int tlm_kafka_is_url(const char *name)
{
    return name && strncmp(name, "kafka://", 8) == 0;
}

/* ---- addresses ------------------------------------------------------------------------ */

struct url {
    char *copy;         /* owns the strings below */
    char *brokers, *topic;
    char *group, *key_field, *partition_field, *offset_field, *key, *password_file;
    int eof;
    char name[512];     /* kafka://brokers/topic */
};

static void url_free(struct url *u)
{
    free(u->copy);
}

static int set_prop(rd_kafka_conf_t *conf, const char *name, const char *value,
                    struct tlm_error *err)
{
    char es[256];
    if (rd_kafka_conf_set(conf, name, value, es, sizeof(es)) != RD_KAFKA_CONF_OK)
        return tlm_error_set(err, TLM_EINVAL, "kafka property %s: %s", name, es);
    return 0;
}

/* Parses url into u and sets the librdkafka properties it carries on conf. */
static int url_parse(const char *url, struct url *u, rd_kafka_conf_t *conf, struct tlm_error *err)
{
    char *q, *slash;
    memset(u, 0, sizeof(*u));
    if (!tlm_kafka_is_url(url))
        return tlm_error_set(err, TLM_EINVAL, "not a kafka:// address: %s", url);
    if (!(u->copy = strdup(url + 8)))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    u->brokers = u->copy;
    if ((q = strchr(u->copy, '?')))
        *q++ = '\0';
    slash = strchr(u->copy, '/');
    if (!slash || slash == u->copy || !slash[1])
        return tlm_error_set(err, TLM_EINVAL, "%s: expected kafka://HOST:PORT/TOPIC", url);
    *slash = '\0';
    u->topic = slash + 1;
    if (strchr(u->topic, '/'))
        return tlm_error_set(err, TLM_EINVAL, "%s: a topic name has no '/'", url);
    snprintf(u->name, sizeof(u->name), "kafka://%s/%s", u->brokers, u->topic);
    if (set_prop(conf, "bootstrap.servers", u->brokers, err))
        return err ? err->code : TLM_EINVAL;
    for (char *save = NULL, *p = q ? strtok_r(q, "&", &save) : NULL; p;
         p = strtok_r(NULL, "&", &save)) {
        char *v = strchr(p, '=');
        if (!v)
            return tlm_error_set(err, TLM_EINVAL, "%s: parameter '%s' has no value", u->name, p);
        *v++ = '\0';
        if (!strcmp(p, "group"))
            u->group = v;
        else if (!strcmp(p, "key-field"))
            u->key_field = v;
        else if (!strcmp(p, "partition-field"))
            u->partition_field = v;
        else if (!strcmp(p, "offset-field"))
            u->offset_field = v;
        else if (!strcmp(p, "key"))
            u->key = v;
        else if (!strcmp(p, "password-file"))
            u->password_file = v;
        else if (!strcmp(p, "eof"))
            u->eof = strcmp(v, "0") != 0 && strcmp(v, "false") != 0;
        else if (!strcmp(p, "sasl.password") || !strcmp(p, "ssl.key.password"))
            return tlm_error_set(err, TLM_EINVAL,
                                 "%s: %s is never taken from the command line (use "
                                 "TELEM_KAFKA_PASSWORD or password-file=PATH)", u->name, p);
        else if (set_prop(conf, p, v, err))
            return err ? err->code : TLM_EINVAL;
    }
    if (u->password_file) {
        char pw[1024];
        size_t n;
        FILE *f = fopen(u->password_file, "r");
        if (!f)
            return tlm_error_set(err, TLM_EIO, "password-file %s: %s", u->password_file,
                                 strerror(errno));
        n = fread(pw, 1, sizeof(pw) - 1, f);
        fclose(f);
        pw[n] = '\0';
        pw[strcspn(pw, "\r\n")] = '\0';
        if (set_prop(conf, "sasl.password", pw, err))
            return err ? err->code : TLM_EINVAL;
    } else if (getenv("TELEM_KAFKA_PASSWORD")) {
        if (set_prop(conf, "sasl.password", getenv("TELEM_KAFKA_PASSWORD"), err))
            return err ? err->code : TLM_EINVAL;
    }
    return 0;
}

/* Fails unless the cluster lists the topic. All topics are asked for, not this one: a
 * request naming it would create it on a cluster that creates topics on first use. */
static int topic_exists(rd_kafka_t *rk, const struct url *u, int32_t *npart,
                        struct tlm_error *err)
{
    int found = 0;
    /* a first answer may come before the cluster knows its topics: ask a few times */
    for (int tries = 0; tries < 5 && !found; tries++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
        if (e)
            return tlm_error_set(err, TLM_EIO, "%s: cannot list the topics: %s", u->name,
                                 rd_kafka_err2str(e));
        int n = md->topic_cnt;
        for (int i = 0; i < n && !found; i++)
            if ((found = strcmp(md->topics[i].topic, u->topic) == 0 && md->topics[i].err == 0) &&
                npart)
                *npart = md->topics[i].partition_cnt;
        rd_kafka_metadata_destroy(md);
        if (!found && n > 0)
            break;
        if (!found)
            usleep(100 * 1000);
    }
    if (!found)
        return tlm_error_set(err, TLM_ENOTFOUND, "%s: topic '%s' does not exist", u->name,
                             u->topic);
    return 0;
}

/* ---- input ---------------------------------------------------------------------------- */

struct part {
    int assigned;
    int eof;            /* the last thing seen of it is its end */
    int64_t expect;     /* next offset to hand out, -1 = any */
};

struct tlm_kafka_in {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    struct url u;
    struct tlm_kafka_in_hooks hooks;
    struct part *parts;
    int32_t nparts;
    int32_t topic_parts;            /* partitions of the topic when it was opened */
    int closing;
    int hrc;                        /* a hook's error, returned by the next call */
    struct tlm_error herr;
    rd_kafka_message_t *msgs[BATCH];
    ssize_t n, i;
    struct tlm_buf line;
};

static struct part *part_get(struct tlm_kafka_in *k, int32_t p)
{
    if (p < 0)
        return NULL;
    if (p >= k->nparts) {
        int32_t n = p + 16;
        struct part *np = realloc(k->parts, (size_t)n * sizeof(*np));
        if (!np)
            return NULL;
        memset(np + k->nparts, 0, (size_t)(n - k->nparts) * sizeof(*np));
        k->parts = np;
        k->nparts = n;
    }
    return &k->parts[p];
}

static void rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *l,
                      void *opaque)
{
    struct tlm_kafka_in *k = opaque;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < l->cnt; i++) {
            int64_t off = -1;
            struct part *p = part_get(k, l->elems[i].partition);
            if (!p) {
                k->hrc = tlm_error_set(&k->herr, TLM_ENOMEM, "out of memory");
                continue;
            }
            if (!k->closing && !k->hrc && k->hooks.assigned)
                k->hrc = k->hooks.assigned(k->hooks.arg, l->elems[i].partition, &off, &k->herr);
            p->assigned = 1;
            p->eof = 0;
            p->expect = off;
            l->elems[i].offset = off >= 0 ? off : RD_KAFKA_OFFSET_INVALID;
        }
        rd_kafka_assign(rk, l);
        return;
    }
    if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        for (int i = 0; i < l->cnt; i++) {
            struct part *p = part_get(k, l->elems[i].partition);
            if (!p || !p->assigned)
                continue;
            if (!k->closing && !k->hrc && k->hooks.revoked)
                k->hrc = k->hooks.revoked(k->hooks.arg, l->elems[i].partition, &k->herr);
            p->assigned = 0;
            p->eof = 0;
        }
    }
    rd_kafka_assign(rk, NULL);
}

struct tlm_kafka_in *tlm_kafka_in_create(const char *url, const struct tlm_kafka_in_hooks *hooks,
                                         struct tlm_error *err)
{
    struct tlm_kafka_in *k = calloc(1, sizeof(*k));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_resp_err_t e;
    char es[512];
    if (!k || !conf) {
        free(k);
        if (conf)
            rd_kafka_conf_destroy(conf);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    if (hooks)
        k->hooks = *hooks;
    if (set_prop(conf, "enable.auto.commit", "false", err) ||
        set_prop(conf, "enable.auto.offset.store", "false", err) ||
        set_prop(conf, "auto.offset.reset", "earliest", err) ||
        set_prop(conf, "enable.partition.eof", "true", err) ||
        /* deep read-ahead: one copy keeps up with a million messages a second */
        set_prop(conf, "queued.min.messages", "1000000", err) ||
        set_prop(conf, "max.partition.fetch.bytes", "4194304", err) ||
        url_parse(url, &k->u, conf, err))
        goto fail;
    if (!k->u.group) {
        tlm_error_set(err, TLM_EINVAL, "%s: a Kafka input needs group=NAME", k->u.name);
        goto fail;
    }
    if (k->u.key) {
        tlm_error_set(err, TLM_EINVAL, "%s: key= applies to outputs (key-field= names the "
                      "field for the message key)", k->u.name);
        goto fail;
    }
    if (set_prop(conf, "group.id", k->u.group, err))
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance);
    rd_kafka_conf_set_opaque(conf, k);
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es));
    if (!k->rk) {
        tlm_error_set(err, TLM_EINVAL, "%s: %s", k->u.name, es);
        goto fail;
    }
    conf = NULL;
    if (topic_exists(k->rk, &k->u, &k->topic_parts, err))
        goto fail;
    rd_kafka_poll_set_consumer(k->rk);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, k->u.topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(k->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        tlm_error_set(err, TLM_EIO, "%s: cannot subscribe: %s", k->u.name, rd_kafka_err2str(e));
        goto fail;
    }
    k->q = rd_kafka_queue_get_consumer(k->rk);
    return k;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    tlm_kafka_in_destroy(k);
    return NULL;
}

static void drop_batch(struct tlm_kafka_in *k)
{
    for (ssize_t i = 0; i < k->n; i++)
        rd_kafka_message_destroy(k->msgs[i]);
    k->n = k->i = 0;
}

static int all_at_end(const struct tlm_kafka_in *k)
{
    int any = 0;
    for (int32_t i = 0; i < k->nparts; i++) {
        if (!k->parts[i].assigned)
            continue;
        if (!k->parts[i].eof)
            return 0;
        any = 1;
    }
    return any;
}

/* One message as a line: the value, with the asked-for fields put first. */
static int make_line(struct tlm_kafka_in *k, const rd_kafka_message_t *m, struct tlm_error *err)
{
    const char *v = m->payload ? m->payload : "";
    size_t n = m->len, start = 0;
    struct tlm_buf *b = &k->line;
    int rc = 0;
    tlm_buf_reset(b);
    while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r' || v[n - 1] == ' '))
        n--;
    while (start < n && (v[start] == ' ' || v[start] == '\t' || v[start] == '\n' ||
                         v[start] == '\r'))
        start++;
    if (start < n && v[start] == '{' &&
        (k->u.key_field || k->u.partition_field || k->u.offset_field)) {
        size_t j = start + 1;
        int sep = 0;
        rc |= tlm_buf_putc(b, '{');
        if (k->u.key_field) {
            rc |= tlm_json_put_string(b, k->u.key_field, strlen(k->u.key_field));
            rc |= tlm_buf_putc(b, ':');
            if (!m->key)
                rc |= tlm_buf_puts(b, "null");
            else if (tlm_json_put_string(b, m->key, m->key_len))
                return tlm_error_set(err, TLM_EPARSE, "message key is not UTF-8");
            sep = 1;
        }
        if (k->u.partition_field) {
            rc |= tlm_buf_printf(b, "%s", sep ? "," : "");
            rc |= tlm_json_put_string(b, k->u.partition_field, strlen(k->u.partition_field));
            rc |= tlm_buf_printf(b, ":%d", (int)m->partition);
            sep = 1;
        }
        if (k->u.offset_field) {
            rc |= tlm_buf_printf(b, "%s", sep ? "," : "");
            rc |= tlm_json_put_string(b, k->u.offset_field, strlen(k->u.offset_field));
            rc |= tlm_buf_printf(b, ":%lld", (long long)m->offset);
        }
        while (j < n && (v[j] == ' ' || v[j] == '\t' || v[j] == '\n' || v[j] == '\r'))
            j++;
        if (j < n && v[j] != '}')
            rc |= tlm_buf_putc(b, ',');
        rc |= tlm_buf_append(b, v + j, n - j);
    } else {
        rc |= tlm_buf_append(b, v + start, n - start);
    }
    if (rc || tlm_buf_reserve(b, 1))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    b->data[b->len] = '\0';
    /* raw newlines can only be white space in valid JSON; keep one line per message */
    for (char *p = b->data; (p = memchr(p, '\n', b->len - (size_t)(p - b->data))); p++)
        *p = ' ';
    for (char *p = b->data; (p = memchr(p, '\r', b->len - (size_t)(p - b->data))); p++)
        *p = ' ';
    return 0;
}

int tlm_kafka_in_next(struct tlm_kafka_in *k, const char **line, size_t *len,
                      int32_t *partition, int64_t *offset, int timeout_ms,
                      struct tlm_error *err)
{
    int waited = 0;
    if (timeout_ms < 0 || timeout_ms > SLICE_MS)
        timeout_ms = SLICE_MS;
    for (;;) {
        if (k->hrc) {
            if (err)
                *err = k->herr;
            return k->hrc;
        }
        while (k->i < k->n) {
            rd_kafka_message_t *m = k->msgs[k->i++];
            struct part *p = part_get(k, m->partition);
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (p && p->assigned)
                    p->eof = 1;
                continue;
            }
            if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
                m->err == RD_KAFKA_RESP_ERR__FATAL) {
                tlm_error_set(err, TLM_EIO, "%s: %s", k->u.name,
                              m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                                      m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
                                  ? "topic does not exist"
                                  : rd_kafka_err2str(m->err));
                return TLM_EIO;
            }
            if (m->err || !p || !p->assigned || (p->expect >= 0 && m->offset < p->expect))
                continue; /* transient (the client retries), or not ours (any more) */
            p->expect = m->offset + 1;
            p->eof = 0;
            if (make_line(k, m, err)) {
                /* a message that cannot be a line (a key that is not UTF-8): rejected
                 * by the caller with its own value, partition and offset */
                if (err && err->code == TLM_EPARSE) {
                    tlm_buf_reset(&k->line);
                    if (tlm_buf_append(&k->line, m->payload ? m->payload : "", m->len) ||
                        tlm_buf_reserve(&k->line, 1))
                        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
                    k->line.data[k->line.len] = '\0';
                    *line = k->line.data;
                    *len = k->line.len;
                    *partition = m->partition;
                    *offset = m->offset;
                }
                return err ? err->code : TLM_EPARSE;
            }
            *line = k->line.data;
            *len = k->line.len;
            *partition = m->partition;
            *offset = m->offset;
            return 1;
        }
        drop_batch(k);
        if (k->u.eof && all_at_end(k))
            return 0;
        k->n = rd_kafka_consume_batch_queue(k->q, 0, k->msgs, BATCH);
        if (k->n == 0 && !waited) {
            rd_kafka_message_t *m = rd_kafka_consume_queue(k->q, timeout_ms);
            waited = 1;
            if (m) {
                ssize_t more;
                k->msgs[0] = m;
                more = rd_kafka_consume_batch_queue(k->q, 0, k->msgs + 1, BATCH - 1);
                k->n = 1 + (more > 0 ? more : 0);
            }
        } else if (k->n == 0) {
            return TLM_EAGAIN;
        }
        if (k->n < 0) {
            k->n = 0;
            return tlm_error_set(err, TLM_EIO, "%s: %s", k->u.name,
                                 rd_kafka_err2str(rd_kafka_last_error()));
        }
    }
}

int tlm_kafka_in_commit(struct tlm_kafka_in *k, int32_t partition, int64_t next_offset,
                        struct tlm_error *err)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t e;
    if (!l)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    rd_kafka_topic_partition_list_add(l, k->u.topic, partition)->offset = next_offset;
    e = rd_kafka_commit(k->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET && e != RD_KAFKA_RESP_ERR__STATE)
        return tlm_error_set(err, TLM_EIO, "%s: commit failed: %s", k->u.name,
                             rd_kafka_err2str(e));
    return 0;
}

const char *tlm_kafka_in_topic(const struct tlm_kafka_in *k)
{
    return k->u.topic;
}

const char *tlm_kafka_in_name(const struct tlm_kafka_in *k)
{
    return k->u.name;
}

void tlm_kafka_in_destroy(struct tlm_kafka_in *k)
{
    if (!k)
        return;
    k->closing = 1;
    drop_batch(k);
    if (k->rk && k->q) {
        /* drop what was fetched but not handed out (the reader went away: `| head`);
         * what arrives later comes through the close below as events */
        rd_kafka_message_t *m;
        while ((m = rd_kafka_consume_queue(k->q, 0)))
            rd_kafka_message_destroy(m);
    }
    if (k->q)
        rd_kafka_queue_destroy(k->q);
    if (k->rk) {
        /* leave the group, but not for ever: with the brokers gone a plain
         * rd_kafka_consumer_close() waits for the coordinator without end */
        rd_kafka_queue_t *cq = rd_kafka_queue_new(k->rk);
        rd_kafka_error_t *e = cq ? rd_kafka_consumer_close_queue(k->rk, cq) : NULL;
        int closed = 0;
        for (int i = 0; cq && !e && i < CLOSE_MS / CLOSE_POLL_MS; i++) {
            if ((closed = rd_kafka_consumer_closed(k->rk)))
                break;
            /* serves the revoke (the rebalance callback); a message fetched before the
             * close comes back as an event and is dropped (served as a callback it would
             * trip librdkafka's assertion) */
            rd_kafka_event_t *ev = rd_kafka_queue_poll(cq, CLOSE_POLL_MS);
            if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                rd_kafka_assign(k->rk, NULL); /* leaving: every partition goes */
            if (ev)
                rd_kafka_event_destroy(ev);
        }
        if (e)
            rd_kafka_error_destroy(e);
        if (cq)
            rd_kafka_queue_destroy(cq);
        rd_kafka_destroy_flags(k->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    url_free(&k->u);
    tlm_buf_free(&k->line);
    free(k->parts);
    free(k);
}

/* ---- output --------------------------------------------------------------------------- */

struct tlm_kafka_out {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    struct url u;
    pthread_t th;
    int started;
    int rfd;                        /* read end of the pipe (the thread's) */
    struct tlm_jscan *scan;         /* key=FIELD, or NULL */
    struct tlm_expr *kexpr;         /* key=EXPRESSION (not a plain name), or NULL */
    struct tlm_path keypath;
    char *keycopy;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long long consumed;             /* bytes of the pipe produced (or skipped) */
    int done;                       /* the thread met the end of the pipe */
    int failed;
    char why[1024];
};

static void fail_out(struct tlm_kafka_out *o, const char *fmt, const char *what)
{
    pthread_mutex_lock(&o->mu);
    if (!o->failed) {
        __atomic_store_n(&o->failed, 1, __ATOMIC_RELEASE);
        snprintf(o->why, sizeof(o->why), fmt, o->u.name, what);
    }
    pthread_mutex_unlock(&o->mu);
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err)
        fail_out(opaque, "%s: delivery failed: %s", rd_kafka_err2str(m->err));
}

static void produce_line(struct tlm_kafka_out *o, const char *p, size_t n, struct tlm_buf *kb)
{
    const char *key = NULL;
    size_t klen = 0;
    long long ms;
    if (n == 0 || o->failed || tlm_json_is_watermark(p, n, &ms))
        return;
    if (o->kexpr) {
        /* an expression key reads a DOM of the line: slower than a plain field */
        json_t *ev = json_loadb(p, n, 0, NULL), *v = NULL;
        tlm_buf_reset(kb);
        if (ev && tlm_expr_eval(o->kexpr, ev, NULL, &v, NULL) == 1 && !json_is_null(v)) {
            char *txt = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            const char *k = txt ? txt : json_string_value(v);
            size_t kn = txt ? strlen(txt) : json_string_length(v);
            if (k && tlm_buf_append(kb, k, kn) == 0) {
                key = kb->data ? kb->data : "";
                klen = kb->len;
            }
            free(txt);
        }
        json_decref(v);
        json_decref(ev);
    } else if (o->scan) {
        struct tlm_jval v;
        if (tlm_jscan_run(o->scan, p, n, &v, NULL) == 0) {
            if (v.type == TLM_JSTRING) {
                tlm_buf_reset(kb);
                if (tlm_jval_string(&v, kb) == 0) {
                    key = kb->data ? kb->data : "";
                    klen = kb->len;
                }
            } else if (v.type != TLM_JNONE && v.type != TLM_JNULL) {
                key = v.p;
                klen = v.n;
            }
        }
    }
    for (;;) {
        if (rd_kafka_produce(o->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)p, n,
                             key, klen, NULL) == 0)
            return;
        if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fail_out(o, "%s: cannot produce: %s", rd_kafka_err2str(rd_kafka_last_error()));
            return;
        }
        rd_kafka_poll(o->rk, 50); /* back-pressure: wait for deliveries */
        if (o->failed)
            return;
    }
}

static void *producer(void *arg)
{
    struct tlm_kafka_out *o = arg;
    struct tlm_buf b = TLM_BUF_INIT, kb = TLM_BUF_INIT;
    size_t have = 0;
    for (;;) {
        ssize_t got;
        size_t off = 0;
        if (tlm_buf_reserve(&b, have + (1u << 20))) {
            fail_out(o, "%s: %s", "out of memory");
            break;
        }
        got = read(o->rfd, b.data + have, 1u << 20);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            produce_line(o, b.data, have, &kb); /* a last line without "\n" */
            pthread_mutex_lock(&o->mu);
            o->consumed += (long long)have;
            o->done = 1;
            pthread_cond_broadcast(&o->cv);
            pthread_mutex_unlock(&o->mu);
            if (got < 0)
                fail_out(o, "%s: %s", strerror(errno));
            break;
        }
        have += (size_t)got;
        for (;;) {
            char *nl = memchr(b.data + off, '\n', have - off);
            if (!nl)
                break;
            produce_line(o, b.data + off, (size_t)(nl - (b.data + off)), &kb);
            off = (size_t)(nl - b.data) + 1;
        }
        rd_kafka_poll(o->rk, 0);
        memmove(b.data, b.data + off, have - off);
        have -= off;
        pthread_mutex_lock(&o->mu);
        o->consumed += (long long)off;
        pthread_cond_broadcast(&o->cv);
        pthread_mutex_unlock(&o->mu);
    }
    tlm_buf_free(&b);
    tlm_buf_free(&kb);
    return NULL;
}

struct tlm_kafka_out *tlm_kafka_out_create(const char *url, int *fd, struct tlm_error *err)
{
    struct tlm_kafka_out *o = calloc(1, sizeof(*o));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char es[512];
    int pfd[2];
    if (!o || !conf) {
        free(o);
        if (conf)
            rd_kafka_conf_destroy(conf);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    o->rfd = -1;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    if (set_prop(conf, "linger.ms", "5", err) || url_parse(url, &o->u, conf, err))
        goto fail;
    if (o->u.group || o->u.key_field || o->u.partition_field || o->u.offset_field || o->u.eof) {
        tlm_error_set(err, TLM_EINVAL, "%s: group=, key-field=, partition-field=, "
                      "offset-field= and eof= apply to inputs", o->u.name);
        goto fail;
    }
    if (o->u.key && strspn(o->u.key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_.$-") != strlen(o->u.key)) {
        struct tlm_error e;
        if (!(o->kexpr = tlm_expr_compile(o->u.key, &e))) {
            tlm_error_set(err, TLM_EINVAL, "%s: key=%s: column %ld: %s", o->u.name, o->u.key,
                          e.column, e.text);
            goto fail;
        }
    } else if (o->u.key) {
        const char *f = strncmp(o->u.key, "$.", 2) == 0 ? o->u.key + 2 : o->u.key;
        char *save = NULL;
        if (!(o->keycopy = strdup(f)) || !(o->keypath.seg = calloc(strlen(f) + 1, sizeof(char *)))) {
            tlm_error_set(err, TLM_ENOMEM, "out of memory");
            goto fail;
        }
        for (char *t = strtok_r(o->keycopy, ".", &save); t; t = strtok_r(NULL, ".", &save))
            o->keypath.seg[o->keypath.nseg++] = t;
        if (!o->keypath.nseg || !(o->scan = tlm_jscan_create(&o->keypath, 1))) {
            tlm_error_set(err, TLM_EINVAL, "%s: bad key field '%s'", o->u.name, o->u.key);
            goto fail;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, delivered);
    rd_kafka_conf_set_opaque(conf, o);
    o->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof(es));
    if (!o->rk) {
        tlm_error_set(err, TLM_EINVAL, "%s: %s", o->u.name, es);
        goto fail;
    }
    conf = NULL;
    if (topic_exists(o->rk, &o->u, NULL, err))
        goto fail;
    if (!(o->rkt = rd_kafka_topic_new(o->rk, o->u.topic, NULL))) {
        tlm_error_set(err, TLM_EINVAL, "%s: %s", o->u.name, rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (pipe(pfd) != 0) {
        tlm_error_set(err, TLM_EIO, "pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20);
    fcntl(pfd[0], F_SETFD, FD_CLOEXEC);
    fcntl(pfd[1], F_SETFD, FD_CLOEXEC);
    o->rfd = pfd[0];
    if (pthread_create(&o->th, NULL, producer, o) != 0) {
        close(pfd[1]);
        tlm_error_set(err, TLM_EIO, "cannot start the producer thread");
        goto fail;
    }
    o->started = 1;
    *fd = pfd[1];
    return o;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    tlm_kafka_out_close(o, NULL);
    return NULL;
}

int tlm_kafka_out_check(struct tlm_kafka_out *o, struct tlm_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&o->mu);
    if (o->failed)
        rc = tlm_error_set(err, TLM_EIO, "%s", o->why);
    pthread_mutex_unlock(&o->mu);
    return rc;
}

int tlm_kafka_out_failed(struct tlm_kafka_out *o)
{
    return o && __atomic_load_n(&o->failed, __ATOMIC_ACQUIRE);
}

int tlm_kafka_out_sync(struct tlm_kafka_out *o, long long written, struct tlm_error *err)
{
    rd_kafka_resp_err_t e;
    pthread_mutex_lock(&o->mu);
    while (o->consumed < written && !o->done && !o->failed)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
    e = rd_kafka_flush(o->rk, 60000);
    if (e && tlm_kafka_out_check(o, NULL) == 0)
        fail_out(o, "%s: %s", "messages not acknowledged within 60 s");
    return tlm_kafka_out_check(o, err);
}

int tlm_kafka_out_close(struct tlm_kafka_out *o, struct tlm_error *err)
{
    int rc = 0;
    if (!o)
        return 0;
    if (o->started)
        pthread_join(o->th, NULL);
    if (o->rk) {
        if (rd_kafka_flush(o->rk, 60000) && tlm_kafka_out_check(o, NULL) == 0)
            fail_out(o, "%s: %s", "messages not acknowledged within 60 s");
        rc = tlm_kafka_out_check(o, err);
    }
    if (o->rfd >= 0)
        close(o->rfd);
    if (o->rkt)
        rd_kafka_topic_destroy(o->rkt);
    if (o->rk)
        rd_kafka_destroy(o->rk);
    tlm_jscan_destroy(o->scan);
    tlm_expr_destroy(o->kexpr);
    free(o->keypath.seg);
    free(o->keycopy);
    url_free(&o->u);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    free(o);
    return rc;
}

int32_t tlm_kafka_in_partitions(const struct tlm_kafka_in *k)
{
    return k->topic_parts;
}

int32_t tlm_kafka_key_partition(const void *key, size_t n, int32_t npartitions)
{
    if (npartitions <= 0)
        return -1;
    /* librdkafka's default partitioner for a keyed message (CRC32 of the key) */
    return rd_kafka_msg_partitioner_consistent(NULL, key, n, npartitions, NULL, NULL);
}
