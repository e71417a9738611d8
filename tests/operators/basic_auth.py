"""A tracking server that demands basic authentication, for the credential tests: a threading
HTTP proxy that answers 401 without the right ``Authorization`` header and otherwise forwards
to a real MLflow server (or, without one, answers ``/health`` itself)."""

from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class BasicAuthProxy(ThreadingHTTPServer):
    """``http://127.0.0.1:<port>``: checks ``username``/``password``, forwards to ``upstream``.
    ``requests`` records (method, path, authorised) of every request it saw."""

    daemon_threads = True

    def __init__(self, username: str, password: str, upstream: str | None = None):
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.upstream = urlsplit(upstream) if upstream else None
        self.requests: list[tuple[str, str, bool]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self):
        proxy: BasicAuthProxy = self.server
        authorised = self.headers.get("Authorization") == proxy.expected
        proxy.requests.append((self.command, self.path, authorised))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not authorised:
            self._reply(401, b"unauthorized", {"WWW-Authenticate": 'Basic realm="mlflow"'})
        elif proxy.upstream is None:
            self._reply(200, b"OK", {})
        else:
            self._forward(proxy, body)

    def _forward(self, proxy: BasicAuthProxy, body: bytes):
        upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host", "connection")}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        kept = {k: v for k, v in response.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length")}
        upstream.close()
        self._reply(response.status, data, kept)

    def _reply(self, status: int, data: bytes, headers: dict):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, *args):
        pass
