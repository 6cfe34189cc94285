/*
 * ddsketch.h - DDSketch: quantiles with a guaranteed relative error on the value, and
 * merges whose result does not depend on their order (`telem window --sketch ddsketch`).
 *
 * A value x != 0 is counted in the bin i = ceil(log_gamma(|x|)) of its sign, gamma =
 * (1 + alpha) / (1 - alpha); the bin stands for 2 gamma^i / (gamma + 1), which is within a
 * relative alpha of every value in (gamma^(i-1), gamma^i]. Zero has a bin of its own;
 * min and max are kept exactly. Positive and negative values have a store each, and each
 * store keeps at most max_bins bins: when more would be needed, the bins of the smallest
 * magnitudes (lowest indices) are collapsed into the lowest one kept, so the relative
 * guarantee is lost only for the values nearest zero (with alpha = 0.01 and 2048 bins, a
 * store spans a factor of 1e17 before that happens).
 *
 * Quantile definition: the one of tdigest.h (type 7) as far as the guarantee allows. With
 * h = q (n - 1), j = floor(h), f = h - j, the answer is
 *
 *     Q(q) = v(j) + f (v(j + 1) - v(j)),
 *
 * where v(r) is the sketch's value for the sample of rank r: min for r = 0, max for
 * r = n - 1, otherwise the value of the bin holding rank r, clamped to [min, max]. Every
 * v(r) is within alpha |x[r]| of the true x[r] (bins not collapsed), so
 * |Q(q) - Qtrue(q)| <= alpha ((1 - f) |x[j]| + f |x[j + 1]|), which is alpha |Qtrue(q)|
 * whenever x[j] and x[j + 1] do not have opposite signs. n = 1 and n = 2 are exact.
 *
 * The sketch's state is a function of the multiset of values added (bins are integer
 * counts, collapsing is a function of the highest index), so adding in any order and
 * merging in any order or grouping give byte-identical tlm_ddsketch_write output.
 */
#ifndef TLM_DDSKETCH_H
#define TLM_DDSKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "error.h"

#define TLM_DDSKETCH_DEFAULT_ALPHA 0.01
#define TLM_DDSKETCH_DEFAULT_MAX_BINS 2048u

struct tlm_ddsketch;

/* Creates an empty sketch with relative accuracy alpha (0 < alpha < 1; 0.01 is the
 * default) and TLM_DDSKETCH_DEFAULT_MAX_BINS bins per sign. Starts with no bins (about
 * 100 bytes) and grows with the range of values seen. Returns the sketch (caller owns it;
 * release with tlm_ddsketch_destroy), or NULL if alpha is out of range or memory is short. */
struct tlm_ddsketch *tlm_ddsketch_create(double alpha);

/* As tlm_ddsketch_create, with at most max_bins (16 .. 1 << 20) bins per sign. NULL if an
 * argument is out of range or memory is short. */
struct tlm_ddsketch *tlm_ddsketch_create_bins(double alpha, uint32_t max_bins);

/* Frees s. NULL is fine. */
void tlm_ddsketch_destroy(struct tlm_ddsketch *s);

/* Counts x. Returns 0, TLM_EINVAL for NaN or an infinity (ignored), or TLM_ENOMEM (s
 * unchanged). */
int tlm_ddsketch_add(struct tlm_ddsketch *s, double x);

/* Adds src's counts (borrowed for the call; unchanged) to dst. Returns 0, TLM_EINVAL if
 * the two differ in alpha or max_bins (dst unchanged), or TLM_ENOMEM (dst may then hold
 * part of src's counts; its total count stays consistent with its bins). dst == src
 * doubles every count. */
int tlm_ddsketch_merge(struct tlm_ddsketch *dst, const struct tlm_ddsketch *src);

/* The q-quantile by the definition above (q clamped into [0, 1]). NaN when s is empty or
 * q is NaN. */
double tlm_ddsketch_quantile(const struct tlm_ddsketch *s, double q);

/* Number of values counted. */
double tlm_ddsketch_count(const struct tlm_ddsketch *s);

/* Heap bytes held by s (the struct included). */
size_t tlm_ddsketch_bytes(const struct tlm_ddsketch *s);

/* Appends s to out as compact canonical JSON:
 *   {"a":0.01,"b":2048,"n":5,"min":-2.0,"max":30.5,"z":1,"p":[i0,[c,...]],"m":[i0,[c,...]]}
 * ("min"/"max" only when n > 0; "p" and "m" only when that sign has values: the index of
 * the first bin and the counts from it to the last non-empty bin). out is borrowed for the
 * call. Returns 0 or TLM_ENOMEM. */
int tlm_ddsketch_write(const struct tlm_ddsketch *s, struct tlm_buf *out);

/* Parses what tlm_ddsketch_write wrote (json: n bytes, borrowed, need not be
 * NUL-terminated) and validates it. Returns a new sketch (caller owns it; release with
 * tlm_ddsketch_destroy), or NULL with err (may be NULL) filled: TLM_EPARSE, TLM_ENOMEM. */
struct tlm_ddsketch *tlm_ddsketch_read(const char *json, size_t n, struct tlm_error *err);

#endif
