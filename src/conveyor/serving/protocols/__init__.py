"""The wire protocols a scoring service speaks, one module each.

``oip`` (Open Inference Protocol V2), ``v1`` (KServe V1), ``mlflow``
(``/invocations``) and ``records`` (``/predict``) each turn their payload
into typed columns, score them through the served model, and shape the
answer their clients expect.
"""
