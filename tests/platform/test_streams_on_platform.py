"""Streams on a real platform: each stream app a platform app, messages through the binder."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import eventually

from .control import Platform, running_platform
from .leaks import files_holding, post_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the operator lets stream apps use; beside the platform's home, not above it."""
    folder = tmp_path_factory.mktemp("stream-files")
    folder.chmod(0o777)  # as root, each stream app writes here as a uid of its own
    return folder


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[Platform]:
    # Stream apps may use files only in the folders the operator allows: here, the tests' own.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONVEYOR_STREAM_ROOTS", str(roots))
        with running_platform(tmp_path_factory.mktemp("streams-platform")) as running:
            yield running


@pytest.fixture
def files(roots: Path, request: pytest.FixtureRequest) -> Path:
    """One test's folder inside the stream roots, writable by the stream apps."""
    name: str = request.node.name
    folder = roots / name.replace("[", "-").replace("]", "")
    folder.mkdir()
    folder.chmod(0o777)
    return folder


def _post(url: str, records: list[dict[str, object]]) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(records).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def _lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_http_filter_file_with_a_tap_update_and_rollback(platform: Platform, files: Path) -> None:
    out, tapped = files / "out.jsonl", files / "tap.jsonl"
    definition = f"http --path=/tx | filter --expression='amount > 0' | file --path={out}"
    created = platform.cli("stream", "create", "tx", "--definition", definition)
    assert "tx-http, tx-filter, tx-file" in created.stdout
    deployed = platform.cli("stream", "deploy", "tx")
    assert "stream tx deployed (version 1)" in deployed.stdout
    platform.cli("stream", "create", "audit", "--definition", f":tx.filter > file --path={tapped}")
    platform.cli("stream", "deploy", "audit")

    router = platform.router
    _post(f"{router}/tx", [{"amount": 5, "n": 1}, {"amount": -1, "n": 2}, {"amount": 7, "n": 3}])
    eventually(lambda: len(_lines(out)) == 2, what="the sink to write both")
    assert [r["n"] for r in _lines(out)] == [1, 3]
    eventually(lambda: len(_lines(tapped)) == 2, what="the tap to get its copy")

    info = platform.cli("stream", "info", "tx").stdout
    assert "tx-filter" in info
    assert "1/1" in info
    apps = {a["name"]: a for a in platform.client.call("GET", "/v1/streams/tx")["apps"]}
    assert list(apps) == ["tx-http", "tx-filter", "tx-file"]
    assert apps["tx-filter"]["input"] == "tx.http"
    assert (apps["tx-filter"]["received"], apps["tx-filter"]["published"]) == (3, 2)
    assert apps["tx-file"]["received"] == 2

    # Two filter instances share the work; nothing is lost while they replace the old one.
    platform.cli("stream", "update", "tx", "--properties", "deployer.filter.count=2")
    assert platform.app("tx-filter")["running"] == 2
    _post(f"{router}/tx", [{"amount": 1, "n": n} for n in range(10, 30)])
    eventually(lambda: len(_lines(out)) == 22, what="every message after the update")
    assert sorted(int(str(r["n"])) for r in _lines(out)[2:]) == list(range(10, 30))

    history = platform.cli("stream", "history", "tx").stdout
    assert "deployer.filter.count=2" in history
    platform.cli("stream", "rollback", "tx", "--revision", "1")
    assert platform.app("tx-filter")["instances"] == 1

    platform.cli("stream", "undeploy", "tx")
    assert "tx-http" not in platform.cli("apps").stdout
    assert "undeployed" in platform.cli("stream", "list").stdout
    platform.cli("stream", "destroy", "audit")
    assert "audit" not in platform.cli("stream", "list").stdout


def test_stream_definition_errors_point_at_the_problem(platform: Platform) -> None:
    bad = platform.cli(
        "stream", "create", "broken", "--definition", "http | filter --expresion=x | log",
        check=False,
    )  # fmt: skip
    assert bad.returncode == 2  # the definition is wrong: a usage error
    assert "expresion" in bad.stderr
    assert "expression" in bad.stderr  # names the valid option
    assert "^" in bad.stderr  # a caret under the problem
    assert "Traceback" not in bad.stderr
    unknown = platform.cli("stream", "deploy", "nosuch", check=False)
    assert unknown.returncode == 1
    assert "there is no stream named 'nosuch'" in unknown.stderr
    props = platform.cli(
        "stream", "create", "p1", "--definition", "time | log", "--deploy",
        "--properties", "deployer.nosuch.count=2", check=False,
    )  # fmt: skip
    assert props.returncode != 0
    assert "nosuch" in props.stderr


