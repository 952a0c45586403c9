"""The wire protocols a scoring service speaks, one module each.

``oip`` (Open Inference Protocol V2), ``v1`` (KServe V1), ``mlflow``
(``/invocations``) and ``records`` (``/predict``) each turn their payload
into typed columns and return a ``Scoring``: those columns, and how to
shape the answer their clients expect from the model's outputs.
"""
