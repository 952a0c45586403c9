"""Which path answers what: the routing table the protocol registry builds, without a network."""

from __future__ import annotations

import asyncio
from functools import partial

from conveyor.config import Settings
from conveyor.serving import ServeOptions, resolve_model_uri
from conveyor.serving.http import Request, Response
from conveyor.serving.server import build_app

from .conftest import Trained

ROW = b'[{"age": 30, "income": 1000.0}]'

# (method, path, status, the protocol it is counted under, the error's words)
CASES = [
    ("POST", "/predict", 200, "records", ""),
    ("POST", "/invocations", 400, "mlflow", "exactly one of"),
    ("POST", "/v1/models/churn:predict", 400, "v1", "a :predict request is a JSON object"),
    ("POST", "/v2/models/churn/infer", 400, "v2", "an inference request is a JSON object"),
    ("GET", "/v2/models/churn/ready", 200, "v2", ""),
    ("GET", "/ping", 200, "other", ""),
    ("GET", "/v1/models/churn", 200, "other", ""),
    # Another model's scoring path: 404 before the method is looked at.
    ("GET", "/v2/models/other/infer", 404, "other", "unknown model 'other'"),
    ("POST", "/v2/models/churn/versions/9/infer", 404, "other", "has no version '9'"),
    ("POST", "/v1/models/other:predict", 404, "other", "unknown model 'other'"),
    # Pages and unknown paths: the method first.
    ("GET", "/v2/models/other", 404, "v2", "unknown model 'other'"),
    ("POST", "/v2/models/other", 405, "v2", "use GET, HEAD"),
    ("GET", "/v1/models/other", 404, "other", "unknown model 'other'"),
    ("GET", "/predict", 405, "other", "use POST"),
    ("GET", "/v2/nope", 404, "v2", "no route '/v2/nope'"),
    ("POST", "/nope", 405, "other", "use GET, HEAD"),
]


def _settle(done: asyncio.Future[Response], _req: Request, response: Response) -> None:
    done.set_result(response)


def _answers(churn: Trained, settings: Settings) -> list[tuple[Request, Response]]:
    resolved = resolve_model_uri(str(churn.path), settings)

    async def main() -> list[tuple[Request, Response]]:
        app = build_app(resolved, ServeOptions())
        answers = []
        for method, path, *_ in CASES:
            done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            req = Request(method, path, "", {"content-type": "application/json"}, ROW)
            req.reply = partial(_settle, done)
            app.handle(req)
            answers.append((req, await asyncio.wait_for(done, 30)))
        await app.close()
        return answers

    return asyncio.run(main())


def test_each_path_reaches_its_protocol_or_a_clear_error(
    churn: Trained, settings: Settings
) -> None:
    for case, (req, response) in zip(CASES, _answers(churn, settings), strict=True):
        _method, _path, status, protocol, words = case
        assert (response.status, req.protocol) == (status, protocol), case
        assert words.encode() in response.body, (case, response.body)
