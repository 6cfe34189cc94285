// bench_sj.cpp - the simdjson On-Demand row of bench.c: read deviceId, timestamp, cpuUsage.
#include <cstddef>
#include <cstring>
#include <string_view>

#include <simdjson.h>

extern "C" size_t bench_simdjson(const char *buf, size_t len, size_t padded_cap, double *sink);

extern "C" size_t bench_simdjson(const char *buf, size_t len, size_t padded_cap, double *sink)
{
    simdjson::ondemand::parser parser;
    size_t n = 0;
    double acc = 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = static_cast<const char *>(std::memchr(p, '\n', size_t(end - p)));
        size_t l = size_t(nl - p);
        simdjson::padded_string_view v(p, l, padded_cap - size_t(p - buf));
        auto doc = parser.iterate(v);
        std::string_view dev;
        int64_t ts;
        double cpu;
        if (doc["deviceId"].get_string().get(dev) || doc["timestamp"].get_int64().get(ts) ||
            doc["cpuUsage"].get_double().get(cpu))
            return 0;
        acc += double(dev.size()) + double(ts) + cpu;
        n++;
        p = nl + 1;
    }
    *sink = acc;
    return n;
}
