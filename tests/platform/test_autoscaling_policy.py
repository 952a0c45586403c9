"""The ``autoscaling:`` policy: what a manifest or the API may say, and what each mistake says."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from conveyor.platform.errors import ManifestError
from conveyor.platform.manifest import parse_manifest
from conveyor.platform.policy import AutoscalingSpec, ScalingRule
from conveyor.platform.spec import AppSpec

POLICY = """\
applications:
  - name: diagnosis
    model: run:3f2a9c/model
    autoscaling:
      min-instances: 0
      max-instances: 8
      target-ongoing-requests: 4
      rules:
        - {metric: cpu, threshold: 70, operator: ">", adjustment: "+1", breach-duration: 30s}
        - {metric: response-time-p95, threshold: 200ms, operator: ">", adjustment: "+50%"}
        - {metric: throughput, threshold: 5, operator: "<", adjustment: "-1", breach-duration: 2m}
      cool-down: 60s
      idle-period: 5m
"""


def test_a_manifest_policy_becomes_the_spec_the_api_and_registry_keep() -> None:
    spec = parse_manifest(POLICY, "conveyor.yml").app("diagnosis")
    policy = spec.autoscaling
    assert policy == AutoscalingSpec(
        min_instances=0,
        max_instances=8,
        target_ongoing_requests=4,
        rules=(
            ScalingRule("cpu", 70, ">", "+1", 30),
            ScalingRule("response-time-p95", 200, ">", "+50%", 30),
            ScalingRule("throughput", 5, "<", "-1", 120),
        ),
        cool_down=60,
        idle_period=300,
    )
    assert policy is not None
    assert policy.describe() == (
        "0-8 instances; 4 ongoing requests per instance (after 30 s); "
        "cpu > 70 % → +1 after 30 s; response time p95 > 200 ms → +50% after 30 s; "
        "throughput < 5 requests/s → -1 after 120 s; cool-down 60 s; to zero after 300 s idle"
    )
    assert AppSpec.from_json("diagnosis", spec.to_json()) == spec
    assert TypeAdapter(AppSpec).validate_python(spec.to_json()) == spec
    # The API takes the units as text too, and reads them the same way.
    body = {**spec.to_json(), "autoscaling": {"max_instances": 3, "cool_down": "90s",
            "rules": [{"metric": "response-time-p95", "threshold": "0.5s"}]}}  # fmt: skip
    sent = TypeAdapter(AppSpec).validate_python(body).autoscaling
    assert sent is not None
    assert (sent.cool_down, sent.rules[0].threshold, sent.min_instances) == (90.0, 500.0, 1)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "{min-instances: 5, max-instances: 2}",
            "conveyor.yml:5:34: applications[0].autoscaling.min-instances: "
            "5 is more than max-instances 2",
        ),
        (
            "{max-instances: 2, rules: [{metric: gpu, threshold: 1}]}",
            "conveyor.yml:5:54: applications[0].autoscaling.rules[0].metric: unknown metric "
            "'gpu'; known: cpu, memory, throughput, response-time-p95, ongoing-requests",
        ),
        (
            "{max-instances: 2, rules: [{metric: response-time-p95, threshold: 70%}]}",
            "conveyor.yml:5:84: applications[0].autoscaling.rules[0].threshold: '70%' is in the "
            "wrong unit for response-time-p95 of milliseconds like 200ms",
        ),
        (
            "{max-instances: 2, rules: [{metric: cpu, threshold: 70, adjustment: double}]}",
            "conveyor.yml:5:86: applications[0].autoscaling.rules[0].adjustment: "
            "expected a signed change like +1, -1 or +50%, got 'double'",
        ),
        (
            "{max-instances: 2, cool-down: soon}",
            "conveyor.yml:5:48: applications[0].autoscaling.cool-down: "
            "expected a duration like 30s or 500ms, got 'soon'",
        ),
        (
            "{max-instances: 2, speed: 3}",
            "conveyor.yml:5:37: applications[0].autoscaling.speed: unknown key;",
        ),
    ],
)
def test_a_contradictory_or_impossible_policy_is_a_manifest_error(block: str, message: str) -> None:
    text = "applications:\n  - name: a\n    model: run:1/m\n    instances: 1\n"
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text + f"    autoscaling: {block}\n", "conveyor.yml")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "policy",
    [
        {"min_instances": 3, "max_instances": 2},
        {"max_instances": 2, "rules": [{"metric": "gpu", "threshold": 1}]},
        {"max_instances": 2, "rules": [{"metric": "cpu", "threshold": "200ms"}]},
        {"max_instances": 2, "target_ongoing_requests": 0},
        {"max_instances": 2, "idle_period": "-3s"},
    ],
)
def test_the_api_refuses_the_same_policies(policy: dict[str, object]) -> None:
    body = {**AppSpec(name="a", model="run:1/m").to_json(), "autoscaling": policy}
    with pytest.raises(ValidationError):
        TypeAdapter(AppSpec).validate_python(body)
