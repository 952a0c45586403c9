"""A real Open Inference Protocol client (tritonclient's HTTP client) end to end."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.config import Settings

from .conftest import Serve, Trained

httpclient = pytest.importorskip("tritonclient.http")


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_infers_like_the_estimator(
    serve: Serve, gbc: Trained, trusting: Settings, binary: bool
) -> None:
    base = serve(gbc.path, trusting)
    client = httpclient.InferenceServerClient(url=base.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("gbc")
        meta = client.get_model_metadata("gbc")
        assert meta["inputs"][0]["shape"] == [-1, 20]

        rows = gbc.x[:8]
        tensor = httpclient.InferInput("x", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = client.infer("gbc", [tensor], outputs=outputs, request_id="abc")
        np.testing.assert_array_equal(result.as_numpy("label"), gbc.estimator.predict(rows))
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), gbc.estimator.predict_proba(rows)
        )
        assert result.get_response()["id"] == "abc"
    finally:
        client.close()


def test_tritonclient_bytes_tensors(serve: Serve, churn: Trained, settings: Settings) -> None:
    """String labels come back as BYTES, in binary form too."""
    base = serve(churn.path, settings)
    client = httpclient.InferenceServerClient(url=base.removeprefix("http://"))
    try:
        frame = churn.x.iloc[:5]
        age = httpclient.InferInput("age", [5], "INT32")
        age.set_data_from_numpy(frame["age"].to_numpy(dtype=np.int32))
        income = httpclient.InferInput("income", [5, 1], "FP32")
        income.set_data_from_numpy(frame["income"].to_numpy(dtype=np.float32).reshape(5, 1))
        result = client.infer("churn", [age, income])
        labels = [v.decode() for v in result.as_numpy("label")]
        expected = churn.estimator.predict(frame.astype({"income": np.float32})).tolist()
        assert labels == expected
    finally:
        client.close()
