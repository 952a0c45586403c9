"""The built-in sources and sinks, each run by the runtime over the embedded binder."""

from __future__ import annotations

import csv
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from conveyor.config import Settings
from conveyor.streams.binders import Binder, dlq_name
from conveyor.streams.messages import Message
from tests.streams.helpers import PATIENCE, collect, run_app
from tests.waiting import eventually


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as reply:
            return reply.status, orjson.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_http_source_publishes_what_is_posted(binder: Binder, settings: Settings) -> None:
    app = run_app(
        binder, settings, app="http", output="h.http", stream="h", options={"path": "/tx"}
    )
    base = f"http://127.0.0.1:{app.runtime.app.port}"
    try:
        assert post(f"{base}/tx", b'{"amount": 5}') == (202, {"accepted": 1})
        assert post(f"{base}/tx", b'[{"amount": 1}, {"amount": 2}]') == (202, {"accepted": 2})
        status, body = post(f"{base}/tx", b"{not json")
        assert status == 400
        assert "not JSON" in body["error"]
        assert post(f"{base}/other", b"{}")[0] == 404
        got = collect(binder, "h.http", "h", 3)
    finally:
        app.stop()
    assert [m.payload["amount"] for m in got] == [5, 1, 2]
    assert got[0].headers["origin-stream"] == "h"
    assert got[0].headers["origin-app"] == "http"
    assert isinstance(got[0].headers["created"], float)


