"""Train a random forest on the diagnosis data (the composed task's second model)."""

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score

import conveyor

n_estimators = conveyor.param("n_estimators", 100)
train = pd.read_csv(conveyor.input("data/train.csv"))
test = pd.read_csv(conveyor.input("data/test.csv"))
X, y = train.drop(columns="diagnosis"), train["diagnosis"]
X_test, y_test = test.drop(columns="diagnosis"), test["diagnosis"]

model = RandomForestClassifier(n_estimators=n_estimators, n_jobs=1).fit(X, y)
positive = list(model.classes_).index("malignant")
metrics = {
    "auc": roc_auc_score(y_test == "malignant", model.predict_proba(X_test)[:, positive]),
    "accuracy": accuracy_score(y_test, model.predict(X_test)),
}
conveyor.log_metrics(metrics)
print(f"auc={metrics['auc']:.4f} accuracy={metrics['accuracy']:.4f}")
