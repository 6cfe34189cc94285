/* test_net.c - the socket listener (lib/net.c): 8 concurrent TCP clients (tiny writes,
 * CRLF) whose every line must arrive exactly once and in order per connection; a partial
 * line at disconnect; lines longer than max_line; the connection limit; round-robin
 * fairness; UDP datagrams; unix sockets; the loopback rule; IPv6; bad URLs; timeouts.
 * All sockets are on loopback; waits are bounded, no sleep decides a result. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "net.h"

static char dir[] = "/tmp/telem-test-net-XXXXXX";

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct tlm_listener *listen_on(const char *url, size_t max_line, int max_conns)
{
    struct tlm_listen_opts o = { url, max_line, max_conns, 0 };
    struct tlm_error err;
    struct tlm_listener *l = tlm_listen_create(&o, &err);
    if (!l)
        fail_msg("%s: %s", url, err.text);
    return l;
}

/* Expects tlm_listen_create to fail; returns the message. */
static const char *listen_fails(const char *url, int allow_public, int code)
{
    static struct tlm_error err;
    struct tlm_listen_opts o = { url, 0, 0, allow_public };
    struct tlm_listener *l = tlm_listen_create(&o, &err);
    if (l) {
        tlm_listen_destroy(l);
        fail_msg("%s: unexpectedly accepted", url);
    }
    assert_int_equal(err.code, code);
    assert_string_equal(err.source, url ? url : "");
    return err.text;
}

/* tlm_listen_next, retried on TLM_EAGAIN for at most 10 s. */
static int next_wait(struct tlm_listener *l, const char **line, size_t *len, struct tlm_error *err)
{
    long long end = now_ms() + 10000;
    int rc;
    do
        rc = tlm_listen_next(l, line, len, 200, err);
    while (rc == TLM_EAGAIN && now_ms() < end);
    return rc;
}

static void expect_line(struct tlm_listener *l, const char *want, long long lineno)
{
    const char *line;
    size_t len;
    struct tlm_error err;
    int rc = next_wait(l, &line, &len, &err);
    if (rc != 1)
        fail_msg("expected line '%s', got %d (%s)", want, rc, rc < 0 ? err.text : "");
    assert_int_equal(len, strlen(want));
    assert_string_equal(line, want);
    assert_int_equal(tlm_listen_line(l), lineno);
}

/* Nothing more arrives: a few calls with a short timeout all return TLM_EAGAIN. */
static void expect_quiet(struct tlm_listener *l, int ms)
{
    const char *line;
    size_t len;
    struct tlm_error err;
    int rc = tlm_listen_next(l, &line, &len, ms, &err);
    if (rc != TLM_EAGAIN)
        fail_msg("expected nothing, got %d: %s", rc, rc == 1 ? line : err.text);
}

static int connect_tcp(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (family == AF_INET) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    } else {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
        a.sin6_addr = in6addr_loopback;
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    }
    return fd;
}

static int connect_unix(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(write_all(fd, s, strlen(s)), 0);
}

/* "tcp:127.0.0.1:PORT" of the local end of fd, as the listener names that client. */
static void peer_name(int fd, const char *proto, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char h[INET6_ADDRSTRLEN];
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, h, sizeof(h));
        snprintf(out, n, "%s:%s:%d", proto, h, ntohs(a->sin_port));
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof(h));
        snprintf(out, n, "%s:[%s]:%d", proto, h, ntohs(a->sin6_port));
    }
}

/* Until the peer has every byte written on fd (bounded). */
static void wait_sent(int fd)
{
    long long end = now_ms() + 5000;
    int outq = 1;
    while (now_ms() < end && ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0)
        usleep(1000);
    assert_int_equal(outq, 0);
}

/* Sends data on fd from a thread (so a large write cannot block the test), then closes. */
struct job {
    int fd;
    const char *data;
    size_t n;
    int rc;
};

