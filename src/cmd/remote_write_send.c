/*
 * remote_write_send.c - shard workers of `telem remote-write` (see remote_write.h).
 *
 * One thread per shard, each with its own libcurl easy handle (a keep-alive connection)
 * and a FIFO of batches; one request in flight per shard keeps every series in order.
 * A batch is the 1.0 WriteRequest the command encoded. Sending it:
 *   - 2xx: delivered. For --protocol v2 the 2.0 request is built from the batch; a 2xx
 *     without X-Prometheus-Remote-Write-Samples-Written (or a 415) means the receiver
 *     does not speak 2.0: say so once, fall back to 1.0 for good and resend;
 *   - transport errors, 408, 429 and 5xx: retry after a back-off (30 ms doubling to 5 s,
 *     with jitter) or the receiver's Retry-After, up to --max-retries;
 *   - any other 4xx, and 5xx whose message names a permanent fault of the data (Prometheus
 *     2.42 answers 500 to "too old sample" and duplicate label names): refused. The batch
 *     is split in two halves (by samples, series by series, so each half keeps its series
 *     in order) and each half is sent again, down to single samples, so that the valid
 *     samples land and only the offending ones go to --reject with the receiver's message.
 * With --spool DIR every batch is written to a segment before it is queued and removed
 * once settled; segments left by an earlier run are sent first, oldest first. The spool
 * is bounded by --spool-size: when full, submit blocks (back-pressure on the input).
 */
#include "config.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "jwrite.h"
#include "remote_write.h"
#include "rw.h"
#include "rwspool.h"

struct item {
    uint64_t seq;
    struct tlm_buf pb;      /* the request; empty when only the spool holds it */
    long nsamples;
    long long *lines;       /* input line per sample, or NULL (an earlier run's spool) */
    int64_t disk;           /* bytes in the spool, 0 if not spooled */
    struct item *next;
};

/* S_FATAL: the receiver refuses the sender itself (wrong URL, no permission): no batch can
 * ever succeed, so nothing is split or retried and the run stops. */
enum { S_OK, S_RETRY, S_REFUSED, S_FATAL };

struct worker {
    struct rw_sender *s;
    int id;
    pthread_t th;
    int started;
    CURL *h;
    struct item *head, *tail;  /* head is being sent until it is popped */
    int len;
    int parked;                /* gave up with a spool: later batches stay in the spool */
    struct tlm_buf body;       /* compressed request */
    struct tlm_buf v2pb;
    struct tlm_buf part;       /* a split half */
    struct tlm_buf resp;       /* response body (first 4 KiB) */
    struct tlm_rw_v2 *v2;
    long status;
    int written_hdr;           /* X-Prometheus-Remote-Write-Samples-Written seen */
    double retry_after;        /* seconds, < 0 if none */
    const long long *lines;    /* of the batch being delivered, or NULL */
    uint64_t rng;
    char msg[512];             /* last failure */
};

struct rw_sender {
    struct rw_send_opts o;
    struct worker *w;
    struct curl_slist *hdr_v1, *hdr_v2;
    pthread_mutex_t mu;
    pthread_cond_t cond;       /* queue changes */
    int closing;
    int fallback;              /* v2 fell back to v1 */
    int fatal;                 /* a receiver error that no retry or split can fix */
    char fatal_msg[512];
    uint64_t next_seq;
    int64_t spool_bytes;
    long spool_left;           /* segments kept (parked shards) */
    pthread_mutex_t rej_mu;
    FILE *rej;
    /* counters (under mu) */
    long long sent, requests, batches, retries, refused_samples, refused_requests, given_up,
        bytes, splits, spooled;
    double lat_sum, lat_max;
};

