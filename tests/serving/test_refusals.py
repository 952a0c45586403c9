"""Every refusal path answers a 4xx whose body names what is wrong; never a 500 or a hang."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.config import Settings
from conveyor.serving import ResolvedModel, ServeOptions
from conveyor.serving.server import bind_sockets, run_in_thread

from .conftest import Serve, Trained, wait_ready


def _infer(base: str, tensors: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return httpx.post(f"{base}/v2/models/gbc/infer", json={"inputs": tensors, **extra})


def _fields(r: httpx.Response) -> list[str]:
    return [d["field"] for d in r.json().get("details", [])]


@pytest.fixture
def gbc_base(serve: Serve, gbc: Trained, trusting: Settings) -> str:
    return serve(gbc.path, trusting, max_body=64 * 1024)


@pytest.fixture
def churn_base(serve: Serve, churn: Trained, settings: Settings) -> str:
    return serve(churn.path, settings)


def test_bad_json_and_empty_body(gbc_base: str) -> None:
    for path in ("/v2/models/gbc/infer", "/predict", "/invocations", "/v1/models/gbc:predict"):
        r = httpx.post(
            f"{gbc_base}{path}",
            content=b'{"inputs": [',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400, (path, r.text)
        assert "not valid JSON" in r.json()["error"]
        r = httpx.post(
            f"{gbc_base}{path}", content=b"", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert "empty" in r.json()["error"]


def test_wrong_content_type(gbc_base: str) -> None:
    r = httpx.post(
        f"{gbc_base}/predict", content=b"<x/>", headers={"content-type": "application/xml"}
    )
    assert r.status_code == 415
    assert "application/json" in r.json()["error"]
    r = httpx.post(
        f"{gbc_base}/invocations", content=b"a,b", headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415
    assert "text/csv" in r.json()["error"]


def test_oversized_body_is_413(gbc_base: str) -> None:
    big = b'{"inputs": [' + b" " * (70 * 1024) + b"]}"
    r = httpx.post(f"{gbc_base}/v2/models/gbc/infer", content=big)
    assert r.status_code == 413
    assert "limit" in r.json()["error"]

    def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(20):
            yield b" " * 8192

    r = httpx.post(f"{gbc_base}/predict", content=chunks())
    assert r.status_code == 413


def test_unknown_model_version_route_and_method(gbc_base: str) -> None:
    r = httpx.post(f"{gbc_base}/v2/models/other/infer", json={"inputs": []})
    assert r.status_code == 404
    assert "'other'" in r.json()["error"]
    assert "'gbc'" in r.json()["error"]
    assert httpx.get(f"{gbc_base}/v2/models/other").status_code == 404
    assert httpx.get(f"{gbc_base}/v2/models/gbc/versions/7").status_code == 404
    assert httpx.post(f"{gbc_base}/v1/models/nope:predict", json={}).status_code == 404
    assert httpx.get(f"{gbc_base}/nowhere").status_code == 404
    r = httpx.get(f"{gbc_base}/v2/models/gbc/infer")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


def test_oip_wrong_shapes_types_and_names_are_all_reported(gbc_base: str) -> None:
    row = [0.5] * 20
    r = _infer(gbc_base, [{"name": "x", "shape": [1, 19], "datatype": "FP64", "data": row[:19]}])
    assert r.status_code == 400
    assert _fields(r) == ["inputs[x]"]
    assert "[rows, 20]" in r.json()["details"][0]["expected"]

    r = _infer(gbc_base, [{"name": "x", "shape": [2, 20], "datatype": "FP64", "data": row}])
    assert r.status_code == 400
    assert "needs 40" in r.json()["error"]

    r = _infer(gbc_base, [{"name": "x", "shape": [1, 20], "datatype": "BYTES", "data": ["a"] * 20}])
    assert r.status_code == 400
    assert "BYTES" in r.json()["error"]
    assert "FP64" in r.json()["error"]

    bad = ["oops", *row[1:]]
    r = _infer(gbc_base, [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": bad}])
    assert r.status_code == 400
    assert "str 'oops'" in r.json()["error"]

    r = _infer(
        gbc_base,
        [
            {"name": "z", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "x", "shape": "wide", "datatype": "FP128", "data": row},
        ],
    )
    assert r.status_code == 400
    assert set(_fields(r)) >= {"inputs[z]", "inputs[1].datatype", "inputs[1].shape"}

    r = _infer(
        gbc_base,
        [{"name": "x", "shape": [1, 20], "datatype": "FP64", "data": row}],
        outputs=[{"name": "nope"}],
    )
    assert r.status_code == 400
    assert _fields(r) == ["outputs[0].name"]

    assert _infer(gbc_base, []).status_code == 400
    assert httpx.post(f"{gbc_base}/v2/models/gbc/infer", json=[1, 2]).status_code == 400


def test_records_name_every_offending_field(churn_base: str) -> None:
    r = httpx.post(
        f"{churn_base}/predict",
        json=[{"age": "old", "income": 1.0, "colour": "red"}, {"age": 40}],
    )
    assert r.status_code == 400
    details = {d["field"]: d for d in r.json()["details"]}
    assert set(details) == {"age", "income"}  # "colour" is extra: left out, not refused
    assert details["age"]["expected"] == "int64"
    assert "missing in row(s) [1]" in details["income"]["error"]

    r = httpx.post(f"{churn_base}/predict", json=[{"age": 2.5, "income": 1.0}])
    assert r.status_code == 400
    assert "non-integer" in r.json()["error"]
    r = httpx.post(f"{churn_base}/predict", json=[{"age": 10**30, "income": 1.0}])
    assert r.status_code == 400
    assert "out of range" in r.json()["error"]
    r = httpx.post(f"{churn_base}/predict", json=[{"age": True, "income": None}])
    assert r.status_code == 400
    assert _fields(r) == ["age", "income"]
    assert httpx.post(f"{churn_base}/predict", json=[]).status_code == 400
    assert httpx.post(f"{churn_base}/predict", json=[[1, 2]]).status_code == 400


def test_nan_is_refused_where_a_value_is_required(churn_base: str) -> None:
    for value in ("nan", "inf", "-Infinity"):
        csv = f"age,income\n40,1.0\n41,{value}\n"
        r = httpx.post(
            f"{churn_base}/invocations", content=csv, headers={"content-type": "text/csv"}
        )
        assert r.status_code == 400
        assert "NaN or infinity in row(s) [1]" in r.json()["error"]
        assert _fields(r) == ["csv.income"]
    r = httpx.post(
        f"{churn_base}/invocations",
        content="age,income\nforty,1\n",
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 400
    assert _fields(r) == ["csv.age"]


def test_csv_line_endings_and_malformed_csv(churn_base: str) -> None:
    for ending in ("\n", "\r\n", "\r"):
        r = httpx.post(
            f"{churn_base}/invocations",
            content=ending.join(["age,income", "40,1.0", "41,2.0"]) + ending,
            headers={"content-type": "text/csv"},
        )
        assert r.status_code == 200, (ending, r.text)
        assert len(r.json()["predictions"]) == 2
    huge = "x" * 200_000  # longer than the csv module's field limit
    r = httpx.post(
        f"{churn_base}/invocations",
        content=f"age,income\n40,{huge}\n",
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 400
    assert "not valid CSV at line 2" in r.json()["error"]


def test_mlflow_and_v1_envelopes(churn_base: str) -> None:
    r = httpx.post(f"{churn_base}/invocations", json={"rows": []})
    assert r.status_code == 400
    assert "dataframe_split" in r.json()["error"]
    r = httpx.post(f"{churn_base}/invocations", json={"instances": [], "inputs": []})
    assert r.status_code == 400
    r = httpx.post(
        f"{churn_base}/invocations",
        json={"dataframe_split": {"columns": ["age", "income"], "data": [[1]]}},
    )
    assert r.status_code == 400
    assert _fields(r) == ["dataframe_split.data[0]"]
    r = httpx.post(f"{churn_base}/v1/models/churn:predict", json={"instances": [[1, 2, 3]]})
    assert r.status_code == 400
    assert "age, income" in r.json()["details"][0]["expected"]


def test_inputs_the_model_itself_rejects_are_422_and_spare_batch_mates(
    tmp_path: Path, settings: Settings, serve: Serve
) -> None:
    """An unseen category passes the signature but the encoder refuses it: 422, not 500."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from conveyor.models.sklearn import save

    frame = pd.DataFrame({"colour": ["red", "blue"] * 20, "size": [float(i) for i in range(40)]})
    pre = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="error"), ["colour"])], remainder="passthrough"
    )
    est = make_pipeline(pre, LogisticRegression()).fit(frame, frame["size"] > 20)
    save(est, tmp_path / "enc.skops", frame)
    base = serve(tmp_path / "enc.skops", settings, trusted=True)

    def post(colour: str) -> httpx.Response:
        return httpx.post(f"{base}/predict", json=[{"colour": colour, "size": 3.0}], timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, ["red", "green", "blue", "red"] * 4))
    for colour, r in zip(["red", "green", "blue", "red"] * 4, answers, strict=True):
        if colour == "green":
            assert r.status_code == 422
            assert "rejected the input" in r.json()["error"]
        else:
            assert r.status_code == 200, r.text


def test_a_request_slower_than_the_timeout_is_504() -> None:
    from .test_cli_serve import SlowModel

    model = SlowModel()
    resolved = ResolvedModel(model=model, name="slow", source="test", digest="blake3:" + "0" * 64)
    sock = bind_sockets("127.0.0.1", 0, 1)[0]
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    _, stop = run_in_thread(resolved, ServeOptions(timeout=0.3, graceful_timeout=5), sock)
    try:
        wait_ready(base)
        r = httpx.post(f"{base}/predict", json=[{"v": 1.0}], timeout=30)
        assert r.status_code == 504
        assert "0.3 s timeout" in r.json()["error"]
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        counted = 'conveyor_requests_total{model="slow",protocol="records",status="504"} 1.0'
        assert counted in metrics
    finally:
        model.release.set()
        stop()


def test_a_model_name_must_fit_in_a_url(gbc: Trained, trusting: Settings) -> None:
    from conveyor.errors import UsageError
    from conveyor.serving import resolve_model_uri

    with pytest.raises(UsageError, match="cannot appear in a URL path"):
        resolve_model_uri(str(gbc.path), trusting, name="fraud/v2")
    assert resolve_model_uri(str(gbc.path), trusting, name="fraud-v2.1").name == "fraud-v2.1"