static void *writer(void *arg)
{
    struct job *j = arg;
    j->rc = write_all(j->fd, j->data, j->n);
    close(j->fd);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

/* ---- many concurrent clients ----------------------------------------------------- */

#define NCLI 8
#define NLINES 25000

struct client {
    int port;
    int k;
    int rc;            /* 0 ok, else the step that failed */
    char name[96];     /* how the listener names it */
};

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Client k sends "c<k> <i> <padding>" for i < NLINES. Mode k % 4: 0 LF in 64 KiB writes,
 * 1 CRLF in writes of 1-7 bytes (TCP_NODELAY: lines and "\r\n" split across packets),
 * 2 LF in writes of 1-4096 bytes, 3 CRLF in writes of 1-300 bytes. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    int mode = c->k % 4, crlf = mode == 1 || mode == 3;
    uint32_t seed = 2463534242u + (uint32_t)c->k;
    size_t cap = (size_t)NLINES * 80, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        c->rc = 1;
        return NULL;
    }
    for (int i = 0; i < NLINES; i++) {
        n += (size_t)snprintf(buf + n, cap - n, "c%d %d %.*s%s", c->k, i, i % 40,
                              "pppppppppppppppppppppppppppppppppppppppp", crlf ? "\r\n" : "\n");
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        c->rc = 2;
        free(buf);
        return NULL;
    }
    struct sockaddr_in me;
    socklen_t ml = sizeof(me);
    getsockname(fd, (struct sockaddr *)&me, &ml);
    snprintf(c->name, sizeof(c->name), "tcp:127.0.0.1:%d", ntohs(me.sin_port));
    if (mode == 1 || mode == 3) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    for (size_t off = 0; off < n && !c->rc;) {
        size_t chunk = mode == 0   ? 65536
                       : mode == 1 ? 1 + xorshift(&seed) % 7
                       : mode == 2 ? 1 + xorshift(&seed) % 4096
                                   : 1 + xorshift(&seed) % 300;
        if (chunk > n - off)
            chunk = n - off;
        if (write_all(fd, buf + off, chunk) < 0)
            c->rc = 3;
        off += chunk;
    }
    close(fd);
    free(buf);
    return NULL;
}

static void test_tcp_many_clients(void **state)
{
    struct tlm_listener *l = listen_on("tcp://127.0.0.1:0", 0, 0);
    struct client cl[NCLI];
    pthread_t th[NCLI];
    int next_i[NCLI] = { 0 };
    char *src[NCLI] = { NULL };
    long long total = 0, end = now_ms() + 60000;
    (void)state;
    int port = tlm_listen_port(l);
    assert_true(port > 0);
    for (int k = 0; k < NCLI; k++) {
        cl[k] = (struct client){ .port = port, .k = k };
        assert_int_equal(pthread_create(&th[k], NULL, client_main, &cl[k]), 0);
    }
    while (total < (long long)NCLI * NLINES && now_ms() < end) {
        const char *line;
        size_t len;
        struct tlm_error err;
        int rc = tlm_listen_next(l, &line, &len, 1000, &err);
        if (rc == TLM_EAGAIN)
            continue;
        if (rc != 1)
            fail_msg("event %d: %s: %s", rc, err.source, err.text);
        int k, i, pad;
        assert_int_equal(strlen(line), len);
        assert_null(strchr(line, '\r'));
        assert_int_equal(sscanf(line, "c%d %d %n", &k, &i, &pad), 2);
        assert_true(k >= 0 && k < NCLI);
        if (i != next_i[k]) /* exactly once, in order, per connection */
            fail_msg("client %d: got line %d, expected %d", k, i, next_i[k]);
        assert_int_equal(len - (size_t)pad, (size_t)(i % 40));
        next_i[k]++;
        assert_int_equal(tlm_listen_line(l), i + 1);
        if (!src[k])
            src[k] = strdup(tlm_listen_source(l));
        else
            assert_string_equal(src[k], tlm_listen_source(l));
        total++;
    }
    for (int k = 0; k < NCLI; k++) {
        pthread_join(th[k], NULL);
        assert_int_equal(cl[k].rc, 0);
        assert_int_equal(next_i[k], NLINES);
        assert_string_equal(src[k], cl[k].name);
        free(src[k]);
    }
    assert_int_equal(total, (long long)NCLI * NLINES);
    assert_int_equal(tlm_listen_clients(l), NCLI);
    /* clean disconnects at line ends: no events, and every client is gone */
    for (long long stop = now_ms() + 5000; tlm_listen_active(l) > 0 && now_ms() < stop;)
        expect_quiet(l, 50);
    assert_int_equal(tlm_listen_active(l), 0);
    tlm_listen_destroy(l);
}

/* ---- events ------------------------------------------------------------------------- */