/* ---- helpers ----------------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
    struct timespec t = { (time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6) };
    while (nanosleep(&t, &t) != 0)
        ;
}

static double uniform(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return (double)(*x >> 11) / 9007199254740992.0;
}

int rw_series_text(const struct tlm_rw_series *s, struct tlm_buf *out)
{
    int rc = 0, first = 1;
    for (size_t i = 0; i < s->nlabels; i++)
        if (s->labels[i].nlen == 8 && memcmp(s->labels[i].name, "__name__", 8) == 0)
            rc |= tlm_buf_append(out, s->labels[i].value, s->labels[i].vlen);
    rc |= tlm_buf_putc(out, '{');
    for (size_t i = 0; i < s->nlabels; i++) {
        const struct tlm_rw_label *l = &s->labels[i];
        if (l->nlen == 8 && memcmp(l->name, "__name__", 8) == 0)
            continue;
        if (!first)
            rc |= tlm_buf_putc(out, ',');
        first = 0;
        rc |= tlm_buf_append(out, l->name, l->nlen);
        rc |= tlm_buf_puts(out, "=\"");
        for (size_t j = 0; j < l->vlen; j++) {
            char ch = l->value[j];
            if (ch == '\\' || ch == '"')
                rc |= tlm_buf_putc(out, '\\'), rc |= tlm_buf_putc(out, ch);
            else if (ch == '\n')
                rc |= tlm_buf_puts(out, "\\n");
            else
                rc |= tlm_buf_putc(out, ch);
        }
        rc |= tlm_buf_putc(out, '"');
    }
    rc |= tlm_buf_putc(out, '}');
    return rc ? TLM_ENOMEM : 0;
}

/* Writes the samples [from, to) of r to --reject (or stderr) with reason. */
static void reject_samples(struct rw_sender *s, const struct tlm_rw_req *r, size_t from, size_t to,
                           const long long *lines, const char *reason)
{
    struct tlm_buf b = TLM_BUF_INIT, ser = TLM_BUF_INIT;
    for (size_t i = from; i < to; i++) {
        const struct tlm_rw_series *se = &r->series[tlm_rw_req_series_of(r, i)];
        const struct tlm_rw_sample *x = &r->samples[i];
        tlm_buf_reset(&ser);
        rw_series_text(se, &ser);
        if (s->rej) {
            tlm_buf_puts(&b, "{");
            if (lines)
                tlm_buf_printf(&b, "\"line\":%lld,", lines[i]);
            tlm_buf_puts(&b, "\"reason\":");
            tlm_json_put_string(&b, reason, strlen(reason));
            tlm_buf_puts(&b, ",\"series\":");
            tlm_json_put_string(&b, ser.data, ser.len);
            tlm_buf_printf(&b, ",\"timestamp\":%lld,\"value\":", (long long)x->ts);
            if (isfinite(x->value)) {
                tlm_json_write_number(&b, x->value);
            } else {
                tlm_buf_putc(&b, '"');
                if (tlm_rw_is_stale(x->value))
                    tlm_buf_puts(&b, "stale");
                else
                    tlm_rw_format_value(x->value, &b);
                tlm_buf_putc(&b, '"');
            }
            tlm_buf_puts(&b, "}\n");
        } else {
            if (lines)
                tlm_buf_printf(&b, "%s: line %lld: refused: %s ", cli_progname(), lines[i], ser.data);
            else
                tlm_buf_printf(&b, "%s: refused: %s ", cli_progname(), ser.data);
            if (tlm_rw_is_stale(x->value))
                tlm_buf_puts(&b, "stale");
            else
                tlm_rw_format_value(x->value, &b);
            tlm_buf_printf(&b, " %lld: %s\n", (long long)x->ts, reason);
        }
    }
    pthread_mutex_lock(&s->rej_mu);
    fwrite(b.data, 1, b.len, s->rej ? s->rej : stderr);
    fflush(s->rej ? s->rej : stderr);
    pthread_mutex_unlock(&s->rej_mu);
    tlm_buf_free(&b);
    tlm_buf_free(&ser);
}

/* ---- one request --------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct worker *w = arg;
    size_t len = size * n;
    if (w->resp.len < 4096)
        tlm_buf_append(&w->resp, p, len < 4096 - w->resp.len ? len : 4096 - w->resp.len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct worker *w = arg;
    size_t len = size * n;
    char line[256];
    size_t k = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
    memcpy(line, p, k);
    line[k] = '\0';
    if (strncasecmp(line, "HTTP/", 5) == 0) { /* a new response (after 100 Continue) */
        w->written_hdr = 0;
        w->retry_after = -1;
    } else if (strncasecmp(line, "X-Prometheus-Remote-Write-Samples-Written:", 42) == 0) {
        w->written_hdr = 1;
    } else if (strncasecmp(line, "Retry-After:", 12) == 0) {
        double sec;
        if (tlm_rw_retry_after(line + 12, (int64_t)time(NULL), &sec) == 0)
            w->retry_after = sec;
    }
    return len;
}