def test_the_app_catalogue_lists_apps_and_their_options(platform: Platform) -> None:
    listed = platform.cli("catalog", "list").stdout
    assert "score" in listed
    assert "load-generator" in listed
    info = platform.cli("catalog", "info", "filter").stdout
    assert "filter (processor)" in info
    assert "--expression" in info
    unknown = platform.cli("catalog", "info", "nosuch", check=False)
    assert unknown.returncode == 1
    assert "there is no stream app named 'nosuch'" in unknown.stderr
    # The catalogue's former spelling still works for a release, and says what replaces it.
    former = platform.cli("app", "list")
    assert former.stdout == listed
    assert "`conveyor app list` is deprecated" in former.stderr
    assert "use `conveyor catalog list`" in former.stderr


def test_a_registered_python_app_between_named_destinations(
    platform: Platform, files: Path
) -> None:
    folder = files / "enrichers"
    folder.mkdir()
    (folder / "enrich.py").write_text(
        "def handle(payload):\n    return {**payload, 'total': payload['qty'] * payload['price']}\n"
    )
    registered = platform.cli(
        "catalog", "register", "--name", "enrich", "--uri", "python:enrich:handle",
        "--path", str(folder),
    )  # fmt: skip
    assert "app enrich registered" in registered.stdout
    assert "user app: python:enrich:handle" in platform.cli("catalog", "list").stdout
    out = files / "enriched.jsonl"
    platform.cli("stream", "create", "intake", "--definition", "http --path=/orders > :orders")
    platform.cli(
        "stream", "create", "join", "--deploy", "--definition",
        f":orders > enrich | file --path={out}",
    )  # fmt: skip
    platform.cli("stream", "deploy", "intake")
    _post(f"{platform.router}/orders", [{"qty": 2, "price": 5}, {"qty": 3, "price": 1}])
    eventually(lambda: len(_lines(out)) == 2, what="the enriched orders")
    assert [r["total"] for r in _lines(out)] == [10, 3]
    bad = platform.cli(
        "catalog", "register", "--name", "filter", "--uri", "python:x:y", check=False
    )  # fmt: skip
    assert bad.returncode == 2
    assert "built-in" in bad.stderr
    wrong = platform.cli("catalog", "register", "--name", "x", "--uri", "java:x", check=False)
    assert "python:<module>:<function>" in wrong.stderr
    platform.cli("stream", "destroy", "intake")
    platform.cli("stream", "destroy", "join")
    platform.cli("catalog", "unregister", "enrich")
    assert "enrich" not in platform.cli("catalog", "list").stdout


@pytest.mark.parametrize("kind", ["embedded", "redis", "rabbitmq", "kafka", "nats"])
def test_http_filter_score_file_on_every_binder(platform: Platform, files: Path, kind: str) -> None:
    import uuid

    import numpy as np

    from conveyor.models.sklearn import save
    from tests.streams.conftest import binder_url

    from sklearn.linear_model import LogisticRegression  # isort: skip

    url = "embedded" if kind == "embedded" else binder_url(kind, files)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    model = files / "clf.skops"
    save(LogisticRegression().fit(x, np.where(x[:, 0] > 0, "up", "down")), model, x[:2])
    name = f"s{kind[:4]}{uuid.uuid4().hex[:6]}"
    out = files / "scored.jsonl"
    definition = (
        f"http --path=/{name} | filter --expression='a > -100' "
        f"| score --model={model} --fields=a,b,c | file --path={out}"
    )
    platform.cli("stream", "create", name, "--definition", definition)
    platform.cli("stream", "deploy", name, "--binder", url)
    try:
        rows: list[dict[str, object]] = [
            {"a": 3.0, "b": 0.0, "c": 0.0, "n": 1},
            {"a": -3.0, "b": 0.0, "c": 0.0, "n": 2},
        ]
        _post(f"{platform.router}/{name}", rows)
        eventually(lambda: len(_lines(out)) == 2, what="both rows scored")
        scored = sorted(_lines(out), key=lambda r: str(r["n"]))
        assert [r["prediction"] for r in scored] == ["up", "down"]
        assert all(set(dict(r["probabilities"])) == {"up", "down"} for r in scored)  # type: ignore[call-overload]
    finally:
        platform.cli("stream", "destroy", name)