static void test_partial_line_at_disconnect(void **state)
{
    struct tlm_listener *l = listen_on("tcp://127.0.0.1:0", 0, 0);
    const char *line;
    size_t len;
    struct tlm_error err;
    char name[96];
    (void)state;
    int fd = connect_tcp(AF_INET, tlm_listen_port(l));
    peer_name(fd, "tcp", name, sizeof(name));
    send_str(fd, "ok\n\nhello world!");
    close(fd);
    expect_line(l, "ok", 1);
    assert_string_equal(tlm_listen_source(l), name);
    expect_line(l, "", 2);
    assert_int_equal(next_wait(l, &line, &len, &err), TLM_EPARSE);
    assert_int_equal(err.code, TLM_EPARSE);
    assert_string_equal(err.source, name);
    assert_int_equal(err.line, 3);
    assert_string_equal(err.text, "connection closed inside a line (12 bytes)");
    assert_int_equal(len, 12); /* the bytes received, for a reject file */
    assert_string_equal(line, "hello world!");
    assert_int_equal(tlm_listen_active(l), 0);

    /* a client that ends with a complete line closes without an event */
    fd = connect_tcp(AF_INET, tlm_listen_port(l));
    send_str(fd, "last\r\n");
    close(fd);
    expect_line(l, "last", 1);
    for (long long stop = now_ms() + 5000; tlm_listen_active(l) > 0 && now_ms() < stop;)
        expect_quiet(l, 50);
    assert_int_equal(tlm_listen_active(l), 0);
    assert_int_equal(tlm_listen_clients(l), 2);
    tlm_listen_destroy(l);
}

static void test_line_too_long(void **state)
{
    struct tlm_listener *l = listen_on("tcp://127.0.0.1:0", 16, 0);
    const char *line;
    size_t len;
    struct tlm_error err;
    char name[96];
    size_t big = 300000, n = 0;
    char *data = malloc(big + 200);
    pthread_t th;
    (void)state;
    assert_non_null(data);
    n += (size_t)sprintf(data + n, "short\n0123456789abcdef\r\n0123456789abcdefg\n");
    memset(data + n, 'x', big);
    n += big;
    n += (size_t)sprintf(data + n, "\nafter\n0123456789abcdef");
    struct job j = { connect_tcp(AF_INET, tlm_listen_port(l)), data, n, 0 };
    peer_name(j.fd, "tcp", name, sizeof(name));
    assert_int_equal(pthread_create(&th, NULL, writer, &j), 0);

    expect_line(l, "short", 1);
    expect_line(l, "0123456789abcdef", 2); /* exactly max_line, CRLF: accepted */
    assert_int_equal(next_wait(l, &line, &len, &err), TLM_ERANGE);
    assert_null(line);
    assert_string_equal(err.source, name);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.text, "line longer than 16 bytes"));
    assert_int_equal(next_wait(l, &line, &len, &err), TLM_ERANGE); /* the 300 kB line, once */
    assert_int_equal(err.line, 4);
    assert_non_null(strstr(err.text, "line longer than 16 bytes"));
    expect_line(l, "after", 5); /* the connection carries on */
    assert_int_equal(next_wait(l, &line, &len, &err), TLM_EPARSE);
    assert_string_equal(err.text, "connection closed inside a line (16 bytes)");
    assert_int_equal(err.line, 6);
    pthread_join(th, NULL);
    assert_int_equal(j.rc, 0);
    expect_quiet(l, 50);
    free(data);
    tlm_listen_destroy(l);
}

/* Reads fd until end of file or a reset; 0 if that happened within 5 s. */
static int expect_closed(int fd)
{
    struct timeval tv = { 5, 0 };
    char b[16];
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ssize_t r = read(fd, b, sizeof(b));
    return r == 0 || (r < 0 && errno == ECONNRESET) ? 0 : -1;
}

