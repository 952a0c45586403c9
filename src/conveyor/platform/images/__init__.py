"""OCI images from droplets, without a Docker daemon, pushed to a registry.

The Kubernetes target runs an app's revision from an image: its droplet
(resolved lock + source snapshot) as reproducible layers on a base image with
Python, pushed through the OCI distribution API::

    image = build_and_push(
        droplet,                                   # a staged Droplet, or a folder
        repository="127.0.0.1:5000/ds/diagnosis",
        base="python:3.11-slim",                   # default: the droplet's Python, slim
        labels={LABEL_REVISION: "7"},
        insecure=True,                             # plain HTTP: a registry on this machine
    )
    image.pinned                                   # '127.0.0.1:5000/ds/diagnosis@sha256:…'

The runtime image (the Conveyor this server runs, for apps that run Conveyor
itself) is :func:`build_runtime`'s. See docs/images.md for the layout of the
images and what is reproducible.
"""

from __future__ import annotations

from conveyor.platform.errors import ImageError
from conveyor.platform.images.build import (
    APP_DIR,
    LABEL_LOCK,
    LABEL_SOURCE,
    VENV_DIR,
    revision_droplet,
)
from conveyor.platform.images.push import build_and_push
from conveyor.platform.images.reference import BaseImage, ImageRef
from conveyor.platform.images.runtime import RUNTIME_EXTRAS, RUNTIME_REPOSITORY, build_runtime

__all__ = [
    "APP_DIR",
    "LABEL_APP",
    "LABEL_LOCK",
    "LABEL_REVISION",
    "LABEL_SOURCE",
    "RUNTIME_EXTRAS",
    "RUNTIME_REPOSITORY",
    "VENV_DIR",
    "BaseImage",
    "ImageError",
    "ImageRef",
    "build_and_push",
    "build_runtime",
    "revision_droplet",
]

#: The labels a caller sets: the app and its revision (the builder adds the lock and source).
LABEL_APP = "conveyor.app"
LABEL_REVISION = "conveyor.revision"
