"""Deployment properties that partition an app's input by a key, and their mistakes."""

from __future__ import annotations

import pytest

from conveyor.errors import UsageError
from conveyor.streams.plan import parse_properties, plan_stream

DEFINITION = (
    "http --path=/tx | filter --expression='amount > 0' | score: transform --expression=payload"
    " | log"
)


@pytest.mark.parametrize(
    "properties",
    [
        "app.score.partition-key-expression=payload.customer_id,deployer.score.count=3",
        "app.filter.producer.partitionKeyExpression=payload.customer_id,deployer.score.count=3",
    ],
)
def test_a_partition_key_splits_an_apps_input_over_its_instances(properties: str) -> None:
    apps = {
        a.label: a
        for a in plan_stream("fraud", DEFINITION, properties=parse_properties(properties))
    }
    producer, consumer = apps["filter"].launch, apps["score"].launch
    assert (producer.partition_key, producer.partition_count) == ("payload.customer_id", 3)
    assert (consumer.input_partitioned, consumer.instance_count) == (True, 3)
    assert apps["score"].instances == 3
    assert not apps["log"].launch.input_partitioned
    assert apps["score"].launch.partition_key is None
    assert "partition-key-expression" not in consumer.options  # wiring, not an app option


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ("app.http.partition-key-expression=id", "'http' has no app of this stream before it"),
        (
            "app.log.producer.partitionKeyExpression=id",
            "'log' has no app of this stream after it",
        ),
        ("app.*.partition-key-expression=id", "name the app whose input is partitioned"),
        ("app.score.partition-key-expression=a +", "app.score.partition-key-expression='a +'"),
        (
            "app.score.partition-key-expression=id,deployer.score.autoscale.lag-target=10",
            "'score' reads a partitioned input",
        ),
    ],
)
def test_partitioning_mistakes_are_named(properties: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("*", r"\*").replace("+", r"\+")):
        plan_stream("fraud", DEFINITION, properties=parse_properties(properties))
