"""MLflow model directories (written as MLflow lays them out) served without MLflow installed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import joblib  # type: ignore[import-untyped]
import numpy as np
import pytest

from conveyor.config import Settings
from conveyor.errors import ModelError, UntrustedModelError
from conveyor.serving import resolve_model_uri

from .conftest import TREE, Serve, Trained

RUN_ID = "0123456789abcdef0123456789abcdef"


def _mlmodel(directory: Path, flavors: str, inputs: list[dict[str, object]]) -> Path:
    directory.mkdir()
    (directory / "MLmodel").write_text(
        f"""artifact_path: model
flavors:
{flavors}
mlflow_version: 2.14.1
model_uuid: 5d3f
run_id: {RUN_ID}
signature:
  inputs: '{json.dumps(inputs)}'
  outputs: '[{{"type": "string", "required": true}}]'
  params: null
utc_time_created: '2024-06-01 10:00:00.000000'
"""
    )
    return directory


def _sklearn_dir(tmp_path: Path, churn: Trained) -> Path:
    directory = _mlmodel(
        tmp_path / "mlflow-model",
        """  python_function:
    env: {conda: conda.yaml, virtualenv: python_env.yaml}
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0""",
        [
            {"type": "long", "name": "age", "required": True},
            {"type": "double", "name": "income", "required": True},
        ],
    )
    joblib.dump(churn.estimator, directory / "model.pkl")
    return directory


def test_sklearn_flavour_needs_trust_then_serves_invocations(
    tmp_path: Path, churn: Trained, settings: Settings, serve: Serve
) -> None:
    directory = _sklearn_dir(tmp_path, churn)
    with pytest.raises(UntrustedModelError, match="--trust"):
        resolve_model_uri(str(directory), settings)
    resolved = resolve_model_uri(str(directory), settings, trusted=True)
    assert resolved.run_id == RUN_ID
    assert [(f.name, f.dtype) for f in resolved.model.signature.inputs] == [
        ("age", "int64"),
        ("income", "float64"),
    ]
    base = serve(resolved)
    frame = churn.x.iloc[:4]
    split = frame.to_dict(orient="split")
    r = httpx.post(
        f"{base}/invocations",
        json={"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": churn.estimator.predict(frame).tolist()}
    assert r.headers["x-model-run-id"] == RUN_ID
    assert r.headers["x-model-name"] == "mlflow-model"


def test_skops_flavour_ignores_the_trusted_types_the_file_lists(
    tmp_path: Path, gbc: Trained, settings: Settings, trusting: Settings
) -> None:
    """MLflow 3 writes skops_trusted_types into MLmodel; only the operator decides what to trust."""
    import skops.io as sio

    directory = _mlmodel(
        tmp_path / "skops-model",
        """  sklearn:
    code: null
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
    skops_trusted_types:
    - sklearn.tree._tree.Tree""",
        [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 20]}}],
    )
    sio.dump(gbc.estimator, directory / "model.skops")
    with pytest.raises(UntrustedModelError, match=re.escape(f"CONVEYOR_TRUSTED_TYPES={TREE}")):
        resolve_model_uri(str(directory), settings)
    resolved = resolve_model_uri(str(directory), trusting)
    out = resolved.model.predict({"x": gbc.x[:3]})
    assert out["label"].tolist() == gbc.estimator.predict(gbc.x[:3]).tolist()


def test_onnx_flavour(tmp_path: Path, settings: Settings, serve: Serve) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType  # type: ignore[import-untyped]
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=100, n_features=4, random_state=3)
    x = x.astype(np.float32)
    est = LogisticRegression().fit(x, y)
    onx = skl2onnx.convert_sklearn(est, initial_types=[("input", FloatTensorType([None, 4]))])
    directory = _mlmodel(
        tmp_path / "onnx-model",
        """  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.16.0
    providers: [CPUExecutionProvider]""",
        [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}],
    )
    (directory / "model.onnx").write_bytes(onx.SerializeToString())
    base = serve(directory, settings)
    r = httpx.post(f"{base}/invocations", json={"instances": x[:6].tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == est.predict(x[:6]).tolist()


def test_bad_directories(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ModelError, match="no MLmodel file"):
        resolve_model_uri(str(tmp_path), settings)
    escaping = _mlmodel(
        tmp_path / "escape",
        """  sklearn:
    pickled_model: ../../etc/passwd
    serialization_format: pickle""",
        [],
    )
    with pytest.raises(ModelError, match="outside the model directory"):
        resolve_model_uri(str(escaping), settings, trusted=True)
    other = _mlmodel(tmp_path / "torch", "  pytorch:\n    model_data: data", [])
    with pytest.raises(ModelError, match="pytorch"):
        resolve_model_uri(str(other), settings)
