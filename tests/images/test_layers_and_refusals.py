"""Reproducible layers, image references, and registries that refuse or do not answer."""

from __future__ import annotations

import json
import os
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest

from conveyor.errors import UsageError
from conveyor.platform.images import ImageError, build_and_push
from conveyor.platform.images.layers import Entry, write_layer
from conveyor.platform.images.reference import is_loopback, parse_reference


def make_tree(root: Path, *, mtime: int) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "b.py").write_text("B = 2\n")
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(os.urandom(16))
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o750)
    (root / "link").symlink_to("pkg/a.py")
    for path in root.rglob("*"):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def test_the_same_files_give_the_same_layer_whatever_their_times_and_caches(
    tmp_path: Path,
) -> None:
    one = write_layer(
        [Entry(make_tree(tmp_path / "one", mtime=1_000), PurePosixPath("app"))], tmp_path / "out1"
    )
    two = write_layer(
        [Entry(make_tree(tmp_path / "two", mtime=2_000_000), PurePosixPath("app"))],
        tmp_path / "out2",
    )
    assert (one.digest, one.diff_id, one.size) == (two.digest, two.diff_id, two.size)
    data = one.path.read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # gzip header: no timestamp
    with tarfile.open(one.path, "r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "app",
        "app/link",
        "app/pkg",
        "app/pkg/a.py",
        "app/pkg/b.py",
        "app/run.sh",
    ]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    modes = {m.name: m.mode for m in members}
    assert modes["app/run.sh"] == 0o755
    assert modes["app/pkg/a.py"] == 0o644
    assert next(m for m in members if m.name == "app/link").linkname == "pkg/a.py"


def test_a_changed_file_changes_the_layer(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", mtime=5)
    before = write_layer([Entry(tree, PurePosixPath("app"))], tmp_path / "out")
    (tree / "pkg" / "b.py").write_text("B = 3\n")
    after = write_layer([Entry(tree, PurePosixPath("app"))], tmp_path / "out")
    assert before.diff_id != after.diff_id


def test_references_read_as_docker_reads_them() -> None:
    hub = parse_reference("python:3.11-slim")
    assert (hub.host, hub.repository, hub.tag, hub.api_host) == (
        "docker.io",
        "library/python",
        "3.11-slim",
        "registry-1.docker.io",
    )
    local = parse_reference("127.0.0.1:5000/ds/diagnosis")
    assert (local.host, local.repository, local.tag) == ("127.0.0.1:5000", "ds/diagnosis", None)
    with pytest.raises(UsageError, match="invalid repository name 'ds/Diagnosis'"):
        parse_reference("127.0.0.1:5000/ds/Diagnosis")
    with pytest.raises(UsageError, match="malformed digest"):
        parse_reference("python@sha256:abc")
    # Plain HTTP only to a registry on this machine, unless asked.
    assert [is_loopback(h) for h in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000")] == [
        True,
        True,
        True,
    ]
    assert not is_loopback("registry.example.com:5000")


class _Refusing(BaseHTTPRequestHandler):
    """Answers every request with the status and OCI error body the server was given."""

    def _answer(self) -> None:
        status, code, challenge = self.server.answer  # type: ignore[attr-defined]
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self.send_response(status)
        if challenge:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _droplet(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir(parents=True)
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    return tmp_path / "app"


def _refusal(host: str, tmp_path: Path, auth: tuple[str, str] | None = None) -> str:
    """The message of the ImageError a push to ``host`` raises."""
    with pytest.raises(ImageError) as caught:
        build_and_push(
            _droplet(tmp_path),
            repository=f"{host}/ds/app",
            base=f"{host}/base/py:1",
            labels={},
            insecure=True,
            auth=auth,
        )
    return str(caught.value)


def test_a_registry_wanting_credentials_says_so_naming_the_repository(
    refusing: ThreadingHTTPServer, tmp_path: Path
) -> None:
    host = f"127.0.0.1:{refusing.server_address[1]}"
    refusing.answer = (401, "UNAUTHORIZED", 'Basic realm="registry"')  # type: ignore[attr-defined]
    message = _refusal(host, tmp_path / "1")
    assert message.startswith(
        f"the registry {host} wants credentials to reach repository base/py: UNAUTHORIZED"
    )
    assert "Log in to the registry" in message
    message = _refusal(host, tmp_path / "2", auth=("me", "wrong"))
    assert f"{host} refused the credentials given for repository base/py" in message


def test_a_registry_denying_the_repository_names_it(
    refusing: ThreadingHTTPServer, tmp_path: Path
) -> None:
    host = f"127.0.0.1:{refusing.server_address[1]}"
    refusing.answer = (403, "DENIED", "")  # type: ignore[attr-defined]
    message = _refusal(host, tmp_path)
    assert f"the registry {host} denied GET on repository base/py: DENIED" in message
    assert "may push to base/py" in message


class _TokenRegistry(BaseHTTPRequestHandler):
    """A registry wanting a bearer token from its own /token endpoint; it has no images."""

    def do_GET(self) -> None:
        if self.path.startswith("/token?"):
            self.server.scopes.append(self.path)  # type: ignore[attr-defined]
            self._send(200, {"token": "t0k"})
        elif self.headers.get("Authorization") != "Bearer t0k":
            realm = f"http://{self.headers['Host']}/token"
            self._send(401, {"errors": []}, f'Bearer realm="{realm}",service="test"')
        else:
            self._send(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})

    def _send(self, status: int, body: object, challenge: str = "") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if challenge:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


def test_a_token_registry_hands_out_a_token_for_the_repository(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    server.scopes = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        # With the token, the registry answers: the base image is not there.
        assert "base/py:1 does not exist in the registry" in _refusal(host, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert server.scopes == [  # type: ignore[attr-defined]
        "/token?scope=repository%3Abase%2Fpy%3Apull&service=test"
    ]


def test_an_unreachable_registry_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ImageError, match=f"cannot reach the image registry 127.0.0.1:{port}"):
        build_and_push(
            _droplet(tmp_path),
            repository=f"127.0.0.1:{port}/ds/app",
            base=f"127.0.0.1:{port}/base/py:1",
            labels={},
            insecure=True,
        )


def test_a_repository_with_a_digest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="names a digest"):
        build_and_push(
            _droplet(tmp_path),
            repository="127.0.0.1:1/ds/app@sha256:" + "0" * 64,
            base="python:3.11-slim",
            labels={},
        )


def test_a_droplet_whose_environment_is_gone_is_refused_not_built_without_packages(
    tmp_path: Path,
) -> None:
    from conveyor.platform.images import revision_droplet

    source = _droplet(tmp_path)
    droplet = revision_droplet(
        {"venv": str(tmp_path / "envs" / "gone"), "source": str(source), "lock_digest": "x"}
    )
    with pytest.raises(ImageError, match=r"environment .*/envs/gone is missing") as caught:
        build_and_push(droplet, repository="127.0.0.1:1/ds/app", base="python:3.11", labels={})
    assert "conveyor restage" in str(caught.value)
    with pytest.raises(ImageError, match="no droplet of its own"):
        revision_droplet({"model_file": "/x/model.onnx", "run_id": "r1"})
