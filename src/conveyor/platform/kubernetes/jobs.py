"""Task steps as Jobs and schedules as CronJobs.

A step of a composed task runs once to its end: a Job of one pod that is
never restarted in place (``backoffLimit: 0``; the task's own transitions
decide what follows a failure, as locally). A schedule is a CronJob with the
same 5-field expression, ``suspend: true`` while it is paused.

>>> job_name("nightly", "train", "0123456789abcdef")
'nightly-train-01234567'
"""

from __future__ import annotations

import re
from typing import Any

from conveyor.errors import UsageError
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.kubernetes.pod import container
from conveyor.platform.kubernetes.render import check_app
from conveyor.platform.kubernetes.workload import Workload, labels, metadata

__all__ = ["job_name", "render_cronjob", "render_job"]

#: Finished Jobs (and their pods' logs) stay a day, then the cluster removes them.
_KEEP_FINISHED = 24 * 3600
_FIELD = re.compile(r"\S+")
_NAME = re.compile(r"[^a-z0-9-]+")


def job_name(task: str, step: str, execution: str, attempt: int | None = None) -> str:
    """A Job's name: task, step, execution (and attempt), cut to fit a DNS label (with its pods').

    >>> job_name("nightly", "train", "0123456789abcdef", attempt=2)
    'nightly-train-01234567-2'
    """
    suffix = f"-{execution[:8]}" + ("" if attempt is None else f"-{attempt}")
    stem = _NAME.sub("-", f"{task}-{step}".lower()).strip("-")[: 61 - len(suffix)].rstrip("-")
    return f"{stem}{suffix}"


def _job_spec(
    work: Workload,
    config: KubernetesConfig,
    command: list[str] | None,
    *,
    name: str,
    component: str,
) -> dict[str, Any]:
    check_app(work.spec, config)
    box = container(work, config)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        box.pop(probe, None)  # a step serves nothing; it runs to its end
    del box["ports"]
    if command is not None:
        box["command"] = list(command)
    return {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": _KEEP_FINISHED,
        "template": {
            "metadata": {"labels": _labels(work, name, component)},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "containers": [box],
            },
        },
    }


def _labels(work: Workload, name: str, component: str) -> dict[str, str]:
    # The instance is the Job (or CronJob): an app's Service never selects a step's pods.
    out = labels(work.spec.name, work.revision, component=component)
    out["app.kubernetes.io/instance"] = name
    return out


def render_job(
    work: Workload, config: KubernetesConfig, *, name: str, command: list[str] | None = None
) -> dict[str, Any]:
    """One launch of a step: a Job named ``name`` running ``command`` (else the app's)."""
    meta = metadata(work, config, name)
    meta["labels"] = _labels(work, name, "task-step")
    body = _job_spec(work, config, command, name=name, component="task-step")
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": body}


def render_cronjob(
    work: Workload,
    config: KubernetesConfig,
    *,
    name: str,
    cron: str,
    paused: bool = False,
    time_zone: str | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """A schedule: a CronJob firing ``cron`` (5 fields), suspended while ``paused``."""
    if len(_FIELD.findall(cron)) != 5 or cron.strip().startswith("@"):
        raise UsageError(
            f"schedule {name!r}: {cron!r} is not a 5-field cron expression, which a CronJob needs"
        )
    if len(name) > 52:
        raise UsageError(f"schedule {name!r}: a CronJob's name may have at most 52 characters")
    meta = metadata(work, config, name)
    meta["labels"] = _labels(work, name, "task-schedule")
    spec: dict[str, Any] = {
        "schedule": " ".join(_FIELD.findall(cron)),
        "suspend": paused,
        "concurrencyPolicy": "Forbid",
    }
    if time_zone:
        spec["timeZone"] = time_zone
    spec["jobTemplate"] = {
        "spec": _job_spec(work, config, command, name=name, component="task-step")
    }
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": spec}
