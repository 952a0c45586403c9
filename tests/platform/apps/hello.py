"""A tiny HTTP app for platform tests: stdlib only, so it starts fast.

GET /            JSON: instance index, revision, pid, path, the headers it received
                 (with the status $HELLO_STATUS, 200 if unset)
GET /health      200
GET /bytes?n=N   N bytes streamed in chunks, without a Content-Length
POST /echo       the request body back, with its length
GET /hog?mb=N    allocates N MiB and keeps it
GET /sleep?s=N   answers after N seconds
GET /child       starts a `sleep` child in its own group and reports its pid
GET /env?name=X  the value of environment variable X (null if unset)
GET /read?path=P     the first bytes of file P, or the error reading it gave
GET /signal?pid=N    sends SIGTERM to process N: "sent", or the error it gave
GET /ready       503 after POST /readiness with "off", 200 again after "on"
POST /readiness  "off" or "on": what GET /ready answers (sent to the instance's own port)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOG: list[bytearray] = []
#: Whether GET /ready answers 200 (the instance sees no file of the test's: it is told).
READY = [True]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("access " + (format % args) + "\n")

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/health":
            self._json(200, {"ok": True})
        elif url.path.endswith("/bytes"):
            n = int(query["n"][0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"x" * 65536
            while n > 0:
                piece = block[: min(n, len(block))]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                n -= len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/hog":
            HOG.append(bytearray(int(query["mb"][0]) * 1024 * 1024))
            for held in HOG:  # touch every page so it is resident
                for i in range(0, len(held), 4096):
                    held[i] = 1
            self._json(200, {"held_mb": sum(len(b) for b in HOG) // (1024 * 1024)})
        elif url.path.endswith("/sleep"):
            time.sleep(float(query["s"][0]))
            self._json(200, {"slept": True})
        elif url.path == "/ready":
            self._json(200 if READY[0] else 503, {"ready": READY[0]})
        elif url.path.endswith("/read"):
            try:
                with open(query["path"][0], "rb") as handle:
                    self._json(200, {"read": handle.read(64).decode(errors="replace")})
            except OSError as exc:
                self._json(200, {"error": type(exc).__name__})
        elif url.path.endswith("/signal"):
            try:
                os.kill(int(query["pid"][0]), 15)
                self._json(200, {"sent": True})
            except OSError as exc:
                self._json(200, {"error": type(exc).__name__})
        elif url.path.endswith("/env"):
            self._json(200, {"value": os.environ.get(query["name"][0])})
        elif url.path == "/child":
            child = subprocess.Popen(["sleep", "300"])
            self._json(200, {"pid": child.pid})
        else:
            self._json(
                int(os.environ.get("HELLO_STATUS", "200")),
                {
                    "index": os.environ.get("CONVEYOR_INSTANCE_INDEX"),
                    "revision": os.environ.get("CONVEYOR_APP_REVISION"),
                    "pid": os.getpid(),
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                },
            )

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = bytearray(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if urlsplit(self.path).path == "/readiness":
            READY[0] = bytes(body).strip() != b"off"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Body-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on {port}", flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
