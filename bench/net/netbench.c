/* netbench.c - load generator for the socket listener (src/lib/net.c).
 *
 * N client threads (default 8) connect to an in-process tlm_listener over TCP on
 * loopback (or a unix socket) and each send L numbered NDJSON-like lines of about S
 * bytes in 64 KiB writes; the main thread drains the listener, checks that every line
 * arrived exactly once and in order per client, and prints lines/s.
 *
 * Build (from the top of the tree):
 *   gcc -std=gnu11 -O2 -iquote src/lib src/lib/error.c src/lib/buf.c src/lib/net.c \
 *       bench/net/netbench.c -lpthread -o netbench
 * Run:  ./netbench [clients [lines-per-client [line-bytes [url [lines/s]]]]]
 *       ./netbench 8 250000 100 tcp://127.0.0.1:0        as fast as possible
 *       ./netbench 8 250000 100 udp://127.0.0.1:0 200000 paced to 200k lines/s in all
 * With udp:// each client sends datagrams of up to 1400 bytes (whole lines); UDP may
 * drop, so for UDP the count of lost lines is reported instead of failing on a gap.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

struct client {
    int k, lines, size, port;
    const char *path; /* unix socket, or NULL */
    int udp;
    double rate;      /* lines/s for this client, 0 = unlimited */
    int rc;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    int fd;
    if (c->path) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", c->path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            return c->rc = 1, NULL;
    } else {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, c->udp ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            return c->rc = 1, NULL;
    }
    char *buf = malloc(1 << 17), pad[4096];
    size_t n = 0;
    int padn = c->size > 60 ? c->size - 60 : 1;
    size_t flush_at = c->udp ? 1400 - (size_t)c->size - 60 : (1 << 16);
    double t0 = now();
    memset(pad, 'x', sizeof(pad));
    for (int i = 0; i < c->lines; i++) {
        n += (size_t)snprintf(buf + n, (1 << 17) - n,
                              "{\"client\":%d,\"seq\":%d,\"cpu\":0.5,\"pad\":\"%.*s\"}\n", c->k, i,
                              padn, pad);
        if (n > flush_at || i == c->lines - 1) {
            if (c->rate > 0) {
                double due = t0 + (double)(i + 1) / c->rate, t = now();
                if (due > t)
                    usleep((useconds_t)((due - t) * 1e6));
            }
            for (size_t off = 0; off < n;) {
                ssize_t w = write(fd, buf + off, n - off);
                if (w <= 0)
                    return c->rc = 2, close(fd), free(buf), NULL;
                off += (size_t)w;
            }
            n = 0;
        }
    }
    close(fd);
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    int nc = argc > 1 ? atoi(argv[1]) : 8, lines = argc > 2 ? atoi(argv[2]) : 250000;
    int size = argc > 3 ? atoi(argv[3]) : 100;
    const char *url = argc > 4 ? argv[4] : "tcp://127.0.0.1:0";
    double rate = argc > 5 ? atof(argv[5]) : 0;
    int udp = !strncmp(url, "udp:", 4);
    long long lost = 0;
    if (size < 61 || size > 1000)
        size = size < 61 ? 61 : 1000;
    struct tlm_listen_opts o = { url, 0, 0, 0 };
    struct tlm_error err;
    struct tlm_listener *l = tlm_listen_create(&o, &err);
    if (!l) {
        fprintf(stderr, "netbench: %s: %s\n", err.source, err.text);
        return 1;
    }
    struct client *cl = calloc((size_t)nc, sizeof(*cl));
    pthread_t *th = calloc((size_t)nc, sizeof(*th));
    long long *next = calloc((size_t)nc, sizeof(*next)), total = 0, bytes = 0;
    double t0 = now(), t_last = t0;
    for (int k = 0; k < nc; k++) {
        cl[k] = (struct client){ k, lines, size, tlm_listen_port(l), NULL, udp, rate / nc, 0 };
        if (!strncmp(url, "unix:", 5))
            cl[k].path = url + 5;
        pthread_create(&th[k], NULL, client_main, &cl[k]);
    }
    int bad = 0;
    while (total < (long long)nc * lines) {
        const char *line;
        size_t len;
        int rc = tlm_listen_next(l, &line, &len, 5000, &err);
        if (rc == TLM_EAGAIN) {
            if (udp)
                break; /* the rest was dropped */
            fprintf(stderr, "netbench: stalled at %lld lines\n", total);
            bad = 1;
            break;
        }
        if (rc != 1) {
            fprintf(stderr, "netbench: %s: %s\n", err.source, err.text);
            bad = 1;
            continue;
        }
        int k, i;
        if (sscanf(line, "{\"client\":%d,\"seq\":%d", &k, &i) != 2 || k < 0 || k >= nc ||
            i < next[k] || (!udp && i != next[k])) {
            fprintf(stderr, "netbench: unexpected line: %.80s\n", line);
            bad = 1;
            break;
        }
        lost += i - next[k];
        next[k] = i + 1;
        total++;
        t_last = now();
        bytes += (long long)len + 1;
    }
    double dt = t_last - t0; /* up to the last line, not the final wait */
    for (int k = 0; k < nc; k++)
        lost += lines - next[k];
    for (int k = 0; k < nc; k++) {
        pthread_join(th[k], NULL);
        if (cl[k].rc)
            bad = 1;
    }
    if (lost)
        bad = 1;
    printf("%s: %d clients x %d lines of ~%d bytes: %lld lines in %.3f s = %.0f lines/s, "
           "%.1f MB/s, %lld lost%s\n",
           url, nc, lines, size, total, dt, (double)total / dt, (double)bytes / dt / 1e6, lost,
           bad ? " (ERRORS)" : "");
    tlm_listen_destroy(l);
    free(cl);
    free(th);
    free(next);
    return bad;
}
