#!/usr/bin/env python3
"""rw-stub.py PORT [STATUS...] - a scripted remote-write receiver for telem's tests.

Listens on 127.0.0.1:PORT (HTTP/1.1, keep-alive). The n-th POST is answered with the n-th
STATUS argument, then 204 for good. A STATUS is CODE, CODE:RETRY_AFTER (a 429/503 with a
Retry-After header in seconds) or CODE=MESSAGE (the response body). With the argument
"v2ok" before the statuses, a 2.0 request (Content-Type proto=io.prometheus.write.v2.Request)
gets 204 with X-Prometheus-Remote-Write-Samples-Written. Each request is logged on stdout:
"n status content-type version body-bytes body-sha1 retry-after auth=<Authorization>
org=<X-Scope-OrgID>". With "tls=CERT:KEY[:CLIENT_CA]" first, it speaks HTTPS (and, with
CLIENT_CA, requires a client certificate signed by it).
"""
import hashlib
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port = int(sys.argv[1])
args = sys.argv[2:]
tls = None
if args and args[0].startswith("tls="):
    tls = args[0][4:].split(":")
    args = args[1:]
v2ok = False
if args and args[0] == "v2ok":
    v2ok = True
    args = args[1:]
script = list(args)
count = [0]


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        count[0] += 1
        i = count[0]
        spec = script[i - 1] if i <= len(script) else "204"
        msg, ra = "", None
        if "=" in spec:
            spec, msg = spec.split("=", 1)
        if ":" in spec:
            spec, ra = spec.split(":", 1)
        code = int(spec)
        ctype = self.headers.get("Content-Type", "")
        ver = self.headers.get("X-Prometheus-Remote-Write-Version", "")
        print(i, code, ctype, ver, len(body), hashlib.sha1(body).hexdigest()[:12],
              ra or "-", "auth=" + self.headers.get("Authorization", "-"),
              "org=" + self.headers.get("X-Scope-OrgID", "-"), flush=True)
        self.send_response(code)
        if ra:
            self.send_header("Retry-After", ra)
        if v2ok and "proto=io.prometheus.write.v2.Request" in ctype and code < 300:
            self.send_header("X-Prometheus-Remote-Write-Samples-Written", "1")
        data = (msg + "\n").encode() if msg else b""
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


srv = ThreadingHTTPServer(("127.0.0.1", port), H)
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls[0], tls[1])
    if len(tls) > 2:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(tls[2])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening", port, flush=True)
srv.serve_forever()
