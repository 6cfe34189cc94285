/*
 * dblookup.c - SQLite lookups behind an LRU cache (see dblookup.h).
 *
 * The cache is a hash table (open addressing over entry indexes, tombstone-free: an
 * evicted entry is reused in place, its slot re-pointed) plus a doubly linked LRU list
 * threaded through a fixed array of cache_size entries. An entry holds the key (each
 * value's type byte and bytes, so 17 and "17" are different keys, as SQLite may bind
 * them differently), the fragment, and the time it was filled. A hit moves the entry to
 * the front; when full, the tail is reused. The cache key also selects the slot, so a
 * lookup costs one hash and a short probe; a miss binds the values, steps the statement
 * once and resets it.
 */
#include "dblookup.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "jwrite.h"

struct entry {
    char *key;          /* type bytes and values, malloc'd */
    size_t key_len;
    char *frag;         /* the fragment, or NULL: no row */
    size_t frag_len;
    int64_t filled;     /* monotonic ns when filled */
    uint64_t hash;
    uint32_t prev, next; /* LRU list (index + 1; 0 = none) */
    uint32_t slot;      /* index of its slot in slots */
    int used;
};

struct tlm_dblookup {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    size_t nparams;
    const struct tlm_frag_opts *frag;
    char **cols;
    size_t ncols;
    struct entry *ents;
    size_t cap, nused;
    uint32_t *slots;    /* entry index + 1, 0 = empty; UINT32_MAX = deleted */
    size_t mask;
    uint32_t head, tail; /* most and least recently used (index + 1) */
    size_t ntomb;        /* deleted slots (rehashed away past a quarter of the slots) */
    int64_t ttl;
    struct tlm_buf key, out, str;
    struct tlm_dblookup_stats st;
};

static int db_error(struct tlm_dblookup *d, struct tlm_error *err, const char *what)
{
    return tlm_error_set(err, TLM_EIO, "%s%s", what, d->db ? sqlite3_errmsg(d->db) : "out of memory");
}