def test_a_registered_app_with_requirements_gets_them_staged(
    platform: Platform, files: Path
) -> None:
    folder = files / "tagger"
    folder.mkdir()
    # six is in uv's cache but not in the platform's own environment.
    (folder / "requirements.txt").write_text("six==1.17.0\n")
    (folder / "tagger.py").write_text(
        "import six\n\ndef tag(payload):\n    return {**payload, 'six': six.__version__}\n"
    )
    out = platform.cli(
        "catalog", "register", "--name", "tagger", "--uri", "python:tagger:tag",
        "--path", str(folder),
    )  # fmt: skip
    assert "app tagger registered" in out.stdout
    sink = files / "tagged.jsonl"
    platform.cli(
        "stream", "create", "tags", "--deploy", "--definition",
        f"http --path=/tags | tagger | file --path={sink}",
    )  # fmt: skip
    _post(f"{platform.router}/tags", [{"n": 1}])
    eventually(lambda: len(_lines(sink)) == 1, what="the tagged message")
    assert _lines(sink) == [{"n": 1, "six": "1.17.0"}]
    platform.cli("stream", "destroy", "tags")


def test_a_first_deploy_that_fails_says_why_and_leaves_nothing_running(platform: Platform) -> None:
    platform.cli(
        "stream", "create", "nomodel", "--definition", "time | score --model=/no/m.skops | log"
    )
    failed = platform.cli("stream", "deploy", "nomodel", check=False)
    assert failed.returncode == 1
    assert "no such model file" in failed.stderr
    apps = platform.cli("apps").stdout
    assert "nomodel-" not in apps
    assert "undeployed" in platform.cli("stream", "list").stdout
    platform.cli("stream", "create", "nobroker", "--definition", "time | log")
    down = platform.cli(
        "stream", "deploy", "nobroker", "--binder", "redis://127.0.0.1:1/0", check=False
    )
    assert down.returncode == 1
    assert "cannot reach redis://127.0.0.1:1/0" in down.stderr
    # Refused before any app was pushed: no instance ever started and crashed.
    assert "Starting" not in down.stdout + down.stderr
    assert "nobroker-" not in platform.cli("apps").stdout


def test_an_update_that_fails_puts_every_app_back(platform: Platform, files: Path) -> None:
    import numpy as np

    from conveyor.models.sklearn import save

    from sklearn.linear_model import LogisticRegression  # isort: skip

    x = np.random.default_rng(0).normal(size=(50, 3))
    model = files / "m.skops"
    save(LogisticRegression().fit(x, x[:, 0] > 0), model, x[:2])
    definition = f"time | score --model={model} --fields=a,b,c | log"
    platform.cli("stream", "create", "upd", "--deploy", "--definition", definition)
    sink_before = platform.app("upd-log")["revision"]
    failed = platform.cli(
        "stream", "update", "upd", "--properties", "app.score.model=/no/such.skops", check=False
    )
    assert failed.returncode == 1
    assert "no such model file" in failed.stderr
    sink = platform.client.call("GET", "/v1/apps/upd-log/revisions")
    assert sink[-1]["deployed"]
    assert sink[-1]["description"] == f"rollback to {sink_before}"
    info = platform.client.call("GET", "/v1/streams/upd")
    assert info["version"] == 1
    assert all(a["state"] == "running" for a in info["apps"])
    platform.cli("stream", "destroy", "upd")


def test_info_counts_accepted_posts_names_the_binder_and_never_shows_a_token(
    platform: Platform,
) -> None:
    token = "tok-5e3c9a-never-shown"
    definition = f"http --path=/guarded --auth-token={token} | log"
    platform.cli("stream", "create", "guarded", "--definition", definition)
    typo = platform.cli(
        "stream", "deploy", "guarded", "--binder", "kafak://127.0.0.1:1", check=False
    )
    assert typo.returncode != 0
    assert "no binder has the scheme 'kafak'" in typo.stderr
    assert "guarded-" not in platform.cli("apps").stdout  # refused before anything started
    platform.cli("stream", "deploy", "guarded")
    for n in range(3):
        request = urllib.request.Request(
            f"{platform.router}/guarded",
            data=json.dumps([{"n": n}, {"n": n + 10}]).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
    assert post_status(f"{platform.router}/guarded", "Bearer wrong-token") == 401
    assert post_status(f"{platform.router}/guarded", None) == 401
    info = platform.cli("stream", "info", "guarded").stdout
    assert "binder embedded" in info
    http_line = next(line for line in info.splitlines() if "guarded-http" in line)
    assert "in 6 out 6" in http_line
    assert "(since " in http_line
    shown = [
        platform.cli("stream", "list").stdout,
        info,
        platform.cli("stream", "history", "guarded").stdout,
        json.dumps(platform.client.call("GET", "/v1/streams")),
        json.dumps(platform.client.call("GET", "/v1/streams/guarded")),
        json.dumps(platform.client.call("GET", "/v1/streams/guarded/history")),
        platform.cli("stream", "info", "guarded", "--json").stdout,
        platform.cli("app", "guarded-http").stdout,
        json.dumps(platform.client.call("GET", "/v1/apps/guarded-http")),
        json.dumps(platform.client.call("GET", "/v1/apps/guarded-http/revisions")),
        platform.cli("logs", "guarded-http", "--recent", "1000").stdout,
    ]
    assert not [text for text in shown if token in text]
    assert "--auth-token=***" in shown[0]
    # Nor is it kept: the registry (SQLite and its WAL), the logs, every file of the platform
    # hold its salted hash at most; the source checks requests against that.
    assert files_holding(platform.home, token) == []
    platform.cli("stream", "update", "guarded", "--properties", "app.http.path=/guarded")
    assert post_status(f"{platform.router}/guarded", f"Bearer {token}") == 202
    assert post_status(f"{platform.router}/guarded", "Bearer wrong-token") == 401
    assert files_holding(platform.home, token) == []
    platform.cli("stream", "destroy", "guarded")


def test_a_stream_cannot_take_another_apps_route(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("sc", instances=1)))
    platform.cli("stream", "create", "thief", "--definition", "http --path=/sc/predict | log")
    taken = platform.cli("stream", "deploy", "thief", check=False)
    assert taken.returncode != 0
    assert "overlaps route /sc of app 'sc'" in taken.stderr
    assert "thief-" not in platform.cli("apps").stdout
    platform.cli("stream", "destroy", "thief")
    platform.cli("delete", "sc", "-y")


