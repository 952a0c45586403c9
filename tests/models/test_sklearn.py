"""scikit-learn format: skops by default, pickle only with trust, signatures a client can use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from conveyor.config import Settings
from conveyor.errors import ModelError, UntrustedModelError
from conveyor.models import load_model
from conveyor.models.sklearn import FORMAT, PICKLE_FORMAT, save, signature_of

TREE = "sklearn.tree._tree.Tree"


def _data() -> tuple[Any, Any]:
    x, y = make_classification(n_samples=120, n_features=5, random_state=0)
    return x, y


def test_array_classifier_round_trips_through_skops(tmp_path: Path) -> None:
    x, y = _data()
    est = LogisticRegression().fit(x, y)
    path = tmp_path / "m.skops"
    sig = save(est, path)
    assert [(f.name, f.dtype, f.shape) for f in sig.inputs] == [("x", "float64", (5,))]
    assert [f.name for f in sig.outputs] == ["label", "probabilities"]
    assert sig.classes == (0, 1)
    assert sig.task == "classification"

    model = FORMAT.load(path)
    out = model.predict({"x": x[:7]})
    np.testing.assert_array_equal(out["label"], est.predict(x[:7]))
    np.testing.assert_allclose(out["probabilities"], est.predict_proba(x[:7]))
    assert model.signature == sig
    # The service's entry point for already-validated batches answers the same.
    fast = model.predict_validated({"x": x[:7]})  # type: ignore[attr-defined]
    np.testing.assert_allclose(fast["probabilities"], out["probabilities"])


def test_dataframe_regressor_takes_one_field_per_column(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=50, n_features=3, random_state=1)
    frame = pd.DataFrame(x, columns=["age", "income", "score"])
    frame["age"] = (frame["age"] * 10).round().astype("int64")
    est = LinearRegression().fit(frame, y)
    sig = signature_of(est, frame)
    assert [(f.name, f.dtype) for f in sig.inputs] == [
        ("age", "int64"),
        ("income", "float64"),
        ("score", "float64"),
    ]
    assert [f.name for f in sig.outputs] == ["prediction"]
    assert sig.task == "regression"
    assert save(est, tmp_path / "r.skops", frame) == sig
    model = load_model(tmp_path / "r.skops")
    assert model.signature == sig  # the example's int64 column survives the reload
    batch = {name: frame[name].to_numpy()[:4] for name in frame.columns}
    np.testing.assert_allclose(model.predict(batch)["prediction"], est.predict(frame[:4]))


def test_tree_models_are_refused_until_the_operator_trusts_the_tree_type(
    tmp_path: Path, settings: Settings
) -> None:
    x, y = _data()
    path = tmp_path / "gb.skops"
    save(GradientBoostingClassifier(n_estimators=5).fit(x, y), path)
    with pytest.raises(UntrustedModelError) as info:
        FORMAT.load(path, settings=settings)
    assert TREE in str(info.value)
    assert f"CONVEYOR_TRUSTED_TYPES={TREE}" in str(info.value)
    assert "--trust" in str(info.value)

    operator = Settings.from_env(
        {"CONVEYOR_HOME": str(settings.home), "CONVEYOR_TRUSTED_TYPES": TREE}
    )
    model = FORMAT.load(path, settings=operator)
    assert model.predict({"x": x[:3]})["label"].shape == (3,)
    # --trust vouches for this one file.
    assert FORMAT.load(path, trusted=True, settings=settings).signature.task == "classification"


def test_pickle_needs_trust(tmp_path: Path) -> None:
    x, y = _data()
    est = KNeighborsClassifier().fit(x, y)
    path = tmp_path / "m.joblib"
    joblib.dump(est, path)
    with pytest.raises(UntrustedModelError, match="runs any code") as info:
        load_model(path)
    assert "--trust" in str(info.value)
    model = PICKLE_FORMAT.load(path, trusted=True)
    out = model.predict({"x": x[:10]})
    # Outside the argmax allow-list, label and probabilities both come from the estimator.
    np.testing.assert_array_equal(out["label"], est.predict(x[:10]))
    np.testing.assert_allclose(out["probabilities"], est.predict_proba(x[:10]))


def test_column_transformer_pipeline_gets_a_dataframe(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"colour": ["red", "blue", "red", "green"] * 10, "size": np.arange(40, dtype=float)}
    )
    y = (frame["size"] > 20).astype(int)
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(), ["colour"]), ("num", StandardScaler(), ["size"])]
    )
    est = make_pipeline(pre, LogisticRegression()).fit(frame, y)
    sig = save(est, tmp_path / "p.skops", frame)
    assert [(f.name, f.dtype) for f in sig.inputs] == [("colour", "string"), ("size", "float64")]
    model = FORMAT.load(tmp_path / "p.skops", trusted=True)
    out = model.predict({"colour": ["red", "green"], "size": [1.0, 39.0]})
    np.testing.assert_array_equal(out["label"], est.predict(frame.iloc[[0, 39]]))


def test_clusterer_outputs_cluster(tmp_path: Path) -> None:
    x, _ = _data()
    est = KMeans(n_clusters=3, n_init=2, random_state=0).fit(x)
    sig = signature_of(est)
    assert sig.task == "clustering"
    assert [f.name for f in sig.outputs] == ["cluster"]
    save(est, tmp_path / "k.skops")
    model = FORMAT.load(tmp_path / "k.skops")
    np.testing.assert_array_equal(model.predict({"x": x[:5]})["cluster"], est.predict(x[:5]))


def test_unfitted_or_non_predicting_estimators_are_refused() -> None:
    with pytest.raises(ModelError, match="not fitted"):
        signature_of(LogisticRegression())
    with pytest.raises(ModelError, match="no predict"):
        signature_of(StandardScaler().fit(np.ones((3, 2))))


def test_garbage_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.skops"
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable skops file"):
        FORMAT.load(path)


def test_signature_keeps_categories_datetimes_and_missing_values(tmp_path: Path) -> None:
    """What the example shows survives save and load: categories in order, dates, NaN."""
    from sklearn.ensemble import IsolationForest
    from sklearn.impute import SimpleImputer

    frame = pd.DataFrame(
        {
            "colour": pd.Categorical(["blue", "red", None, "red"], categories=["red", "blue"]),
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", None, "2024-03-01"], utc=True),
            "spend": [1.0, np.nan, 3.0, 4.0],
            "age": [30.0, 40.0, 50.0, 60.0],
        }
    )
    est = make_pipeline(SimpleImputer(), LinearRegression()).fit(
        frame[["spend", "age"]], [1.0, 2.0, 3.0, 4.0]
    )
    sig = signature_of(est, frame[["spend", "age"]])
    assert [(f.name, f.optional) for f in sig.inputs] == [("spend", True), ("age", False)]

    # Only the column names matter here: a regression "fitted" on the frame's columns.
    named = LinearRegression().fit(np.zeros((4, 4)), [1.0, 2.0, 3.0, 4.0])
    named.feature_names_in_ = np.asarray(frame.columns, dtype=object)
    fields = {f.name: f for f in signature_of(named, frame).inputs}
    assert (fields["colour"].dtype, fields["colour"].values) == ("category", ("red", "blue"))
    assert fields["colour"].optional
    assert fields["when"].dtype == str(frame["when"].dtype)  # unit and zone kept
    assert fields["when"].dtype.endswith(", UTC]")

    outliers = IsolationForest(n_estimators=5, random_state=0).fit(frame[["age"]])
    sig = signature_of(outliers)
    assert sig.task == "outlier_detection"
    assert [(f.name, f.dtype) for f in sig.outputs] == [("prediction", "int64")]
