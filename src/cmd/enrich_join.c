/*
 * enrich_join.c - `telem enrich --join`: an event-time interval join of the main input
 * (left) with a second stream (right), after Apache Flink's KeyedStream.intervalJoin.
 *
 * A left event L and a right event R join when they have the same key and
 *     L.ts + lower <= R.ts <= L.ts + upper          (--within D: lower 0, upper D)
 * Each pair is written once, as the left event's bytes with the right event added
 * (nested under --into, default "right", or its members flattened with --prefix), as
 * soon as the second of the two arrives.
 *
 * Reading: the stage loop hands over left events; before a left event at time T is
 * handled, right events are read (from their own reader) until one is later than T, so
 * the two streams advance together by event time. A FIFO on the right is waited for,
 * as Flink waits for the slower input's watermark.
 *
 * Buffers: per key, one list per side sorted by time. A new event finds its partners by
 * binary search over the other side's list, so its cost is log n plus the pairs it
 * makes: a hot key costs what its output costs, never a scan of everything buffered
 * (seed 003: Flink's interval join slowed down on duplicate ids). --join-max bounds a
 * key's list per side; past it the oldest event leaves early (to --unjoined if it never
 * joined; counted as evicted).
 *
 * Time: the watermark is the lower of the two sides' (each: highest time - max out of
 * order - 1 ms, raised by watermark records; a side at its end no longer holds time
 * back). A left event L can gain partners until the watermark reaches L.ts + upper, a
 * right event R until it reaches R.ts - lower; then it leaves, and goes to --unjoined
 * if it never joined. A min-heap of those bounds finds what leaves. An event at or below
 * the watermark when it arrives is late: it is not joined and goes to --unjoined (Flink
 * drops late elements of an interval join). The watermark written downstream is held
 * back by max(upper, 0), so that a pair (which carries the left event's time) is never
 * late downstream.
 */
#include "enrich_join.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jscan.h"
#include "jwrite.h"
#include "reader.h"
#include "table.h"
#include "writer.h"

enum { LEFT = 0, RIGHT = 1 };

struct rec {
    tlm_time_t ts;
    char *line;          /* the event's bytes (malloc'd, NUL-terminated) */
    size_t len;
    char *frag;          /* right events: the fragment a pair adds (malloc'd) */
    size_t frag_len;
    int joined;
};

struct list {
    struct rec *v;       /* v[head..n) live, sorted by ts (ties: arrival order) */
    size_t head, n, cap;
};

struct jkey {
    char *key;
    size_t klen;
    uint64_t hash;
    struct jkey *next;   /* hash chain */
    struct list side[2];
    size_t refs;         /* heap entries that point here */
};

struct hent {
    tlm_time_t at;       /* the bound: the event leaves when the watermark reaches it */
    uint64_t seq;        /* arrival order (ties) */
    struct jkey *k;
    int side;
};

struct join {
    struct join_opts o;
    const char *into;
    struct tlm_reader *right;
    struct tlm_jscan *rscan;     /* time, key */
    struct tlm_path rpaths[2];
    struct tlm_path time_path;
    struct tlm_wm rwm;           /* the right side's watermark */
    int right_eof;
    tlm_time_t right_last;       /* time of the last right event read */
    tlm_time_t lwm;              /* the left side's watermark (the stage's) */
    struct jkey **buckets;
    size_t nbuckets, nkeys;
    struct hent *heap;
    size_t nheap, capheap;
    uint64_t seq;
    struct tlm_writer *unjoined;
    struct side_mark unjoined_mark; /* its size in the restored snapshot */
    int restored;                /* a snapshot was loaded */
    struct stage *st;            /* during a callback */
    struct tlm_buf keybuf, tmp;
    /* counters */
    long long nleft, nright, pairs, unjoined_left, unjoined_right, late_left, late_right,
        evicted, right_bad, buffered[2];
};

/* ---- helpers ------------------------------------------------------------------------ */

