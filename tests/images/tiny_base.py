"""A small base image the tests build and push themselves (nothing can be pulled here).

One layer with a few files, a config with a PATH and a PYTHON_VERSION (this
interpreter's), pushed to the test registry through the distribution client.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path, PurePosixPath

from conveyor.platform.images.distribution import Registry
from conveyor.platform.images.layers import Entry, write_layer

PYTHON = ".".join(map(str, sys.version_info[:3]))


def push_tiny_base(
    host: str, repository: str, tag: str, folder: Path, *, python: str = PYTHON, arch: str = "amd64"
) -> str:
    """Push the tiny base as ``host/repository:tag``; returns its single layer's digest."""
    root = folder / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('PRETTY_NAME="tiny test base"\n')
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    (root / "usr" / "local" / "bin" / "python3").write_text("#!/bin/sh\necho not a python\n")
    layer = write_layer([Entry(root, PurePosixPath("."))], folder / "layers")
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"PYTHON_VERSION={python}"],
                "Cmd": ["python3"],
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        }
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    (folder / "config.json").write_bytes(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
        }
    ).encode()
    with Registry(host, insecure=True) as registry:
        registry.upload_blob(repository, layer.digest, layer.path)
        registry.upload_blob(repository, config_digest, folder / "config.json")
        registry.put_manifest(
            repository, tag, manifest, "application/vnd.oci.image.manifest.v1+json"
        )
    return layer.digest
