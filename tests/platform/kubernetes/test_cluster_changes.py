"""`set-env/unset-env/restart/revisions/rollback/events --target T` through a real platform to
kmock (fake_api.py); the test plays the Deployment controller: statuses and ReplicaSets."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.platform.control import Platform
from tests.waiting import eventually

from .conftest import READY, push_playing
from .fake_api import NAMESPACE, FakeApi

pytestmark = pytest.mark.slow

IMAGE = "registry.example.com/ds/triage@sha256:" + "ef" * 32
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/triage"


def _template(api: FakeApi) -> dict[str, Any]:
    template: dict[str, Any] = api.objects("Deployment")["triage"]["spec"]["template"]
    return template


def _env(template: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}


def _replica_set(api: FakeApi, number: int) -> None:
    """What the Deployment controller keeps of each pod template: a ReplicaSet holding it."""
    template = copy.deepcopy(_template(api))
    template["metadata"]["labels"]["pod-template-hash"] = f"h{number}"
    api.create(
        "ReplicaSet",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"triage-h{number}",
                "labels": template["metadata"]["labels"],
                "annotations": {"deployment.kubernetes.io/revision": str(number)},
                "ownerReferences": [{"kind": "Deployment", "name": "triage", "uid": "u1"}],
            },
            "spec": {"replicas": 0, "template": template},
        },
    )


def _applied(api: FakeApi, since: int, app: str = "triage") -> list[Any]:
    """The applies of ``app``'s Deployment sent since request ``since``."""
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{app}"
    return [
        r
        for r in api.requests()[since:]
        if r.method == "PATCH" and r.url.path == path and r.subresource is None
    ]


def _playing(api: FakeApi, ready: Callable[[], bool], status: dict[str, Any]) -> threading.Thread:
    def controller() -> None:
        eventually(ready, what="the change applied")
        api.set_status("Deployment", "triage", status)

    playing = threading.Thread(target=controller)
    playing.start()
    return playing


