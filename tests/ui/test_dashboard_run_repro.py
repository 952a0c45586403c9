"""A run's page: its packages searched on the server, and its reproductions with verdicts."""

from __future__ import annotations

import re
import time

import httpx

from conveyor.store.artifacts import ArtifactStore
from conveyor.store.records import FileRecord, RunStatus
from tests.platform.control import Platform
from tests.ui.dashboard import XSS, record_run

PACKAGES = [
    {"name": "numpy", "version": "2.1.3"},
    {"name": "pandas", "version": "2.2.3"},
    {"name": "scikit-learn", "version": "1.5.2"},
    {"name": XSS, "version": "6.6.6"},
    {"name": "mylib", "version": "0.1", "url": "file:///src/mylib"},
]


def _with_packages(platform: Platform) -> str:
    digest = ArtifactStore.from_settings(platform.settings).put_json(PACKAGES)
    return record_run(
        platform,
        "packaged",
        {},
        {},
        environment={"python": "3.11", "packages": digest, "package_count": len(PACKAGES)},
    )


def _names(html: str) -> list[str]:
    """The package names listed in the page's table, in order."""
    return re.findall(r'<tr><td class="mono">(.*?)</td>', html)


def test_the_package_list_is_searched_on_the_server_and_escaped(
    platform: Platform, client: httpx.Client
) -> None:
    run_id = _with_packages(platform)
    page = client.get(f"/ui/runs/{run_id}")
    assert f'action="/ui/runs/{run_id}/packages"' in page.text
    assert "5 distributions" in page.text

    listed = client.get(f"/ui/runs/{run_id}/packages")
    assert listed.status_code == 200
    assert "5 packages" in listed.text
    assert _names(listed.text) == [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "mylib",
        "numpy",
        "pandas",
        "scikit-learn",
    ]
    for name in ("numpy", "pandas", "scikit-learn", "mylib", "file:///src/mylib", "2.1.3"):
        assert name in listed.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listed.text
    assert XSS not in listed.text

    numpy = client.get(f"/ui/runs/{run_id}/packages", params={"q": "NumPy"})
    assert "1 of 5 packages match" in numpy.text
    assert _names(numpy.text) == ["numpy"]
    # names match as pip would spell them, and every word must match
    sk = client.get(f"/ui/runs/{run_id}/packages", params={"q": "scikit_learn 1.5"})
    assert "1 of 5 packages match" in sk.text
    assert _names(sk.text) == ["scikit-learn"]
    by_version = client.get(f"/ui/runs/{run_id}/packages", params={"q": "2.2"})
    assert _names(by_version.text) == ["pandas"]
    none = client.get(f"/ui/runs/{run_id}/packages", params={"q": XSS})
    assert _names(none.text) == ["&lt;script&gt;alert(1)&lt;/script&gt;"]
    assert XSS not in none.text
    nothing = client.get(f"/ui/runs/{run_id}/packages", params={"q": "tensorflow"})
    assert "0 of 5 packages match" in nothing.text
    assert "No package matches." in nothing.text
    assert client.get(f"/ui/runs/{run_id}/packages", params={"q": "x" * 500}).status_code == 422


def test_a_run_without_a_package_list_says_so(platform: Platform, client: httpx.Client) -> None:
    run_id = record_run(platform, "bare", {}, {})
    listed = client.get(f"/ui/runs/{run_id}/packages")
    assert listed.status_code == 200
    assert "This run recorded no package list." in listed.text
    missing = record_run(platform, "lost", {}, {}, environment={"packages": "sha256:" + "0" * 64})
    gone = client.get(f"/ui/runs/{missing}/packages")
    assert "is not readable in the artifact store" in gone.text
    assert client.get("/ui/runs/ffffffffffff/packages").status_code == 404


def _outputs(platform: Platform, **contents: bytes) -> list[FileRecord]:
    store = ArtifactStore.from_settings(platform.settings)
    return [
        FileRecord("output", path.replace("_", "."), store.put_bytes(data), len(data))
        for path, data in contents.items()
    ]


def test_the_reproductions_of_a_run_and_their_verdicts(
    platform: Platform, client: httpx.Client
) -> None:
    now = time.time()
    original = record_run(
        platform,
        "original",
        {},
        {},
        started_at=now - 100,
        files=_outputs(platform, model_json=b'{"w": 1}', scores_csv=b"a\n1\n", log_txt=b"ok"),
    )

    def reproduction(ago: float, status: RunStatus, **outputs: bytes) -> str:
        return record_run(
            platform,
            "again",
            {},
            {},
            started_at=now - ago,
            status=status,
            reproduces=original,
            files=_outputs(platform, **outputs),
        )

    same = reproduction(
        50, RunStatus.FINISHED, model_json=b'{"w": 1}', scores_csv=b"a\n1\n", log_txt=b"ok"
    )
    drifted = reproduction(40, RunStatus.FINISHED, model_json=b'{"w": 2}', scores_csv=b"a\n1\n")
    failed = reproduction(30, RunStatus.FAILED)
    running = reproduction(10, RunStatus.RUNNING)

    page = client.get(f"/ui/runs/{original}").text
    section = page.split("<h2>Reproductions</h2>", 1)[1].split("</section>", 1)[0]
    rows = section.split("<tr>")[2:]
    assert [r.split('href="/ui/runs/', 1)[1][:32] for r in rows] == [
        running,
        failed,
        drifted,
        same,
    ]
    assert "pending" in rows[0]
    assert "RUNNING" in rows[0]
    assert ">missing<" in rows[1]
    assert "FAILED" in rows[1]
    assert "model.json" in rows[1]
    assert "scores.csv" in rows[1]
    assert ">different<" in rows[2]
    assert 'different: <span class="mono">model.json</span>' in rows[2]
    assert 'missing: <span class="mono">log.txt</span>' in rows[2]
    assert "scores.csv" not in rows[2]
    assert ">identical<" in rows[3]

    # a run never reproduced says how to; one that recorded no outputs has nothing to verify
    alone = client.get(f"/ui/runs/{same}").text
    assert f"conveyor reproduce {same[:12]} --verify" in alone
    empty = record_run(platform, "empty", {}, {})
    record_run(platform, "again", {}, {}, reproduces=empty)
    assert "nothing to verify" in client.get(f"/ui/runs/{empty}").text
