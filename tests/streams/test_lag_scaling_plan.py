"""Deployment properties that make a stream app scale on its consumer lag, and their mistakes."""

from __future__ import annotations

import pytest

from conveyor.errors import UsageError
from conveyor.streams.plan import parse_properties, plan_stream

DEFINITION = "http --path=/tx | filter --expression='amount > 0' | log"


def test_lag_target_and_counts_become_the_apps_scaling() -> None:
    properties = parse_properties(
        "deployer.filter.autoscale.lag-target=1000,deployer.filter.max-count=4,"
        "deployer.filter.autoscale.cool-down=5s"
    )
    apps = {a.label: a for a in plan_stream("fraud", DEFINITION, properties=properties)}
    scaled = apps["filter"]
    assert (scaled.lag_target, scaled.min_count, scaled.max_count) == (1000, 1, 4)
    assert scaled.lag_timing == {"cool-down": "5s"}
    assert apps["log"].lag_target is None


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ("deployer.filter.autoscale.lag-target=many", "expected a whole number of messages"),
        ("deployer.http.autoscale.lag-target=10", "'http' is a source"),
        ("deployer.filter.max-count=4", "without deployer.filter.autoscale.lag-target"),
        (
            "deployer.filter.autoscale.lag-target=10,deployer.filter.min-count=5,"
            "deployer.filter.max-count=2",
            "deployer.filter.min-count=5 is more than deployer.filter.max-count=2",
        ),
        (
            "deployer.filter.autoscale.lag-target=10,deployer.filter.max-count=99",
            "deployer.filter.max-count=99: expected a whole number from 1 to 64",
        ),
    ],
)
def test_a_wrong_lag_property_is_refused_with_its_name(properties: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        plan_stream("fraud", DEFINITION, properties=parse_properties(properties))
    assert message in str(caught.value)
