"""Orchestration above the platform and the stream and task packages: deploys what they define.

:class:`~.streams.StreamService` turns stream definitions into platform apps
of the ``stream`` kind (:mod:`.stream_kind`, registered into the platform's
kind registry when this package is imported).
"""

from __future__ import annotations

from conveyor.orchestrate.streams import StreamService

__all__ = ["StreamService"]