static int permanent_5xx(const char *body)
{
    return strstr(body, "too old sample") || strstr(body, "is not unique") ||
           strstr(body, "invalid sample") || strstr(body, "out of bounds") ||
           strstr(body, "out of order sample") || strstr(body, "duplicate sample");
}

static void trim(char *m)
{
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == '\r' || m[n - 1] == ' '))
        m[--n] = '\0';
}

/* Posts the 1.0 request pb[0..n) of nsamples samples once (as 2.0 when asked). */
static int post(struct worker *w, const char *pb, size_t n, long nsamples)
{
    struct rw_sender *s = w->s;
    int v2;
    CURLcode cc;
    double t0;
again:
    pthread_mutex_lock(&s->mu);
    v2 = s->o.v2 && !s->fallback;
    pthread_mutex_unlock(&s->mu);
    tlm_buf_reset(&w->body);
    if (v2) {
        struct tlm_rw_req r = TLM_RW_REQ_INIT;
        struct tlm_error err;
        tlm_buf_reset(&w->v2pb);
        if (tlm_rw_decode_v1(pb, n, &r, &err) ||
            tlm_rw_encode_v2(w->v2, r.series, r.nseries, TLM_RW_TYPE_GAUGE, &w->v2pb) ||
            tlm_rw_snappy(w->v2pb.data, w->v2pb.len, &w->body)) {
            tlm_rw_req_free(&r);
            snprintf(w->msg, sizeof(w->msg), "cannot build the 2.0 request");
            return S_REFUSED;
        }
        tlm_rw_req_free(&r);
    } else if (tlm_rw_snappy(pb, n, &w->body)) {
        snprintf(w->msg, sizeof(w->msg), "out of memory");
        return S_RETRY;
    }
    tlm_buf_reset(&w->resp);
    w->written_hdr = 0;
    w->retry_after = -1;
    w->status = 0;
    curl_easy_setopt(w->h, CURLOPT_HTTPHEADER, v2 ? s->hdr_v2 : s->hdr_v1);
    curl_easy_setopt(w->h, CURLOPT_POSTFIELDS, w->body.data);
    curl_easy_setopt(w->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->body.len);
    t0 = now_ms();
    cc = curl_easy_perform(w->h);
    t0 = now_ms() - t0;
    pthread_mutex_lock(&s->mu);
    s->requests++;
    s->bytes += (long long)w->body.len;
    s->lat_sum += t0;
    if (t0 > s->lat_max)
        s->lat_max = t0;
    pthread_mutex_unlock(&s->mu);
    if (cc != CURLE_OK) {
        snprintf(w->msg, sizeof(w->msg), "%s", curl_easy_strerror(cc));
        return S_RETRY;
    }
    curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
    snprintf(w->msg, sizeof(w->msg), "%ld %s", w->status, w->resp.data ? w->resp.data : "");
    trim(w->msg);
    if (v2 && ((w->status >= 200 && w->status < 300 && !w->written_hdr) || w->status == 415)) {
        pthread_mutex_lock(&s->mu);
        if (!s->fallback) {
            s->fallback = 1;
            cli_warn("the receiver does not support remote write 2.0 (%s); falling back to 1.0",
                     w->status == 415 ? "415" : "2xx without X-Prometheus-Remote-Write-Samples-Written");
        }
        pthread_mutex_unlock(&s->mu);
        goto again;
    }
    if (w->status == 401 || w->status == 403 || w->status == 404 || w->status == 405 ||
        w->status == 407) {
        pthread_mutex_lock(&s->mu);
        if (!s->fatal) {
            s->fatal = 1;
            snprintf(s->fatal_msg, sizeof(s->fatal_msg), "%s", w->msg);
        }
        pthread_mutex_unlock(&s->mu);
        return S_FATAL;
    }
    if (w->status >= 200 && w->status < 300) {
        pthread_mutex_lock(&s->mu);
        s->sent += nsamples;
        pthread_mutex_unlock(&s->mu);
        return S_OK;
    }
    if (w->status == 408 || w->status == 429 ||
        (w->status >= 500 && !permanent_5xx(w->resp.data ? w->resp.data : "")))
        return S_RETRY;
    return S_REFUSED;
}

