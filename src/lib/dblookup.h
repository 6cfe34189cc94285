/*
 * dblookup.h - look rows up in an SQLite database for `telem enrich --sqlite`, through
 * one prepared statement and an LRU cache with a size bound and a time to live.
 *
 * The database is opened read-only; the query is prepared once (so a missing table or a
 * bad query is an error at open time) and must take as many parameters as the caller
 * has key values. The first row a lookup returns becomes a fragment (table.h) whose
 * members are the result columns, by their names: INTEGER and REAL as JSON numbers,
 * TEXT as strings, NULL as null, a BLOB as a string when it is UTF-8 (else null). A key
 * with no row is cached too ("no row" is an answer), so that a flood of unknown ids
 * does not query the database for each event.
 */
#ifndef TLM_DBLOOKUP_H
#define TLM_DBLOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "jscan.h"
#include "table.h"

struct tlm_dblookup;

struct tlm_dblookup_stats {
    long long hits, misses;   /* cache hits and misses (a miss runs the query) */
    long long expired;        /* misses because the entry was older than the TTL */
    long long evictions;      /* entries dropped for the size bound */
    long long no_row;         /* queries that returned no row */
    long long entries;        /* entries now cached */
};

/* Opens db read-only and prepares sql for nparams parameters. cache_size entries at
 * most are kept (0: no cache), each for ttl_ns (0: until evicted). frag is borrowed
 * until tlm_dblookup_destroy. Returns the lookup (caller owns) or NULL with err filled
 * with SQLite's own words ("no such table: devices", "unable to open database file",
 * "the query takes 2 parameters, 1 key given"). */
struct tlm_dblookup *tlm_dblookup_open(const char *db, const char *sql, size_t nparams,
                                       const struct tlm_frag_opts *frag, size_t cache_size,
                                       int64_t ttl_ns, struct tlm_error *err);

/* Releases d; NULL is fine. */
void tlm_dblookup_destroy(struct tlm_dblookup *d);

/* The result columns' names (*n of them), borrowed until tlm_dblookup_destroy. */
const char *const *tlm_dblookup_columns(const struct tlm_dblookup *d, size_t *n);

/* Looks the key values keys[0..n) up (strings, numbers and booleans; n as at open), at
 * monotonic time now_ns. Returns 1 with the fragment in *frag (borrowed until the next
 * call; *len bytes), 0 when the query returns no row, TLM_ETYPE for a key value of
 * another type (null, object, array, absent), or another negative code with err filled
 * (the database failed: locked past the busy timeout, corrupt). */
int tlm_dblookup_find(struct tlm_dblookup *d, const struct tlm_jval *keys, size_t n,
                      int64_t now_ns, const char **frag, size_t *len, struct tlm_error *err);

/* Empties the cache (after SIGHUP: the next lookups read the database again). */
void tlm_dblookup_clear(struct tlm_dblookup *d);

void tlm_dblookup_stats(const struct tlm_dblookup *d, struct tlm_dblookup_stats *s);

#endif
