# samples/seed004-pipeline/gen-devices.awk - seed 004's device telemetry: 13 devices
# (device-12 is not in the registry) send a reading every 5 seconds for 6 minutes, in
# time order; some readings are sent twice (a retry after a lost acknowledgement, same
# eventId); three devices overheat (above 80 degrees) for a while. Deterministic, integer
# arithmetic only.
BEGIN {
    t0 = 1704067200000              # 2024-01-01T00:00:00Z, in ms
    # overheating episodes: device, first and last reading above 80
    hot["3", 1] = 20; hot["3", 2] = 37      # 90 s
    hot["7", 1] = 40; hot["7", 2] = 45      # 30 s
    hot["10", 1] = 10; hot["10", 2] = 13    # 20 s
    hot2["10", 1] = 50; hot2["10", 2] = 58  # 45 s, a second episode
    n = 0
    for (i = 0; i < 72; i++)
        for (d = 0; d < 13; d++) {
            n++
            t = t0 + i * 5000 + d * 100
            temp = 450 + (d % 5) * 30 + (i * 7 + d * 13) % 20          # tenths of a degree
            if ((d, 1) in hot && i >= hot[d, 1] && i <= hot[d, 2])
                temp = 810 + (i - hot[d, 1]) * 3 % 40
            if ((d, 1) in hot2 && i >= hot2[d, 1] && i <= hot2[d, 2])
                temp = 805 + (i - hot2[d, 1]) * 5 % 30
            cpu = 20 + (i * 11 + d * 17) % 60
            line = sprintf("{\"eventId\":%d,\"deviceId\":\"device-%d\",\"timestamp\":%.0f,\"temperature\":%d.%d,\"cpuUsage\":%d}", n, d, t, temp / 10, temp % 10, cpu)
            print line
            if (n % 23 == 0)
                print line      # the retry
        }
}
