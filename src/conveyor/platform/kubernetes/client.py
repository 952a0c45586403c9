"""One cluster's API, through the official ``kubernetes`` client (imported on first use).

Objects are applied with server-side apply: ``PATCH`` with the content type
``application/apply-patch+yaml``, field manager ``conveyor`` and ``force``
(Conveyor owns the fields it renders). Every failure is translated at this
boundary into a :class:`~conveyor.platform.errors.ClusterError` that names the
context, and for a refusal (403) the verb, the resource and a Role that would
allow it.

    cluster = Cluster.connect(config)            # reads the kubeconfig's context
    cluster.apply(deployment)                    # PATCH .../deployments/iris?fieldManager=conveyor
    cluster.get("Deployment", "iris")["status"]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from conveyor.platform.errors import ClusterError
from conveyor.platform.kubernetes.config import KubernetesConfig

__all__ = ["APPLY_TYPE", "FIELD_MANAGER", "KINDS", "Cluster", "Kind", "LogStream"]

FIELD_MANAGER = "conveyor"
APPLY_TYPE = "application/apply-patch+yaml"
#: Seconds to connect to the API server, then to wait for its answer.
_TIMEOUT = (5.0, 30.0)


@dataclass(frozen=True)
class Kind:
    """Where the API serves one kind of object (always namespaced here)."""

    group: str  # "" for the core group
    version: str
    plural: str

    @property
    def prefix(self) -> str:
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"


KINDS: dict[str, Kind] = {
    "Secret": Kind("", "v1", "secrets"),
    "Service": Kind("", "v1", "services"),
    "Pod": Kind("", "v1", "pods"),
    "Event": Kind("", "v1", "events"),
    "Deployment": Kind("apps", "v1", "deployments"),
    "ReplicaSet": Kind("apps", "v1", "replicasets"),
    "PodDisruptionBudget": Kind("policy", "v1", "poddisruptionbudgets"),
    "Ingress": Kind("networking.k8s.io", "v1", "ingresses"),
    "HTTPRoute": Kind("gateway.networking.k8s.io", "v1", "httproutes"),
    "HorizontalPodAutoscaler": Kind("autoscaling", "v2", "horizontalpodautoscalers"),
    "Job": Kind("batch", "v1", "jobs"),
    "CronJob": Kind("batch", "v1", "cronjobs"),
}


class Cluster:
    """Reads and applies objects in one namespace of one cluster."""

    def __init__(self, api: Any, config: KubernetesConfig) -> None:
        self.api = api  # a kubernetes.client.ApiClient
        self.config = config
        self.namespace = config.namespace

    @property
    def context(self) -> str:
        return self.config.context or "(the kubeconfig's current context)"

    @classmethod
    def connect(cls, config: KubernetesConfig, *, kubeconfig: str | None = None) -> Cluster:
        """The cluster of ``config.context`` in the kubeconfig (``$KUBECONFIG`` or ~/.kube)."""
        try:
            from kubernetes import config as kube_config
        except ImportError as exc:
            raise ClusterError(
                "the Kubernetes client is not installed",
                hint="pip install 'conveyor[kubernetes]'",
            ) from exc
        try:
            api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=config.context, persist_config=False
            )
        except (kube_config.ConfigException, OSError, TypeError, ValueError) as exc:
            where = f"context {config.context!r}" if config.context else "the current context"
            raise ClusterError(
                f"cannot use {where} of the kubeconfig: {exc}",
                hint="Check `kubectl config get-contexts` (KUBECONFIG or ~/.kube/config), "
                "or add the target again with --context NAME.",
            ) from exc
        return cls(api, config)

    # -- requests -----------------------------------------------------------------

    def path(self, kind: str, name: str | None = None, *, sub: str | None = None) -> str:
        where = KINDS[kind]
        path = f"{where.prefix}/namespaces/{self.namespace}/{where.plural}"
        if name is not None:
            path += f"/{name}"
        if sub is not None:
            path += f"/{sub}"
        return path

    def _call(
        self,
        verb: str,
        kind: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        text: bool = False,
    ) -> Any:
        with self._translated(verb, kind):
            response = self._send(method, path, query, body, content_type, text, _TIMEOUT)
            data = response.read()
            _raise_for_status(response, data)
        if text:
            return data.decode("utf-8", "replace")
        return json.loads(data) if data else {}

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Mapping[str, Any] | None,
        content_type: str,
        text: bool,
        timeout: tuple[float, float | None],
    ) -> Any:
        headers = {"Accept": "application/json" if not text else "text/plain"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self.api.call_api(*request, _request_timeout=timeout)

    @contextmanager
    def _translated(self, verb: str, kind: str) -> Iterator[None]:
        """The client's errors as a ClusterError naming the context (and the refusal)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as exc:
            raise self._refused(verb, kind, exc) from exc
        except (HTTPError, OSError) as exc:  # refused, reset, TLS, DNS, timeouts
            raise ClusterError(
                f"cannot reach the Kubernetes API of context {self.context}: {_first_line(exc)}",
                hint="Is the cluster running, and does `kubectl --context ... get ns` answer?",
            ) from exc

    def _refused(self, verb: str, kind: str, exc: Any) -> ClusterError:
        where = KINDS[kind]
        message = _message(exc)
        if exc.status == 403:
            group = where.group or '""'
            return ClusterError(
                f"the cluster (context {self.context}) refused to {verb} {where.plural} in "
                f"namespace {self.namespace!r}: {message}",
                hint=(
                    "A Role bound to your user allows it:\n"
                    "  kind: Role\n"
                    f"  metadata: {{namespace: {self.namespace}}}\n"
                    f"  rules: [{{apiGroups: [{group}], resources: [{where.plural}], "
                    f"verbs: [get, list, watch, create, patch, delete]}}]"
                ),
            )
        if exc.status == 401:
            return ClusterError(
                f"the cluster (context {self.context}) did not accept your credentials: {message}"
            )
        if exc.status == 404 and "namespaces" in message and self.namespace in message:
            return ClusterError(
                f"namespace {self.namespace!r} does not exist in context {self.context}",
                hint=f"kubectl create namespace {self.namespace}",
            )
        return ClusterError(
            f"the cluster (context {self.context}) refused to {verb} {where.plural}: "
            f"{exc.status} {message}"
        )

    # -- what the target uses -----------------------------------------------------

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (a whole object, as rendered); the cluster's copy back."""
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        result: dict[str, Any] = self._call(
            "apply",
            kind,
            "PATCH",
            self.path(kind, name),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=obj,  # sent as JSON, which is YAML: the apply content type takes it
            content_type=APPLY_TYPE,
        )
        return result

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            found: dict[str, Any] = self._call("get", kind, "GET", self.path(kind, name))
        except ClusterError as exc:
            if " 404 " in exc.message:
                return None
            raise
        return found

    def items(self, kind: str, selector: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        query = []
        if selector:
            query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in selector.items())))
        found = self._call("list", kind, "GET", self.path(kind), query=query)
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    def delete(self, kind: str, name: str) -> bool:
        """Delete the object (its dependents in the background); False if there was none."""
        body = {"propagationPolicy": "Background"}
        try:
            self._call("delete", kind, "DELETE", self.path(kind, name), body=body)
        except ClusterError as exc:
            if " 404 " in exc.message:
                return False
            raise
        return True

    def scale(self, kind: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        self._call(
            "patch",
            kind,
            "PATCH",
            self.path(kind, name),
            query=[("fieldManager", FIELD_MANAGER)],
            body=body,
            content_type="application/merge-patch+json",
        )

    def logs(self, pod: str, *, lines: int = 20) -> str:
        return str(
            self._call(
                "get",
                "Pod",
                "GET",
                self.path("Pod", pod, sub="log"),
                query=[("tailLines", str(lines))],
                text=True,
            )
        )

    def follow(self, pod: str, *, lines: int = 100) -> LogStream:
        """The pod's last ``lines``, then each new line as it comes (close it to stop)."""
        query = [("tailLines", str(lines)), ("follow", "true")]
        path = self.path("Pod", pod, sub="log")
        with self._translated("get", "Pod"):
            response = self._send("GET", path, query, None, "", True, (_TIMEOUT[0], None))
            if not 200 <= response.status <= 299:
                _raise_for_status(response, response.read())
        return LogStream(response.response, lambda: self._translated("get", "Pod"))

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The events of the object named ``name`` (every event of the namespace: None)."""
        query = [("fieldSelector", f"involvedObject.name={name}")] if name else []
        found = self._call("list", "Event", "GET", self.path("Event"), query=query)
        items: list[dict[str, Any]] = found.get("items") or []
        return items


class LogStream:
    """A followed pod log: iterate its lines; :meth:`close` (from any thread) ends it."""

    def __init__(self, response: Any, translated: Callable[[], Any]) -> None:
        self._response = response  # a urllib3 response, not read yet
        self._translated = translated
        self.closed = False

    def __iter__(self) -> Iterator[str]:
        pending = b""
        try:
            with self._translated():
                for chunk in self._response.stream(4096):
                    pending += chunk
                    *done, pending = pending.split(b"\n")
                    for line in done:
                        yield line.decode("utf-8", "replace")
        except ClusterError:
            if not self.closed:
                raise
        if pending and not self.closed:
            yield pending.decode("utf-8", "replace")

    def close(self) -> None:
        self.closed = True
        self._response.close()


def _raise_for_status(response: Any, data: bytes) -> None:
    from kubernetes.client.exceptions import ApiException

    if not 200 <= response.status <= 299:
        raise ApiException.from_response(
            http_resp=response, body=data.decode("utf-8", "replace"), data=None
        )


def _message(exc: Any) -> str:
    try:
        body = json.loads(exc.body)
        return str(body.get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
