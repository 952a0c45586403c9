"""Stream names the DSL accepts make valid platform app names; what plan refuses, it says."""

from __future__ import annotations

import pytest

from conveyor.errors import UsageError
from conveyor.streams.plan import app_name, plan_stream


def test_scdf_stream_names_and_labels_map_to_dns_app_names() -> None:
    apps = plan_stream("Tap_at_HTTP", "time | first_log: log")
    assert [a.name for a in apps] == ["tap-at-http-time", "tap-at-http-first-log"]
    # destinations and the consumer group keep the names as written
    assert apps[0].launch.output == "Tap_at_HTTP.time"
    assert apps[1].launch.input == "Tap_at_HTTP.time"
    assert apps[1].launch.group == "Tap_at_HTTP"


@pytest.mark.parametrize("name", ["3x", "_x", "a.b", "a$b", "x" * 43, ""])
def test_a_name_outside_the_rule_is_refused_with_the_rule(name: str) -> None:
    with pytest.raises(UsageError, match="a letter, then letters, digits, '_' or '-'"):
        plan_stream(name, "time | log")


def test_a_label_that_cannot_name_an_app_is_refused() -> None:
    with pytest.raises(UsageError, match=r"cannot name a platform app \(s-a\$b\)"):
        app_name("s", "a$b")
    with pytest.raises(UsageError, match="cannot name a platform app"):
        plan_stream("s", "time | x_: log")


def test_unbound_apps_parse_but_are_refused_with_a_way_out() -> None:
    with pytest.raises(UsageError, match=r"joins its apps with '\|\|'"):
        plan_stream("cafe", "time || log")


def test_an_input_destination_may_name_the_consumer_group() -> None:
    (app,) = plan_stream("audit", ":orders --group=auditors > log")
    assert (app.launch.input, app.launch.group) == ("orders", "auditors")
    with pytest.raises(UsageError, match="takes only --group"):
        plan_stream("audit", ":orders --partitioned=true > log")
    with pytest.raises(UsageError, match="output destination :out"):
        plan_stream("audit", "time > :out --x=1")


@pytest.mark.parametrize(
    "name", ["foo_bar", "Tap_at_HTTP", "a", "x" * 42, "3x", "_x", "a.b", "x" * 43]
)
def test_the_control_api_takes_the_names_the_dsl_takes(name: str) -> None:
    from pydantic import ValidationError

    from conveyor.server.streams import StreamIn
    from conveyor.streams.dsl import is_stream_name

    try:
        StreamIn(name=name, definition="time | log")
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted is is_stream_name(name)


def test_a_definition_the_platform_refuses_exits_2_like_other_usage_errors() -> None:
    from conveyor.cli.client import ApiError

    assert ApiError("DSL error [OOD] ...", status=400).exit_code == 2
    assert ApiError("there is no stream named 'x'", status=404).exit_code == 1
    assert ApiError("taken", status=409).exit_code == 1