static tlm_time_t wm_now(const struct join *j)
{
    tlm_time_t r = j->right_eof ? TLM_TIME_MAX : j->rwm.wm;
    return j->lwm < r ? j->lwm : r;
}

static tlm_time_t sat_add(tlm_time_t ts, int64_t d)
{
    if (d > 0 && ts > TLM_TIME_MAX - d)
        return TLM_TIME_MAX;
    if (d < 0 && ts < TLM_TIME_MIN - d)
        return TLM_TIME_MIN;
    return ts + d;
}

/* When an event of side at ts leaves: the watermark at ts + upper (left) or ts - lower
 * (right). */
static tlm_time_t bound_of(const struct join *j, int side, tlm_time_t ts)
{
    return sat_add(ts, side == LEFT ? j->o.upper : -j->o.lower);
}

/* The key text of a scanned value (string contents or number text) into j->keybuf. */
static int key_text(struct join *j, const struct tlm_jval *v, const char **k, size_t *n)
{
    int rc;
    tlm_buf_reset(&j->keybuf);
    if ((rc = tlm_jval_key_text(v, &j->keybuf)))
        return rc;
    *k = j->keybuf.data ? j->keybuf.data : "";
    *n = j->keybuf.len;
    return 0;
}

static struct jkey *key_get(struct join *j, const char *k, size_t n, int create)
{
    uint64_t h = tlm_table_hash(k, n);
    struct jkey *e;
    if (j->nkeys >= j->nbuckets && create) {
        size_t nb = j->nbuckets ? j->nbuckets * 2 : 1024;
        struct jkey **b = calloc(nb, sizeof(*b));
        if (!b)
            return NULL;
        for (size_t i = 0; i < j->nbuckets; i++)
            for (struct jkey *x = j->buckets[i], *nx; x; x = nx) {
                nx = x->next;
                x->next = b[x->hash & (nb - 1)];
                b[x->hash & (nb - 1)] = x;
            }
        free(j->buckets);
        j->buckets = b;
        j->nbuckets = nb;
    }
    if (!j->nbuckets)
        return NULL;
    for (e = j->buckets[h & (j->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0)
            return e;
    if (!create || !(e = calloc(1, sizeof(*e))) || !(e->key = malloc(n ? n : 1))) {
        free(e);
        return NULL;
    }
    memcpy(e->key, k, n);
    e->klen = n;
    e->hash = h;
    e->next = j->buckets[h & (j->nbuckets - 1)];
    j->buckets[h & (j->nbuckets - 1)] = e;
    j->nkeys++;
    return e;
}

static void rec_free(struct rec *r)
{
    free(r->line);
    free(r->frag);
}

/* Frees a key with nothing buffered and no heap entry left. */
static void key_maybe_free(struct join *j, struct jkey *e)
{
    struct jkey **pp;
    if (e->refs || e->side[0].n > e->side[0].head || e->side[1].n > e->side[1].head)
        return;
    for (pp = &j->buckets[e->hash & (j->nbuckets - 1)]; *pp != e; pp = &(*pp)->next)
        ;
    *pp = e->next;
    free(e->side[0].v);
    free(e->side[1].v);
    free(e->key);
    free(e);
    j->nkeys--;
}

/* ---- the heap of bounds ------------------------------------------------------------- */

static int hless(const struct hent *a, const struct hent *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int heap_push(struct join *j, tlm_time_t at, struct jkey *k, int side)
{
    size_t i;
    if (j->nheap == j->capheap) {
        size_t cap = j->capheap ? j->capheap * 2 : 1024;
        struct hent *h = realloc(j->heap, cap * sizeof(*h));
        if (!h)
            return TLM_ENOMEM;
        j->heap = h;
        j->capheap = cap;
    }
    i = j->nheap++;
    j->heap[i] = (struct hent){ at, j->seq++, k, side };
    while (i && hless(&j->heap[i], &j->heap[(i - 1) / 2])) {
        struct hent t = j->heap[i];
        j->heap[i] = j->heap[(i - 1) / 2];
        j->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
    k->refs++;
    return 0;
}

static struct hent heap_pop(struct join *j)
{
    struct hent top = j->heap[0];
    size_t i = 0;
    j->heap[0] = j->heap[--j->nheap];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < j->nheap && hless(&j->heap[l], &j->heap[m]))
            m = l;
        if (r < j->nheap && hless(&j->heap[r], &j->heap[m]))
            m = r;
        if (m == i)
            break;
        struct hent t = j->heap[i];
        j->heap[i] = j->heap[m];
        j->heap[m] = t;
        i = m;
    }
    return top;
}

/* ---- output ------------------------------------------------------------------------- */

static int write_unjoined(struct join *j, int side, const char *line, size_t len, int late,
                          struct tlm_error *err)
{
    struct tlm_buf *b;
    int rc;
    if (side == LEFT)
        j->unjoined_left++;
    else
        j->unjoined_right++;
    if (!j->o.unjoined_path)
        return 0;
    if (!j->unjoined &&
        (rc = side_open(j->o.unjoined_path, j->restored, &j->unjoined_mark, &j->unjoined, err)))
        return rc;
    b = &j->unjoined->buf;
    if (tlm_buf_printf(b, "{\"side\":\"%s\",%s\"event\":", side == LEFT ? "left" : "right",
                       late ? "\"late\":true," : "") ||
        tlm_buf_append(b, line, len) || tlm_buf_puts(b, "}\n"))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return tlm_writer_end_line(j->unjoined, err);
}

/* Writes the pair: the left event with the right event's fragment before its '}'. */
static int write_pair(struct join *j, const char *l, size_t llen, const struct rec *r,
                      struct tlm_error *err)
{
    struct tlm_buf *b = &stage_out(j->st)->buf;
    size_t end = llen, k;
    while (end && l[end - 1] != '}')
        end--;
    k = end - 1;
    while (k && strchr(" \t\r\n", l[k - 1]))
        k--;
    if (tlm_buf_reserve(b, end + r->frag_len + 3))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    memcpy(b->data + b->len, l, end - 1);
    b->len += end - 1;
    if (l[k - 1] != '{' && r->frag_len)
        b->data[b->len++] = ',';
    memcpy(b->data + b->len, r->frag, r->frag_len);
    b->len += r->frag_len;
    memcpy(b->data + b->len, "}\n", 3);
    b->len += 2;
    j->pairs++;
    return stage_rows(j->st, 1, err);
}

/* The fragment a right event adds to its pairs. */
static int right_frag(struct join *j, struct rec *r, struct tlm_error *err)
{
    struct tlm_buf f = TLM_BUF_INIT;
    int rc = 0;
    if (j->o.prefix) {
        json_error_t je;
        json_t *o = json_loadb(r->line, r->len, 0, &je);
        struct tlm_frag_opts fo = { j->o.prefix, NULL };
        if (!o)
            return tlm_error_set(err, TLM_EPARSE, "%s", je.text);
        rc = tlm_frag_from_json(&f, &fo, o);
        json_decref(o);
    } else {
        size_t n = r->len;
        while (n && strchr(" \t\r\n", r->line[n - 1]))
            n--;
        rc = tlm_json_put_string(&f, j->into, strlen(j->into)) || tlm_buf_putc(&f, ':') ||
             tlm_buf_append(&f, r->line, n);
    }
    if (rc) {
        tlm_buf_free(&f);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    r->frag = f.data ? f.data : strdup("");
    r->frag_len = f.len;
    return r->frag ? 0 : tlm_error_set(err, TLM_ENOMEM, "out of memory");
}

/* ---- buffering and matching ----------------------------------------------------------- */

/* First index in l's live part with ts >= t. */
static size_t lower_bound(const struct list *l, tlm_time_t t)
{
    size_t lo = l->head, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].ts < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Inserts r (taken) into e's list of side, in time order; evicts the oldest past
 * --join-max. */
static int insert(struct join *j, struct jkey *e, int side, struct rec *r, struct tlm_error *err)
{
    struct list *l = &e->side[side];
    size_t i;
    int rc;
    if (l->n - l->head >= (size_t)j->o.max_per_key) {
        struct rec *old = &l->v[l->head++];
        j->evicted++;
        j->buffered[side]--;
        if (!old->joined && (rc = write_unjoined(j, side, old->line, old->len, 0, err)))
            return rc;
        rec_free(old);
    }
    if (l->head > 0 && l->head * 2 >= l->n) {
        memmove(l->v, l->v + l->head, (l->n - l->head) * sizeof(*l->v));
        l->n -= l->head;
        l->head = 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 2;
        struct rec *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    for (i = l->n; i > l->head && l->v[i - 1].ts > r->ts; i--)
        ;
    memmove(l->v + i + 1, l->v + i, (l->n - i) * sizeof(*l->v));
    l->v[i] = *r;
    l->n++;
    j->buffered[side]++;
    if (heap_push(j, bound_of(j, side, r->ts), e, side))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return 0;
}

/* A new event of side at ts with key k: write its pairs, then buffer it. */
static int arrive(struct join *j, int side, const char *k, size_t kn, tlm_time_t ts,
                  const char *line, size_t len, struct tlm_error *err)
{
    struct rec r;
    struct jkey *e;
    int rc;
    memset(&r, 0, sizeof(r));
    r.ts = ts;
    if (!(r.line = malloc(len + 1)))
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    memcpy(r.line, line, len);
    r.line[len] = '\0';
    r.len = len;
    if (side == RIGHT && (rc = right_frag(j, &r, err))) {
        rec_free(&r);
        return rc;
    }
    if (!(e = key_get(j, k, kn, 1))) {
        rec_free(&r);
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    {
        struct list *o = &e->side[!side];
        /* partners: right in [ts + lower, ts + upper], or left in [ts - upper, ts - lower] */
        tlm_time_t lo = sat_add(ts, side == LEFT ? j->o.lower : -j->o.upper);
        tlm_time_t hi = sat_add(ts, side == LEFT ? j->o.upper : -j->o.lower);
        for (size_t i = lower_bound(o, lo); i < o->n && o->v[i].ts <= hi; i++) {
            struct rec *p = &o->v[i];
            rc = side == LEFT ? write_pair(j, r.line, r.len, p, err)
                              : write_pair(j, p->line, p->len, &r, err);
            if (rc) {
                rec_free(&r);
                return rc;
            }
            p->joined = 1;
            r.joined = 1;
        }
    }
    if ((rc = insert(j, e, side, &r, err))) {
        rec_free(&r);
        return rc;
    }
    return 0;
}

/* Events whose bound the watermark reached leave (to --unjoined if never joined). */
static int expire(struct join *j, struct tlm_error *err)
{
    tlm_time_t wm = wm_now(j);
    int rc;
    while (j->nheap && j->heap[0].at <= wm) {
        struct hent h = heap_pop(j);
        struct list *l = &h.k->side[h.side];
        h.k->refs--;
        while (l->head < l->n && bound_of(j, h.side, l->v[l->head].ts) <= wm) {
            struct rec *r = &l->v[l->head++];
            j->buffered[h.side]--;
            if (!r->joined && (rc = write_unjoined(j, h.side, r->line, r->len, 0, err))) {
                rec_free(r);
                return rc;
            }
            rec_free(r);
        }
        if (l->head == l->n)
            l->head = l->n = 0;
        key_maybe_free(j, h.k);
    }
    return 0;
}

/* ---- the right stream --------------------------------------------------------------- */

static int right_time(struct join *j, const struct tlm_jval *v, tlm_time_t *ts)
{
    long long i;
    double d;
    switch (v->type) {
    case TLM_JINT:
        return tlm_jval_int64(v, &i) || tlm_time_from_int(i, j->o.common->time_unit, ts, NULL);
    case TLM_JREAL:
        return tlm_jval_double(v, &d) || tlm_time_from_double(d, j->o.common->time_unit, ts, NULL);
    case TLM_JSTRING: {
        int rc;
        tlm_buf_reset(&j->tmp);
        rc = tlm_jval_string(v, &j->tmp) ||
             tlm_time_parse_rfc3339(j->tmp.data ? j->tmp.data : "", j->tmp.len, ts, NULL);
        return rc;
    }
    default:
        return -1;
    }
}

static int right_bad(struct join *j, const char *why, long column, const char *line, size_t len,
                     struct tlm_error *err)
{
    j->right_bad++;
    return stage_reject_other(j->st, tlm_reader_source(j->right), tlm_reader_line(j->right), column,
                              why, line, len, err);
}

/* Before the right reader waits: what is written so far goes out. */
static int right_blocks(void *arg)
{
    struct join *j = arg;
    int rc = j->unjoined ? tlm_writer_flush(j->unjoined, NULL) : 0;
    return rc ? rc : j->st ? tlm_writer_flush(stage_out(j->st), NULL) : 0;
}

/* Reads right events until one is later than t (or the right side ends). */
static int pull_right(struct join *j, tlm_time_t t, struct tlm_error *err)
{
    const char *line, *k;
    size_t len, kn;
    struct tlm_jval v[2];
    struct tlm_error e;
    long long ms;
    int rc;
    while (!j->right_eof && (j->right_last == TLM_TIME_MIN || j->right_last <= t)) {
        rc = tlm_reader_next(j->right, &line, &len, -1, err);
        if (rc == 0) {
            j->right_eof = 1;
            break;
        }
        if (rc < 0)
            return rc;
        if (len == 0 || strspn(line, " \t\r") == len)
            continue;
        if (tlm_json_is_watermark(line, len, &ms)) {
            tlm_time_t w;
            if (tlm_time_from_int(ms, TLM_UNIT_MS, &w, NULL) == 0)
                tlm_wm_raise(&j->rwm, w);
            continue;
        }
        tlm_error_clear(&e);
        if (tlm_jscan_run(j->rscan, line, len, v, &e)) {
            if ((rc = right_bad(j, e.text, e.column, line, len, err)))
                return rc;
            continue;
        }
        tlm_time_t ts;
        if (right_time(j, &v[0], &ts)) {
            if ((rc = right_bad(j, "no usable time field", 0, line, len, err)))
                return rc;
            continue;
        }
        j->nright++;
        j->right_last = ts;
        if (key_text(j, &v[1], &k, &kn)) {
            /* no key: it can never join */
            if ((rc = write_unjoined(j, RIGHT, line, len, 0, err)))
                return rc;
        } else if (ts <= wm_now(j)) {
            j->late_right++;
            if ((rc = write_unjoined(j, RIGHT, line, len, 1, err)))
                return rc;
        } else if ((rc = arrive(j, RIGHT, k, kn, ts, line, len, err))) {
            return rc;
        }
        tlm_wm_observe(&j->rwm, ts);
    }
    return expire(j, err);
}

/* ---- the stage's callbacks ---------------------------------------------------------- */

int join_event(struct join *j, struct stage *st, const struct stage_event *ev,
               struct tlm_error *err)
{
    const char *k;
    size_t kn;
    int rc;
    j->st = st;
    if ((rc = pull_right(j, ev->ts, err)))
        return rc;
    j->nleft++;
    if (key_text(j, &ev->vals[0], &k, &kn))
        return write_unjoined(j, LEFT, ev->line, ev->len, 0, err);
    if (ev->ts <= wm_now(j)) {
        j->late_left++;
        return write_unjoined(j, LEFT, ev->line, ev->len, 1, err);
    }
    return arrive(j, LEFT, k, kn, ev->ts, ev->line, ev->len, err);
}

int join_watermark(struct join *j, struct stage *st, tlm_time_t wm, struct tlm_error *err)
{
    j->st = st;
    j->lwm = wm;
    return expire(j, err);
}

int join_end(struct join *j, struct stage *st, struct tlm_error *err)
{
    int rc;
    j->st = st;
    /* the left side ended: the right one is read to its end, then time ends */
    if ((rc = pull_right(j, TLM_TIME_MAX, err)))
        return rc;
    j->lwm = TLM_TIME_MAX;
    j->right_eof = 1;
    return expire(j, err);
}

int join_flush(struct join *j)
{
    return j->unjoined ? tlm_writer_flush(j->unjoined, NULL) : 0;
}

tlm_time_t join_hold(const struct join *j, tlm_time_t wm)
{
    tlm_time_t w = j->right_eof || wm < j->rwm.wm ? wm : j->rwm.wm;
    int64_t up = j->o.upper > 0 ? j->o.upper : 0;
    if (w == TLM_TIME_MIN || w < TLM_TIME_MIN + up)
        return TLM_TIME_MIN;
    return w - up;
}

/* ---- snapshots ---------------------------------------------------------------------- */

json_t *side_mark_json(struct tlm_writer *w)
{
    struct stat sb;
    if (!w || !w->is_file || fstat(w->fd, &sb) != 0)
        return NULL;
    return json_pack("{sIsIsI}", "size", (json_int_t)sb.st_size, "dev", (json_int_t)sb.st_dev,
                     "ino", (json_int_t)sb.st_ino);
}

void side_mark_read(json_t *rec, struct side_mark *m)
{
    json_int_t size, dev, ino;
    m->have = rec && !json_unpack(rec, "{sIsIsI}", "size", &size, "dev", &dev, "ino", &ino);
    if (m->have) {
        m->size = size;
        m->dev = dev;
        m->ino = ino;
    }
}

int side_open(const char *path, int append, const struct side_mark *m, struct tlm_writer **w,
              struct tlm_error *err)
{
    struct stat sb;
    int rc = tlm_writer_open(path, append, w, err);
    if (rc || !append || !m->have || !(*w)->is_file || fstat((*w)->fd, &sb) != 0 ||
        (long long)sb.st_dev != m->dev || (long long)sb.st_ino != m->ino || sb.st_size <= m->size)
        return rc;
    if (ftruncate((*w)->fd, (off_t)m->size) != 0) {
        tlm_error_at(err, path, 0, 0, -1);
        return tlm_error_set(err, TLM_EIO, "cannot cut the file back to the snapshot: %s",
                             strerror(errno));
    }
    return 0;
}

int join_save(struct join *j, struct tlm_snap_writer *w, struct tlm_error *err)
{
    struct tlm_reader_pos pos;
    json_t *rec;
    int rc;
    if (j->o.unjoined_path) {
        json_t *m;
        if (!j->unjoined &&
            (rc = side_open(j->o.unjoined_path, j->restored, &j->unjoined_mark, &j->unjoined, err)))
            return rc;
        if ((rc = tlm_writer_sync(j->unjoined, err)))
            return rc;
        if ((m = side_mark_json(j->unjoined))) {
            rec = json_pack("{so}", "unjoined", m);
            rc = rec ? tlm_snap_put(w, rec, err) : tlm_error_set(err, TLM_ENOMEM, "out of memory");
            json_decref(rec);
            if (rc)
                return rc;
        }
    }
    tlm_reader_pos(j->right, &pos);
    rec = json_pack("{s{sisssIsIsIsIsIsIsIsb}}", "right", "index", pos.input, "name", pos.name,
                    "offset", (json_int_t)pos.offset, "line", (json_int_t)pos.line, "prefix_len",
                    (json_int_t)pos.prefix_len, "prefix_hash", (json_int_t)pos.prefix_hash,
                    "max_ns", (json_int_t)j->rwm.max_ts, "watermark_ns", (json_int_t)j->rwm.wm,
                    "last_ns", (json_int_t)j->right_last, "eof", j->right_eof);
    if (!rec)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    rc = tlm_snap_put(w, rec, err);
    json_decref(rec);
    /* buffered events, per key and side in time order */
    for (size_t b = 0; !rc && b < j->nbuckets; b++)
        for (struct jkey *e = j->buckets[b]; !rc && e; e = e->next)
            for (int s = 0; !rc && s < 2; s++)
                for (size_t i = e->side[s].head; !rc && i < e->side[s].n; i++) {
                    const struct rec *r = &e->side[s].v[i];
                    json_t *x = json_pack("{sssIsbss#}", "side", s == LEFT ? "left" : "right",
                                          "ts", (json_int_t)r->ts, "joined", r->joined, "line",
                                          r->line, (int)r->len);
                    if (!x)
                        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
                    rc = tlm_snap_put(w, x, err);
                    json_decref(x);
                }
    return rc;
}

int join_load(struct join *j, json_t *rec, struct tlm_error *err)
{
    json_t *r = json_object_get(rec, "right");
    j->restored = 1;
    if (json_object_get(rec, "unjoined")) {
        side_mark_read(json_object_get(rec, "unjoined"), &j->unjoined_mark);
        return 0;
    }
    if (r) {
        struct tlm_reader_pos pos;
        const char *name;
        json_int_t maxts, wm, last;
        int eof;
        memset(&pos, 0, sizeof(pos));
        if (json_unpack(r, "{sisssIsIsIsIsIsIsIsb}", "index", &pos.input, "name", &name, "offset",
                        &pos.offset, "line", &pos.line, "prefix_len", &pos.prefix_len,
                        "prefix_hash", &pos.prefix_hash, "max_ns", &maxts, "watermark_ns", &wm,
                        "last_ns", &last, "eof", &eof))
            return tlm_error_set(err, TLM_ESTATE, "bad join position record");
        snprintf(pos.name, sizeof(pos.name), "%s", name);
        tlm_reader_resume(j->right, &pos);
        j->rwm.max_ts = maxts;
        j->rwm.wm = wm;
        j->right_last = last;
        /* the right file may have grown (or been replaced) since the snapshot: read on
         * from the saved position; a file that has not grown ends again at once */
        (void)eof;
        j->right_eof = 0;
        return 0;
    }
    const char *side, *line;
    json_int_t ts;
    int joined;
    size_t len;
    if (json_unpack(rec, "{sssIsbss%}", "side", &side, "ts", &ts, "joined", &joined, "line", &line,
                    &len))
        return tlm_error_set(err, TLM_ESTATE, "unexpected state record");
    {
        struct tlm_jval v[2];
        const char *k;
        size_t kn;
        struct rec x;
        struct jkey *e;
        int s = strcmp(side, "left") == 0 ? LEFT : RIGHT, rc;
        if (tlm_jscan_run(j->rscan, line, len, v, NULL) || key_text(j, &v[1], &k, &kn))
            return tlm_error_set(err, TLM_ESTATE, "a buffered event without its key");
        memset(&x, 0, sizeof(x));
        x.ts = ts;
        x.joined = joined;
        x.len = len;
        if (!(x.line = malloc(len + 1)) || !(e = key_get(j, k, kn, 1))) {
            free(x.line);
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        memcpy(x.line, line, len);
        x.line[len] = '\0';
        if ((s == RIGHT && (rc = right_frag(j, &x, err))) || (rc = insert(j, e, s, &x, err))) {
            rec_free(&x);
            return rc;
        }
    }
    return 0;
}

void join_stats(struct join *j, json_t *o)
{
    json_object_set_new(o, "left", json_integer(j->nleft));
    json_object_set_new(o, "right", json_integer(j->nright));
    json_object_set_new(o, "pairs", json_integer(j->pairs));
    json_object_set_new(o, "unjoined_left", json_integer(j->unjoined_left));
    json_object_set_new(o, "unjoined_right", json_integer(j->unjoined_right));
    json_object_set_new(o, "late_left", json_integer(j->late_left));
    json_object_set_new(o, "late_right", json_integer(j->late_right));
    json_object_set_new(o, "evicted", json_integer(j->evicted));
    json_object_set_new(o, "right_rejected", json_integer(j->right_bad));
    json_object_set_new(o, "buffered_left", json_integer(j->buffered[LEFT]));
    json_object_set_new(o, "buffered_right", json_integer(j->buffered[RIGHT]));
    json_object_set_new(o, "keys", json_integer((json_int_t)j->nkeys));
}

/* ---- life cycle --------------------------------------------------------------------- */

struct join *join_create(const struct join_opts *o, struct tlm_error *err)
{
    struct join *j = calloc(1, sizeof(*j));
    const char *f;
    char *copy, *save = NULL;
    if (!j) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    j->o = *o;
    j->into = o->into ? o->into : "right";
    j->right_last = TLM_TIME_MIN;
    j->lwm = TLM_TIME_MIN;
    tlm_wm_init(&j->rwm, o->common->max_out_of_order);
    f = o->common->time_field;
    if (strncmp(f, "$.", 2) == 0)
        f += 2;
    copy = strdup(f);
    j->time_path.seg = calloc(strlen(f) + 1, sizeof(char *));
    if (!copy || !j->time_path.seg) {
        free(copy);
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        join_destroy(j, NULL);
        return NULL;
    }
    for (char *t = strtok_r(copy, ".", &save); t; t = strtok_r(NULL, ".", &save))
        j->time_path.seg[j->time_path.nseg++] = t;
    if (!j->time_path.nseg)
        free(copy);
    j->rpaths[0] = j->time_path;
    j->rpaths[1] = *o->right_key_path;
    j->rscan = j->time_path.nseg ? tlm_jscan_create(j->rpaths, 2) : NULL;
    j->right = tlm_reader_create(&j->o.path, 1);
    if (j->right) {
        tlm_reader_on_block(j->right, right_blocks, j);
        tlm_reader_wake_fd(j->right, stage_wake_fd());
    }
    if (!j->rscan || !j->right) {
        tlm_error_set(err, TLM_ENOMEM, j->time_path.nseg ? "out of memory" : "--time-field: empty");
        join_destroy(j, NULL);
        return NULL;
    }
    return j;
}

int join_destroy(struct join *j, struct tlm_error *err)
{
    int rc = 0;
    if (!j)
        return 0;
    /* the side output exists even when nothing went there */
    if (!j->unjoined && j->o.unjoined_path && err)
        rc = tlm_writer_open(j->o.unjoined_path, j->o.common->state != NULL, &j->unjoined, err);
    if (j->unjoined) {
        int rc2 = tlm_writer_close(j->unjoined, rc ? NULL : err);
        rc = rc ? rc : rc2;
    }
    for (size_t b = 0; b < j->nbuckets; b++)
        for (struct jkey *e = j->buckets[b], *nx; e; e = nx) {
            nx = e->next;
            for (int s = 0; s < 2; s++) {
                for (size_t i = e->side[s].head; i < e->side[s].n; i++)
                    rec_free(&e->side[s].v[i]);
                free(e->side[s].v);
            }
            free(e->key);
            free(e);
        }
    free(j->buckets);
    free(j->heap);
    tlm_reader_destroy(j->right);
    tlm_jscan_destroy(j->rscan);
    free(j->time_path.seg ? j->time_path.seg[0] : NULL);
    free(j->time_path.seg);
    tlm_buf_free(&j->keybuf);
    tlm_buf_free(&j->tmp);
    free(j);
    return rc;
}