struct tlm_dblookup *tlm_dblookup_open(const char *db, const char *sql, size_t nparams,
                                       const struct tlm_frag_opts *frag, size_t cache_size,
                                       int64_t ttl_ns, struct tlm_error *err)
{
    struct tlm_dblookup *d = calloc(1, sizeof(*d));
    int n;
    if (!d) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    d->nparams = nparams;
    d->frag = frag;
    d->ttl = ttl_ns;
    if (sqlite3_open_v2(db, &d->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        db_error(d, err, "");
        goto fail;
    }
    sqlite3_busy_timeout(d->db, 2000);
    if (sqlite3_prepare_v2(d->db, sql, -1, &d->stmt, NULL) != SQLITE_OK) {
        db_error(d, err, "--query: ");
        goto fail;
    }
    if (!d->stmt) {
        tlm_error_set(err, TLM_EINVAL, "--query: no statement");
        goto fail;
    }
    if (!sqlite3_stmt_readonly(d->stmt)) {
        tlm_error_set(err, TLM_EINVAL, "--query: only a read-only query (select) is allowed");
        goto fail;
    }
    if ((size_t)sqlite3_bind_parameter_count(d->stmt) != nparams) {
        tlm_error_set(err, TLM_EINVAL, "--query takes %d parameter%s, --on gives %zu key%s",
                      sqlite3_bind_parameter_count(d->stmt),
                      sqlite3_bind_parameter_count(d->stmt) == 1 ? "" : "s", nparams,
                      nparams == 1 ? "" : "s");
        goto fail;
    }
    n = sqlite3_column_count(d->stmt);
    if (n <= 0) {
        tlm_error_set(err, TLM_EINVAL, "--query returns no columns");
        goto fail;
    }
    d->ncols = (size_t)n;
    if (!(d->cols = calloc(d->ncols, sizeof(char *))))
        goto nomem;
    for (int i = 0; i < n; i++)
        if (!(d->cols[i] = strdup(sqlite3_column_name(d->stmt, i) ?: "?")))
            goto nomem;
    if (cache_size > 0) {
        size_t sc = 16;
        if (cache_size > 0x7fffffff)
            cache_size = 0x7fffffff;
        while (sc < cache_size * 2)
            sc <<= 1;
        d->cap = cache_size;
        d->ents = calloc(cache_size, sizeof(*d->ents));
        d->slots = calloc(sc, sizeof(uint32_t));
        d->mask = sc - 1;
        if (!d->ents || !d->slots)
            goto nomem;
    }
    return d;
nomem:
    tlm_error_set(err, TLM_ENOMEM, "out of memory");
fail:
    tlm_dblookup_destroy(d);
    return NULL;
}

void tlm_dblookup_clear(struct tlm_dblookup *d)
{
    for (size_t i = 0; i < d->nused; i++) {
        free(d->ents[i].key);
        free(d->ents[i].frag);
    }
    if (d->ents)
        memset(d->ents, 0, d->cap * sizeof(*d->ents));
    if (d->slots)
        memset(d->slots, 0, (d->mask + 1) * sizeof(uint32_t));
    d->nused = 0;
    d->ntomb = 0;
    d->head = d->tail = 0;
    d->st.entries = 0;
}

void tlm_dblookup_destroy(struct tlm_dblookup *d)
{
    if (!d)
        return;
    tlm_dblookup_clear(d);
    sqlite3_finalize(d->stmt);
    sqlite3_close(d->db);
    for (size_t i = 0; i < d->ncols; i++)
        free(d->cols ? d->cols[i] : NULL);
    free(d->cols);
    free(d->ents);
    free(d->slots);
    tlm_buf_free(&d->key);
    tlm_buf_free(&d->out);
    tlm_buf_free(&d->str);
    free(d);
}

const char *const *tlm_dblookup_columns(const struct tlm_dblookup *d, size_t *n)
{
    *n = d->ncols;
    return (const char *const *)d->cols;
}

void tlm_dblookup_stats(const struct tlm_dblookup *d, struct tlm_dblookup_stats *s)
{
    *s = d->st;
}

/* ---- the LRU list ------------------------------------------------------------------ */

static void lru_unlink(struct tlm_dblookup *d, uint32_t i)
{
    struct entry *e = &d->ents[i - 1];
    if (e->prev)
        d->ents[e->prev - 1].next = e->next;
    else
        d->head = e->next;
    if (e->next)
        d->ents[e->next - 1].prev = e->prev;
    else
        d->tail = e->prev;
    e->prev = e->next = 0;
}

static void lru_front(struct tlm_dblookup *d, uint32_t i)
{
    struct entry *e = &d->ents[i - 1];
    e->prev = 0;
    e->next = d->head;
    if (d->head)
        d->ents[d->head - 1].prev = i;
    d->head = i;
    if (!d->tail)
        d->tail = i;
}

/* The slot of key (found: *found = 1), or the first free one on its probe sequence. */
static size_t probe(struct tlm_dblookup *d, const char *key, size_t n, uint64_t h, int *found)
{
    size_t free_at = SIZE_MAX;
    for (size_t i = (size_t)h & d->mask;; i = (i + 1) & d->mask) {
        uint32_t s = d->slots[i];
        if (s == 0) {
            *found = 0;
            return free_at != SIZE_MAX ? free_at : i;
        }
        if (s == UINT32_MAX) {
            if (free_at == SIZE_MAX)
                free_at = i;
            continue;
        }
        const struct entry *e = &d->ents[s - 1];
        if (e->hash == h && e->key_len == n && memcmp(e->key, key, n) == 0) {
            *found = 1;
            return i;
        }
    }
}

/* Rebuilds the slots from the live entries (dropping the deleted marks). */
static void rehash(struct tlm_dblookup *d)
{
    memset(d->slots, 0, (d->mask + 1) * sizeof(uint32_t));
    for (uint32_t i = d->head; i; i = d->ents[i - 1].next) {
        size_t j = (size_t)d->ents[i - 1].hash & d->mask;
        while (d->slots[j])
            j = (j + 1) & d->mask;
        d->slots[j] = i;
    }
    d->ntomb = 0;
}

/* ---- lookups ------------------------------------------------------------------------ */

/* Writes the cache key of the values and binds them. Returns 0 or TLM_ETYPE. */
static int key_of(struct tlm_dblookup *d, const struct tlm_jval *keys, size_t n)
{
    tlm_buf_reset(&d->key);
    for (size_t i = 0; i < n; i++) {
        const struct tlm_jval *v = &keys[i];
        char t;
        switch (v->type) {
        case TLM_JSTRING: t = 's'; break;
        case TLM_JINT: t = 'i'; break;
        case TLM_JREAL: t = 'r'; break;
        case TLM_JTRUE: t = 'T'; break;
        case TLM_JFALSE: t = 'F'; break;
        default: return TLM_ETYPE;
        }
        if (tlm_buf_putc(&d->key, t))
            return TLM_ENOMEM;
        if (t == 's' && (v->escaped ? tlm_jval_string(v, &d->key)
                                    : tlm_buf_append(&d->key, v->p + 1, v->n - 2)))
            return TLM_ENOMEM;
        if (t != 's' && tlm_buf_append(&d->key, v->p, v->n))
            return TLM_ENOMEM;
        if (tlm_buf_putc(&d->key, '\0'))
            return TLM_ENOMEM;
    }
    return 0;
}

static int bind_all(struct tlm_dblookup *d, const struct tlm_jval *keys, size_t n,
                    struct tlm_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct tlm_jval *v = &keys[i];
        int col = (int)i + 1, rc;
        long long ll;
        double dd;
        switch (v->type) {
        case TLM_JSTRING:
            tlm_buf_reset(&d->str);
            if (tlm_jval_string(v, &d->str))
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            rc = sqlite3_bind_text(d->stmt, col, d->str.data ? d->str.data : "", (int)d->str.len,
                                   SQLITE_TRANSIENT);
            break;
        case TLM_JINT:
            tlm_jval_int64(v, &ll);
            rc = sqlite3_bind_int64(d->stmt, col, ll);
            break;
        case TLM_JREAL:
            tlm_jval_double(v, &dd);
            rc = sqlite3_bind_double(d->stmt, col, dd);
            break;
        default:
            rc = sqlite3_bind_int(d->stmt, col, v->type == TLM_JTRUE);
        }
        if (rc != SQLITE_OK)
            return db_error(d, err, "sqlite: ");
    }
    return 0;
}