/* Posts with retries. Returns S_OK, S_REFUSED, S_FATAL, or S_RETRY when it gave up. */
static int post_retry(struct worker *w, const char *pb, size_t n, long nsamples)
{
    struct rw_sender *s = w->s;
    for (long attempt = 1;; attempt++) {
        int r = post(w, pb, n, nsamples);
        if (r != S_RETRY)
            return r;
        if (s->o.max_retries >= 0 && attempt > s->o.max_retries)
            return S_RETRY;
        double d = tlm_rw_backoff((int)(attempt < 60 ? attempt : 60), s->o.min_backoff_ms,
                                  s->o.max_backoff_ms, uniform(&w->rng));
        if (w->retry_after >= 0)
            d = w->retry_after * 1000;
        pthread_mutex_lock(&s->mu);
        s->retries++;
        pthread_mutex_unlock(&s->mu);
        sleep_ms(d);
    }
}

/* Sends samples [from, to) of r, splitting refused halves. Returns S_OK or S_RETRY (gave up:
 * *gave_from says where). */
static int send_split(struct worker *w, const struct tlm_rw_req *r, size_t from, size_t to,
                      size_t *gave_from)
{
    struct rw_sender *s = w->s;
    size_t mid = from + (to - from) / 2;
    size_t parts[2][2] = { { from, mid }, { mid, to } };
    pthread_mutex_lock(&s->mu);
    s->splits++;
    pthread_mutex_unlock(&s->mu);
    for (int k = 0; k < 2; k++) {
        size_t a = parts[k][0], b = parts[k][1];
        int res;
        tlm_buf_reset(&w->part);
        if (tlm_rw_encode_v1_range(r, a, b, &w->part))
            return *gave_from = a, S_RETRY;
        res = post_retry(w, w->part.data, w->part.len, (long)(b - a));
        if (res == S_RETRY || res == S_FATAL)
            return *gave_from = a, res;
        if (res == S_REFUSED) {
            if (b - a == 1) {
                pthread_mutex_lock(&s->mu);
                s->refused_samples++;
                pthread_mutex_unlock(&s->mu);
                char reason[600];
                snprintf(reason, sizeof(reason), "refused by the receiver: %s", w->msg);
                reject_samples(s, r, a, b, w->lines, reason);
            } else if ((res = send_split(w, r, a, b, gave_from)) != S_OK) {
                return res;
            }
        }
    }
    return S_OK;
}

/* Delivers one batch. Returns 1 if settled (delivered, or refused samples rejected), 0 if
 * given up. */
