"""Schema-driven fuzzing of the control API: no request, valid or not, gets a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .control import Platform, running_platform

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.slow

#: Operations that would start processes or builds, or stop the platform: exercised end to end
#: elsewhere (a runtime image build would reach whatever registry a case names).
_STARTS_THINGS = (
    "/push",
    "/restart",
    "/restage",
    "/rollback",
    "/start",
    "/deploy",
    "/update",
    "/runtime",
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("fuzz-platform")) as running:
        yield running


def test_no_request_gets_a_server_error(platform: Platform) -> None:
    client = platform.client
    auth = {"Authorization": f"Bearer {client.token}"}
    schema = schemathesis.openapi.from_url(f"{client.base}/openapi.json", headers=auth)
    operations = [
        op
        for op in (result.ok() for result in schema.get_all_operations())
        if not op.path.endswith(_STARTS_THINGS) and op.path != "/v1/shutdown"
    ]
    assert len(operations) >= 15
    modes = list(schemathesis.GenerationMode)  # valid payloads and deliberately invalid ones
    for operation in operations:

        @given(case=st.one_of([operation.as_strategy(mode) for mode in modes]))
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(base_url=client.base, headers=auth, checks=[not_a_server_error])

        fuzz()
    assert platform.process is not None
    assert platform.process.poll() is None  # still serving
    assert "control API request failed" not in platform.server_log()