/* Runs the query: 1 with the fragment in d->out, 0 without a row, or an error. */
static int query(struct tlm_dblookup *d, const struct tlm_jval *keys, size_t n,
                 struct tlm_error *err)
{
    int rc, first;
    sqlite3_reset(d->stmt);
    if ((rc = bind_all(d, keys, n, err)))
        return rc;
    rc = sqlite3_step(d->stmt);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(d->stmt);
        d->st.no_row++;
        return 0;
    }
    if (rc != SQLITE_ROW) {
        rc = db_error(d, err, "sqlite: ");
        sqlite3_reset(d->stmt);
        return rc;
    }
    tlm_buf_reset(&d->out);
    rc = tlm_frag_begin(&d->out, d->frag, &first);
    for (size_t i = 0; !rc && i < d->ncols; i++) {
        int c = (int)i;
        if ((rc = tlm_frag_name(&d->out, d->frag, &first, d->cols[i], strlen(d->cols[i]))))
            break;
        switch (sqlite3_column_type(d->stmt, c)) {
        case SQLITE_INTEGER:
            rc = tlm_json_put_int(&d->out, sqlite3_column_int64(d->stmt, c));
            break;
        case SQLITE_FLOAT:
            rc = tlm_json_put_double(&d->out, sqlite3_column_double(d->stmt, c));
            break;
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
            const void *s = sqlite3_column_blob(d->stmt, c);
            int len = sqlite3_column_bytes(d->stmt, c);
            size_t mark = d->out.len;
            rc = tlm_json_put_string(&d->out, s ? s : "", (size_t)len);
            if (rc == TLM_EINVAL) {
                d->out.len = mark;
                rc = tlm_buf_puts(&d->out, "null");
            }
            break;
        }
        default:
            rc = tlm_buf_puts(&d->out, "null");
        }
    }
    if (!rc)
        rc = tlm_frag_end(&d->out, d->frag);
    sqlite3_reset(d->stmt);
    if (rc)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    return 1;
}

