"""Runs listed page by page: each run exactly once, new runs never shifting a page."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from conveyor.errors import UsageError
from conveyor.store import checkpoints, schema
from conveyor.store.listing import RunFilter
from conveyor.store.records import MetricRecord, RunRecord, RunStatus
from conveyor.store.registry import HEAD_REVISION, Registry
from tests.conftest import POSTGRES_ADMIN_URL
from tests.store.migrating import migrate_to

RUNS = 5_000


def _bulk_runs(reg: Registry, count: int, *, first: int = 0, same_second: bool = False) -> None:
    """``count`` finished runs in one executemany; ``same_second`` gives pairs equal start times."""
    rows: list[dict[str, object]] = [
        {
            "id": f"{i:032x}",
            "name": "train",
            "status": "FINISHED" if i % 3 else "FAILED",
            "command": ["python", "train.py"],
            "cwd": "/tmp/project",
            "started_at": float(i // 2 if same_second else i),
            "seed": i,
            "host": "testhost",
            "code": {},
            "environment": {},
        }
        for i in range(first, first + count)
    ]
    with reg.transaction() as conn:
        conn.execute(schema.runs.insert(), rows)


def _walk(reg: Registry, *, limit: int, status: RunStatus | None = None) -> list[str]:
    seen: list[str] = []
    page = reg.list_runs_page(limit=limit, status=status)
    seen += [r.id for r in page.runs]
    while page.next is not None:
        page = reg.list_runs_page(limit=limit, status=status, after=page.next)
        seen += [r.id for r in page.runs]
    return seen


def test_every_run_is_listed_once_across_pages(registry: Registry) -> None:
    _bulk_runs(registry, RUNS, same_second=True)  # ties in start time: the id orders them

    seen = _walk(registry, limit=50)

    assert len(seen) == RUNS
    assert seen == sorted(seen, reverse=True)  # newest first, ties by id


def test_numbered_pages_are_the_pages_a_cursor_walks(registry: Registry) -> None:
    _bulk_runs(registry, 300, same_second=True)  # a page may start between two equal times
    walked = _walk(registry, limit=7, status=RunStatus.FINISHED)

    numbered: list[str] = []
    for offset in range(0, 210, 7):
        page = registry.list_runs_page(limit=7, offset=offset, status=RunStatus.FINISHED)
        numbered += [r.id for r in page.runs]
    oldest_first = registry.list_runs_page(limit=3, offset=3, descending=False).runs

    assert numbered == walked
    assert [r.id for r in oldest_first] == [f"{i:032x}" for i in (3, 4, 5)]
    assert registry.list_runs_page(limit=7, offset=300).runs == []


def test_a_status_filter_pages_too(registry: Registry) -> None:
    _bulk_runs(registry, 600)

    failed = _walk(registry, limit=7, status=RunStatus.FAILED)

    assert failed == [f"{i:032x}" for i in reversed(range(600)) if i % 3 == 0]


def test_runs_recorded_while_paging_do_not_shift_the_pages(registry: Registry) -> None:
    _bulk_runs(registry, 1_000)
    first = registry.list_runs_page(limit=100)

    _bulk_runs(registry, 500, first=1_000)  # newer runs arrive between two pages
    rest = _walk_from(registry, first.next)

    assert [r.id for r in first.runs] + rest == [f"{i:032x}" for i in reversed(range(1_000))]


def _walk_from(reg: Registry, cursor: str | None) -> list[str]:
    seen: list[str] = []
    while cursor is not None:
        page = reg.list_runs_page(limit=100, after=cursor)
        seen += [r.id for r in page.runs]
        cursor = page.next
    return seen


def test_a_page_shows_the_latest_metrics_without_reading_histories(registry: Registry) -> None:
    _bulk_runs(registry, 3)
    run_id = f"{2:032x}"
    registry.add_metrics(run_id, [MetricRecord("loss", 1.0 / (s + 1), s, 1.0) for s in range(5000)])
    with registry.transaction() as conn:  # a history the listing must not need
        conn.execute(schema.metric_chunks.delete())

    (newest, *_rest) = registry.list_runs(limit=2)

    assert newest.latest_metrics() == {"loss": 1.0 / 5000}


def test_a_last_page_has_no_next_cursor(registry: Registry) -> None:
    _bulk_runs(registry, 10)

    assert registry.list_runs_page(limit=10).next is None
    assert registry.list_runs_page(limit=9).next is not None
    assert registry.list_runs_page(limit=5, offset=5).runs[-1].id == f"{0:032x}"


@pytest.mark.parametrize("cursor", ["nonsense", "", "bm90IGEgY3Vyc29y", "MS4wL1pa"])
def test_a_cursor_that_no_page_gave_is_refused_clearly(registry: Registry, cursor: str) -> None:
    with pytest.raises(UsageError, match="is not a listing cursor"):
        registry.list_runs_page(limit=5, after=cursor)


def _skip_plan(reg: Registry, **page: object) -> str:
    """The database's plan of the query that skips to a numbered page (the first with OFFSET)."""
    skips: list[tuple[str, object]] = []

    def grab(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        if "OFFSET" in statement:
            skips.append((statement, parameters))

    sa.event.listen(reg.engine, "before_cursor_execute", grab)
    try:
        reg.list_runs_page(limit=50, **page)  # type: ignore[arg-type]
    finally:
        sa.event.remove(reg.engine, "before_cursor_execute", grab)
    statement, parameters = skips[0]  # the skip comes first; the page is read by keyset
    with reg.transaction() as conn:
        sqlite = conn.dialect.name == "sqlite"
        explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        rows = conn.exec_driver_sql(explain + statement, parameters).all()  # type: ignore[arg-type]
    return "\n".join(str(row[-1]) for row in rows)


def test_a_numbered_page_skips_its_runs_in_an_index_of_live_runs(registry: Registry) -> None:
    _bulk_runs(registry, 5_000)
    with registry.transaction() as conn:
        runs = schema.runs
        conn.execute(runs.update().where(runs.c.seed % 100 == 0).values(deleted_at=1.0))
        conn.execute(runs.update().where(runs.c.seed % 2 == 0).values(experiment="even"))
    with registry.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # PostgreSQL reads rows from the index alone once vacuum marked their pages visible.
        conn.exec_driver_sql("VACUUM ANALYZE runs" if conn.dialect.name != "sqlite" else "ANALYZE")

    pages = {
        "ix_runs_live_started": _skip_plan(registry, offset=2_500),
        "ix_runs_live_status": _skip_plan(registry, offset=500, status=RunStatus.FAILED),
        "ix_runs_live_experiment": _skip_plan(
            registry, offset=500, only=RunFilter(experiment="even")
        ),
        "ix_runs_deleted_started": _skip_plan(registry, offset=10, only=RunFilter(deleted=True)),
    }

    for index, plan in pages.items():
        assert index in plan
        assert "COVERING INDEX" in plan or "Index Only Scan" in plan, plan


@pytest.fixture
def small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints every 16 runs, used from the second page on: a few hundred runs show them."""
    monkeypatch.setattr(checkpoints, "EVERY", 16)
    monkeypatch.setattr(checkpoints, "TAIL", 64)
    monkeypatch.setattr(checkpoints, "DIRECT", 1)


def _numbered(reg: Registry, *, limit: int = 7) -> list[str]:
    """Every live run, read page by page by number (``--page N``) until a page comes back empty."""
    seen: list[str] = []
    offset = 0
    while page := reg.list_runs_page(limit=limit, offset=offset).runs:
        seen += [r.id for r in page]
        offset += limit
    return seen


def _checkpoint_ranks(reg: Registry) -> list[int]:
    with reg.transaction() as conn:
        cp = schema.run_checkpoints
        return list(conn.execute(sa.select(cp.c.rank).order_by(cp.c.rank)).scalars())


def _run(i: int, started_at: float) -> RunRecord:
    return RunRecord(
        id=f"{i:032x}",
        name="late",
        status=RunStatus.RUNNING,
        command=["python", "train.py"],
        cwd="/tmp/project",
        started_at=started_at,
        seed=i,
        host="testhost",
        code={},
        environment={},
    )


@pytest.mark.usefixtures("small_checkpoints")
def test_numbered_pages_start_from_checkpoints_built_on_first_use(registry: Registry) -> None:
    _bulk_runs(registry, 300, same_second=True)  # ties in start time across checkpoints
    assert _checkpoint_ranks(registry) == []
    statements: list[str] = []

    def grab(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(registry.engine, "before_cursor_execute", grab)
    try:
        numbered = _numbered(registry)
    finally:
        sa.event.remove(registry.engine, "before_cursor_execute", grab)

    assert _checkpoint_ranks(registry) == list(range(16, 300, 16))
    assert any("run_checkpoints" in s and "OFFSET" in s for s in statements)
    assert numbered == _walk(registry, limit=7) == [f"{i:032x}" for i in reversed(range(300))]
    assert registry.list_runs_page(limit=7, offset=300).runs == []


@pytest.mark.usefixtures("small_checkpoints")
def test_writes_below_the_newest_checkpoint_mark_them_stale(registry: Registry) -> None:
    _bulk_runs(registry, 200)
    assert _numbered(registry) == _walk(registry, limit=7)
    built = _checkpoint_ranks(registry)
    changes: dict[str, Callable[[], object]] = {
        "newer runs": lambda: _bulk_runs(registry, 30, first=200),
        "a newer run recording": lambda: registry.create_run(_run(902, started_at=1000.0)),
        "the run finishing": lambda: registry.finish_run(
            f"{902:032x}", RunStatus.FAILED, ended_at=1001.0, exit_code=1
        ),
        "an older run": lambda: registry.create_run(_run(900, started_at=-1.0)),
        "a run between two checkpoints": lambda: registry.create_run(_run(901, 50.5)),
        "a delete": lambda: registry.delete_run(f"{40:032x}"),
        "a restore": lambda: registry.delete_run(f"{40:032x}", restore=True),
        "a purge": lambda: (registry.delete_run(f"{7:032x}"), registry.purge_deleted()),
        "a delete among the newest": lambda: registry.delete_run(f"{229:032x}"),
    }
    kept = {"newer runs", "a newer run recording", "the run finishing", "a delete among the newest"}

    for change, write in changes.items():
        write()
        ranks = _checkpoint_ranks(registry)
        assert (ranks == built) if change in kept else (ranks == []), change
        assert _numbered(registry) == _walk(registry, limit=7), change
        built = _checkpoint_ranks(registry)
        assert built == list(range(16, 16 * len(built) + 1, 16)) != [], change


@pytest.mark.usefixtures("small_checkpoints")
def test_checkpoints_follow_runs_recorded_past_the_newest(registry: Registry) -> None:
    _bulk_runs(registry, 100)
    _numbered(registry)

    _bulk_runs(registry, 400, first=100)  # far more than the counted tail: extended, not rebuilt

    assert _numbered(registry) == [f"{i:032x}" for i in reversed(range(500))]
    assert _checkpoint_ranks(registry) == list(range(16, 500, 16))


@pytest.mark.usefixtures("small_checkpoints")
def test_pages_by_number_stay_right_under_concurrent_writers(registry: Registry) -> None:
    _bulk_runs(registry, 300)
    errors: list[BaseException] = []

    def write(first: int) -> None:
        try:
            for i in range(first, first + 40):  # older and newer runs, some deleted again
                registry.create_run(_run(i, started_at=float((i * 7919) % 600) - 150.0))
                if i % 5 == 0:
                    registry.delete_run(f"{i:032x}")
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    def read() -> None:
        try:
            for offset in range(70, 330, 13):
                registry.list_runs_page(limit=7, offset=offset)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(1_000 + 100 * n,)) for n in range(2)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert errors == []
    assert not any(t.is_alive() for t in threads)
    walked = _walk(registry, limit=7)
    assert len(walked) == 300 + 80 - 16
    assert _numbered(registry) == walked


@pytest.mark.usefixtures("small_checkpoints")
def test_migration_0013_up_and_down_keeps_every_numbered_page(db_url: str) -> None:
    with Registry(db_url, migrate=False) as old:
        migrate_to(old, "0012")
        _bulk_runs(old, 150, same_second=True)
    with Registry(db_url) as reg:  # migrates to the head on first use
        assert reg.current_revision() == HEAD_REVISION
        assert _checkpoint_ranks(reg) == []  # built by the first deep page
        assert _numbered(reg) == _walk(reg, limit=7)
        assert _checkpoint_ranks(reg) == list(range(16, 150, 16))

        migrate_to(reg, "0012", down=True)
        reg.create_run(_run(500, started_at=-5.0))  # no trigger left to fire
        with reg.transaction() as conn:
            assert not sa.inspect(conn).has_table("run_checkpoints")
        migrate_to(reg, HEAD_REVISION)

        assert _checkpoint_ranks(reg) == []
        assert _numbered(reg) == _walk(reg, limit=7)
        assert _walk(reg, limit=7)[-1] == f"{500:032x}"
        assert _checkpoint_ranks(reg) == list(range(16, 151, 16))


@pytest.fixture
def read_only_url(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` as a login role granted only SELECT on its tables; dropped afterwards."""
    role = f"conveyor_reader_{uuid.uuid4().hex[:12]}"
    database = postgres_url.rsplit("/", 1)[1]
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    owner = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        with Registry(postgres_url):  # the schema, created by the owner
            pass
        with owner.connect() as conn:
            conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
            conn.execute(sa.text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
            conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
        user, rest = postgres_url.split("://", 1)[1].split("@", 1)
        yield postgres_url.replace(f"{user}@{rest}", f"{role}@{rest}", 1)
    finally:
        with owner.connect() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
        owner.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.usefixtures("small_checkpoints")
def test_a_read_only_role_gets_deep_pages_by_counting(
    postgres_url: str, read_only_url: str
) -> None:
    with Registry(postgres_url) as owner:
        _bulk_runs(owner, 300)
        walked = _walk(owner, limit=7)

    with Registry(read_only_url) as reader:
        refused = pytest.raises(sa.exc.ProgrammingError, match="permission denied")
        with refused, reader.transaction() as conn:
            checkpoints.build(conn)  # what a deep page tries first, refused to this role
        numbered = _numbered(reader)
        deep = reader.list_runs_page(limit=7, offset=210).runs

    assert numbered == walked
    assert [r.id for r in deep] == walked[210:217]
    with Registry(postgres_url) as owner:
        assert _checkpoint_ranks(owner) == []  # nothing was built: the pages counted
