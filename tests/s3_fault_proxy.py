"""A fault-injecting HTTP proxy for S3 tests: it stands between the S3 clients and the session's moto server on
127.0.0.1 and, for a deterministic share of the requests, answers what a busy S3 answers or drops the connection.

    with FaultProxy(moto_url, every=4, fault="slowdown", limit=40) as proxy:
        env["AWS_ENDPOINT_URL"] = proxy.url      # clients reach moto through the proxy only

Faults (`fault=`):
- "slowdown": HTTP 503 with S3's own XML error body (`<Code>SlowDown</Code>`), the request never reaches moto;
- "reset": the connection is reset (SO_LINGER 0, a TCP RST) after the request was read, before it reaches moto;
- "mixed": the two alternately.

Which requests: every `every`-th request (the 1st, `every+1`-th, ... are forwarded), at most `limit` faults in all
(bounded: after that every request goes through), or, with `always=` a regular expression, every request whose
path (`/bucket/key?query`) it matches (past any retry budget). Counters are kept under a lock and readable while it runs
(`requests`, `faults`, `faulted_paths`).
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional
from urllib.parse import urlparse

SLOW_DOWN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.'
    "</Message><RequestId>KONFAULT</RequestId><HostId>kon-fault-proxy</HostId></Error>"
).encode()
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FaultProxy:
    def __init__(self, upstream: str, *, every: int = 0, fault: str = "slowdown", limit: int = 1_000,
                 always: Optional[str] = None) -> None:
        assert fault in ("slowdown", "reset", "mixed"), fault
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.every, self.fault, self.limit, self.always = every, fault, limit, always
        self.requests = 0
        self.faults = 0
        self.faulted_paths: List[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the AWS SDK uses it

            def log_message(self, *args: object) -> None:  # quiet
                return

            def _body(self) -> bytes:
                """The request body, de-chunked when the client streams it (the AWS SDK's uploads: HTTP chunks
                carrying an aws-chunked payload, which is forwarded as it is, with its length)."""
                if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                    length = int(self.headers.get("Content-Length") or 0)
                    return self.rfile.read(length) if length else b""
                chunks = []
                for _ in range(1_000_000):  # bounded: a chunk per iteration
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after the chunk
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers, if any
                    pass
                return b"".join(chunks)

            def _handle(self) -> None:
                body = self._body()
                kind = proxy._decide(self.command, self.path)
                if kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if kind == "slowdown":
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in HOP_BY_HOP and k.lower() not in ("expect", "content-length")}
                    headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    declared = response.getheader("Content-Length")
                    # a HEAD answer declares the object's size and carries no body
                    self.send_header("Content-Length", declared if self.command == "HEAD" and declared
                                     else str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="s3-fault-proxy")

    def _decide(self, method: str, path: str) -> Optional[str]:
        with self._lock:
            self.requests += 1
            if self.always is not None:
                hit = re.search(self.always, path) is not None
            else:
                hit = self.every > 0 and self.requests % self.every == 0 and self.faults < self.limit
            if not hit:
                return None
            self.faults += 1
            self.faulted_paths.append(f"{method} {path}")
            if self.fault == "mixed":
                return "slowdown" if self.faults % 2 else "reset"
            return self.fault

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