int tlm_dblookup_find(struct tlm_dblookup *d, const struct tlm_jval *keys, size_t n,
                      int64_t now_ns, const char **frag, size_t *len, struct tlm_error *err)
{
    int rc, found = 0;
    size_t slot = 0;
    uint64_t h;
    struct entry *e;
    uint32_t idx;
    if (n != d->nparams)
        return tlm_error_set(err, TLM_EINVAL, "wrong number of keys");
    if ((rc = key_of(d, keys, n)))
        return rc;
    if (!d->cap) {
        d->st.misses++;
        rc = query(d, keys, n, err);
        *frag = d->out.data;
        *len = d->out.len;
        return rc;
    }
    h = tlm_table_hash(d->key.data, d->key.len);
    slot = probe(d, d->key.data, d->key.len, h, &found);
    if (found) {
        idx = d->slots[slot];
        e = &d->ents[idx - 1];
        if (!d->ttl || now_ns - e->filled < d->ttl) {
            d->st.hits++;
            if (d->head != idx) {
                lru_unlink(d, idx);
                lru_front(d, idx);
            }
            *frag = e->frag;
            *len = e->frag_len;
            return e->frag ? 1 : 0;
        }
        d->st.expired++;
    }
    d->st.misses++;
    rc = query(d, keys, n, err);
    if (rc < 0)
        return rc;
    if (found) {
        /* refresh the expired entry in place */
        idx = d->slots[slot];
        e = &d->ents[idx - 1];
        free(e->frag);
        e->frag = NULL;
        lru_unlink(d, idx);
    } else {
        if (d->nused < d->cap) {
            idx = (uint32_t)++d->nused;
            d->st.entries++;
        } else {
            /* evict the least recently used entry */
            int f2;
            idx = d->tail;
            e = &d->ents[idx - 1];
            size_t old = probe(d, e->key, e->key_len, e->hash, &f2);
            d->slots[old] = UINT32_MAX;
            d->ntomb++;
            lru_unlink(d, idx);
            free(e->key);
            free(e->frag);
            e->frag = NULL;
            d->st.evictions++;
            if (d->ntomb > (d->mask + 1) / 4)
                rehash(d);
            slot = probe(d, d->key.data, d->key.len, h, &f2);
        }
        if (d->slots[slot] == UINT32_MAX)
            d->ntomb--;
        e = &d->ents[idx - 1];
        if (!(e->key = malloc(d->key.len ? d->key.len : 1)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        memcpy(e->key, d->key.data, d->key.len);
        e->key_len = d->key.len;
        e->hash = h;
        d->slots[slot] = idx;
    }
    e->filled = now_ns;
    e->frag_len = 0;
    if (rc == 1) {
        if (!(e->frag = malloc(d->out.len ? d->out.len : 1)))
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        memcpy(e->frag, d->out.data, d->out.len);
        e->frag_len = d->out.len;
    }
    lru_front(d, idx);
    *frag = e->frag;
    *len = e->frag_len;
    return rc;
}