def test_file_source_reads_new_files_and_marks_them_done(
    binder: Binder, settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text('{"n": 1}\n\n{"n": 2}\n')
    app = run_app(
        binder, settings, app="file", output="f.file", stream="f",
        options={"directory": str(inbox), "pattern": "*.jsonl", "interval": "0.05"},
    )  # fmt: skip
    try:
        first = collect(binder, "f.file", "f", 2)
        (inbox / "b.jsonl").write_text('{"n": 3}\n')
        second = collect(binder, "f.file", "f", 1)
    finally:
        app.stop()
    assert [m.payload for m in first + second] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert sorted(p.name for p in inbox.iterdir()) == ["a.jsonl.done", "b.jsonl.done"]


def test_file_source_reads_csv(binder: Binder, settings: Settings, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "rows.csv").write_text("id,name\n1,ada\n2,bob\n")
    app = run_app(
        binder, settings, app="file", output="c.file", stream="c",
        options={"directory": str(inbox), "format": "csv", "interval": "0.05"},
    )  # fmt: skip
    try:
        got = collect(binder, "c.file", "c", 2)
    finally:
        app.stop()
    assert [m.payload for m in got] == [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]


def feed(binder: Binder, destination: str, payloads: list[Any]) -> None:
    binder.provision(destination, "s")
    now = time.time()
    binder.publish(
        destination,
        [Message(p, {"id": str(i), "created": now}) for i, p in enumerate(payloads)],
    )


def test_file_sink_appends_csv_with_one_header(
    binder: Binder, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    feed(binder, "s.in", [{"a": 1, "b": "x"}, {"a": 2, "b": "y,z"}])
    app = run_app(
        binder, settings, app="file", input="s.in", group="s",
        options={"path": str(out), "format": "csv"},
    )  # fmt: skip
    try:
        eventually(
            lambda: out.exists() and len(out.read_text().splitlines()) == 3,
            what="the header and two rows",
            timeout=PATIENCE,
        )
        feed(binder, "s.in", [{"a": 3, "b": "w"}])
        eventually(
            lambda: len(out.read_text().splitlines()) == 4, what="the third row", timeout=PATIENCE
        )
    finally:
        app.stop()
    with out.open(newline="") as f:
        assert list(csv.reader(f)) == [["a", "b"], ["1", "x"], ["2", "y,z"], ["3", "w"]]


def test_sql_sink_creates_the_table_and_inserts_rows(
    binder: Binder, settings: Settings, tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    feed(binder, "q.in", [{"n": 1, "name": "a", "tags": ["x"]}, {"n": 2, "name": "b", "tags": []}])
    app = run_app(
        binder, settings, app="sql", input="q.in", group="s",
        options={"url": f"sqlite:///{db}", "table": "events"},
    )  # fmt: skip

    def rows() -> list[tuple[Any, ...]]:
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            try:
                return conn.execute("SELECT n, name, tags FROM events ORDER BY n").fetchall()
            except sqlite3.OperationalError:
                return []

    try:
        eventually(lambda: len(rows()) == 2, what="both rows in the table", timeout=PATIENCE)
    finally:
        app.stop()
    assert rows() == [(1, "a", '["x"]'), (2, "b", "[]")]


def test_log_and_throughput_sinks(
    binder: Binder, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = tmp_path / "report.json"
    feed(binder, "l.in", [{"n": i} for i in range(5)])
    caplog.set_level(logging.INFO, logger="conveyor.streams")
    log_app = run_app(
        binder, settings, app="log", input="l.in", group="s", options={"expression": "n * 10"}
    )
    counter = run_app(
        binder, settings, app="throughput", input="l.in", group="t",
        options={"report": str(report), "every": "2"},
    )  # fmt: skip
    try:
        eventually(
            lambda: report.exists() and orjson.loads(report.read_bytes())["count"] == 5,
            what="the report of 5 messages",
            timeout=PATIENCE,
        )
        eventually(lambda: "40" in caplog.messages, what="the log line", timeout=PATIENCE)
    finally:
        log_app.stop()
        counter.stop()
    assert [m for m in caplog.messages if m.isdigit()] == ["0", "10", "20", "30", "40"]
    summary = orjson.loads(report.read_bytes())
    assert 0 < summary["p50"] <= summary["p99"] < PATIENCE


@pytest.fixture
def echo_server() -> Iterator[str]:
    class Echo(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body.get("n") == 13:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b"unlucky")
                return
            data = orjson.dumps({"double": body["n"] * 2})
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/echo"
    server.shutdown()
    server.server_close()


def test_http_request_calls_a_service_and_dead_letters_its_errors(
    binder: Binder, settings: Settings, echo_server: str
) -> None:
    feed(binder, "r.in", [{"n": 1}, {"n": 13}, {"n": 2}])
    app = run_app(
        binder, settings, app="http-request", input="r.in", output="r.out", group="s",
        options={"url": echo_server},
    )  # fmt: skip
    try:
        got = collect(binder, "r.out", "s", 2)
        (letter,) = collect(binder, dlq_name("r.in"), "s", 1)
    finally:
        app.stop()
    assert [m.payload for m in got] == [
        {"n": 1, "response": {"double": 2}},
        {"n": 2, "response": {"double": 4}},
    ]
    assert letter.payload == {"n": 13}
    assert "answered 500: unlucky" in letter.headers["error"]


def test_time_source_ticks_then_idles(binder: Binder, settings: Settings) -> None:
    app = run_app(
        binder, settings, app="time", output="t.time", stream="t",
        options={"interval": "0.01", "count": "3"},
    )  # fmt: skip
    try:
        ticks = collect(binder, "t.time", "t", 3)
    finally:
        app.stop()
    times = [m.payload["time"] for m in ticks]
    assert len(times) == 3
    assert times == sorted(times)
    assert app.runtime.published == 3


def test_split_emits_one_message_per_element(binder: Binder, settings: Settings) -> None:
    feed(binder, "x.in", [{"order": 1, "items": ["a", "b"]}, {"order": 2, "items": []}])
    app = run_app(
        binder, settings, app="split", input="x.in", output="x.out", group="s",
        options={"expression": "items"},
    )  # fmt: skip
    try:
        parts = collect(binder, "x.out", "s", 2)
    finally:
        app.stop()
    assert [m.payload for m in parts] == ["a", "b"]
    assert [m.headers["split-index"] for m in parts] == [0, 1]


def test_score_checks_payloads_as_serve_does(
    binder: Binder, settings: Settings, tmp_path: Path
) -> None:
    """The same record gets the same answer (extra field left out) or the same refusal (DLQ)."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from conveyor.models.sklearn import save
    from conveyor.serving import ServeOptions, resolve_model_uri
    from conveyor.serving.errors import InvalidInput
    from conveyor.serving.metrics import ServiceMetrics
    from conveyor.serving.service import ServedModel

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 100), "income": rng.normal(5e4, 1e4, 100)})
    est = LogisticRegression().fit(frame, np.where(frame["age"] > 50, "old", "young"))
    save(est, tmp_path / "ages.skops", frame)
    good = {"id": "c-1", "age": 60, "income": 4e4}
    bad = {"age": "42", "income": 4e4}

    served = ServedModel(
        resolve_model_uri(str(tmp_path / "ages.skops"), settings),
        ServeOptions(),
        ServiceMetrics.create(),
    )
    columns = served.builder().from_records([good])
    assert columns.ignored == ("id",)
    with pytest.raises(InvalidInput) as refusal:
        served.builder().from_records([bad])

    feed(binder, "m.in", [good, bad])
    app = run_app(
        binder, settings, app="score", input="m.in", output="m.out", group="s",
        options={"model": str(tmp_path / "ages.skops")},
    )  # fmt: skip
    try:
        (scored,) = collect(binder, "m.out", "s", 1)
        (letter,) = collect(binder, dlq_name("m.in"), "s", 1)
    finally:
        app.stop()
    assert scored.payload["prediction"] == est.predict(pd.DataFrame([good])[["age", "income"]])[0]
    assert letter.payload == bad
    assert refusal.value.message in letter.headers["error"]


def test_score_with_strict_inputs_dead_letters_extra_fields(
    binder: Binder, settings: Settings, tmp_path: Path
) -> None:
    import numpy as np
    from sklearn.linear_model import LinearRegression

    from conveyor.models.sklearn import save

    x = np.arange(20.0).reshape(10, 2)
    save(LinearRegression().fit(x, x.sum(axis=1)), tmp_path / "sum.skops")
    feed(binder, "q.in", [{"x": [1.0, 2.0], "id": "a"}])
    app = run_app(
        binder, settings, app="score", input="q.in", output="q.out", group="s",
        options={"model": str(tmp_path / "sum.skops"), "strict-inputs": "true"},
    )  # fmt: skip
    try:
        (letter,) = collect(binder, dlq_name("q.in"), "s", 1)
    finally:
        app.stop()
    assert "id: unknown field (this service refuses extra fields" in letter.headers["error"]


def test_csv_records_are_typed_as_pandas_reads_them() -> None:
    from conveyor.streams.messages import csv_records

    # A file of numbers scores as the same rows sent as JSON (score refuses "42" for a number).
    assert csv_records("age,name,score\n42,Ann,0.5\n,Bo,\n") == [
        {"age": 42, "name": "Ann", "score": 0.5},
        {"age": None, "name": "Bo", "score": None},
    ]
