/*
 * gen.h - the deterministic synthetic telemetry generator behind `telem gen`.
 *
 * Produces IoT device events like seed 001's:
 *   {"deviceId":"device-11","timestamp":1704067200000,"cpuUsage":78.986,
 *    "memUsage":41.52,"temperature":54.1,"eventId":1}
 * Event i nominally happens at start + i/rate; with `disorder` each event's time is
 * moved back by a uniform amount in [0, disorder]; a `late_fraction` of events is moved
 * back by `late_by` (too late for most windows); a `dup_fraction` of events is written
 * twice (same eventId, same bytes). Each device has its own base load, so per-device
 * aggregates differ. The same options and seed give the same bytes on every machine.
 */
#ifndef TLM_GEN_H
#define TLM_GEN_H

#include <stdint.h>

#include "buf.h"
#include "rng.h"
#include "time.h"

struct tlm_gen_opts {
    uint64_t count;          /* events to produce (duplicates not counted) */
    uint64_t devices;        /* distinct deviceId values, >= 1 */
    double rate;             /* events per second of event time, > 0 */
    tlm_time_t start;        /* time of the first event */
    int64_t disorder;        /* ns, >= 0 */
    double late_fraction;    /* in [0,1] */
    int64_t late_by;         /* ns */
    double dup_fraction;     /* in [0,1] */
    uint64_t seed;
    enum tlm_time_unit unit; /* unit of the written timestamp (s, ms, us, ns) */
};

struct tlm_gen {
    struct tlm_gen_opts o;
    struct tlm_rng rng;
    uint64_t i;              /* events produced */
};

/* Sets defaults: 1000 events, 100 devices, 1000/s from 2024-01-01T00:00:00Z, no
 * disorder, no late events, no duplicates, seed 1, milliseconds. */
void tlm_gen_defaults(struct tlm_gen_opts *o);

/* Starts a generator. */
void tlm_gen_init(struct tlm_gen *g, const struct tlm_gen_opts *o);

/* Appends the next event line(s) with "\n" to out: one line, or two for a duplicate.
 * Returns the number of lines appended, 0 when count events were produced, or
 * TLM_ENOMEM. */
int tlm_gen_next(struct tlm_gen *g, struct tlm_buf *out);

#endif
