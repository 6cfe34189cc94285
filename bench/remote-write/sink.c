/*
 * sink.c - a discarding HTTP/1.1 receiver for the remote-write benchmark: reads each
 * request (headers, Content-Length body) and answers 204, keeping connections alive.
 * One thread per connection. Prints "listening PORT" once ready; counts requests and
 * body bytes and prints them on SIGTERM/SIGINT.
 *
 *   cc -O2 -pthread -o sink sink.c && ./sink 0
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile long long requests, bytes;

static void *conn(void *arg)
{
    int fd = (int)(long)arg;
    static const char resp[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    /* a 2.0 request is answered as a 2.0 receiver does: with the written count */
    static const char resp2[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n"
                                "X-Prometheus-Remote-Write-Samples-Written: 1\r\n\r\n";
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        char *end;
        while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
            if (len == cap)
                goto out;
            ssize_t r = read(fd, buf + len, cap - len);
            if (r <= 0)
                goto out;
            len += (size_t)r;
        }
        size_t hdr = (size_t)(end - buf) + 4, body = 0;
        for (char *p = buf; p < end; p++)
            if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0)
                body = strtoul(p + 15, NULL, 10);
        size_t need = hdr + body;
        if (need > cap) {
            cap = need;
            buf = realloc(buf, cap);
        }
        while (len < need) {
            ssize_t r = read(fd, buf + len, cap - len);
            if (r <= 0)
                goto out;
            len += (size_t)r;
        }
        __atomic_add_fetch(&requests, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&bytes, (long long)body, __ATOMIC_RELAXED);
        int v2 = memmem(buf, hdr, "proto=io.prometheus.write.v2", 28) != NULL;
        if ((v2 ? write(fd, resp2, sizeof(resp2) - 1) : write(fd, resp, sizeof(resp) - 1)) < 0)
            goto out;
        memmove(buf, buf + need, len - need);
        len -= need;
    }
out:
    close(fd);
    free(buf);
    return NULL;
}

static void done(int sig)
{
    (void)sig;
    fprintf(stderr, "sink: %lld requests, %lld bytes\n", requests, bytes);
    _exit(0);
}

int main(int argc, char **argv)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t al = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)(argc > 1 ? atoi(argv[1]) : 0));
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 64)) {
        perror("sink");
        return 1;
    }
    getsockname(s, (struct sockaddr *)&a, &al);
    signal(SIGTERM, done);
    signal(SIGINT, done);
    printf("listening %d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        pthread_t t;
        if (c < 0)
            continue;
        pthread_create(&t, NULL, conn, (void *)(long)c);
        pthread_detach(t);
    }
}