static void test_connection_limit(void **state)
{
    struct tlm_listener *l = listen_on("tcp://127.0.0.1:0", 0, 2);
    const char *line;
    size_t len;
    struct tlm_error err;
    char name[96];
    (void)state;
    int port = tlm_listen_port(l);
    int a = connect_tcp(AF_INET, port), b = connect_tcp(AF_INET, port);
    send_str(a, "a\n");
    send_str(b, "b\n");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(next_wait(l, &line, &len, &err), 1);
        assert_true(!strcmp(line, "a") || !strcmp(line, "b"));
    }
    assert_int_equal(tlm_listen_active(l), 2);

    int c = connect_tcp(AF_INET, port), d = connect_tcp(AF_INET, port);
    peer_name(c, "tcp", name, sizeof(name));
    assert_int_equal(next_wait(l, &line, &len, &err), TLM_ERANGE);
    assert_string_equal(err.source, name);
    assert_string_equal(err.text, "connection limit reached (2 concurrent clients); refusing "
                                  "new clients until one disconnects");
    assert_int_equal(expect_closed(c), 0); /* the refused client sees the connection end */
    /* d is refused too, but not reported again */
    for (long long stop = now_ms() + 5000; tlm_listen_refused(l) < 2 && now_ms() < stop;)
        expect_quiet(l, 50);
    assert_int_equal(tlm_listen_refused(l), 2);
    assert_int_equal(expect_closed(d), 0);
    expect_quiet(l, 50);
    close(c);
    close(d);

    /* a client leaves: room for a new one, and a later refusal is a new episode */
    close(a);
    for (long long stop = now_ms() + 5000; tlm_listen_active(l) > 1 && now_ms() < stop;)
        expect_quiet(l, 50);
    assert_int_equal(tlm_listen_active(l), 1);
    int e = connect_tcp(AF_INET, port);
    send_str(e, "e\n");
    expect_line(l, "e", 1);
    assert_int_equal(tlm_listen_active(l), 2);
    assert_int_equal(tlm_listen_clients(l), 3);
    int f = connect_tcp(AF_INET, port);
    assert_int_equal(next_wait(l, &line, &len, &err), TLM_ERANGE);
    assert_non_null(strstr(err.text, "connection limit reached"));
    assert_int_equal(tlm_listen_refused(l), 3);
    close(b);
    close(e);
    close(f);
    tlm_listen_destroy(l);
}

/* Two clients with lines buffered at once are served alternately, not one after the
 * other. */
static void test_round_robin(void **state)
{
    struct tlm_listener *l = listen_on("tcp://127.0.0.1:0", 0, 0);
    const char *line;
    size_t len;
    struct tlm_error err;
    char chunk[2][400 * 12];
    int count[2] = { 0, 0 }, seen[2] = { 0, 0 };
    (void)state;
    int port = tlm_listen_port(l);
    int fd[2] = { connect_tcp(AF_INET, port), connect_tcp(AF_INET, port) };
    send_str(fd[0], "A\n");
    send_str(fd[1], "B\n");
    for (int i = 0; i < 2; i++) /* both accepted */
        assert_int_equal(next_wait(l, &line, &len, &err), 1);
    for (int k = 0; k < 2; k++) {
        size_t n = 0;
        for (int i = 0; i < 400; i++)
            n += (size_t)sprintf(chunk[k] + n, "%c%07d\n", 'A' + k, i);
        assert_int_equal(write_all(fd[k], chunk[k], n), 0);
    }
    wait_sent(fd[0]); /* both are in the listener's socket buffers */
    wait_sent(fd[1]);
    for (int i = 0; i < 800; i++) {
        assert_int_equal(next_wait(l, &line, &len, &err), 1);
        int k = line[0] - 'A';
        assert_int_equal(atoi(line + 1), seen[k]++);
        if (i < 100)
            count[k]++;
    }
    assert_true(count[0] >= 40 && count[1] >= 40);
    close(fd[0]);
    close(fd[1]);
    tlm_listen_destroy(l);
}

/* ---- UDP, unix, IPv6 ---------------------------------------------------------------- */

static void test_udp(void **state)
{
    struct tlm_listener *l = listen_on("udp://127.0.0.1:0", 8, 0);
    const char *line;
    size_t len;
    struct tlm_error err;
    char name[96];
    (void)state;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)tlm_listen_port(l)) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
    peer_name(s, "udp", name, sizeof(name));
    send_str(s, "a\nb\r\nc"); /* three lines, the last without "\n" */
    send_str(s, "d\n");
    send_str(s, "123456789\nok\n");
    expect_line(l, "a", 1);
    assert_string_equal(tlm_listen_source(l), name);
    expect_line(l, "b", 2);
    expect_line(l, "c", 3);
    expect_line(l, "d", 1); /* numbered within the datagram */
    assert_int_equal(next_wait(l, &line, &len, &err), TLM_ERANGE);
    assert_string_equal(err.source, name);
    assert_int_equal(err.line, 1);
    assert_non_null(strstr(err.text, "line longer than 8 bytes"));
    expect_line(l, "ok", 2);
    expect_quiet(l, 20);
    assert_int_equal(tlm_listen_clients(l), 3); /* datagrams */
    assert_int_equal(tlm_listen_active(l), 0);
    close(s);
    tlm_listen_destroy(l);
}

