"""Compiled tree ensembles answer exactly what scikit-learn answers, or leave the batch to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import ensemble, tree
from sklearn.datasets import make_classification, make_regression

from conveyor.config import Settings
from conveyor.models.sklearn import FORMAT, SklearnModel, save, signature_of
from conveyor.models.trees import compile_estimator

TREE = "sklearn.tree._tree.Tree"

CLASSIFIERS = [
    ensemble.RandomForestClassifier,
    ensemble.ExtraTreesClassifier,
    tree.DecisionTreeClassifier,
    tree.ExtraTreeClassifier,
    ensemble.GradientBoostingClassifier,
    ensemble.HistGradientBoostingClassifier,
]
REGRESSORS = [
    ensemble.RandomForestRegressor,
    ensemble.ExtraTreesRegressor,
    tree.DecisionTreeRegressor,
    tree.ExtraTreeRegressor,
    ensemble.GradientBoostingRegressor,
    ensemble.HistGradientBoostingRegressor,
]
#: Estimators that accept NaN in predict (GradientBoosting* refuse it).
NAN_CAPABLE = [c for c in CLASSIFIERS if c is not ensemble.GradientBoostingClassifier]


def _fit(cls: Any, x: Any, y: Any) -> Any:
    params: dict[str, Any] = {"random_state": 0}
    if "Forest" in cls.__name__ or "ExtraTrees" in cls.__name__:
        params["n_estimators"] = 25
    if "Hist" in cls.__name__:
        params["max_iter"] = 30
    return cls(**params).fit(x, y)


def _classification(n_classes: int) -> tuple[Any, Any]:
    x, y = make_classification(
        n_samples=300, n_features=8, n_informative=5, n_classes=n_classes, random_state=n_classes
    )
    return x, y


def _assert_same_as_sklearn(est: Any, x: Any) -> None:
    compiled = compile_estimator(est)
    assert compiled is not None, f"{type(est).__name__} did not compile"
    out = compiled.predict(x)
    assert out is not None
    if "label" in out:
        np.testing.assert_array_equal(out["probabilities"], est.predict_proba(x))
        np.testing.assert_array_equal(out["label"], est.predict(x))
    else:
        np.testing.assert_array_equal(out["prediction"], est.predict(x))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("cls", CLASSIFIERS, ids=lambda c: c.__name__)
def test_classifiers_give_sklearns_exact_probabilities_and_labels(cls: Any, n_classes: int) -> None:
    x, y = _classification(n_classes)
    est = _fit(cls, x, y)
    _assert_same_as_sklearn(est, x)
    _assert_same_as_sklearn(est, x[:1])


@pytest.mark.parametrize("cls", REGRESSORS, ids=lambda c: c.__name__)
def test_regressors_give_sklearns_exact_predictions(cls: Any) -> None:
    x, y = make_regression(n_samples=300, n_features=8, noise=5.0, random_state=2)
    est = _fit(cls, x, y)
    _assert_same_as_sklearn(est, x)


@pytest.mark.parametrize("cls", NAN_CAPABLE, ids=lambda c: c.__name__)
def test_missing_values_follow_each_nodes_learned_direction(cls: Any) -> None:
    x, y = _classification(2)
    x[::6, 1] = np.nan
    x[::4, 5] = np.nan
    est = _fit(cls, x, y)
    _assert_same_as_sklearn(est, x)
    # Rows with NaN in features the training data never missed go wherever sklearn sends them.
    unseen = x[:40].copy()
    unseen[:, 0] = np.nan
    _assert_same_as_sklearn(est, unseen)


def test_string_labels_and_float32_rounding_match() -> None:
    x, y = _classification(3)
    labels = np.array(["ant", "bee", "cat"])[y]
    est = _fit(ensemble.RandomForestClassifier, x, labels)
    # Values that differ from a threshold only below float32 precision.
    nudged = x + 1e-12
    _assert_same_as_sklearn(est, nudged)


def test_boosting_with_a_custom_init_estimator_is_left_to_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _classification(2)
    est = ensemble.GradientBoostingClassifier(
        n_estimators=10, init=LogisticRegression(), random_state=0
    ).fit(x, y)
    assert compile_estimator(est) is None


def test_subclasses_and_multi_output_trees_are_left_to_sklearn() -> None:
    class MyForest(ensemble.RandomForestClassifier):  # type: ignore[misc]
        pass

    x, y = _classification(2)
    assert compile_estimator(MyForest(n_estimators=3, random_state=0).fit(x, y)) is None
    two = np.column_stack([y, 1 - y])
    assert compile_estimator(tree.DecisionTreeClassifier(random_state=0).fit(x, two)) is None


def test_batches_sklearn_refuses_get_sklearns_own_errors(tmp_path: Path) -> None:
    x, y = _classification(2)
    gbc = _fit(ensemble.GradientBoostingClassifier, x, y)
    model = SklearnModel(gbc, signature_of(gbc))
    bad = x[:2].copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict({"x": bad})
    bad[0, 3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.predict({"x": bad})
    with pytest.raises(ValueError, match="features"):
        model.predict({"x": x[:2, :5]})


def test_a_saved_ensemble_scores_through_the_model_protocol(
    tmp_path: Path, settings: Settings
) -> None:
    x, y = _classification(3)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    est = _fit(ensemble.GradientBoostingClassifier, frame, y)
    path = tmp_path / "gbc.skops"
    save(est, path, frame)
    trusting = Settings.from_env(
        {"CONVEYOR_HOME": str(settings.home), "CONVEYOR_TRUSTED_TYPES": TREE}
    )
    model = FORMAT.load(path, settings=trusting)
    columns = {name: frame[name].to_numpy()[:9] for name in frame.columns}
    for out in (model.predict(columns), model.predict_validated(columns)):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(out["probabilities"], est.predict_proba(frame[:9]))
        np.testing.assert_array_equal(out["label"], est.predict(frame[:9]))
        assert sorted(out) == ["label", "probabilities"]


def test_histogram_boosting_with_categorical_features_is_left_to_sklearn() -> None:
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.integers(0, 4, 200), rng.normal(size=200)]).astype(float)
    y = (x[:, 0] == 2) ^ (x[:, 1] > 0)
    est = ensemble.HistGradientBoostingClassifier(
        max_iter=10, categorical_features=[0], random_state=0
    ).fit(x, y)
    assert compile_estimator(est) is None
    model = SklearnModel(est, signature_of(est))
    np.testing.assert_array_equal(model.predict({"x": x[:20]})["label"], est.predict(x[:20]))
