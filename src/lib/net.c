/*
 * net.c - the socket listener of `telem ingest --listen` (see net.h).
 *
 * Design. One thread, one poll() over the listening sockets and every client; all
 * sockets are non-blocking. Each TCP/unix client has its own buffer in which lines are
 * framed exactly as reader.c frames them: [start, end) holds bytes not yet returned,
 * memchr resumes at scan, and a line is returned in place (its "\n", or the "\r" before
 * it, becomes the NUL), borrowed until the next call.
 *
 * Fairness. Clients whose buffers may hold a complete line sit in a FIFO ready queue;
 * tlm_listen_next pops the first one, takes one line from it and puts it back at the
 * tail, so clients with buffered lines are served one line each, round-robin. Only when
 * the queue is empty (no complete line buffered anywhere) does the listener poll again,
 * and then it reads at most one buffer's worth from each ready client. So buffered lines
 * always go out before more is read, memory per client is bounded by its buffer, and
 * one fast client cannot starve the others.
 *
 * Limits. A line longer than max_line is reported (TLM_ERANGE) and discarded up to its
 * "\n"; the connection stays open, so a client sending one oversized record loses only
 * that record. A client's buffer therefore never holds more than max_line + 1 bytes of
 * an unfinished line, plus one read. Past max_conns, a new client is accepted and closed
 * at once (it sees end of file rather than hanging in the backlog), and the first such
 * refusal of an episode is reported; the episode ends when a client leaves. EMFILE is
 * handled the same way with a reserve descriptor (close it, accept, close, reopen), so
 * a full descriptor table cannot make poll() spin on a readable listening socket.
 *
 * End of a connection. The read that sees end of file (or a reset) queues the client;
 * its remaining complete lines are returned first, then an unfinished line is reported
 * (TLM_EPARSE, the bytes in *line) and the client is closed. A client whose partial
 * line was returned is kept in `dying` until the next call, so the borrowed bytes stay
 * valid.
 *
 * UDP has no connections: each datagram is received into one buffer and cut into lines;
 * a datagram or its last part without "\n" is a line. Line numbers count within the
 * datagram, because keeping per-sender counters would be unbounded state.
 *
 * Safety: addresses are resolved with getaddrinfo(AI_PASSIVE) and every result must be
 * loopback (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) unless allow_public is set. A unix
 * socket file is only replaced when it is a socket nobody listens on, and only removed
 * at destroy when the path still names the socket this listener created.
 *
 * This is the only file of libtelem that touches sockets (style.md, section 2).
 */
#define _GNU_SOURCE
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKS 8             /* listening sockets for one URL (addresses of a name) */
#define BUF_INIT (16u << 10)    /* first buffer of a client */
#define BUF_FAST (256u << 10)   /* a client that fills its buffer grows up to this */
#define MIN_ROOM 4096u          /* compact or grow when less room than this is left */
#define ACCEPT_BURST 64         /* accepts per poll round */
#define DGRAM_CAP 65536u        /* largest UDP payload we receive */
#define NAME_LEN 80             /* "tcp:[ffff:...:ffff]:65535" fits */
#define MAX_LINE_LIMIT (1ull << 30) /* max_line above 1 GiB is refused */

enum kind { K_TCP, K_UDP, K_UNIX };

/* One TCP or unix client. */
struct conn {
    int fd;
    int idx;                  /* index in l->conns */
    unsigned long long id;    /* unique per listener, to notice a change of source */
    char *buf;                /* bytes read, owned */
    size_t cap;               /* allocated size of buf (always > end: room for a NUL) */
    size_t start, end, scan;  /* unreturned bytes [start, end); no "\n" in [start, scan) */
    long long line;           /* lines finished so far (returned or reported too long) */
    long long consumed;       /* bytes before buf[start] since the connection began */
    int eof;                  /* 0 open, 1 end of file seen, 2 read error (errno in err_no) */
    int err_no;
    int discarding;           /* dropping the rest of an overlong line up to its "\n" */
    int grow;                 /* the last read filled all room: grow before the next */
    int queued;               /* in the ready queue */
    struct conn *next;        /* ready queue link */
    char name[NAME_LEN];      /* "tcp:127.0.0.1:53422", "unix:#3" */
};

