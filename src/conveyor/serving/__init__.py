"""The scoring service: any Model as an HTTP service over the protocols clients already speak.

>>> resolved = resolve_model_uri("model.skops", get_settings())      # doctest: +SKIP
>>> serve(resolved, ServeOptions(port=8081, workers=2))              # doctest: +SKIP

Heavy pieces (uvloop, httptools, prometheus-client, NumPy) load only when a service
is built, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.serving.resolve import ResolvedModel, resolve_model_uri
from conveyor.serving.service import ServeOptions

__all__ = ["ResolvedModel", "ServeOptions", "build_app", "resolve_model_uri", "serve"]

if TYPE_CHECKING:
    from conveyor.serving.server import build_app, serve


def __getattr__(name: str) -> Any:
    if name in ("build_app", "serve"):
        from conveyor.serving import server

        return getattr(server, name)
    raise AttributeError(f"module 'conveyor.serving' has no attribute {name!r}")
