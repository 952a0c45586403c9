"""Registered models on a Kubernetes target: the blob pods serve, in the target's artifact root.

A pod reads no registry and never this machine's folder. So a push (or a
render) of a model app whose model is ``run:<id>/<model>`` or
``models:/name@alias`` looks the model up here, as the local platform does
when it stages one — its digest, file name, run, version and the types its
run recorded — and makes sure the target's artifact root (``s3://...``)
holds that blob, uploading it from this platform's store when a HEAD does
not find it. The pod then serves ``artifact:<digest>/<file>`` from the
bucket, verified as it is read (:mod:`conveyor.repro.registered`).

    roots = artifact_roots(settings)      # this platform's S3 endpoint and credentials
    blob = publish_model("models:/diagnosis@champion", registry, artifacts,
                         roots(config), progress=print)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from conveyor.errors import UsageError
from conveyor.platform.kubernetes.config import KubernetesConfig
from conveyor.platform.target import Progress
from conveyor.repro.registered import ModelBlob, model_blob
from conveyor.store.blobs import BlobStore
from conveyor.store.registry import Registry

if TYPE_CHECKING:
    from conveyor.config import Settings

__all__ = ["ArtifactRoots", "artifact_roots", "publish_model"]

#: The blob store of a target's artifact root (where the platform uploads models for pods).
ArtifactRoots = Callable[[KubernetesConfig], BlobStore]
_CHUNK = 1 << 20


def artifact_roots(settings: Settings) -> ArtifactRoots:
    """Each target's artifact root as an S3 store, reached with this platform's S3 settings
    (CONVEYOR_S3_ENDPOINT_URL, the AWS_* variables of ``conveyor up``'s environment)."""

    def root(config: KubernetesConfig) -> BlobStore:
        from conveyor.store.cache import ReadCache
        from conveyor.store.s3 import S3ArtifactStore

        if config.artifact_root is None:
            raise UsageError(
                "the target has no artifact root pods can read models from",
                hint="Add the target again with --artifact-root s3://BUCKET/PREFIX.",
            )
        access, secret, token = settings.s3_credentials
        return S3ArtifactStore(
            config.artifact_root,
            cache=ReadCache(settings.cache_dir / "artifacts", settings.artifact_cache_size),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=access,
            secret_key=secret,
            session_token=token,
        )

    return root


def publish_model(
    uri: str, registry: Registry, source: BlobStore, root: BlobStore, progress: Progress
) -> ModelBlob:
    """The blob ``uri`` names now, uploaded to ``root`` unless it already holds it.

    The copy is verified twice: as it is read from ``source`` and as ``root``
    stores it under its digest.
    """
    blob = model_blob(uri, registry)
    version = f" (version {blob.version})" if blob.version else ""
    short = blob.digest[:19]
    if root.exists(blob.digest):
        progress(f"model {uri}{version}: {short} already in {root.location}")
        return blob
    with source.open(blob.digest) as reader:
        root.put_stream(iter(lambda: reader.read(_CHUNK), b""), blob.digest, limit=None)
    progress(f"model {uri}{version}: {short} uploaded to {root.location}")
    return blob
