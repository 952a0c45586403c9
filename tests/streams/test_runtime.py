"""The runtime of one stream app: processing, DLQ, graceful stop, scoring, its command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import Settings
from conveyor.streams.binders import Binder, dlq_name
from conveyor.streams.catalogue import OptionError
from conveyor.streams.messages import Message
from conveyor.streams.run import main, spec_from
from conveyor.streams.runtime import LaunchSpec, StreamAppRuntime
from tests.streams import userfns
from tests.streams.helpers import PATIENCE, collect, run_app


def test_a_poison_message_goes_to_the_dlq_with_its_error_while_the_rest_flow(
    binder: Binder, settings: Settings
) -> None:
    binder.provision("s.in", "s")
    payloads = [{"n": n, "d": 0 if n == 3 else 1} for n in range(10)]
    binder.publish("s.in", [Message(p, {"id": f"m{p['n']}"}) for p in payloads])
    app = run_app(
        binder, settings, app="filter", input="s.in", output="s.filter", group="s",
        options={"expression": "n / d >= 0"},
    )  # fmt: skip
    try:
        passed = collect(binder, "s.filter", "s", 9)
        letters = collect(binder, dlq_name("s.in"), "s", 1)
    finally:
        app.stop()
    assert sorted(m.payload["n"] for m in passed) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert passed[0].headers["stream"] == "s"
    assert passed[0].headers["app"] == "filter"
    (letter,) = letters
    assert letter.payload == {"n": 3, "d": 0}
    assert letter.headers["id"] == "m3"
    assert letter.headers["attempts"] == 3
    assert "division by zero" in letter.headers["error"]
    assert app.runtime.dead == 1


def _one_dead_letter(
    binder: Binder, settings: Settings, stream: str, payloads: list[Any], **spec: Any
) -> tuple[list[Message], Message]:
    """Run an app over ``payloads`` (ids m0, m1 ...); what passed, and the one dead letter."""
    binder.provision(f"{stream}.in", stream)
    messages = [Message(p, {"id": f"m{i}"}) for i, p in enumerate(payloads)]
    binder.publish(f"{stream}.in", messages)
    app = run_app(
        binder, settings, input=f"{stream}.in", output=f"{stream}.out", group=stream, **spec
    )
    try:
        passed = collect(binder, f"{stream}.out", stream, len(payloads) - 1)
        (letter,) = collect(binder, dlq_name(f"{stream}.in"), stream, 1)
    finally:
        app.stop()
    return passed, letter


def test_a_message_that_makes_an_expression_too_large_is_dead_lettered_with_the_reason(
    binder: Binder, settings: Settings
) -> None:
    payloads = [{"n": n, "s": "a" * 100_000, "k": 100_000 if n == 1 else 1} for n in range(3)]
    expression = "{'n': n, 'length': len(upper([s] * k))}"
    passed, letter = _one_dead_letter(
        binder, settings, "x", payloads, app="transform", options={"expression": expression}
    )
    assert sorted(m.payload["n"] for m in passed) == [0, 2]
    assert letter.headers["id"] == "m1"
    assert letter.headers["error"].startswith("ExpressionError: expression")
    assert "the value built would hold about" in letter.headers["error"]


def test_graceful_stop_finishes_the_batch_in_hand(binder: Binder, settings: Settings) -> None:
    userfns.release.clear()
    userfns.entered.clear()
    binder.provision("g.in", "g")
    binder.publish("g.in", [Message({"n": n}) for n in range(5)])
    app = run_app(
        binder, settings, app="python", input="g.in", output="g.out", group="g",
        options={"function": "tests.streams.userfns:held", "batch": "true"},
    )  # fmt: skip
    assert userfns.entered.wait(PATIENCE)
    app.runtime.stop()  # asked to stop while the batch is being processed...
    userfns.release.set()
    app.stop()
    # ...the batch was still published and acknowledged: nothing is delivered again.
    assert sorted(m.payload["n"] for m in collect(binder, "g.out", "g", 5)) == [0, 1, 2, 3, 4]
    consumer = binder.consumer("g.in", "g", name="after")
    assert consumer.receive(10, timeout=0.3) is None
    consumer.close()


def test_python_function_and_transform_chain(binder: Binder, settings: Settings) -> None:
    binder.provision("c.in", "c")
    binder.publish("c.in", [Message({"n": n}) for n in range(4)])
    double = run_app(
        binder, settings, app="python", input="c.in", output="c.double", group="c",
        options={"function": "tests.streams.userfns:double"},
    )  # fmt: skip
    shape = run_app(
        binder, settings, app="transform", input="c.double", output="c.out", group="c",
        options={"expression": "{'twice': n, 'big': n > 4}"},
    )  # fmt: skip
    try:
        got = collect(binder, "c.out", "c", 4)
    finally:
        double.stop()
        shape.stop()
    assert sorted((m.payload["twice"], m.payload["big"]) for m in got) == [
        (0, False), (2, False), (4, False), (6, True),
    ]  # fmt: skip


def test_a_payload_that_is_not_json_is_dead_lettered_not_a_stuck_stream(
    binder: Binder, settings: Settings
) -> None:
    passed, letter = _one_dead_letter(
        binder, settings, "j", [{"n": n} for n in range(4)],
        app="python", options={"function": "tests.streams.userfns:awkward"},
    )  # fmt: skip
    assert sorted(m.payload["n"] for m in passed) == [0, 1, 3]
    assert passed[0].payload["score"] == 0.5
    assert letter.payload == {"n": 2}
    assert "not JSON-compatible" in letter.headers["error"]


def test_router_sends_messages_to_named_destinations(binder: Binder, settings: Settings) -> None:
    binder.provision("r.in", "r")
    for dest in ("r.big", "r.small"):
        binder.provision(dest, "r")
    binder.publish("r.in", [Message({"n": n}) for n in range(6)])
    app = run_app(
        binder, settings, app="router", input="r.in", output="r.router", group="r",
        options={"expression": "'r.big' if n >= 3 else 'r.small'"},
    )  # fmt: skip
    try:
        big = collect(binder, "r.big", "r", 3)
        small = collect(binder, "r.small", "r", 3)
    finally:
        app.stop()
    assert sorted(m.payload["n"] for m in big) == [3, 4, 5]
    assert sorted(m.payload["n"] for m in small) == [0, 1, 2]


def test_partitioned_output_keeps_each_key_on_one_instance(
    binder: Binder, settings: Settings
) -> None:
    source = run_app(
        binder, settings, app="load-generator", output="p.gen", stream="p",
        options={"count": "200", "keys": "9"}, partition_key="key", partition_count=2,
    )  # fmt: skip
    sinks = [
        run_app(
            binder,
            settings,
            app="transform",
            input="p.gen",
            output=f"p.out{i}",
            group="p",
            options={"expression": "key"},
            input_partitioned=True,
            instance_index=i,
            instance_count=2,
        )
        for i in range(2)
    ]
    try:
        keys = [
            {m.payload for m in collect(binder, f"p.out{i}", "p", n)}
            for i, n in enumerate(_partition_sizes(200, 9))
        ]
    finally:
        source.stop()
        for s in sinks:
            s.stop()
    assert keys[0]
    assert keys[1]
    assert not keys[0] & keys[1]
    assert len(keys[0] | keys[1]) == 9


def _partition_sizes(count: int, keys: int) -> list[int]:
    """How many generated messages land in each of 2 partitions (same seed, same events)."""
    from conveyor.streams.apps.base import AppContext
    from conveyor.streams.apps.sources import LoadGenerator
    from conveyor.streams.catalogue import Role, app_spec
    from conveyor.streams.messages import partition_of

    options = app_spec("load-generator", Role.SOURCE).resolve(
        {"count": str(count), "keys": str(keys)}
    )
    context = AppContext(options, "p", "gen", Settings.from_env({}))
    sizes = [0, 0]
    for batch in LoadGenerator(context).batches():
        for m in batch:
            sizes[partition_of(m.payload["key"], 2)] += 1
        if sum(sizes) == count:
            break
    return sizes


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pd = pytest.importorskip("pandas")
    from sklearn.ensemble import GradientBoostingClassifier

    from conveyor.models.sklearn import save

    rng = __import__("numpy").random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 4)), columns=[f"x{i}" for i in range(4)])
    y = (x["x0"] + x["x1"] > 0).astype(int)
    path = tmp_path_factory.mktemp("model") / "fraud.skops"
    save(GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y), path, example=x)
    return path


def test_score_adds_prediction_probabilities_and_lineage(
    binder: Binder, settings: Settings, classifier: Path
) -> None:
    binder.provision("f.in", "f")
    rows = [
        {"seq": i, "x0": s, "x1": s, "x2": 0.0, "x3": 0.0} for i, s in enumerate([-2.0, 2.0] * 5)
    ]
    binder.publish("f.in", [Message(r, {"id": str(r["seq"])}) for r in rows])
    # Tree ensembles need the operator's trust for skops (CONVEYOR_TRUSTED_TYPES).
    trusting = dataclasses.replace(settings, trusted_types=("sklearn.tree._tree.Tree",))
    app = run_app(
        binder, trusting, app="score", input="f.in", output="f.score", group="f",
        options={"model": str(classifier)},
    )  # fmt: skip
    try:
        scored = sorted(collect(binder, "f.score", "f", 10), key=lambda m: m.payload["seq"])
    finally:
        app.stop()
    assert [m.payload["prediction"] for m in scored] == [0, 1] * 5
    low = scored[0].payload["probabilities"]
    assert set(low) == {"0", "1"}
    assert low["0"] > 0.5
    assert scored[1].payload["probabilities"]["1"] > 0.5
    headers = scored[0].headers
    assert headers["model-digest"].startswith("blake3:")
    assert headers["model-format"] == "sklearn"
    assert headers["id"] == "0"


def test_score_makes_one_predict_call_per_micro_batch(
    binder: Binder, settings: Settings, classifier: Path
) -> None:
    trusting = dataclasses.replace(settings, trusted_types=("sklearn.tree._tree.Tree",))
    binder.provision("b.in", "b")
    app = run_app(
        binder, trusting, app="score", input="b.in", output="b.score", group="b",
        options={"model": str(classifier)}, batch_size=50,
    )  # fmt: skip
    model = app.runtime.app.model
    rows_per_call: list[int] = []
    predict = model.predict

    def counting(batch: Any) -> Any:
        rows_per_call.append(len(batch["x0"]))
        return predict(batch)

    model.predict = counting
    row = {"x0": 1.0, "x1": 1.0, "x2": 0.0, "x3": 0.0}
    binder.publish("b.in", [Message(dict(row, seq=i)) for i in range(150)])
    try:
        scored = collect(binder, "b.score", "b", 150)
    finally:
        app.stop()
    assert len(scored) == 150
    assert sum(rows_per_call) == 150
    assert len(rows_per_call) <= 3  # micro-batches of at most 50: one call each
    assert max(rows_per_call) > 1


def test_a_model_that_cannot_load_is_a_clear_start_up_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binder = f"embedded://{tmp_path / 'l.db'}"
    argv = ["--app", "score", "--input", "a", "--output", "b", "--group", "s", "--binder", binder]
    code = main(
        [*argv, "--option", f"model={tmp_path / 'no.skops'}"], {"CONVEYOR_HOME": str(tmp_path)}
    )
    assert code == 1
    assert "no such model file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--app", "filter", "--input", "a", "--output", "b", "--option", "expr=x"], 2,
         "has no option --expr; valid options: --expression"),
        (["--app", "filter", "--input", "a", "--output", "b"], 2, "needs --expression"),
        (["--app", "frob", "--input", "a"], 2, "no sink app named 'frob'"),
        (["--app", "log", "--output", "b"], 2, "'log' is a sink; it cannot be used as a source"),
        (["--app", "log", "--input", "a", "--binder", "redis://127.0.0.1:1/0"], 1,
         "cannot reach redis://127.0.0.1:1/0"),
        (["--app", "log", "--input", "a", "--binder", "frob://x"], 1, "unknown binder"),
        (["--app", "log", "--input", "a", "--batch-size", "0"], 2, "batch_size must be at least 1"),
        (["--app", "log", "--input", "a", "--option", "novalue"], 2, "expected KEY=VALUE"),
    ],
)  # fmt: skip
def test_command_line_errors_are_clear(
    argv: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, {"CONVEYOR_HOME": str(tmp_path)}) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_spec_from_environment_json_with_flags_overriding() -> None:
    env = {
        "CONVEYOR_STREAM_APP": '{"app": "filter", "input": "s.http", "output": "s.filter", '
        '"group": "s", "options": {"expression": "amount > 0"}, "batch_size": 50}'
    }
    spec = spec_from(["--option", "expression=amount > 10", "--instance-index", "1"], env)
    assert spec.app == "filter"
    assert dict(spec.options) == {"expression": "amount > 10"}
    assert (spec.batch_size, spec.instance_index, spec.consumer_group) == (50, 1, "s")
    assert LaunchSpec.from_json(spec.to_json()) == spec
    with pytest.raises(Exception, match="unknown key"):
        spec_from([], {"CONVEYOR_STREAM_APP": '{"app": "log", "inptu": "x"}'})
    with pytest.raises(OptionError):
        StreamAppRuntime(LaunchSpec("filter", input="a", output="b"), Settings.from_env({}))
