"""Train a gradient-boosted classifier on the diagnosis data; log metrics, a model and a plot."""

import json

import matplotlib
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

import conveyor

matplotlib.use("Agg")
import matplotlib.pyplot as plt

n_estimators = conveyor.param("n_estimators", 100)
learning_rate = conveyor.param("learning_rate", 0.1)
max_depth = conveyor.param("max_depth", 3)
subsample = conveyor.param("subsample", 0.8)  # random row sampling: the run seed matters

train = pd.read_csv(conveyor.input("data/train.csv"))
test = pd.read_csv(conveyor.input("data/test.csv"))
X, y = train.drop(columns="diagnosis"), train["diagnosis"]
X_test, y_test = test.drop(columns="diagnosis"), test["diagnosis"]

model = GradientBoostingClassifier(
    n_estimators=n_estimators,
    learning_rate=learning_rate,
    max_depth=max_depth,
    subsample=subsample,
)
model.fit(X, y)

positive = list(model.classes_).index("malignant")
for step, proba in enumerate(model.staged_predict_proba(X_test), start=1):
    if step % 20 == 0 or step == n_estimators:
        conveyor.log_metric(
            "test_auc", roc_auc_score(y_test == "malignant", proba[:, positive]), step
        )

scores = model.predict_proba(X_test)[:, positive]
metrics = {
    "auc": roc_auc_score(y_test == "malignant", scores),
    "accuracy": accuracy_score(y_test, model.predict(X_test)),
}
conveyor.log_metrics(metrics)
with open(conveyor.output("outputs/metrics.json"), "w") as fh:
    json.dump(metrics, fh, indent=2, sort_keys=True)

fpr, tpr, _ = roc_curve(y_test == "malignant", scores)
fig, ax = plt.subplots(figsize=(4, 4))
ax.plot(fpr, tpr, label=f"AUC {metrics['auc']:.3f}")
ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test set")
ax.legend(loc="lower right")
fig.savefig(conveyor.output("outputs/roc.png"), dpi=80, metadata={"Software": None})

conveyor.save_model(model, "model", path="outputs/model.skops", example=X.head())
print(f"auc={metrics['auc']:.4f} accuracy={metrics['accuracy']:.4f}")