static int deliver(struct worker *w, struct item *it)
{
    struct rw_sender *s = w->s;
    struct tlm_error err;
    int res;
    w->lines = it->lines;
    if (it->pb.len == 0 && it->disk) {
        if (tlm_rwspool_read(s->o.spool, it->seq, &it->pb, &err)) {
            cli_warn("%s", err.text);
            return 0;
        }
    }
    if (w->parked)
        return 0;
    pthread_mutex_lock(&s->mu);
    res = s->fatal ? S_FATAL : S_RETRY;
    pthread_mutex_unlock(&s->mu);
    if (res != S_FATAL)
        res = post_retry(w, it->pb.data, it->pb.len, it->nsamples);
    if (res == S_OK) {
        pthread_mutex_lock(&s->mu);
        s->batches++;
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    struct tlm_rw_req r = TLM_RW_REQ_INIT;
    size_t gave = 0;
    if (tlm_rw_decode_v1(it->pb.data, it->pb.len, &r, &err)) {
        cli_warn("cannot split a refused batch: %s", err.text);
        tlm_rw_req_free(&r);
        return 0;
    }
    if (res == S_REFUSED) {
        pthread_mutex_lock(&s->mu);
        s->refused_requests++;
        pthread_mutex_unlock(&s->mu);
        if (r.nsamples == 1) {
            char reason[600];
            snprintf(reason, sizeof(reason), "refused by the receiver: %s", w->msg);
            pthread_mutex_lock(&s->mu);
            s->refused_samples++;
            pthread_mutex_unlock(&s->mu);
            reject_samples(s, &r, 0, 1, w->lines, reason);
            res = S_OK;
        } else {
            res = send_split(w, &r, 0, r.nsamples, &gave);
        }
    }
    if (res == S_OK) {
        pthread_mutex_lock(&s->mu);
        s->batches++;
        pthread_mutex_unlock(&s->mu);
        tlm_rw_req_free(&r);
        return 1;
    }
    /* gave up on samples [gave, n) */
    if (s->o.spool) {
        tlm_rw_req_free(&r);
        return 0;
    }
    char reason[700];
    if (res == S_FATAL)
        snprintf(reason, sizeof(reason), "not delivered: the receiver answered %s", s->fatal_msg);
    else
        snprintf(reason, sizeof(reason), "not delivered after %ld retries: %s", s->o.max_retries,
                 w->msg);
    pthread_mutex_lock(&s->mu);
    s->given_up += (long long)(r.nsamples - gave);
    pthread_mutex_unlock(&s->mu);
    reject_samples(s, &r, gave, r.nsamples, w->lines, reason);
    tlm_rw_req_free(&r);
    return 1;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct rw_sender *s = w->s;
    for (;;) {
        struct item *it;
        pthread_mutex_lock(&s->mu);
        while (!w->head && !s->closing)
            pthread_cond_wait(&s->cond, &s->mu);
        it = w->head;
        pthread_mutex_unlock(&s->mu);
        if (!it)
            break;
        int settled = deliver(w, it);
        struct tlm_error err;
        if (settled && it->disk && tlm_rwspool_remove(s->o.spool, it->seq, &err))
            cli_warn("%s", err.text);
        pthread_mutex_lock(&s->mu);
        if (!settled && it->disk) {
            if (!w->parked)
                cli_warn("shard %d: giving up (%s); its batches stay in the spool %s", w->id,
                         w->msg, s->o.spool);
            w->parked = 1;
            s->spool_left++;
        } else if (it->disk) {
            s->spool_bytes -= it->disk;
        } else if (!settled) {
            s->given_up += it->nsamples;
        }
        w->head = it->next;
        if (!w->head)
            w->tail = NULL;
        w->len--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
        tlm_buf_free(&it->pb);
        free(it->lines);
        free(it);
    }
    return NULL;
}

/* ---- setup ------------------------------------------------------------------------- */

static struct curl_slist *headers(const struct rw_send_opts *o, int v2, int *bad)
{
    struct curl_slist *l = NULL, *n;
    const char *fixed[] = {
        "Content-Encoding: snappy",
        v2 ? "Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request"
           : "Content-Type: application/x-protobuf",
        v2 ? "X-Prometheus-Remote-Write-Version: 2.0.0" : "X-Prometheus-Remote-Write-Version: 0.1.0",
        "User-Agent: telem/" PACKAGE_VERSION,
        "Expect:",
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (!(n = curl_slist_append(l, fixed[i])))
            goto fail;
        l = n;
    }
    for (size_t i = 0; o->headers && o->headers[i]; i++) {
        if (!(n = curl_slist_append(l, o->headers[i])))
            goto fail;
        l = n;
    }
    if (o->bearer) {
        struct tlm_buf b = TLM_BUF_INIT;
        tlm_buf_printf(&b, "Authorization: Bearer %s", o->bearer);
        n = b.data ? curl_slist_append(l, b.data) : NULL;
        tlm_buf_free(&b);
        if (!n)
            goto fail;
        l = n;
    }
    return l;
fail:
    *bad = 1;
    return l;
}

struct rw_sender *rw_sender_create(const struct rw_send_opts *o, struct tlm_error *err)
{
    struct rw_sender *s = calloc(1, sizeof(*s));
    int bad = 0;
    if (!s || !(s->w = calloc((size_t)o->shards, sizeof(*s->w)))) {
        free(s);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->rej_mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->hdr_v1 = headers(o, 0, &bad);
    s->hdr_v2 = headers(o, 1, &bad);
    if (o->reject && !(s->rej = fopen(o->reject, "a"))) {
        tlm_error_set(err, TLM_EIO, "%s: cannot open", o->reject);
        bad = 2;
    }
    for (int i = 0; i < o->shards && !bad; i++) {
        struct worker *w = &s->w[i];
        w->s = s;
        w->id = i;
        w->rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1) ^ (uint64_t)time(NULL);
        if (!(w->h = curl_easy_init()) || !(w->v2 = tlm_rw_v2_create())) {
            bad = 1;
            break;
        }
        curl_easy_setopt(w->h, CURLOPT_URL, o->url);
        curl_easy_setopt(w->h, CURLOPT_POST, 1L);
        curl_easy_setopt(w->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(w->h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(w->h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
        curl_easy_setopt(w->h, CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms < 10000 ? o->timeout_ms : 10000L);
        curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(w->h, CURLOPT_WRITEDATA, w);
        curl_easy_setopt(w->h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(w->h, CURLOPT_HEADERDATA, w);
        curl_easy_setopt(w->h, CURLOPT_PROTOCOLS_STR, "http,https");
        if (o->cacert)
            curl_easy_setopt(w->h, CURLOPT_CAINFO, o->cacert);
        if (o->cert)
            curl_easy_setopt(w->h, CURLOPT_SSLCERT, o->cert);
        if (o->key)
            curl_easy_setopt(w->h, CURLOPT_SSLKEY, o->key);
        if (o->basic) {
            curl_easy_setopt(w->h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
            curl_easy_setopt(w->h, CURLOPT_USERPWD, o->basic);
        }
    }
    if (bad) {
        if (bad == 1)
            tlm_error_set(err, TLM_ENOMEM, "cannot set up libcurl");
        rw_sender_destroy(s);
        return NULL;
    }
    return s;
}

int rw_sender_start(struct rw_sender *s, struct tlm_error *err)
{
    if (s->o.spool) {
        uint64_t *seqs;
        size_t n;
        int64_t bytes;
        int rc = tlm_rwspool_list(s->o.spool, &seqs, &n, &bytes, err);
        if (rc)
            return rc;
        s->next_seq = n ? seqs[n - 1] + 1 : 1;
        if (n)
            cli_warn("sending %zu batch%s left in the spool %s first", n, n == 1 ? "" : "es",
                     s->o.spool);
        /* oldest first, one at a time, before any new batch */
        for (size_t i = 0; i < n; i++) {
            struct item it = { seqs[i], TLM_BUF_INIT, 0, NULL, 1, NULL };
            struct tlm_rw_req r = TLM_RW_REQ_INIT;
            if ((rc = tlm_rwspool_read(s->o.spool, seqs[i], &it.pb, err)) ||
                (rc = tlm_rw_decode_v1(it.pb.data, it.pb.len, &r, err))) {
                tlm_buf_free(&it.pb);
                tlm_rw_req_free(&r);
                free(seqs);
                return rc;
            }
            it.nsamples = (long)r.nsamples;
            tlm_rw_req_free(&r);
            if (!deliver(&s->w[0], &it)) {
                tlm_buf_free(&it.pb);
                free(seqs);
                return tlm_error_set(err, TLM_EIO,
                                     "the spool could not be sent (%s); %zu batch%s kept in %s",
                                     s->w[0].msg, n - i, n - i == 1 ? "" : "es", s->o.spool);
            }
            tlm_buf_free(&it.pb);
            if ((rc = tlm_rwspool_remove(s->o.spool, seqs[i], err))) {
                free(seqs);
                return rc;
            }
        }
        free(seqs);
    }
    for (int i = 0; i < s->o.shards; i++) {
        if (pthread_create(&s->w[i].th, NULL, worker_main, &s->w[i]) != 0)
            return tlm_error_set(err, TLM_ENOMEM, "cannot start a thread");
        s->w[i].started = 1;
    }
    return 0;
}

int rw_sender_submit(struct rw_sender *s, int shard, struct tlm_buf *pb, long nsamples,
                     long long *lines, struct tlm_error *err)
{
    struct worker *w = &s->w[shard];
    struct item *it = calloc(1, sizeof(*it));
    if (!it) {
        free(lines);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    it->nsamples = nsamples;
    it->lines = lines;
    pthread_mutex_lock(&s->mu);
    if (s->fatal) {
        pthread_mutex_unlock(&s->mu);
        free(it->lines);
        free(it);
        return tlm_error_set(err, TLM_EIO, "the receiver answered %s; stopping", s->fatal_msg);
    }
    it->seq = s->next_seq++;
    if (s->o.spool) {
        while (s->spool_bytes >= s->o.spool_max && s->spool_left == 0)
            pthread_cond_wait(&s->cond, &s->mu);
        if (s->spool_bytes >= s->o.spool_max) {
            pthread_mutex_unlock(&s->mu);
            free(it->lines);
            free(it);
            return tlm_error_set(err, TLM_EIO,
                                 "the spool %s is full (--spool-size) and the receiver is "
                                 "unreachable; stopping", s->o.spool);
        }
        pthread_mutex_unlock(&s->mu);
        int64_t d = tlm_rwspool_write(s->o.spool, it->seq, pb->data, pb->len, err);
        if (d < 0) {
            free(it->lines);
            free(it);
            return (int)d;
        }
        it->disk = d;
        pthread_mutex_lock(&s->mu);
        s->spool_bytes += d;
        s->spooled++;
        /* a long queue lives in the spool only; memory stays bounded */
        if (w->len < s->o.queue) {
            it->pb = *pb;
        } else {
            tlm_buf_free(pb);
        }
    } else {
        while (w->len >= s->o.queue)
            pthread_cond_wait(&s->cond, &s->mu);
        it->pb = *pb;
    }
    pb->data = NULL;
    pb->len = pb->cap = 0;
    if (w->tail)
        w->tail->next = it;
    else
        w->head = it;
    w->tail = it;
    w->len++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int rw_sender_finish(struct rw_sender *s, struct tlm_error *err)
{
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->o.shards; i++)
        if (s->w[i].started) {
            pthread_join(s->w[i].th, NULL);
            s->w[i].started = 0;
        }
    if (s->rej)
        fflush(s->rej);
    if (s->fatal && !s->spool_left && !s->given_up)
        return tlm_error_set(err, TLM_EIO, "the receiver answered %s", s->fatal_msg);
    if (s->spool_left)
        return tlm_error_set(err, TLM_EIO,
                             "%ld batch%s not delivered; kept in the spool %s for the next run",
                             s->spool_left, s->spool_left == 1 ? "" : "es", s->o.spool);
    if (s->given_up)
        return tlm_error_set(err, TLM_EIO, "%lld sample%s not delivered (see --reject)",
                             s->given_up, s->given_up == 1 ? "" : "s");
    return 0;
}

void rw_sender_stats(struct rw_sender *s, json_t *o)
{
    pthread_mutex_lock(&s->mu);
    json_object_set_new(o, "sent", json_integer(s->sent));
    json_object_set_new(o, "batches", json_integer(s->batches));
    json_object_set_new(o, "requests", json_integer(s->requests));
    json_object_set_new(o, "retried", json_integer(s->retries));
    json_object_set_new(o, "refused", json_integer(s->refused_samples));
    json_object_set_new(o, "refused_requests", json_integer(s->refused_requests));
    json_object_set_new(o, "splits", json_integer(s->splits));
    json_object_set_new(o, "given_up", json_integer(s->given_up));
    json_object_set_new(o, "bytes", json_integer(s->bytes));
    if (s->o.spool)
        json_object_set_new(o, "spooled", json_integer(s->spooled));
    json_object_set_new(o, "protocol", json_string(s->o.v2 && !s->fallback ? "v2" : "v1"));
    json_object_set_new(o, "latency_avg_ms",
                        json_real(s->requests ? round(s->lat_sum / (double)s->requests * 1000) / 1000 : 0));
    json_object_set_new(o, "latency_max_ms", json_real(round(s->lat_max * 1000) / 1000));
    pthread_mutex_unlock(&s->mu);
}

void rw_sender_destroy(struct rw_sender *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->o.shards; i++) {
        struct worker *w = &s->w[i];
        while (w->head) {
            struct item *n = w->head->next;
            tlm_buf_free(&w->head->pb);
            free(w->head->lines);
            free(w->head);
            w->head = n;
        }
        if (w->h)
            curl_easy_cleanup(w->h);
        tlm_rw_v2_destroy(w->v2);
        tlm_buf_free(&w->body);
        tlm_buf_free(&w->v2pb);
        tlm_buf_free(&w->part);
        tlm_buf_free(&w->resp);
    }
    curl_slist_free_all(s->hdr_v1);
    curl_slist_free_all(s->hdr_v2);
    if (s->rej)
        fclose(s->rej);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->rej_mu);
    pthread_cond_destroy(&s->cond);
    free(s->w);
    free(s);
}
