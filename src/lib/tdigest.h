/*
 * tdigest.h - a merging t-digest: streaming quantiles in small, bounded memory
 * (`telem window --agg p50,p90,p99,p999,quantile(x,q)`).
 *
 * Quantile definition (used everywhere in telem). The q-quantile of n samples sorted
 * ascending as x[0..n-1] is the value at the fractional rank h = q * (n - 1), linearly
 * interpolated between x[floor(h)] and x[ceil(h)]:
 *
 *     Q(q) = x[j] + (h - j) * (x[j + 1] - x[j]),   j = floor(h)
 *
 * (Hyndman and Fan's type 7, the default of numpy, R and Excel's PERCENTILE.INC). So Q(0)
 * is the minimum, Q(1) the maximum, and the median of 1, 2, 3, 4 is 2.5.
 *
 * Exactness. While the digest holds only raw samples it answers with exactly that
 * definition: this is guaranteed while count <= compression (samples are then kept raw),
 * and in practice up to the raw buffer's size (the power of two at or above compression,
 * at least 16; merging two raw digests stays raw while the total fits). Past that the
 * samples are summarised by centroids (mean, weight); each centroid of weight w whose
 * samples start at rank a stands at the rank a + (w - 1) / 2 (the middle of its ranks),
 * the minimum stands at rank 0 and the maximum at rank n - 1, and Q(q) interpolates
 * linearly between the two of those points around h. A digest of singletons is thus read
 * exactly as type 7 reads the samples. The result is always within [min, max].
 *
 * Accuracy at the default compression 100 (tests/unit/test_tdigest.c measures it on 1 M
 * samples of uniform, normal, lognormal and Pareto data): rank error |F(Q(q)) - q| at most
 * 0.001 at q = 0.99 and 0.999 and 0.005 at q = 0.5, far smaller in practice. Memory: under
 * 4 KiB per digest at compression 100 (a few hundred bytes while few samples have come).
 *
 * A digest is not thread-safe; distinct digests may be used from distinct threads.
 */
#ifndef TLM_TDIGEST_H
#define TLM_TDIGEST_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

#define TLM_TDIGEST_DEFAULT_COMPRESSION 100.0
#define TLM_TDIGEST_MIN_COMPRESSION 2.0
#define TLM_TDIGEST_MAX_COMPRESSION 100000.0

struct tlm_tdigest;

/* Creates an empty digest. compression (delta) trades memory for accuracy: about
 * compression centroids at most, 100 is a good default; it must lie in
 * [TLM_TDIGEST_MIN_COMPRESSION, TLM_TDIGEST_MAX_COMPRESSION]. Starts tiny (a raw buffer of
 * four samples inside the struct) and grows as samples come. Returns the digest (caller
 * owns it; release with tlm_tdigest_destroy), or NULL if compression is out of range or
 * memory is short. */
struct tlm_tdigest *tlm_tdigest_create(double compression);

/* Frees t and everything it holds. NULL is fine. */
void tlm_tdigest_destroy(struct tlm_tdigest *t);

/* Adds one sample. Returns 0, TLM_EINVAL if x is NaN or infinite (ignored; t unchanged),
 * or TLM_ENOMEM (t unchanged and still valid). Amortised cost: tens of ns (samples are
 * buffered and merged in batches). */
int tlm_tdigest_add(struct tlm_tdigest *t, double x);
/* Hints the CPU to fetch the buffer slot the next tlm_tdigest_add writes. */
void tlm_tdigest_prefetch_tail(const struct tlm_tdigest *t);

/* Adds the samples summarised by src (borrowed for the call; not changed) to dst. Two raw
 * digests whose total fits dst's raw buffer stay raw (exact); otherwise the result is a
 * digest at dst's compression. Returns 0 or TLM_ENOMEM (dst then unchanged). dst == src
 * is allowed (doubles every weight). */
int tlm_tdigest_merge(struct tlm_tdigest *dst, const struct tlm_tdigest *src);

/* The q-quantile by the definition above; q outside [0, 1] is clamped into it. Returns
 * NaN when t is empty or q is NaN. Not const: pending samples are merged (or the raw
 * buffer sorted) first, which may allocate; should that fail, the answer is computed
 * from what is merged plus the raw samples sorted in place, so it never fails. */
double tlm_tdigest_quantile(struct tlm_tdigest *t, double q);

/* Number of samples added (total weight). */
double tlm_tdigest_count(const struct tlm_tdigest *t);

/* Smallest and largest sample (NaN when empty). */
double tlm_tdigest_min(const struct tlm_tdigest *t);
double tlm_tdigest_max(const struct tlm_tdigest *t);

/* The compression t was created with. */
double tlm_tdigest_compression(const struct tlm_tdigest *t);

/* Number of centroids held now, raw samples counted as one each (for tests and stats). */
size_t tlm_tdigest_centroids(const struct tlm_tdigest *t);

/* Heap bytes held by t (the struct included), for memory reports. */
size_t tlm_tdigest_bytes(const struct tlm_tdigest *t);

/* Appends t to out as compact JSON:
 *   {"c":100,"n":3,"min":1.5,"max":9.0,"r":[1.5,9.0,2.0]}        raw state (samples, buffer order)
 *   {"c":100,"n":1234,"min":..,"max":..,"m":[[mean,weight],...]} digest state
 *   {"c":100,"n":1240,"min":..,"max":..,"m":[...],"r":[...]}     digest with unmerged samples
 * ("min"/"max" are left out when empty; "s":true follows "r" when the buffer is sorted).
 * Reals are exact (shortest round trip) and t is written as it is, nothing merged, so
 * reading the text back gives a digest that answers and continues exactly as t does
 * whenever it is written. out is borrowed for the call. Returns 0 or TLM_ENOMEM (out may
 * then hold a partial text after its old length). */
int tlm_tdigest_write(const struct tlm_tdigest *t, struct tlm_buf *out);

/* Parses what tlm_tdigest_write wrote (json: n bytes, borrowed for the call, need not be
 * NUL-terminated) and checks it: compression in range, finite values, weights > 0, means
 * ascending and within [min, max], no more raw samples than the buffer's size, n equal to
 * the total weight. Returns a new digest
 * (caller owns it; release with tlm_tdigest_destroy), or NULL with err (may be NULL)
 * filled: TLM_EPARSE for malformed JSON or content, TLM_ENOMEM. */
struct tlm_tdigest *tlm_tdigest_read(const char *json, size_t n, struct tlm_error *err);

#endif