def test_a_stream_cannot_take_over_another_streams_or_a_pushed_apps_platform_apps(
    platform: Platform,
) -> None:
    platform.cli("stream", "create", "pair-one", "--definition", "time | log")
    platform.cli("stream", "deploy", "pair-one")
    # Differs only by '_' against '-': the same platform app names (pair-one-time, pair-one-log).
    platform.cli("stream", "create", "pair_one", "--definition", "time | log")
    taken = platform.cli("stream", "deploy", "pair_one", check=False)
    assert taken.returncode != 0
    assert "belongs to stream 'pair-one'" in taken.stderr
    assert "pair-one-log" in platform.cli("apps").stdout  # still the first stream's, untouched
    assert "deployed" in platform.cli("stream", "info", "pair-one").stdout

    platform.cli("push", "-f", str(platform.write_hello_app("solo-log", instances=1)))
    platform.cli("stream", "create", "solo", "--definition", "time | log")
    refused = platform.cli("stream", "deploy", "solo", check=False)
    assert refused.returncode != 0
    assert "belongs to an app pushed on its own" in refused.stderr
    for stream in ("pair_one", "solo"):
        platform.cli("stream", "destroy", stream)
    platform.cli("stream", "destroy", "pair-one")
    platform.cli("delete", "solo-log", "-y")


def test_a_partitioned_stream_on_kafka_keeps_each_key_on_one_instance(
    platform: Platform, files: Path
) -> None:
    import uuid

    from conveyor.streams.messages import partition_of
    from tests.streams.conftest import binder_url

    url = binder_url("kafka", files)  # topics of 2 partitions by default: the stream asks for 3
    folder = files / "tagger"
    folder.mkdir()
    (folder / "tag.py").write_text(
        "import os\n\ndef handle(payload):\n"
        "    return {**payload, 'instance': int(os.environ['CONVEYOR_INSTANCE_INDEX'])}\n"
    )
    platform.cli("catalog", "register", "--name", "tag", "--uri", "python:tag:handle",
                 "--path", str(folder))  # fmt: skip
    name = f"part{uuid.uuid4().hex[:6]}"
    out = files / "tagged.jsonl"
    platform.cli("stream", "create", name, "--definition",
                 f"http --path=/{name} | tag | file --path={out}")  # fmt: skip
    platform.cli("stream", "deploy", name, "--binder", url, "--properties",
                 "app.tag.partition-key-expression=user,deployer.tag.count=3")  # fmt: skip
    try:
        rows: list[dict[str, object]] = [{"user": f"u{n % 8}", "n": n} for n in range(48)]
        _post(f"{platform.router}/{name}", rows)
        eventually(lambda: len({r["n"] for r in _lines(out)}) == 48, what="every row tagged")
        where = {(str(r["user"]), r["instance"]) for r in _lines(out)}
        assert where == {(f"u{k}", partition_of(f"u{k}", 3)) for k in range(8)}
        assert {instance for _, instance in where} == {0, 1, 2}
    finally:
        platform.cli("stream", "destroy", name)
        platform.cli("catalog", "unregister", "tag")
