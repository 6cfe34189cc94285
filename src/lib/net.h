/*
 * net.h - the socket listener behind `telem ingest --listen URL`.
 *
 * The sibling of the line reader (reader.h) for input that arrives over sockets:
 * `--listen tcp://HOST:PORT`, `udp://HOST:PORT` or `unix:PATH`. Many clients may be
 * connected at once; bytes are framed into lines per connection, so lines from different
 * clients never mix, and lines of one connection come out in order. Lines follow the
 * reader's conventions: returned in place, without "\n" or "\r\n", followed by a NUL
 * byte, borrowed until the next call.
 *
 * Safety: a listener binds to loopback addresses only (127.0.0.0/8, ::1, "localhost")
 * unless allow_public is set; an address that resolves to anything else is refused.
 *
 * Limits, each reported once through tlm_listen_next() and never fatal:
 *   - a TCP/unix line longer than max_line: TLM_ERANGE, the rest of that line is
 *     discarded up to its "\n" and the connection carries on with the next line (the
 *     long line still counts in the connection's line numbers);
 *   - a client disconnecting inside a line: TLM_EPARSE ("connection closed inside a line
 *     (12 bytes)"), with the bytes received available in *line;
 *   - more than max_conns concurrent clients: the extra connection is accepted and
 *     closed at once (the client sees end of file) and TLM_ERANGE is returned once per
 *     episode: no further report until the number of clients has dropped below the
 *     limit. Running out of file descriptors is handled the same way.
 *
 * Memory: a client's buffer holds at most one unfinished line (max_line + 1 bytes) plus
 * one read, so the worst case is about max_conns * 2 * max_line; an idle client holds
 * 16 KiB once it has sent anything.
 *
 * UDP: every datagram is framed on its own; it may hold several lines, and a datagram
 * (or its last part) without a trailing "\n" is a line. Line numbers count within the
 * datagram (a UDP listener keeps no per-sender state). UDP may drop datagrams under
 * overload; use TCP when every line matters.
 */
#ifndef TLM_NET_H
#define TLM_NET_H

#include <stddef.h>

#include "error.h"

struct tlm_listener;

#define TLM_LISTEN_MAX_LINE (1u << 20) /* default max_line: 1 MiB */
#define TLM_LISTEN_MAX_CONNS 1024      /* default max_conns */

struct tlm_listen_opts {
    const char *url;  /* tcp://HOST:PORT | udp://HOST:PORT | unix:PATH (also unix://PATH).
                       * HOST is an IPv4 literal, a bracketed IPv6 literal ([::1]) or a
                       * name (localhost); empty (tcp://:9000) means 127.0.0.1. PORT 0
                       * picks a free port (see tlm_listen_port). Borrowed during create. */
    size_t max_line;  /* longest line in bytes, without its "\r\n"; 0 = 1 MiB */
    int max_conns;    /* concurrent TCP/unix clients; 0 = 1024 */
    int allow_public; /* nonzero permits a non-loopback bind address (0.0.0.0, a LAN IP) */
};

/* Parses o->url, resolves it, checks the loopback rule, binds and listens. A name that
 * resolves to several addresses (localhost: 127.0.0.1 and ::1) gets one socket per
 * address (only the first one with port 0). For unix:PATH a stale socket file (no one
 * listening) is replaced; any other existing file is refused.
 * Returns the listener (caller owns it; release with tlm_listen_destroy), or NULL with
 * err filled: TLM_EINVAL for a bad URL or a refused public address, TLM_EIO for a
 * socket error ("address already in use"), TLM_ENOMEM. err->source is the URL. */
struct tlm_listener *tlm_listen_create(const struct tlm_listen_opts *o, struct tlm_error *err);

/* Closes the listening sockets and every client, removes the unix socket file it created
 * (only if the path still is that socket), frees l. NULL is fine. */
void tlm_listen_destroy(struct tlm_listener *l);

/* The bound port (the real one after port 0), or 0 for a unix socket. */
int tlm_listen_port(const struct tlm_listener *l);

/* Called before the listener blocks in poll() (no complete line buffered and no socket
 * ready), like tlm_reader_on_block: stages flush their output there. Return 0, or a
 * negative TLM_E* code to make tlm_listen_next return it. fn NULL removes the hook. */
void tlm_listen_on_block(struct tlm_listener *l, int (*fn)(void *), void *arg);

/* A descriptor that becomes readable when the caller must look at its flags (the read
 * end of a signal handler's self-pipe): tlm_listen_next returns TLM_EAGAIN when it is
 * readable instead of waiting on, so a signal that arrives just before the wait is not
 * lost. The listener never reads it. -1 (the default) for none. */
void tlm_listen_wake_fd(struct tlm_listener *l, int fd);

/* Next complete line from any client; clients with buffered lines are served round-robin,
 * one line each, and buffered lines are returned before more is read.
 * Returns:
 *   1            *line, *len set: borrowed until the next call on l; NUL-terminated, no
 *                "\n" or "\r\n". tlm_listen_source/tlm_listen_line tell where it came from.
 *   TLM_EAGAIN   nothing arrived within timeout_ms (-1 waits forever, 0 does not wait),
 *                or a signal interrupted the wait (the caller looks at its flags).
 *   TLM_EPARSE   a client disconnected inside a line. err->source is the client,
 *                err->line the number that line would have had, err->text the reason;
 *                *line and *len hold the bytes received (borrowed as above).
 *   TLM_ERANGE   a line longer than max_line (err->source, err->line set), or a client
 *                refused at max_conns (err->source is the refused client); *line is NULL.
 *   other < 0    fatal (TLM_EIO from poll/accept, TLM_ENOMEM, or on_block's code).
 * After TLM_EPARSE and TLM_ERANGE the listener stays usable. Never returns 0. */
int tlm_listen_next(struct tlm_listener *l, const char **line, size_t *len, int timeout_ms,
                    struct tlm_error *err);

/* The client of the last line returned: "tcp:127.0.0.1:53422", "tcp:[::1]:53422",
 * "udp:127.0.0.1:4000" or "unix:#3" (the 3rd client accepted). Borrowed until the next
 * call of tlm_listen_next; "" before the first line. */
const char *tlm_listen_source(const struct tlm_listener *l);

/* 1-based number of the last line within its connection (UDP: within its datagram). */
long long tlm_listen_line(const struct tlm_listener *l);

/* TCP/unix: connections accepted so far (refused ones not included). UDP: datagrams
 * received so far. For --stats. */
long long tlm_listen_clients(const struct tlm_listener *l);

/* TCP/unix: clients connected now (0 for UDP). */
int tlm_listen_active(const struct tlm_listener *l);

/* Connections refused at max_conns (or for want of file descriptors) so far. */
long long tlm_listen_refused(const struct tlm_listener *l);

#endif