def test_set_env_restart_rollback_and_events_on_a_target(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    push_playing(platform, api, "--image", f"triage={IMAGE}")
    _replica_set(api, 1)
    api.send(  # the controller's own count, which a change must not take over
        "PATCH",
        DEPLOYMENT,
        {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"}}},
        "application/merge-patch+json",
    )

    # set-env: a new revision, same image, applied server-side and rolled out now.
    before = len(api.requests())
    done = platform.cli("set-env", "triage", "LEVEL", "debug", "--target", "prod")
    assert "triage: revision 2 sets LEVEL, rolled out on prod" in done.stdout
    assert "triage: rolled out: 2 replicas available" in done.stderr
    (sent,) = _applied(api, before)
    assert sent.headers["Content-Type"] == "application/apply-patch+yaml"
    assert dict(sent.params) == {"fieldManager": "conveyor", "force": "true"}
    template = sent.data["spec"]["template"]
    assert _env(template)["LEVEL"] == "debug"
    assert _env(template)["CONVEYOR_APP_REVISION"] == "2"
    assert template["metadata"]["labels"]["app.kubernetes.io/version"] == "2"
    assert sent.data["metadata"]["labels"]["app.kubernetes.io/version"] == "2"
    assert template["spec"]["containers"][0]["image"] == IMAGE
    assert "status" not in sent.data
    assert "resourceVersion" not in sent.data["metadata"]
    assert "deployment.kubernetes.io/revision" not in sent.data["metadata"]["annotations"]
    _replica_set(api, 2)

    unset = platform.cli("unset-env", "triage", "LEVEL", "--target", "prod").stdout
    assert "triage: revision 3 unsets LEVEL, rolled out on prod" in unset
    assert "LEVEL" not in _env(_template(api))
    _replica_set(api, 3)

    # restart: the same revision, a stamped pod template (every pod replaced).
    before = len(api.requests())
    restarted = platform.cli("restart", "triage", "--target", "prod").stdout
    assert "triage: revision 3 restarted on prod (every pod replaced)" in restarted
    (sent,) = _applied(api, before)
    stamped = sent.data["spec"]["template"]["metadata"]
    assert "kubectl.kubernetes.io/restartedAt" in stamped["annotations"]
    assert stamped["labels"]["app.kubernetes.io/version"] == "3"

    listed = platform.cli("revisions", "triage", "--target", "prod").stdout.splitlines()
    assert listed == [
        f"*   3  {IMAGE}  set-env -LEVEL",
        f"    2  {IMAGE}  set-env LEVEL env=LEVEL",
        f"    1  {IMAGE}  push",
    ]

    # rollback: revision 2's pod template again, as revision 4.
    before = len(api.requests())
    back = platform.cli("rollback", "triage", "--to", "2", "--target", "prod").stdout
    assert "triage: revision 4 (revision 2 again) rolled out on prod" in back
    (sent,) = _applied(api, before)
    template = sent.data["spec"]["template"]
    assert _env(template)["LEVEL"] == "debug"
    assert _env(template)["CONVEYOR_APP_REVISION"] == "4"
    assert "pod-template-hash" not in template["metadata"]["labels"]
    assert template["metadata"]["annotations"]["conveyor.dev/change"] == "rollback to 2"
    assert (
        api.objects("Deployment")["triage"]["metadata"]["labels"]["app.kubernetes.io/version"]
        == "4"
    )

    missing = platform.cli("rollback", "triage", "--to", "9", "--target", "prod", check=False)
    assert missing.returncode != 0
    assert "the cluster keeps no revision 9 of app 'triage' (kept: 3, 2, 1)" in missing.stderr
    assert "Traceback" not in missing.stderr

    # A set-env whose rollout fails: the previous revision is put back, as a push does.
    api.set_status("Deployment", "triage", {"updatedReplicas": 0})
    failed = {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "stuck"}
    playing = _playing(api, lambda: "BROKEN" in _env(_template(api)), {"conditions": [failed]})
    try:
        broken = platform.cli("set-env", "triage", "BROKEN", "1", "--target", "prod", check=False)
    finally:
        playing.join(60)
    assert broken.returncode != 0
    assert "triage did not roll out (stuck); the previous revision keeps serving" in broken.stderr
    assert "Traceback" not in broken.stderr
    live = api.objects("Deployment")["triage"]
    assert live["metadata"]["labels"]["app.kubernetes.io/version"] == "4"
    assert "BROKEN" not in _env(live["spec"]["template"])
    api.set_status("Deployment", "triage", {**READY, "conditions": []})

    # As locally, set-env's variables outlive a push (the manifest names none).
    again = push_playing(platform, api, "--image", f"triage={IMAGE}")
    assert "triage: revision 5 rolled out on prod" in again.stdout
    assert _env(_template(api))["LEVEL"] == "debug"

    refused = platform.cli("set-env", "triage", "PORT", "9", "--target", "prod", check=False)
    assert refused.returncode != 0
    assert "PORT is set by the platform on every pod of 'triage'" in refused.stderr
    ghost = platform.cli("restart", "ghost", "--target", "prod", check=False)
    assert ghost.returncode != 0
    assert "there is no app 'ghost' in namespace 'ds-team'" in ghost.stderr


def test_events_of_an_app_on_a_target_are_its_objects_newest_last(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    if "triage" not in api.objects("Deployment"):
        push_playing(platform, api, "--image", f"triage={IMAGE}")
    _replica_set(api, 7)

    def event(name: str, kind: str, obj: str, at: str, reason: str, **extra: Any) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name},
            "involvedObject": {"kind": kind, "name": obj, "namespace": NAMESPACE},
            "reason": reason,
            "message": f"{reason} of {obj}",
            "lastTimestamp": at,
            "type": "Normal",
            **extra,
        }
        api.create("Event", body)

    event("e1", "Pod", "triage-h7-x1", "2026-12-05T10:00:05Z", "BackOff", type="Warning", count=3)
    event("e2", "Deployment", "triage", "2026-12-05T10:00:01Z", "ScalingReplicaSet")
    event("e3", "ReplicaSet", "triage-h7", "2026-12-05T10:00:02Z", "SuccessfulCreate")
    event("e4", "Pod", "other-h1-x1", "2026-12-05T10:00:03Z", "Pulled")  # another app's

    before = len(api.requests())
    printed = platform.cli("events", "triage", "--target", "prod").stdout.splitlines()
    mine = [line.split("  ", 1)[1] for line in printed]
    assert mine == [
        "ScalingReplicaSet  deployment/triage  ScalingReplicaSet of triage",
        "SuccessfulCreate  replicaset/triage-h7  SuccessfulCreate of triage-h7",
        "BackOff  pod/triage-h7-x1  BackOff of triage-h7-x1 (Warning) x3",
    ], printed
    asked = [r.url.path for r in api.requests()[before:] if r.method == "GET"]
    assert f"/api/v1/namespaces/{NAMESPACE}/events" in asked
    last = platform.cli("events", "triage", "--target", "prod", "--limit", "1").stdout
    assert last.splitlines() == printed[-1:]


class _Cli:
    """`conveyor ARGS` started in the background, its stderr read as it comes."""

    def __init__(self, platform: Platform, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args],
            cwd=platform.project,
            env=platform.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err: list[str] = []
        self._reading = threading.Thread(target=self._read)
        self._reading.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        self.err.extend(iter(self.process.stderr.readline, ""))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.err)

    def end(self) -> str:
        """Its stdout once it exits (which must be 0)."""
        out, _ = self.process.communicate(timeout=300)
        self._reading.join(60)
        assert self.process.returncode == 0, "".join(self.err)
        return out

    def stop(self) -> None:
        """Ended if it still runs (a test that failed midway)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=60)
        self._reading.join(60)


def _waiting(platform: Platform, app: str, *args: str) -> _Cli:
    """`conveyor ARGS` started while a change to ``app`` runs, once it says it waits for it."""
    cli = _Cli(platform, *args)
    try:
        eventually(
            lambda: cli.said(f"waiting for the change to {app} in progress to end"),
            what=f"`{' '.join(args[:2])}` waiting for the change to {app}",
        )
    except BaseException:
        cli.stop()
        raise
    return cli


def test_two_changes_at_once_make_two_revisions_applied_one_after_the_other(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    if "triage" not in api.objects("Deployment"):
        push_playing(platform, api, "--image", f"triage={IMAGE}")
    api.set_status("Deployment", "triage", {**READY, "conditions": []})
    running = int(_template(api)["metadata"]["labels"]["app.kubernetes.io/version"])
    before = len(api.requests())

    # The first set-env is applied, its rollout not done: the second waits for it.
    api.set_status("Deployment", "triage", {"updatedReplicas": 0})
    first = _Cli(platform, "set-env", "triage", "FIRST", "1", "--target", "prod")
    second: _Cli | None = None
    try:
        eventually(lambda: "FIRST" in _env(_template(api)), what="the first change applied")
        second = _waiting(
            platform, "triage", "set-env", "triage", "SECOND", "2", "--target", "prod"
        )
        released = len(api.requests())
        api.set_status("Deployment", "triage", {**READY, "conditions": []})
        assert f"triage: revision {running + 1} sets FIRST, rolled out on prod" in first.end()
        assert f"triage: revision {running + 2} sets SECOND, rolled out on prod" in second.end()
    finally:
        for cli in (first, second):
            if cli is not None:
                cli.stop()
    applied = _applied(api, before)
    assert [sent.data["metadata"]["labels"]["app.kubernetes.io/version"] for sent in applied] == [
        str(running + 1),
        str(running + 2),
    ]
    assert api.requests().index(applied[1]) > released  # after the first rolled out
    assert {"FIRST", "SECOND"} <= set(_env(applied[1].data["spec"]["template"]))
    assert {"FIRST": "1", "SECOND": "2"}.items() <= _env(_template(api)).items()


def test_a_stream_deploy_waits_for_a_change_to_one_of_its_apps(
    cluster: tuple[Platform, FakeApi],
) -> None:
    platform, api = cluster
    platform.cli("stream", "create", "relay", "--definition", "http | log")
    deploy = (
        "stream", "deploy", "relay", "--target", "prod", "--binder", "kafka://kafka.ds:9092",
        "--image", f"registry.example.com/ds/conveyor@sha256:{'a1' * 32}",
    )  # fmt: skip

    def controller() -> None:
        for app in ("relay-log", "relay-http"):
            eventually(lambda: app in api.objects("Deployment"), what=f"{app} applied")  # noqa: B023
            api.set_status("Deployment", app, READY)

    playing = threading.Thread(target=controller)
    playing.start()
    try:
        platform.cli(*deploy)
    finally:
        playing.join(60)
    before = len(api.requests())

    # A set-env of one of the stream's apps is applied, its rollout not done: the deploy waits.
    api.set_status("Deployment", "relay-log", {"updatedReplicas": 0})
    change = _Cli(platform, "set-env", "relay-log", "FIRST", "1", "--target", "prod")
    redeploy: _Cli | None = None
    try:
        eventually(
            lambda: "FIRST" in _env(api.objects("Deployment")["relay-log"]["spec"]["template"]),
            what="the set-env applied",
        )
        redeploy = _waiting(platform, "relay-log", *deploy)
        released = len(api.requests())
        api.set_status("Deployment", "relay-log", READY)
        assert "relay-log: revision 2 sets FIRST, rolled out on prod" in change.end()
        assert "stream relay deployed on prod: relay-log, relay-http" in redeploy.end()
    finally:
        for cli in (change, redeploy):
            if cli is not None:
                cli.stop()
    applied = _applied(api, before, "relay-log")
    versions = [sent.data["metadata"]["labels"]["app.kubernetes.io/version"] for sent in applied]
    assert versions == ["2", "3"]  # the deploy's revision made after the set-env's, not the same
    assert api.requests().index(applied[1]) > released
