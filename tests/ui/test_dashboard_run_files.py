"""A run's page: its code snapshot browsed file by file, its inputs and outputs previewed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from conveyor.store.artifacts import ArtifactStore
from conveyor.store.blobs import BlobStore
from conveyor.store.records import FileRecord
from tests.platform.control import Platform
from tests.repro.conftest import git
from tests.ui.dashboard import XSS, record_run, tiny_png


def _store(platform: Platform) -> BlobStore:
    return ArtifactStore.from_settings(platform.settings)


def _snapshot_run(platform: Platform, folder: Path) -> str:
    from conveyor.repro.snapshot import take_snapshot

    (folder / "src" / "model").mkdir(parents=True)
    (folder / "src" / "model" / "net.py").write_text("LAYERS = 2\n")
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "first")
    (folder / "train.py").write_text(f"print('{XSS}')\n")
    (folder / "src" / "model" / "net.py").write_text("LAYERS = 3\n")
    (folder / "weights.bin").write_bytes(b"\0\1\2\3" * 100)
    (folder / "big.txt").write_text("x" * (300 * 1024))
    state = take_snapshot(folder, _store(platform), limit=10**8)
    return record_run(platform, "snap", {}, {}, code=state.to_json())


def test_the_code_snapshot_as_a_tree_with_a_file_viewer(
    platform: Platform, client: httpx.Client, tmp_path: Path
) -> None:
    run_id = _snapshot_run(platform, tmp_path)
    assert f"/ui/runs/{run_id}/code" in client.get(f"/ui/runs/{run_id}").text
    tree = client.get(f"/ui/runs/{run_id}/code")
    assert tree.status_code == 200
    assert "4 files" in tree.text
    assert ">src/</span>" in tree.text
    assert ">model/</span>" in tree.text
    assert "code?path=src/model/net.py" in tree.text
    assert "Pick a file" in tree.text
    # file contents are escaped text
    viewed = client.get(f"/ui/runs/{run_id}/code", params={"path": "train.py"})
    assert "print(&#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;)" in viewed.text
    assert XSS not in viewed.text
    net = client.get(f"/ui/runs/{run_id}/code", params={"path": "src/model/net.py"})
    assert "LAYERS = 3" in net.text
    # binary files say so, with a download; big files are cut
    binary = client.get(f"/ui/runs/{run_id}/code", params={"path": "weights.bin"})
    assert "Binary file: not shown." in binary.text
    big = client.get(f"/ui/runs/{run_id}/code", params={"path": "big.txt"})
    assert "Cut at 256.0 KiB" in big.text
    assert "x" * (300 * 1024) not in big.text
    # the uncommitted changes to tracked files, against the commit
    diff = tree.text[tree.text.index("Uncommitted changes against") :]
    assert '<span class="del">-LAYERS = 2</span>' in diff
    assert '<span class="add">+LAYERS = 3</span>' in diff
    assert "alert" not in diff  # train.py is untracked: in the snapshot, not in the diff


def test_a_crafted_path_or_digest_never_reaches_the_disk(
    platform: Platform, client: httpx.Client, tmp_path: Path
) -> None:
    run_id = _snapshot_run(platform, tmp_path)
    for path in ("../../token", "/etc/passwd", "src/../train.py", "src/model"):
        answer = client.get(f"/ui/runs/{run_id}/code", params={"path": path})
        assert answer.status_code == 404, path
        assert "holds no file" in answer.text
    other = _store(platform).put_bytes(b"someone else's secret")
    for digest in (other, "blake3:..%2F..%2Ftoken", "sha256:" + "0" * 64, "nonsense"):
        answer = client.get(f"/ui/runs/{run_id}/blobs/{digest}")
        assert answer.status_code == 404, digest
        assert "secret" not in answer.text
    no_snapshot = record_run(platform, "plain", {}, {})
    assert client.get(f"/ui/runs/{no_snapshot}/code").status_code == 404


def test_inputs_and_outputs_previewed(platform: Platform, client: httpx.Client) -> None:
    store = _store(platform)
    png = tiny_png()
    rows = "\n".join(["id,name", *(f"{i},row{i}" for i in range(100)), f"101,{XSS}"])
    files = {
        "plots/roc.png": png,
        "data/train.csv": rows.encode(),
        "metrics.json": json.dumps({"auc": 0.9, "note": XSS}).encode(),
        "model.bin": b"\0\1\2",
        "plots/evil.svg": b"<svg><script>alert(1)</script></svg>",
    }
    records = [
        FileRecord("output" if i % 2 else "input", path, store.put_bytes(data), len(data))
        for i, (path, data) in enumerate(files.items())
    ]
    run_id = record_run(platform, "files", {}, {}, files=records)
    digest = {r.path: r.digest for r in records}
    shown = client.get(f"/ui/runs/{run_id}")
    assert shown.status_code == 200, shown.text[-800:]
    page = shown.text
    assert f'<img src="/ui/runs/{run_id}/blobs/{digest["plots/roc.png"]}"' in page
    assert "<th>id</th><th>name</th>" in page
    assert "<td>row19</td>" in page
    assert "row20" not in page  # only the first rows
    assert "&#34;auc&#34;: 0.9" in page  # pretty-printed, escaped
    assert XSS not in page
    assert f'href="/ui/runs/{run_id}/blobs/{digest["model.bin"]}"' in page
    # the image is served from the store, same origin, with its type; the rest as downloads
    image = client.get(f"/ui/runs/{run_id}/blobs/{digest['plots/roc.png']}")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == png
    assert "img-src 'self'" in shown.headers["content-security-policy"]
    svg = client.get(f"/ui/runs/{run_id}/blobs/{digest['plots/evil.svg']}")
    assert svg.headers["content-type"] == "application/octet-stream"
    assert svg.headers["content-disposition"] == 'attachment; filename="evil.svg"'
    # another run cannot be used to reach this run's files... unless it recorded them too
    other = record_run(platform, "other", {}, {})
    assert client.get(f"/ui/runs/{other}/blobs/{digest['model.bin']}").status_code == 404
