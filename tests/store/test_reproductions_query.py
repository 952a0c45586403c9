"""The runs reproducing a run: newest first, each with its outputs, deleted ones left out."""

from __future__ import annotations

from conveyor.store.records import FileRecord, RunRecord, RunStatus
from conveyor.store.registry import Registry


def _run(reg: Registry, run_id: str, started: float, reproduces: str | None = None) -> None:
    reg.create_run(
        RunRecord(
            id=run_id,
            name="train",
            status=RunStatus.RUNNING,
            command=["python", "train.py"],
            cwd="/tmp/project",
            started_at=started,
            seed=1,
            host="testhost",
            code={},
            environment={},
            reproduces=reproduces,
        )
    )


def test_reproductions_are_listed_newest_first_with_their_outputs(registry: Registry) -> None:
    original, first, second, gone, other = (f"{i:032x}" for i in range(1, 6))
    _run(registry, original, 1.0)
    _run(registry, first, 2.0, reproduces=original)
    _run(registry, second, 3.0, reproduces=original)
    _run(registry, gone, 4.0, reproduces=original)
    _run(registry, other, 5.0, reproduces=first)
    registry.add_files(
        first,
        [
            FileRecord("output", "model.json", "sha256:" + "a" * 64, 10),
            FileRecord("input", "data.csv", "sha256:" + "b" * 64, 20),
        ],
    )
    registry.delete_run(gone)

    found = registry.reproductions(original)

    assert [r.id for r in found] == [second, first]
    assert [(f.role, f.path) for f in found[1].files] == [("output", "model.json")]
    assert found[0].files == []
    assert found[1].reproduces == original
    assert registry.reproductions(second) == []
    assert [r.id for r in registry.reproductions(original, limit=1)] == [second]
