"""The dashboard's live log tail (server-sent events) following an app writing 2,000 lines/s.

    .venv/bin/python -m bench.dashboard_logs [--rate 2000] [--seconds 10]

One real platform (`conveyor server`) in a temporary home; one app (stdlib only)
whose instance prints numbered lines at ``--rate`` lines/s from a thread. A
logged-in client follows ``GET /ui/apps/<name>/logs`` for ``--seconds`` and
reports how many lines arrived, whether any number was skipped or repeated,
and how far behind the writer the tail was at the end. Bounded: the writer
stops itself after ``--seconds`` + 30 s, the client after ``--seconds``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import httpx

from bench._runs import machine
from bench.platform._control import conveyor, running_platform

APP = """
import os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RATE, STOP = {rate}, time.monotonic() + {limit}

def write():
    n, start = 0, time.monotonic()
    while time.monotonic() < STOP:
        due = int((time.monotonic() - start) * RATE)
        while n < due:
            sys.stdout.write(f"line {{n}}\\n")
            n += 1
        sys.stdout.flush()
        time.sleep(0.005)

class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

threading.Thread(target=write, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Health).serve_forever()
"""


def follow(api: str, token: str, seconds: float) -> list[int]:
    """The line numbers the tail delivered in ``seconds``."""
    numbers: list[int] = []
    with httpx.Client(base_url=api, timeout=30) as client:
        if client.post("/ui/login", data={"token": token}).status_code != 303:
            raise SystemExit("the dashboard refused the platform's token")
        end = time.monotonic() + seconds
        with client.stream("GET", "/ui/apps/talker/logs") as answer:
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    text = json.loads(line[6:])["text"]
                    if text.startswith("line "):
                        numbers.append(int(text[5:]))
                if time.monotonic() > end:
                    break
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        work = Path(tmp)
        project = work / "project"
        (project / "talker").mkdir(parents=True)
        (project / "talker" / "talk.py").write_text(
            APP.format(rate=args.rate, limit=args.seconds + 30)
        )
        (project / "talker.yml").write_text(
            "applications:\n  - name: talker\n    path: ./talker\n"
            "    command: python talk.py\n    instances: 1\n"
            "    health-check: {type: http, endpoint: /, timeout: 30}\n"
        )
        with running_platform(work) as (env, _router):
            home = Path(env["CONVEYOR_HOME"]) / "platform"
            api = json.loads((home / "server.json").read_text())["api"]
            token = (home / "token").read_text().strip()
            conveyor(env, project, "push", "-f", str(project / "talker.yml"))
            numbers = follow(api, token, args.seconds)
    gaps = sum(1 for a, b in itertools.pairwise(numbers) if b != a + 1)
    first, last = (numbers[0], numbers[-1]) if numbers else (0, -1)
    print(machine())
    print(f"writer: {args.rate} lines/s; followed {args.seconds:.0f} s")
    print(f"lines received: {len(numbers)} (numbers {first}..{last})")
    print(f"received per second: {len(numbers) / args.seconds:.0f}")
    print(f"skipped or repeated: {gaps}; expected {last - first + 1}, got {len(numbers)}")


if __name__ == "__main__":
    main()
