/*
 * fuzz_rules.c - libFuzzer harness for the rule engine (src/lib/rules.h), differential: the
 * input drives two engines, one indexed and one naive (every rule through tlm_expr_test on
 * a full DOM), and any difference in their alerts, counters or return codes aborts.
 *
 * Input: lines. Lines before a line "--" are the rules text (tlm_rules_reload; a refused
 * text leaves both engines empty). After it, a line starting with '!' is a control message
 * (the rest of the line), "@N" raises the watermark to N ms, "~" reloads the rules text
 * again, any other line is an event at a time of 1000 ms times its line number minus the
 * first byte (so times go back and forth).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

static struct tlm_rules *mk(int naive)
{
    struct tlm_rules_opts o = { .out_unit = TLM_UNIT_MS, .time_unit = TLM_UNIT_MS,
                                .naive = naive };
    return tlm_rules_create(&o, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *sep = NULL;
    for (const char *q = p; q + 2 <= end; q++)
        if ((q == p || q[-1] == '\n') && q[0] == '-' && q[1] == '-' &&
            (q + 2 == end || q[2] == '\n')) {
            sep = q;
            break;
        }
    struct tlm_rules *a = mk(0), *b = mk(1);
    struct tlm_buf oa = TLM_BUF_INIT, ob = TLM_BUF_INIT;
    struct tlm_error ea, eb;
    size_t rules_n = sep ? (size_t)(sep - p) : size;
    int ra = tlm_rules_reload(a, p, rules_n, "rules", &ea);
    int rb = tlm_rules_reload(b, p, rules_n, "rules", &eb);
    if (ra != rb)
        abort();
    if (sep) {
        const char *q = sep + 2;
        long long line = 0;
        while (q < end) {
            const char *nl = memchr(q, '\n', (size_t)(end - q));
            const char *le = nl ? nl : end;
            size_t n = (size_t)(le - q);
            line++;
            if (n && q[0] == '!') {
                if (tlm_rules_control(a, q + 1, n - 1, &ea) !=
                    tlm_rules_control(b, q + 1, n - 1, &eb))
                    abort();
            } else if (n && q[0] == '@') {
                char num[24];
                size_t k = n - 1 < sizeof num - 1 ? n - 1 : sizeof num - 1;
                memcpy(num, q + 1, k);
                num[k] = 0;
                long long ms = strtoll(num, NULL, 10) % 100000000;
                if (tlm_rules_watermark(a, ms * 1000000) != tlm_rules_watermark(b, ms * 1000000))
                    abort();
            } else if (n == 1 && q[0] == '~') {
                if (tlm_rules_reload(a, p, rules_n, "rules", &ea) !=
                    tlm_rules_reload(b, p, rules_n, "rules", &eb))
                    abort();
            } else {
                tlm_time_t ts = (line * 1000 - (n ? (unsigned char)q[0] : 0)) * 1000000;
                if (tlm_rules_due(a, ts, &ea) != tlm_rules_due(b, ts, &eb))
                    abort();
                int x = tlm_rules_event(a, q, n, ts, &oa, &ea);
                int y = tlm_rules_event(b, q, n, ts, &ob, &eb);
                if (x != y || oa.len != ob.len || (oa.len && memcmp(oa.data, ob.data, oa.len)))
                    abort();
            }
            q = nl ? nl + 1 : end;
        }
    }
    struct tlm_rules_stats sa, sb;
    tlm_rules_get_stats(a, &sa);
    tlm_rules_get_stats(b, &sb);
    if (sa.matched != sb.matched || sa.alerts != sb.alerts || sa.late != sb.late ||
        sa.keys != sb.keys)
        abort();
    tlm_buf_free(&oa);
    tlm_buf_free(&ob);
    tlm_rules_destroy(a);
    tlm_rules_destroy(b);
    return 0;
}
