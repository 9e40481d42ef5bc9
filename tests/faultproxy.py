"""An HTTP reverse proxy on loopback that puts S3 failures between the registry and moto.

The registry's fault handling (botocore retries, timeouts, idempotent conditional writes, checksum
checks) only shows when the network misbehaves, which moto never does. This proxy forwards each
request to the upstream server and, when a rule matches, instead: answers an error status
without forwarding (`status`), closes the connection before forwarding (`drop`), forwards and then
closes without answering (`drop_response`: the write landed but the client never hears so), waits
before forwarding (`delay`), flips a byte of the answer (`corrupt`), or announces the whole answer
and sends only its first half before closing the connection (`truncate`).

It also makes moto's conditional writes atomic: moto checks If-Match / If-None-Match and then
writes, in two steps, on a threaded server; real S3 does both atomically. The proxy forwards
conditional writes one at a time (`serialize_conditional_writes`), which is what S3 guarantees,
so concurrency tests measure the registry and not the emulator's race.
"""

from __future__ import annotations

import http.client
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Action = Literal["status", "drop", "drop_response", "delay", "corrupt", "truncate"]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    }
)
ERROR_CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied", 400: "BadRequest"}


@dataclass
class Fault:
    """A rule: for requests matching `method` and `path` (regex, searched), do `action`.

    `times` is how many matching requests it applies to (None: all of them).
    """

    action: Action
    method: str | None = None
    path: str | None = None
    status: int = 503
    delay_s: float = 0.0
    times: int | None = 1

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and method != self.method:
            return False
        return self.path is None or re.search(self.path, path) is not None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        fault = proxy.take_fault(self.command, self.path)
        proxy.record(self.command, self.path)
        if fault is not None and fault.action == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.action == "status":
            self._answer_error(fault.status)
            return
        if fault is not None and fault.action == "delay" and proxy.stopping.wait(fault.delay_s):
            self.close_connection = True  # the proxy is shutting down: forward nothing more
            return
        conditional = self.command == "PUT" and (
            "If-Match" in self.headers or "If-None-Match" in self.headers
        )
        if conditional and proxy.serialize_conditional_writes:
            with proxy.write_lock:
                status, reason, headers, data = self._forward(body)
        else:
            status, reason, headers, data = self._forward(body)
        if fault is not None and fault.action == "drop_response":
            self.close_connection = True
            return
        if fault is not None and fault.action == "corrupt" and data:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault is not None and fault.action == "truncate" and self.command != "HEAD":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = self.server.proxy.upstream
        conn = http.client.HTTPConnection(
            upstream.hostname or "127.0.0.1", upstream.port, timeout=60
        )
        try:
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
            }
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            conn.close()

    def _answer_error(self, status: int) -> None:
        code = ERROR_CODES.get(status, "InternalError")
        data = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>injected by faultproxy</Message>"
            "<RequestId>faultproxy</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, retry) closes its socket: not a proxy failure.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class FaultProxy:
    """A proxy on a free loopback port in front of `upstream` (an http:// URL)."""

    def __init__(self, upstream: str, serialize_conditional_writes: bool = True) -> None:
        self.upstream = urlsplit(upstream)
        self.serialize_conditional_writes = serialize_conditional_writes
        self.write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self._server = _ProxyServer(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests reached the proxy matching `method` and `path` (regex, searched)."""
        with self._lock:
            return sum(
                1
                for m, p in self.requests
                if (method is None or m == method) and (path is None or re.search(path, p))
            )


def running_proxy(upstream: str, serialize_conditional_writes: bool = True) -> Iterator[FaultProxy]:
    """Generator for fixtures: a started proxy, stopped afterwards."""
    proxy = FaultProxy(upstream, serialize_conditional_writes).start()
    try:
        yield proxy
    finally:
        proxy.stop()
