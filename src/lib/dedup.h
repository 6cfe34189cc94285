/*
 * dedup.h - drop events whose id was already seen within a time window, in bounded memory
 * (`telem ingest --dedup PATH --dedup-window DUR`).
 *
 * An id is remembered as a 128-bit hash with the time it was recorded. A check at time t
 * finds id a duplicate when the id is held with a time te such that |t - te| < window. The
 * window counts from the recorded copy and is not extended by the duplicates it drops: a
 * copy that arrives every window/2 passes once per window. Ids are forgotten when the
 * newest time seen passes te + window (expiry), or early when max_ids are held (eviction,
 * oldest first, counted: a later copy of an evicted id is not caught).
 *
 * Times may go backwards (out-of-order events): a late event is compared with |t - te|
 * like any other, so it is caught when its original is still held, including an original
 * recorded *after* it in time; a late new id is recorded at its own t and kept at least
 * until the newest time passes t + window. Expiry follows the newest time seen, so a
 * copy that comes later than (newest - window) may find its original already forgotten,
 * and one event stamped far in the future makes every id expire at once (give the
 * deduplicator arrival times, or event times already filtered for sanity).
 *
 * A false positive needs two distinct ids whose two independent 64-bit hashes both
 * collide: about n / 2^128 per check with n ids held (3e-32 at 10 M ids). The hashes are
 * seeded with fixed constants, so they are the same in every run (snapshots stay valid)
 * but are not secret: ids chosen by an attacker to collide could slow the table down.
 */
#ifndef TLM_DEDUP_H
#define TLM_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "time.h"

#define TLM_DEDUP_DEFAULT_MAX_IDS ((size_t)10000000)

struct tlm_dedup_opts {
    int64_t window;  /* ns, > 0 */
    size_t max_ids;  /* ids held at most; 0 = TLM_DEDUP_DEFAULT_MAX_IDS; at most 2^32 - 2.
                        Memory: 36-52 bytes per id held typically, under 100 at worst
                        (just after growing); 375 MB at 10 M ids (tlm_dedup_bytes) */
};

struct tlm_dedup;

/* Creates an empty deduplicator (memory grows with the ids held, up to max_ids). Returns
 * it (caller owns it; release with tlm_dedup_destroy), or NULL when window <= 0 or memory
 * is short. */
struct tlm_dedup *tlm_dedup_create(const struct tlm_dedup_opts *o);

/* Frees d. NULL is fine. */
void tlm_dedup_destroy(struct tlm_dedup *d);

/* Is the id (n bytes at id, borrowed for the call) a duplicate of one held with a time
 * within window of t? Returns 1 (duplicate: drop the event; the held record is not
 * refreshed), or 0 (new: the id is recorded at t, replacing an older record of it that
 * was out of the window). Never fails: when memory cannot grow, the oldest id is evicted
 * as if max_ids were reached. t = TLM_TIME_MIN is taken as TLM_TIME_MIN + 1. */
int tlm_dedup_check(struct tlm_dedup *d, const void *id, size_t n, tlm_time_t t);

/* The two 64-bit hashes tlm_dedup_check keys an id by (what foreach/restore carry). */
void tlm_dedup_hash(const void *id, size_t n, uint64_t *h1, uint64_t *h2);

/* Ids forgotten early because max_ids was reached (or memory could not grow). */
long long tlm_dedup_evicted(const struct tlm_dedup *d);

/* Ids held now (expired ones are dropped lazily, as later checks advance time). */
size_t tlm_dedup_size(const struct tlm_dedup *d);

/* Bytes of memory held by d, so --stats can report bytes per id. */
size_t tlm_dedup_bytes(const struct tlm_dedup *d);

/* Snapshot support. Calls fn(arg, h1, h2, t) for every id held, oldest record first; stops
 * at the first non-zero return of fn and returns it, else 0. d must not change meanwhile. */
int tlm_dedup_foreach(const struct tlm_dedup *d,
                      int (*fn)(void *arg, uint64_t h1, uint64_t h2, tlm_time_t t), void *arg);

/* Re-adds an id by its hashes as recorded at t (replacing a record of the same hashes);
 * restoring what foreach gave, in that order, rebuilds the same set. Restoring more than
 * max_ids evicts the oldest (counted). Returns 0. */
int tlm_dedup_restore(struct tlm_dedup *d, uint64_t h1, uint64_t h2, tlm_time_t t);

#endif
