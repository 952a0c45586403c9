"""The platform end to end: a real `conveyor server`, the CLI, real app processes, the router."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.cli.client import ApiError
from conveyor.config import Settings
from conveyor.platform.isolation import IsolatedSpawner
from tests.waiting import eventually

from .control import DEADLINE, Platform, get, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


def _indices(url: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, body = get(url)
        assert status == 200, body
        seen[body["index"]] += 1
    return seen


def _instance(platform: Platform, app: str, index: int) -> dict[str, object]:
    return next(i for i in platform.app(app)["instances_detail"] if i["index"] == index)


def test_push_serves_through_the_router_by_path_and_by_host(platform: Platform) -> None:
    manifest = platform.write_hello_app("hello", instances=2)
    pushed = platform.cli("push", "-f", str(manifest))
    assert "hello: revision 1 running with 2 instance(s)" in pushed.stdout
    assert "No requirements" in pushed.stderr  # progress while staging
    assert "is ready" in pushed.stderr

    router = platform.router
    assert _indices(f"{router}/hello/", 4) == {"0": 2, "1": 2}  # round robin
    status, body = get(f"{router}/whatever", host="hello.localhost")
    assert status == 200
    assert body["path"] == "/whatever"

    apps = platform.cli("apps").stdout
    assert "hello" in apps
    assert "running" in apps
    assert "2/2" in apps
    shown = platform.cli("app", "hello").stdout
    assert shown.count("RUNNING") == 2
    assert "hello.localhost" in shown
    assert "/hello" in shown

    # A second push of unchanged files uploads nothing and installs nothing.
    again = platform.cli("push", "-f", str(manifest))
    assert "0 uploaded, 1 unchanged" in again.stderr
    assert "is cached" in again.stderr
    assert "revision 2 running" in again.stdout


def test_scale_up_and_down(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("scaled", instances=1)))
    router = platform.router
    assert platform.cli("scale", "scaled", "-i", "3").returncode == 0
    assert set(_indices(f"{router}/scaled/", 6)) == {"0", "1", "2"}
    platform.cli("scale", "scaled", "-i", "1")
    app = platform.app("scaled")
    assert (app["instances"], app["running"]) == (1, 1)
    assert [i["index"] for i in app["instances_detail"]] == [0]
    assert set(_indices(f"{router}/scaled/", 3)) == {"0"}
    kinds = [e["kind"] for e in platform.client.call("GET", "/v1/apps/scaled/events")]
    assert kinds.count("scaled") == 2


def test_killed_instance_is_replaced_and_routed_again(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("victim", instances=2)))
    old_pid = _instance(platform, "victim", 0)["pid"]
    assert isinstance(old_pid, int)
    os.kill(old_pid, signal.SIGKILL)

    def replaced() -> bool:
        inst = _instance(platform, "victim", 0)
        return inst["state"] == "RUNNING" and bool(inst["ready"]) and inst["pid"] != old_pid

    eventually(replaced, what="instance 0 to be replaced")
    assert _instance(platform, "victim", 0)["restarts"] == 1
    crash = _instance(platform, "victim", 0)["last_crash"]
    assert isinstance(crash, dict)
    assert crash["exit_status"] == -9
    assert set(_indices(f"{platform.router}/victim/", 4)) == {"0", "1"}
    events = platform.cli("events", "victim").stdout
    assert "crashed #0" in events
    assert "exited with status -9" in events


def test_rolling_push_under_load_fails_no_request(platform: Platform) -> None:
    manifest = platform.write_hello_app("rolling", instances=2)
    platform.cli("push", "-f", str(manifest))
    url = f"{platform.router}/rolling/"
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        # Bounded: at most 20,000 requests or until told to stop.
        for _ in range(20_000):
            if stop.is_set():
                return
            try:
                status, body = get(url, timeout=30)
                results.append((status, body.get("revision") if status == 200 else None))
            except OSError as exc:
                results.append((0, repr(exc)))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        eventually(lambda: len(results) > 20, what="load to reach the app")
        manifest.write_text(manifest.read_text() + "    env: {GENERATION: two}\n")
        pushed = platform.cli("push", "-f", str(manifest))
        assert "revision 2 running" in pushed.stdout
        count = len(results)
        eventually(lambda: len(results) > count + 20, what="requests after the push")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    failures = [r for r in results if r[0] != 200]
    assert failures == [], f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    revisions = [rev for _, rev in results]
    assert revisions[0] == "1"
    assert revisions[-1] == "2"
    assert {i["revision"] for i in platform.app("rolling")["instances_detail"]} == {2}


def test_a_revision_that_never_gets_healthy_leaves_the_old_one_serving(
    platform: Platform,
) -> None:
    manifest = platform.write_hello_app("steady", instances=1)
    platform.cli("push", "-f", str(manifest))
    broken = manifest.read_text().replace(
        "command: python hello.py",
        "command: python -c \"import sys; print('cannot reach the warehouse'); sys.exit(3)\"",
    )
    manifest.write_text(broken)
    failed = platform.cli("push", "-f", str(manifest), check=False)
    assert failed.returncode != 0
    assert "revision 2 of steady did not become healthy" in failed.stderr
    assert "the previous revision keeps serving" in failed.stderr
    assert "cannot reach the warehouse" in failed.stderr  # the new instances' last lines
    assert "Traceback" not in failed.stderr
    status, body = get(f"{platform.router}/steady/")
    assert (status, body["revision"]) == (200, "1")
    app = platform.app("steady")
    assert app["revision"] == 1
    assert app["latest_revision"] == 2


def test_an_app_that_crashes_on_its_first_push_shows_crashed_with_its_last_lines(
    platform: Platform,
) -> None:
    manifest = platform.write_hello_app("doomed", instances=1)
    manifest.write_text(
        manifest.read_text().replace(
            "command: python hello.py",
            "command: python -c \"import sys; print('cannot load model.skops'); sys.exit(3)\"",
        )
    )
    failed = platform.cli("push", "-f", str(manifest), check=False)
    assert failed.returncode != 0
    listed = platform.cli("apps").stdout
    assert "stopped" not in next(line for line in listed.splitlines() if "doomed" in line)
    assert "doomed crashed (revision 1): " in listed
    assert "cannot load model.skops" in listed
    shown = platform.cli("app", "doomed").stdout
    assert shown.startswith("doomed: crashed")
    assert "crashed:  revision 1: instance 0 crashed" in shown
    assert "Fix the app and push it again" in shown
    platform.cli("delete", "doomed", "-y")


def test_logs_recent_and_follow(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("chatty", instances=1)))
    recent = platform.cli("logs", "chatty").stdout
    assert "[0/stdout] listening on" in recent
    assert "[0/stderr] a warning on stderr" in recent

    follower = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "logs", "chatty", "-f", "--recent", "2"],
        env=platform.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        seen = [follower.stdout.readline()]  # connected: the recent lines arrive first
        for n in range(50):
            get(f"{platform.router}/chatty/mark-{n}")
        for line in follower.stdout:
            seen.append(line)
            if "mark-49 " in line:
                break
    finally:
        follower.terminate()
        follower.wait(timeout=DEADLINE)
        if follower.stdout is not None:
            follower.stdout.close()
    text = "".join(seen)
    # every request's access line arrived while following, none dropped, in order
    positions = [text.index(f'"GET /mark-{n} ') for n in range(50)]
    assert positions == sorted(positions)
    assert "[0/stderr] access" in text


def test_set_env_restart_and_rollback(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("configured", instances=1)))
    url = f"{platform.router}/configured/env?name=LOG_LEVEL"
    out = platform.cli("set-env", "configured", "LOG_LEVEL", "debug").stdout
    assert "revision 2 sets LOG_LEVEL" in out
    assert get(url)[1]["value"] is None  # pending until restart
    assert "waits for `conveyor restart configured`" in platform.cli("app", "configured").stdout
    platform.cli("restart", "configured")
    assert get(url)[1]["value"] == "debug"
    revisions = platform.cli("revisions", "configured").stdout
    assert "set-env LOG_LEVEL" in revisions
    platform.cli("rollback", "configured", "--revision", "1")
    assert get(url)[1]["value"] is None
    assert platform.app("configured")["revision"] == 3


def test_bound_service_credentials_arrive_in_conveyor_services(platform: Platform) -> None:
    platform.cli("create-service", "warehouse-db", "-p", '{"url": "postgresql://wh/db"}')
    manifest = platform.write_hello_app(
        "reports", instances=1, extra="    services: [warehouse-db]\n"
    )
    platform.cli("push", "-f", str(manifest))
    _status, body = get(f"{platform.router}/reports/env?name=CONVEYOR_SERVICES")
    services = json.loads(body["value"])
    assert services == {
        "user-provided": [{"name": "warehouse-db", "credentials": {"url": "postgresql://wh/db"}}]
    }
    assert "reports" in platform.cli("services").stdout
    refused = platform.cli("delete-service", "warehouse-db", check=False)
    assert refused.returncode == 1
    assert "is bound to reports" in refused.stderr


def test_stop_start_and_delete(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("pausable", instances=1)))
    platform.cli("stop", "pausable")
    status, body = get(f"{platform.router}/pausable/")
    assert status == 503, body
    assert platform.app("pausable")["state"] == "stopped"
    platform.cli("start", "pausable")
    assert get(f"{platform.router}/pausable/")[0] == 200
    follower = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "logs", "pausable", "-f"],
        env=platform.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    assert follower.stdout.readline()  # following
    platform.cli("delete", "pausable", "-y")
    assert get(f"{platform.router}/pausable/")[0] == 404
    assert follower.wait(timeout=DEADLINE) == 0  # the follow ends with the app
    follower.stdout.close()
    missing = platform.cli("app", "pausable", check=False)
    assert missing.returncode == 1
    assert "there is no app named 'pausable'" in missing.stderr


def test_model_app_answers_predict_through_the_router(platform: Platform) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from conveyor.models.sklearn import save

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    est = LogisticRegression().fit(x, np.where(x["a"] > 0, "high", "low"))
    save(est, platform.project / "clf.skops", x)
    (platform.project / "model.yml").write_text(
        "applications:\n  - name: clf\n    model: clf.skops\n    instances: 2\n"
    )
    platform.cli("push", "-f", "model.yml")
    request = urllib.request.Request(
        f"{platform.router}/clf/predict",
        data=json.dumps([{"a": 2.0, "b": 0.0, "c": 0.0}, {"a": -2.0, "b": 0.0, "c": 0.0}]).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert [row["label"] for row in body] == ["high", "low"]
    assert platform.app("clf")["running"] == 2


def test_bad_requests_get_clear_errors_and_change_nothing(platform: Platform) -> None:
    # a wrong token
    request = urllib.request.Request(
        f"{platform.client.base}/v1/apps", headers={"Authorization": "Bearer nope"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    with caught.value as refused:
        assert refused.code == 401
        assert "token" in json.loads(refused.read())["error"]
    # no token at all, even for the OpenAPI document
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{platform.client.base}/openapi.json", timeout=30)
    with caught.value as refused:
        assert refused.code == 401
    # an invalid manifest: file, line and field
    (platform.project / "bad.yml").write_text(
        "applications:\n  - name: bad\n    command: x\n    instances: many\n"
    )
    bad = platform.cli("push", "-f", "bad.yml", check=False)
    assert bad.returncode == 2
    assert "bad.yml:4" in bad.stderr
    assert "instances" in bad.stderr
    # an unknown app
    unknown = platform.cli("scale", "nosuch", "-i", "2", check=False)
    assert unknown.returncode == 1
    assert "there is no app named 'nosuch'" in unknown.stderr
    # a route another app has
    manifest = platform.write_hello_app(
        "squatter", instances=1, extra="    routes: [{path: /hello}]\n"
    )
    taken = platform.cli("push", "-f", str(manifest), check=False)
    assert taken.returncode == 1
    assert "route /hello is already taken by app 'hello'" in taken.stderr
    with pytest.raises(ApiError) as api_error:
        platform.client.call("GET", "/v1/apps/squatter")
    assert api_error.value.status == 404
    # an invalid body straight to the API: 400 naming the field, not a 500
    with pytest.raises(ApiError) as api_error:
        platform.client.call("POST", "/v1/apps/x/push", {"spec": {"kind": "boat"}})
    assert api_error.value.status == 400
    assert "spec.kind" in str(api_error.value)


def test_cli_says_how_to_start_a_platform_that_is_not_running(tmp_path: Path) -> None:
    idle = Platform(home=tmp_path / "home", project=tmp_path)
    out = idle.cli("apps", check=False)
    assert out.returncode == 1
    assert "the platform is not running" in out.stderr
    assert "conveyor up" in out.stderr
    assert "Traceback" not in out.stderr


def test_platform_killed_and_started_again_runs_one_copy_of_everything(tmp_path: Path) -> None:
    platform = Platform(home=tmp_path / "home", project=tmp_path / "project")
    platform.project.mkdir()
    up = platform.cli("up")
    assert "Platform started" in up.stdout
    assert "Dashboard: http://127.0.0.1:" in up.stdout
    try:
        platform.cli("push", "-f", str(platform.write_hello_app("durable", instances=2)))
        before = {i["pid"] for i in platform.app("durable")["instances_detail"]}
        server_pid = platform.client.pid
        assert server_pid is not None
        os.kill(server_pid, signal.SIGKILL)
        eventually(lambda: not platform.client.alive(), what="the platform to die")
        assert all(_alive(pid) for pid in before)  # orphans, still running

        platform.cli("up")

        def back() -> bool:
            return bool(platform.app("durable")["running"] == 2)

        eventually(back, what="the app to be running again")
        after = {i["pid"] for i in platform.app("durable")["instances_detail"]}
        assert not after & before
        eventually(lambda: not any(_alive(p) for p in before), what="the orphans to be stopped")
        assert _app_processes(platform.home, "durable") == after
        assert set(_indices(f"{platform.router}/durable/", 4)) == {"0", "1"}
        status = platform.cli("status").stdout
        assert "Platform running" in status
        assert f"store:  {platform.home / 'artifacts'}" in status
        assert f"binder: embedded ({platform.home / 'streams' / 'log.db'})" in status
        # The lines written before the platform was killed are still there, then the new ones.
        logs = platform.cli("logs", "durable", "--recent", "1000").stdout
        assert logs.count("listening on") == 4
    finally:
        platform.cli("down", check=False)
    assert "not running" in platform.cli("status", check=False).stderr
    eventually(lambda: not _app_processes(platform.home, "durable"), what="instances to stop")


def _alive(pid: object) -> bool:
    assert isinstance(pid, int)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _app_processes(home: Path, app: str) -> set[int]:
    """The instances (pids of their process groups) the platform in ``home`` runs for ``app``.

    An instance sees nothing of the platform (not even CONVEYOR_HOME), so its
    processes are known by their group: its leader is the sandbox wrapper, whose
    command line names the platform's own folder of instance folders.
    """
    folder = f"{IsolatedSpawner(Settings.from_env({'CONVEYOR_HOME': str(home)})).folder}/"
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[2]
            leader = (Path("/proc") / group / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        mine = any(arg.decode(errors="replace").startswith(folder) for arg in leader)
        if mine and f"CONVEYOR_APP={app}".encode() in environ and _alive(int(entry.name)):
            found.add(int(group))
    return found


def test_a_push_whose_install_fails_changes_nothing_running(platform: Platform) -> None:
    manifest = platform.write_hello_app("installs", instances=1)
    platform.cli("push", "-f", str(manifest))
    (platform.project / "installs" / "requirements.txt").write_text("this is not a requirement!\n")
    manifest.write_text(manifest.read_text() + "    requirements: requirements.txt\n")
    failed = platform.cli("push", "-f", str(manifest), check=False)
    assert failed.returncode == 1
    assert "could not resolve the requirements" in failed.stderr
    assert "this is not a requirement!" in failed.stderr  # the installer's own words
    assert "nothing running was changed" in failed.stderr
    assert "Traceback" not in failed.stderr
    status, body = get(f"{platform.router}/installs/")
    assert (status, body["revision"]) == (200, "1")
    assert [r["number"] for r in platform.client.call("GET", "/v1/apps/installs/revisions")] == [1]


def test_a_second_platform_on_the_same_home_or_address_is_refused(
    platform: Platform, tmp_path: Path
) -> None:
    same_home = platform.cli("server", check=False, timeout=DEADLINE)
    assert same_home.returncode == 1
    assert "a platform is already running for this home" in same_home.stderr
    router_port = platform.router.rsplit(":", 1)[1]
    other = Platform(home=tmp_path / "home", project=tmp_path)
    other.extra_env["CONVEYOR_ROUTER"] = f"127.0.0.1:{router_port}"
    taken = other.cli("server", check=False, timeout=DEADLINE)
    assert taken.returncode == 1
    assert f"the router address 127.0.0.1:{router_port} is already in use" in taken.stderr
    assert "CONVEYOR_ROUTER" in taken.stderr


def test_failing_readiness_takes_an_instance_out_of_routing_without_a_restart(
    platform: Platform, tmp_path: Path
) -> None:
    manifest = platform.write_hello_app(
        "shy",
        instances=1,
        extra="    readiness-check: {type: http, endpoint: /ready, interval: 0.2}\n",
    )
    platform.cli("push", "-f", str(manifest))
    assert get(f"{platform.router}/shy/")[0] == 200
    # Told on its own port: the router sends nothing to an instance out of routing.
    readiness = f"http://127.0.0.1:{_instance(platform, 'shy', 0)['port']}/readiness"
    urllib.request.urlopen(urllib.request.Request(readiness, data=b"off"), timeout=30).close()
    eventually(
        lambda: get(f"{platform.router}/shy/")[0] == 503, what="the instance to leave routing"
    )
    instance = _instance(platform, "shy", 0)
    assert (instance["state"], instance["ready"], instance["restarts"]) == ("RUNNING", False, 0)
    urllib.request.urlopen(urllib.request.Request(readiness, data=b"on"), timeout=30).close()
    eventually(
        lambda: get(f"{platform.router}/shy/")[0] == 200, what="the instance to be routed again"
    )
    assert _instance(platform, "shy", 0)["restarts"] == 0


def test_set_env_values_outlive_a_push_unless_the_manifest_names_them(platform: Platform) -> None:
    manifest = platform.write_hello_app("keeper", instances=1)
    platform.cli("push", "-f", str(manifest))
    platform.cli("set-env", "keeper", "FEATURE", "on")
    platform.cli("set-env", "keeper", "LEVEL", "debug")
    platform.cli("push", "-f", str(manifest))  # the manifest names neither
    url = f"{platform.router}/keeper/env?name="
    assert get(url + "FEATURE")[1]["value"] == "on"
    manifest.write_text(manifest.read_text() + "    env: {LEVEL: info}\n")
    platform.cli("push", "-f", str(manifest))
    assert get(url + "LEVEL")[1]["value"] == "info"
    assert get(url + "FEATURE")[1]["value"] == "on"


def test_droplets_gc_removes_what_only_deleted_apps_used(platform: Platform) -> None:
    platform.cli("push", "-f", str(platform.write_hello_app("fleeting", instances=1)))
    (platform.project / "fleeting" / "extra.txt").write_text("only this app's source has it\n")
    platform.cli("push", "-f", str(platform.project / "fleeting.yml"))
    sources = [
        r for r in platform.client.call("GET", "/v1/apps/fleeting/revisions") if r["number"] <= 2
    ]
    assert len(sources) == 2
    platform.cli("push", "-f", str(platform.write_hello_app("staying", instances=1)))
    platform.cli("delete", "fleeting", "-y")
    dry = platform.cli("droplets", "gc", "--dry-run", "--min-age", "0").stdout
    assert "would remove" in dry
    done = platform.cli("droplets", "gc", "--min-age", "0").stdout
    removed = [line.split(" ", 1)[1] for line in done.splitlines() if line.startswith("removed /")]
    assert removed  # the deleted app's source snapshots
    assert all("/droplets/sources/" in path or "/uploads/" in path for path in removed)
    assert get(f"{platform.router}/staying/")[0] == 200  # what running apps use is kept
    platform.cli("restart", "staying")
    assert get(f"{platform.router}/staying/")[0] == 200


def test_an_upload_repairs_a_damaged_copy_and_wrong_bytes_are_refused(
    platform: Platform, tmp_path: Path
) -> None:
    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.digests import digest_bytes

    data = b"the bytes of an app's file\n" * 100
    digest = digest_bytes(data)
    source = tmp_path / "file.txt"
    source.write_bytes(data)
    platform.client.upload(digest, source)
    store = ArtifactStore(platform.settings.artifact_root)
    assert store.read_bytes(digest) == data
    # Damage the stored copy behind the platform's back; the next upload of the file mends it.
    blob = Path(store._path(digest))
    blob.chmod(0o600)
    blob.write_bytes(b"x" * len(data))
    platform.client.upload(digest, source)
    assert store.read_bytes(digest) == data
    # Bytes that are not what their digest says: a 400 naming both, nothing stored.
    other = digest_bytes(b"something else")
    with pytest.raises(ApiError) as refused:
        platform.client.upload(other, source)
    assert refused.value.status == 400
    assert digest in str(refused.value)
    assert not store.exists(other)