struct tlm_listener {
    int kind;
    int socks[MAX_SOCKS];     /* listening (TCP/unix) or bound (UDP) sockets */
    int nsocks;
    int port;                 /* bound port, 0 for unix */
    char *unix_path;          /* owned; the socket file we created, or NULL */
    dev_t unix_dev;           /* identity of that file, checked before unlinking */
    ino_t unix_ino;

    size_t max_line;
    int max_conns;

    struct conn **conns;      /* connected clients [0, nconns), owned */
    int nconns, conns_cap;
    struct pollfd *pfds;
    size_t pfds_cap;
    struct conn *qhead, *qtail; /* ready queue: clients that may hold a complete line */
    struct conn *dying;       /* closed client whose partial line was just returned */
    unsigned long long next_id;

    int reserve_fd;           /* /dev/null, given up to accept-and-close on EMFILE */
    int refusing;             /* a refusal was reported and no client has left since */
    long long accepted, refused, datagrams;

    int pending;              /* an event (code below) waits to be returned */
    int pend_code;
    char pend_source[NAME_LEN];
    char pend_text[TLM_ERROR_TEXT];

    int (*on_block)(void *);
    void *on_block_arg;
    int wake_fd;                /* see tlm_listen_wake_fd, -1 for none */

    char source[NAME_LEN];    /* client of the last line */
    unsigned long long source_id;
    long long line;           /* its line number */

    /* UDP: the datagram being cut into lines */
    char *dgram;              /* DGRAM_CAP + 1 bytes, owned */
    size_t dlen, dpos;
    long long dline;
    unsigned long long did;
    char dsource[NAME_LEN];
    int udp_rr;               /* next UDP socket to try */
};

/* ---- names and addresses --------------------------------------------------------- */

/* "proto:1.2.3.4:port" or "proto:[::1]:port". */
static void addr_name(char *out, size_t n, const char *proto, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, n, "%s:%s:%d", proto, host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, n, "%s:[%s]:%d", proto, host, port);
    } else {
        snprintf(out, n, "%s:?", proto);
    }
}

