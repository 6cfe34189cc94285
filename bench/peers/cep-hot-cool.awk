# bench/peers/cep-hot-cool.awk - the cep row's peer: what a user scripts without a CEP
# engine. The two-stage pattern
#   hot: cpuUsage > 60 -> cool: cpuUsage < 50 within 10m     (per deviceId)
# with Flink's followedBy and no after-match skip: every hot event opens a partial match,
# and the first cool event of the device within 10 minutes completes every open one.
# Reads telem gen's JSON lines in event-time order (no disorder); writes one line per
# match in the format of the row's --emit template. Gives the same lines, in the same
# order, as `telem cep` on that data (the row's check compares them byte for byte).
{
    match($0, /"deviceId":"[^"]*"/); k = substr($0, RSTART + 12, RLENGTH - 13)
    match($0, /"timestamp":[0-9]+/); ts = substr($0, RSTART + 12, RLENGTH - 12); t = ts + 0
    match($0, /"cpuUsage":[0-9.]+/); c = substr($0, RSTART + 11, RLENGTH - 11) + 0
    if (c < 50 && (k in open)) {
        n = split(open[k], s, " ")
        for (i = 1; i <= n; i++)
            if (t - s[i] < 600000)
                printf "{\"deviceId\":\"%s\",\"hot\":%s,\"cool\":%s}\n", k, s[i], ts
        delete open[k]
    } else if (c > 60)
        open[k] = (k in open) ? open[k] " " ts : ts
}