static void test_unix(void **state)
{
    char path[300], url[320], other[300], ourl[320];
    struct stat st;
    (void)state;
    snprintf(path, sizeof(path), "%s/in.sock", dir);
    snprintf(url, sizeof(url), "unix:%s", path);
    struct tlm_listener *l = listen_on(url, 0, 0);
    assert_int_equal(tlm_listen_port(l), 0);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    int fd = connect_unix(path);
    send_str(fd, "u1\nu2\r\n");
    close(fd);
    expect_line(l, "u1", 1);
    assert_string_equal(tlm_listen_source(l), "unix:#1");
    expect_line(l, "u2", 2);
    fd = connect_unix(path);
    send_str(fd, "v1\n");
    expect_line(l, "v1", 1);
    assert_string_equal(tlm_listen_source(l), "unix:#2");
    close(fd);

    /* a second listener on a live socket is refused and leaves the file alone */
    const char *msg = listen_fails(url, 0, TLM_EIO);
    assert_non_null(strstr(msg, "already in use"));
    assert_int_equal(lstat(path, &st), 0);
    tlm_listen_destroy(l);
    assert_int_equal(lstat(path, &st), -1); /* removed at destroy */

    /* a regular file is never replaced */
    snprintf(other, sizeof(other), "%s/plain", dir);
    FILE *f = fopen(other, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(ourl, sizeof(ourl), "unix:%s", other);
    msg = listen_fails(ourl, 0, TLM_EINVAL);
    assert_non_null(strstr(msg, "is not a socket"));
    assert_int_equal(lstat(other, &st), 0);
    assert_true(S_ISREG(st.st_mode));

    /* a stale socket (its listener died without removing it) is replaced */
    snprintf(other, sizeof(other), "%s/stale.sock", dir);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    assert_true(strlen(other) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, other, strlen(other) + 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(s);
    snprintf(ourl, sizeof(ourl), "unix://%s", other);
    l = listen_on(ourl, 0, 0);
    fd = connect_unix(other);
    send_str(fd, "w\n");
    expect_line(l, "w", 1);
    close(fd);
    tlm_listen_destroy(l);
    assert_int_equal(lstat(other, &st), -1);
}

static void test_ipv6(void **state)
{
    struct tlm_listen_opts o = { "tcp://[::1]:0", 0, 0, 0 };
    struct tlm_error err;
    char name[96];
    (void)state;
    struct tlm_listener *l = tlm_listen_create(&o, &err);
    if (!l) {
        print_message("# no IPv6 loopback here: %s\n", err.text);
        skip();
    }
    int fd = connect_tcp(AF_INET6, tlm_listen_port(l));
    peer_name(fd, "tcp", name, sizeof(name));
    assert_string_equal(strncmp(name, "tcp:[::1]:", 10) == 0 ? "ok" : name, "ok");
    send_str(fd, "six\n");
    expect_line(l, "six", 1);
    assert_string_equal(tlm_listen_source(l), name);
    close(fd);
    tlm_listen_destroy(l);
}

/* ---- addresses and errors ----------------------------------------------------------- */

static void test_loopback_rule(void **state)
{
    (void)state;
    const char *msg = listen_fails("tcp://0.0.0.0:0", 0, TLM_EINVAL);
    assert_string_equal(msg, "refusing to listen on 0.0.0.0: not a loopback address, so other "
                             "hosts could connect (public addresses must be allowed explicitly)");
    msg = listen_fails("udp://0.0.0.0:0", 0, TLM_EINVAL);
    assert_non_null(strstr(msg, "not a loopback address"));
    msg = listen_fails("tcp://[::]:0", 0, TLM_EINVAL);
    assert_non_null(strstr(msg, "refusing to listen on ::"));

    struct tlm_listen_opts o = { "tcp://0.0.0.0:0", 0, 0, 1 };
    struct tlm_error err;
    struct tlm_listener *l = tlm_listen_create(&o, &err);
    if (!l)
        fail_msg("allow_public: %s", err.text);
    assert_true(tlm_listen_port(l) > 0);
    tlm_listen_destroy(l);

    /* loopback names and the whole of 127.0.0.0/8 need no permission */
    l = listen_on("tcp://localhost:0", 0, 0);
    tlm_listen_destroy(l);
    l = listen_on("tcp://127.0.0.2:0", 0, 0);
    tlm_listen_destroy(l);
    l = listen_on("tcp://:0", 0, 0); /* empty host: 127.0.0.1 */
    int fd = connect_tcp(AF_INET, tlm_listen_port(l));
    send_str(fd, "x\n");
    expect_line(l, "x", 1);
    close(fd);
    tlm_listen_destroy(l);
}

static void test_bad_urls(void **state)
{
    static const struct {
        const char *url, *text;
    } cases[] = {
        { "http://example.com:80",
          "unsupported scheme 'http' (expected tcp://, udp:// or unix:)" },
        { "localhost:9000", "'localhost:9000' is not a listen address (expected "
                            "tcp://HOST:PORT, udp://HOST:PORT or unix:PATH)" },
        { "", "empty listen address (expected tcp://HOST:PORT, udp://HOST:PORT or unix:PATH)" },
        { "tcp://127.0.0.1", "missing port in 'tcp://127.0.0.1' (expected tcp://HOST:PORT)" },
        { "udp://127.0.0.1:", "missing port in 'udp://127.0.0.1:' (expected udp://HOST:PORT)" },
        { "tcp://127.0.0.1:99999", "bad port '99999' in 'tcp://127.0.0.1:99999' (expected 0 to "
                                   "65535)" },
        { "tcp://127.0.0.1:9x", "bad port '9x' in 'tcp://127.0.0.1:9x' (expected 0 to 65535)" },
        { "tcp://[::1:80", "missing ']' after the IPv6 address in 'tcp://[::1:80'" },
        { "tcp://[::1]", "missing port in 'tcp://[::1]' (expected tcp://HOST:PORT)" },
        { "tcp://::1:80", "an IPv6 address needs brackets: tcp://[ADDRESS]:PORT, in "
                          "'tcp://::1:80'" },
        { "unix:", "missing path in 'unix:' (expected unix:PATH)" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(listen_fails(cases[i].url, 0, TLM_EINVAL), cases[i].text);

    char longpath[200];
    memset(longpath, 'p', sizeof(longpath) - 1);
    memcpy(longpath, "unix:/", 6);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_non_null(strstr(listen_fails(longpath, 0, TLM_EINVAL), "unix socket path too long"));

    struct tlm_listen_opts o = { "tcp://127.0.0.1:0", 0, -1, 0 };
    struct tlm_error err;
    assert_null(tlm_listen_create(&o, &err));
    assert_int_equal(err.code, TLM_EINVAL);
    tlm_listen_destroy(NULL);
}

static void test_address_in_use(void **state)
{
    char url[64];
    (void)state;
    struct tlm_listener *l = listen_on("tcp://127.0.0.1:0", 0, 0);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", tlm_listen_port(l));
    const char *msg = listen_fails(url, 0, TLM_EIO);
    assert_non_null(strstr(msg, "cannot listen on 127.0.0.1 port"));
    assert_non_null(strstr(msg, "Address already in use"));
    tlm_listen_destroy(l);
}

/* ---- timeouts and the on_block hook ------------------------------------------------- */

static int blocked;

static int on_block(void *arg)
{
    blocked++;
    return arg ? TLM_EPIPE : 0;
}

static void test_timeout_and_on_block(void **state)
{
    struct tlm_listener *l = listen_on("tcp://127.0.0.1:0", 0, 0);
    const char *line = "x";
    size_t len = 1;
    (void)state;
    tlm_listen_on_block(l, on_block, NULL);
    long long t0 = now_ms();
    assert_int_equal(tlm_listen_next(l, &line, &len, 0, NULL), TLM_EAGAIN);
    assert_int_equal(tlm_listen_next(l, &line, &len, 60, NULL), TLM_EAGAIN);
    long long dt = now_ms() - t0;
    assert_true(dt >= 55 && dt < 5000);
    assert_int_equal(blocked, 2);
    assert_null(line);

    /* buffered lines are returned without blocking; the hook runs only when empty */
    int fd = connect_tcp(AF_INET, tlm_listen_port(l));
    send_str(fd, "1\n2\n");
    wait_sent(fd);
    blocked = 0;
    expect_line(l, "1", 1);
    int before = blocked;
    expect_line(l, "2", 2);
    assert_int_equal(blocked, before);

    /* the hook's error is returned */
    tlm_listen_on_block(l, on_block, l);
    assert_int_equal(tlm_listen_next(l, &line, &len, -1, NULL), TLM_EPIPE);
    close(fd);
    tlm_listen_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_many_clients),
        cmocka_unit_test(test_partial_line_at_disconnect),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_udp),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_loopback_rule),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_address_in_use),
        cmocka_unit_test(test_timeout_and_on_block),
    };
    return cmocka_run_group_tests_name("net", tests, setup, teardown);
}