/* The address alone ("0.0.0.0", "::"), for messages. */
static void addr_host(char *out, size_t n, const struct sockaddr *sa)
{
    const void *a = sa->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)n))
        snprintf(out, n, "?");
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return (a >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* ---- URL parsing ------------------------------------------------------------------ */

#define EXPECTED "expected tcp://HOST:PORT, udp://HOST:PORT or unix:PATH"

struct url {
    int kind;
    char host[256];
    char port[8];
    const char *path; /* into the URL, for unix */
};

static int parse_url(const char *s, struct url *u, struct tlm_error *err)
{
    const char *rest;
    memset(u, 0, sizeof(*u));
    if (!s || !*s)
        return tlm_error_set(err, TLM_EINVAL, "empty listen address (" EXPECTED ")");
    if (!strncasecmp(s, "tcp://", 6)) {
        u->kind = K_TCP;
        rest = s + 6;
    } else if (!strncasecmp(s, "udp://", 6)) {
        u->kind = K_UDP;
        rest = s + 6;
    } else if (!strncasecmp(s, "unix:", 5)) {
        u->kind = K_UNIX;
        u->path = s + 5;
        if (!strncmp(u->path, "//", 2))
            u->path += 2; /* unix:///run/x.sock */
        if (!*u->path)
            return tlm_error_set(err, TLM_EINVAL, "missing path in '%s' (expected unix:PATH)", s);
        if (strlen(u->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return tlm_error_set(err, TLM_EINVAL,
                                 "unix socket path too long (%zu bytes, at most %zu)",
                                 strlen(u->path),
                                 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return 0;
    } else {
        const char *sep = strstr(s, "://");
        if (sep && sep > s && (size_t)(sep - s) < 32)
            return tlm_error_set(err, TLM_EINVAL,
                                 "unsupported scheme '%.*s' (expected tcp://, udp:// or unix:)",
                                 (int)(sep - s), s);
        return tlm_error_set(err, TLM_EINVAL, "'%s' is not a listen address (" EXPECTED ")", s);
    }

    const char *host = rest, *host_end, *colon;
    if (*rest == '[') {
        host = rest + 1;
        host_end = strchr(host, ']');
        if (!host_end)
            return tlm_error_set(err, TLM_EINVAL, "missing ']' after the IPv6 address in '%s'",
                                 s);
        colon = host_end + 1;
        if (*colon != ':')
            return tlm_error_set(err, TLM_EINVAL, "missing port in '%s' (expected %.6sHOST:PORT)",
                                 s, s);
    } else {
        colon = strrchr(rest, ':');
        if (!colon)
            return tlm_error_set(err, TLM_EINVAL, "missing port in '%s' (expected %.6sHOST:PORT)",
                                 s, s);
        host_end = colon;
        if (memchr(rest, ':', (size_t)(colon - rest)))
            return tlm_error_set(err, TLM_EINVAL,
                                 "an IPv6 address needs brackets: %.6s[ADDRESS]:PORT, in '%s'", s,
                                 s);
    }
    size_t hl = (size_t)(host_end - host);
    if (hl >= sizeof(u->host))
        return tlm_error_set(err, TLM_EINVAL, "host name too long in '%s'", s);
    memcpy(u->host, host, hl);
    u->host[hl] = '\0';
    if (!hl)
        snprintf(u->host, sizeof(u->host), "127.0.0.1"); /* loopback by default */

    const char *p = colon + 1;
    size_t pl = strlen(p);
    long v = 0;
    int ok = pl > 0 && pl <= 5;
    for (size_t i = 0; ok && i < pl; i++) {
        if (p[i] < '0' || p[i] > '9')
            ok = 0;
        else
            v = v * 10 + (p[i] - '0');
    }
    if (!ok || v > 65535) {
        if (!pl)
            return tlm_error_set(err, TLM_EINVAL, "missing port in '%s' (expected %.6sHOST:PORT)",
                                 s, s);
        return tlm_error_set(err, TLM_EINVAL, "bad port '%s' in '%s' (expected 0 to 65535)", p,
                             s);
    }
    snprintf(u->port, sizeof(u->port), "%u", (unsigned)v & 0xffffu);
    return 0;
}

/* ---- creating and destroying ------------------------------------------------------ */

static int bind_inet(struct tlm_listener *l, const struct url *u, int allow_public,
                     struct tlm_error *err)
{
    struct addrinfo hints, *res = NULL, *ai;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = u->kind == K_UDP ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g != 0)
        return tlm_error_set(err, TLM_EINVAL, "cannot resolve '%s': %s", u->host,
                             g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));

    /* distinct addresses, all checked before anything is bound */
    struct addrinfo *list[MAX_SOCKS];
    int n = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (!allow_public && !is_loopback(ai->ai_addr)) {
            char h[INET6_ADDRSTRLEN];
            addr_host(h, sizeof(h), ai->ai_addr);
            freeaddrinfo(res);
            return tlm_error_set(err, TLM_EINVAL,
                                 "refusing to listen on %s: not a loopback address, so other "
                                 "hosts could connect (public addresses must be allowed "
                                 "explicitly)",
                                 h);
        }
        int dup = 0;
        for (int i = 0; i < n; i++)
            if (list[i]->ai_addrlen == ai->ai_addrlen &&
                !memcmp(list[i]->ai_addr, ai->ai_addr, ai->ai_addrlen))
                dup = 1;
        if (!dup && n < MAX_SOCKS)
            list[n++] = ai;
    }
    if (n == 0) {
        freeaddrinfo(res);
        return tlm_error_set(err, TLM_EINVAL, "'%s' has no IPv4 or IPv6 address", u->host);
    }
    if (!strcmp(u->port, "0"))
        n = 1; /* port 0: one socket, or each address would get its own port */

    int hard = 0, soft = 0; /* errno of a failure that stops us / that another address may cover */
    char hard_host[INET6_ADDRSTRLEN] = "", soft_host[INET6_ADDRSTRLEN] = "";
    for (int i = 0; i < n && !hard; i++) {
        ai = list[i];
        if (l->nsocks > 0) { /* same port on every address */
            if (ai->ai_family == AF_INET)
                ((struct sockaddr_in *)ai->ai_addr)->sin_port = htons((uint16_t)l->port);
            else
                ((struct sockaddr_in6 *)ai->ai_addr)->sin6_port = htons((uint16_t)l->port);
        }
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        int one = 1, e = 0;
        if (fd < 0) {
            e = errno;
        } else {
            if (ai->ai_family == AF_INET6 && n > 1)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
            if (u->kind == K_TCP)
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
                (u->kind == K_TCP && listen(fd, SOMAXCONN) < 0))
                e = errno;
        }
        if (e) {
            if (fd >= 0)
                close(fd);
            /* no IPv6 here: another address of the same name may still work */
            int tolerable = e == EAFNOSUPPORT || e == EADDRNOTAVAIL || e == EPROTONOSUPPORT;
            if (tolerable && !soft) {
                soft = e;
                addr_host(soft_host, sizeof(soft_host), ai->ai_addr);
            } else if (!tolerable) {
                hard = e;
                addr_host(hard_host, sizeof(hard_host), ai->ai_addr);
            }
            continue;
        }
        if (u->kind == K_UDP) {
            int rcv = 4 << 20; /* fewer drops in bursts; best effort */
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
        }
        if (l->nsocks == 0) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
                l->port = ntohs(ss.ss_family == AF_INET
                                    ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        l->socks[l->nsocks++] = fd;
    }
    freeaddrinfo(res);
    if (hard || l->nsocks == 0)
        return tlm_error_set(err, TLM_EIO, "cannot listen on %s port %s: %s",
                             hard ? hard_host : soft_host, u->port, strerror(hard ? hard : soft));
    return 0;
}

static int bind_unix(struct tlm_listener *l, const struct url *u, struct tlm_error *err)
{
    struct sockaddr_un sa;
    struct stat st;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, u->path, strlen(u->path) + 1);

    if (lstat(u->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return tlm_error_set(err, TLM_EINVAL,
                                 "refusing to replace '%s': it exists and is not a socket",
                                 u->path);
        /* a socket file: stale (nobody listening) is replaced, a live one is in use */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (probe < 0)
            return tlm_error_set(err, TLM_EIO, "socket: %s", strerror(errno));
        int c = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
        int e = errno;
        close(probe);
        if (c == 0 || e != ECONNREFUSED)
            return tlm_error_set(err, TLM_EIO,
                                 "cannot listen on '%s': address already in use (another "
                                 "program listens there)",
                                 u->path);
        if (unlink(u->path) < 0 && errno != ENOENT)
            return tlm_error_set(err, TLM_EIO, "cannot remove the stale socket '%s': %s",
                                 u->path, strerror(errno));
    } else if (errno != ENOENT) {
        return tlm_error_set(err, TLM_EIO, "cannot use '%s': %s", u->path, strerror(errno));
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tlm_error_set(err, TLM_EIO, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return tlm_error_set(err, TLM_EIO, "cannot listen on '%s': %s", u->path, strerror(e));
    }
    l->socks[l->nsocks++] = fd;
    l->unix_path = strdup(u->path);
    if (!l->unix_path || lstat(u->path, &st) < 0) {
        unlink(u->path);
        return tlm_error_set(err, l->unix_path ? TLM_EIO : TLM_ENOMEM,
                             "cannot set up '%s'", u->path);
    }
    l->unix_dev = st.st_dev;
    l->unix_ino = st.st_ino;
    if (listen(fd, SOMAXCONN) < 0)
        return tlm_error_set(err, TLM_EIO, "cannot listen on '%s': %s", u->path,
                             strerror(errno));
    return 0;
}

struct tlm_listener *tlm_listen_create(const struct tlm_listen_opts *o, struct tlm_error *err)
{
    struct url u;
    tlm_error_clear(err);
    if (!o) {
        tlm_error_set(err, TLM_EINVAL, "no listen options");
        return NULL;
    }
    tlm_error_at(err, o->url ? o->url : "", 0, 0, -1);
    if (parse_url(o->url, &u, err) < 0)
        return NULL;
    if (o->max_conns < 0 || (unsigned long long)o->max_line > MAX_LINE_LIMIT) {
        tlm_error_set(err, TLM_EINVAL, "%s out of range",
                      o->max_conns < 0 ? "max_conns" : "max_line");
        return NULL;
    }

    struct tlm_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        tlm_error_set(err, TLM_ENOMEM, "out of memory");
        return NULL;
    }
    l->wake_fd = -1;
    l->kind = u.kind;
    l->reserve_fd = -1;
    l->max_line = o->max_line ? o->max_line : TLM_LISTEN_MAX_LINE;
    l->max_conns = o->max_conns ? o->max_conns : TLM_LISTEN_MAX_CONNS;
    l->next_id = 1;

    int rc = u.kind == K_UNIX ? bind_unix(l, &u, err) : bind_inet(l, &u, o->allow_public, err);
    if (rc == 0 && u.kind == K_UDP) {
        l->dgram = malloc(DGRAM_CAP + 1);
        if (!l->dgram)
            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
    }
    if (rc < 0) {
        tlm_listen_destroy(l);
        return NULL;
    }
    if (u.kind != K_UDP)
        l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* -1 is tolerated */
    tlm_error_clear(err);
    return l;
}

static void conn_free(struct conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

void tlm_listen_destroy(struct tlm_listener *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->nsocks; i++)
        close(l->socks[i]);
    if (l->unix_path) {
        struct stat st;
        if (lstat(l->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
            st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
            unlink(l->unix_path);
        free(l->unix_path);
    }
    for (int i = 0; i < l->nconns; i++)
        conn_free(l->conns[i]);
    conn_free(l->dying);
    if (l->reserve_fd >= 0)
        close(l->reserve_fd);
    free(l->conns);
    free(l->pfds);
    free(l->dgram);
    free(l);
}

int tlm_listen_port(const struct tlm_listener *l)
{
    return l->port;
}

void tlm_listen_on_block(struct tlm_listener *l, int (*fn)(void *), void *arg)
{
    l->on_block = fn;
    l->on_block_arg = arg;
}

void tlm_listen_wake_fd(struct tlm_listener *l, int fd)
{
    l->wake_fd = fd;
}

const char *tlm_listen_source(const struct tlm_listener *l)
{
    return l->source;
}

long long tlm_listen_line(const struct tlm_listener *l)
{
    return l->line;
}

long long tlm_listen_clients(const struct tlm_listener *l)
{
    return l->kind == K_UDP ? l->datagrams : l->accepted;
}

int tlm_listen_active(const struct tlm_listener *l)
{
    return l->nconns;
}

long long tlm_listen_refused(const struct tlm_listener *l)
{
    return l->refused;
}

/* ---- clients: queue, accept, read, close ------------------------------------------ */

static void enqueue(struct tlm_listener *l, struct conn *c)
{
    if (c->queued)
        return;
    c->queued = 1;
    c->next = NULL;
    if (l->qtail)
        l->qtail->next = c;
    else
        l->qhead = c;
    l->qtail = c;
}

static struct conn *dequeue(struct tlm_listener *l)
{
    struct conn *c = l->qhead;
    if (c) {
        l->qhead = c->next;
        if (!l->qhead)
            l->qtail = NULL;
        c->queued = 0;
        c->next = NULL;
    }
    return c;
}

/* Takes c out of the client list and closes its socket. c must not be queued. The
 * memory is freed now, or at the next call when keep is set (its bytes are borrowed). */
static void conn_close(struct tlm_listener *l, struct conn *c, int keep)
{
    int i = c->idx;
    l->conns[i] = l->conns[--l->nconns];
    l->conns[i]->idx = i;
    if (l->nconns < l->max_conns)
        l->refusing = 0; /* a later refusal is a new episode, reported again */
    close(c->fd);
    c->fd = -1;
    if (keep) {
        conn_free(l->dying);
        l->dying = c;
    } else {
        conn_free(c);
    }
}

/* Records an event for the next return of tlm_listen_next. */
static void refuse(struct tlm_listener *l, const char *who, const char *why)
{
    l->refused++;
    if (l->refusing || l->pending)
        return;
    l->refusing = 1;
    l->pending = 1;
    l->pend_code = TLM_ERANGE;
    snprintf(l->pend_source, sizeof(l->pend_source), "%s", who);
    snprintf(l->pend_text, sizeof(l->pend_text), "%s", why);
}

static void client_name(struct tlm_listener *l, char *out, size_t n,
                        const struct sockaddr_storage *ss)
{
    if (l->kind == K_UNIX)
        snprintf(out, n, "unix:#%lld", l->accepted + l->refused + 1);
    else
        addr_name(out, n, "tcp", (const struct sockaddr *)ss);
}

static int do_accept(struct tlm_listener *l, int sock, struct tlm_error *err)
{
    for (int k = 0; k < ACCEPT_BURST; k++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char name[NAME_LEN];
        memset(&ss, 0, sizeof(ss));
        int fd = accept4(sock, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
                return 0;
            if (e == ECONNABORTED || e == EPROTO || e == EPERM)
                continue; /* that client is gone already */
            if (e == EMFILE || e == ENFILE) {
                /* refuse the client rather than leave it readable forever */
                if (l->reserve_fd < 0)
                    return 0;
                close(l->reserve_fd);
                sl = sizeof(ss);
                fd = accept4(sock, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
                if (fd >= 0) {
                    char why[TLM_ERROR_TEXT];
                    client_name(l, name, sizeof(name), &ss);
                    close(fd);
                    snprintf(why, sizeof(why),
                             "out of file descriptors with %d clients connected; refusing "
                             "new clients until one disconnects",
                             l->nconns);
                    refuse(l, name, why);
                }
                l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                return 0;
            }
            if (e == ENOBUFS || e == ENOMEM)
                return 0; /* transient; the next round tries again */
            return tlm_error_set(err, TLM_EIO, "accept failed: %s", strerror(e));
        }
        client_name(l, name, sizeof(name), &ss);
        if (l->nconns >= l->max_conns) {
            char why[TLM_ERROR_TEXT];
            close(fd);
            snprintf(why, sizeof(why),
                     "connection limit reached (%d concurrent clients); refusing new clients "
                     "until one disconnects",
                     l->max_conns);
            refuse(l, name, why);
            continue;
        }
        if (l->nconns == l->conns_cap) {
            int ncap = l->conns_cap ? l->conns_cap * 2 : 16;
            struct conn **nc = realloc(l->conns, (size_t)ncap * sizeof(*nc));
            if (!nc) {
                close(fd);
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            }
            l->conns = nc;
            l->conns_cap = ncap;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        }
        c->fd = fd;
        c->id = l->next_id++;
        memcpy(c->name, name, sizeof(name));
        c->idx = l->nconns;
        l->conns[l->nconns++] = c;
        l->accepted++;
    }
    return 0;
}

/* Makes room in c->buf for a read. Only called when c holds no complete line, so
 * [start, end) is one unfinished line of at most max_line + 1 bytes. */
static int conn_room(struct conn *c)
{
    if (c->start == c->end)
        c->start = c->end = c->scan = 0;
    if (c->cap - c->end > MIN_ROOM && !c->grow)
        return 0;
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->scan -= c->start;
        c->start = 0;
    }
    size_t ncap = c->cap ? c->cap : BUF_INIT;
    if (c->grow && ncap < BUF_FAST)
        ncap *= 2;
    while (ncap - c->end <= MIN_ROOM)
        ncap *= 2;
    c->grow = 0;
    if (ncap != c->cap) {
        char *nb = realloc(c->buf, ncap);
        if (!nb)
            return TLM_ENOMEM;
        c->buf = nb;
        c->cap = ncap;
    }
    return 0;
}

/* One read from a client that poll() reported. Queues c when there is something new to
 * look at (bytes, end of file or an error). */
static int conn_read(struct tlm_listener *l, struct conn *c, struct tlm_error *err)
{
    if (c->eof)
        return 0;
    if (conn_room(c) < 0)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    size_t room = c->cap - c->end - 1; /* keep one byte for a NUL */
    ssize_t got = read(c->fd, c->buf + c->end, room);
    if (got > 0) {
        c->end += (size_t)got;
        if ((size_t)got == room)
            c->grow = 1;
    } else if (got == 0) {
        c->eof = 1;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return 0;
    } else {
        c->eof = 2;
        c->err_no = errno;
    }
    enqueue(l, c);
    return 0;
}

static void set_source(struct tlm_listener *l, unsigned long long id, const char *name,
                       long long line)
{
    if (l->source_id != id) {
        snprintf(l->source, sizeof(l->source), "%s", name);
        l->source_id = id;
    }
    l->line = line;
}

/* Takes the next line or event from c. Returns 1 (line), TLM_ERANGE / TLM_EPARSE (event,
 * err filled), or 0 when c holds no complete line (then c may have been closed). */
static int conn_take(struct tlm_listener *l, struct conn *c, const char **line, size_t *len,
                     struct tlm_error *err)
{
    for (;;) {
        char *nl = c->end > c->scan ? memchr(c->buf + c->scan, '\n', c->end - c->scan) : NULL;
        if (nl) {
            size_t s = c->start, e = (size_t)(nl - c->buf), n = e - s;
            long long off = c->consumed;
            if (n && c->buf[e - 1] == '\r')
                n--;
            c->consumed += (long long)(e + 1 - s);
            c->start = c->scan = e + 1;
            if (c->discarding) { /* the end of a line already reported too long */
                c->discarding = 0;
                continue;
            }
            c->line++;
            if (n > l->max_line) {
                tlm_error_at(err, c->name, c->line, 0, off);
                return tlm_error_set(err, TLM_ERANGE,
                                     "line longer than %zu bytes (%zu bytes); line dropped",
                                     l->max_line, n);
            }
            c->buf[s + n] = '\0';
            *line = c->buf + s;
            *len = n;
            set_source(l, c->id, c->name, c->line);
            return 1;
        }
        c->scan = c->end;
        if (c->discarding || c->end - c->start > l->max_line + 1) {
            int report = !c->discarding;
            long long off = c->consumed;
            c->consumed += (long long)(c->end - c->start);
            c->start = c->scan = c->end;
            if (report) {
                c->discarding = 1;
                c->line++;
                tlm_error_at(err, c->name, c->line, 0, off);
                return tlm_error_set(err, TLM_ERANGE,
                                     "line longer than %zu bytes; the rest of it is dropped",
                                     l->max_line);
            }
        }
        if (!c->eof)
            return 0;
        if (c->end > c->start) { /* an unfinished line at the end of the connection */
            size_t n = c->end - c->start;
            c->buf[c->end] = '\0';
            *line = c->buf + c->start;
            *len = n;
            tlm_error_at(err, c->name, c->line + 1, 0, c->consumed);
            if (c->eof == 2)
                tlm_error_set(err, TLM_EPARSE, "connection lost inside a line (%zu bytes): %s",
                              n, strerror(c->err_no));
            else
                tlm_error_set(err, TLM_EPARSE, "connection closed inside a line (%zu bytes)", n);
            conn_close(l, c, 1);
            return TLM_EPARSE;
        }
        conn_close(l, c, 0);
        return 0;
    }
}

/* ---- UDP ---------------------------------------------------------------------------- */

/* Receives one datagram if any socket has one. Returns 1, 0 (none), or an error. */
static int udp_recv(struct tlm_listener *l, struct tlm_error *err)
{
    for (int k = 0; k < l->nsocks; k++) {
        int i = (l->udp_rr + k) % l->nsocks;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(l->socks[i], l->dgram, DGRAM_CAP, 0, (struct sockaddr *)&ss, &sl);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED)
                continue;
            if (errno == EINTR)
                return TLM_EAGAIN;
            return tlm_error_set(err, TLM_EIO, "receive failed: %s", strerror(errno));
        }
        l->udp_rr = i + 1;
        l->dlen = (size_t)n;
        l->dpos = 0;
        l->dline = 0;
        l->did = l->next_id++;
        l->datagrams++;
        addr_name(l->dsource, sizeof(l->dsource), "udp", (struct sockaddr *)&ss);
        return 1;
    }
    return 0;
}

static int udp_take(struct tlm_listener *l, const char **line, size_t *len,
                    struct tlm_error *err)
{
    size_t s = l->dpos;
    char *nl = memchr(l->dgram + s, '\n', l->dlen - s);
    size_t e = nl ? (size_t)(nl - l->dgram) : l->dlen, n = e - s;
    l->dpos = nl ? e + 1 : l->dlen;
    if (n && l->dgram[e - 1] == '\r')
        n--;
    l->dline++;
    if (n > l->max_line) {
        tlm_error_at(err, l->dsource, l->dline, 0, (long long)s);
        return tlm_error_set(err, TLM_ERANGE, "line longer than %zu bytes (%zu bytes); line dropped",
                             l->max_line, n);
    }
    l->dgram[s + n] = '\0'; /* dgram has DGRAM_CAP + 1 bytes */
    *line = l->dgram + s;
    *len = n;
    set_source(l, l->did, l->dsource, l->dline);
    return 1;
}

/* ---- the loop ----------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls every socket once; reads from ready clients, accepts new ones. Returns 0 when
 * something may have arrived, TLM_EAGAIN on timeout or signal, or an error. */
static int poll_round(struct tlm_listener *l, int timeout_ms, long long deadline,
                      struct tlm_error *err)
{
    size_t nfds = (size_t)l->nsocks + (size_t)l->nconns;
    if (nfds + 1 > l->pfds_cap) {
        size_t ncap = (nfds + 1) * 2;
        struct pollfd *np = realloc(l->pfds, ncap * sizeof(*np));
        if (!np)
            return tlm_error_set(err, TLM_ENOMEM, "out of memory");
        l->pfds = np;
        l->pfds_cap = ncap;
    }
    for (int i = 0; i < l->nsocks; i++)
        l->pfds[i] = (struct pollfd){ l->socks[i], POLLIN, 0 };
    int nc = l->nconns;
    for (int i = 0; i < nc; i++)
        l->pfds[l->nsocks + i] = (struct pollfd){ l->conns[i]->fd, POLLIN, 0 };

    int pr = poll(l->pfds, (nfds_t)nfds, 0);
    if (pr == 0) {
        if (l->on_block) {
            int rc = l->on_block(l->on_block_arg);
            if (rc < 0)
                return rc;
        }
        int wait = -1;
        if (timeout_ms >= 0) {
            long long left = deadline - now_ms();
            wait = left > 0 ? (int)(left > INT_MAX ? INT_MAX : left) : 0;
        }
        if (wait == 0)
            return TLM_EAGAIN;
        if (l->wake_fd >= 0) {
            /* the wake descriptor last: a signal that came just before this wait */
            l->pfds[nfds] = (struct pollfd){ l->wake_fd, POLLIN, 0 };
            pr = poll(l->pfds, (nfds_t)nfds + 1, wait);
            if (pr > 0 && l->pfds[nfds].revents) {
                pr--;
                if (pr == 0)
                    return TLM_EAGAIN;
            }
        } else {
            pr = poll(l->pfds, (nfds_t)nfds, wait);
        }
        if (pr == 0)
            return TLM_EAGAIN;
    }
    if (pr < 0) {
        if (errno == EINTR)
            return TLM_EAGAIN; /* let the caller look at its signal flags */
        return tlm_error_set(err, TLM_EIO, "poll failed: %s", strerror(errno));
    }
    for (int i = 0; i < nc; i++) {
        if (l->pfds[l->nsocks + i].revents) {
            int rc = conn_read(l, l->conns[i], err);
            if (rc < 0)
                return rc;
        }
    }
    if (l->kind != K_UDP) {
        for (int i = 0; i < l->nsocks; i++) {
            if (l->pfds[i].revents & POLLIN) {
                int rc = do_accept(l, l->socks[i], err);
                if (rc < 0)
                    return rc;
            }
        }
    }
    return 0;
}

int tlm_listen_next(struct tlm_listener *l, const char **line, size_t *len, int timeout_ms,
                    struct tlm_error *err)
{
    long long deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
    *line = NULL;
    *len = 0;
    if (l->dying) {
        conn_free(l->dying);
        l->dying = NULL;
    }
    for (;;) {
        if (l->pending) {
            l->pending = 0;
            tlm_error_clear(err);
            tlm_error_at(err, l->pend_source, 0, 0, -1);
            return tlm_error_set(err, l->pend_code, "%s", l->pend_text);
        }
        if (l->kind == K_UDP) {
            if (l->dpos < l->dlen)
                return udp_take(l, line, len, err);
            int rc = udp_recv(l, err);
            if (rc < 0)
                return rc;
            if (rc == 1)
                continue;
        }
        struct conn *c;
        while ((c = dequeue(l))) {
            int rc = conn_take(l, c, line, len, err);
            if (rc == 1 || rc == TLM_ERANGE) {
                enqueue(l, c); /* round-robin: its next line comes after the others' */
                return rc;
            }
            if (rc != 0)
                return rc; /* TLM_EPARSE: c is closed (kept in dying) */
        }
        int rc = poll_round(l, timeout_ms, deadline, err);
        if (rc < 0)
            return rc;
    }
}
