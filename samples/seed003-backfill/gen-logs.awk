# samples/seed003-backfill/gen-logs.awk - seed 003's raw log records for one day: ad
# impressions and the actions (clicks, purchases) that reference them by impressionId,
# one record per line in time order, the time in seconds. Deterministic in every awk
# (a Park-Miller generator in exact double arithmetic, no rand()).
function rnd(n) { x = (x * 16807) % 2147483647; return x % n }
BEGIN {
    x = 3; t0 = 1704067200          # 2024-01-01T00:00:00Z
    split("ios android web", seg, " ")
    n = 0
    for (t = t0; t < t0 + 86400; t += 20 + rnd(20)) {
        n++
        id = sprintf("imp-%05d", n)
        s = seg[1 + rnd(3)]
        ev[t] = ev[t] sprintf("{\"timestamp\":%.0f,\"type\":\"impression\",\"impressionId\":\"%s\",\"userId\":\"u-%03d\",\"contentId\":\"c-%02d\",\"segment\":\"%s\"}\n", t, id, rnd(500), rnd(40), s)
        r = rnd(100)
        # about one impression in four is clicked, 30 s to 15 min later (after the
        # 10-minute join window: not attributed); one click in five ends in a purchase
        if (r < 25) {
            c = t + 30 + rnd(870)
            ev[c] = ev[c] sprintf("{\"timestamp\":%.0f,\"type\":\"action\",\"actionType\":\"click\",\"impressionId\":\"%s\"}\n", c, id)
            if (r < 5) {
                p = c + 60 + rnd(240)
                ev[p] = ev[p] sprintf("{\"timestamp\":%.0f,\"type\":\"action\",\"actionType\":\"purchase\",\"impressionId\":\"%s\"}\n", p, id)
            }
        }
    }
    for (t = t0; t < t0 + 86400; t++)
        if (t in ev) printf "%s", ev[t]
}
