"""An app's lock against the runtime image's packages: what is refused, what passes."""

from __future__ import annotations

import pytest

from conveyor.platform.images import ImageError
from conveyor.platform.images.clash import (
    LABEL_PACKAGES,
    check_lock,
    labelled_packages,
    lock_pins,
    packages_label,
)

RUNTIME = {"six": "1.17.0", "scikit-learn": "1.9.1", "torch": "2.1.0+cpu"}
IMAGE = "the runtime image reg/ds/conveyor-runtime:1"


def test_a_lock_is_read_as_names_and_versions_without_its_options() -> None:
    lock = (
        "--index-url https://pypi.org/simple\n"
        "# a comment\n"
        "Scikit_Learn==1.4.2\n"
        "six==1.17.0  # via python-dateutil\n"
        "uvicorn[standard]==0.30.0\n"
        "tool @ https://example.com/tool-1.0-py3-none-any.whl\n"
    )
    assert lock_pins(lock) == {
        "scikit-learn": "1.4.2",
        "six": "1.17.0",
        "uvicorn": "0.30.0",
        "tool": "@ https://example.com/tool-1.0-py3-none-any.whl",
    }


def test_a_package_at_another_version_is_refused_naming_both_and_what_to_do() -> None:
    with pytest.raises(ImageError) as refused:
        check_lock("attrs==25.1.0\nscikit-learn==1.4.2\nsix==1.16.0\n", RUNTIME, IMAGE)
    message = str(refused.value)
    assert message.startswith(
        "the app's requirements pin scikit-learn 1.4.2, six 1.16.0, but the runtime image "
        "reg/ds/conveyor-runtime:1 it is built on has scikit-learn 1.9.1, six 1.17.0"
    )
    assert "attrs" not in message
    hint = refused.value.hint or ""
    assert "(scikit-learn==1.9.1 six==1.17.0)" in hint
    assert "--runtime-image" in hint
    assert "conveyor image runtime" in hint
    assert "push --image APP=REF" in hint


def test_the_same_version_and_packages_only_the_app_has_pass() -> None:
    # 1.17 is 1.17.0 (PEP 440); a name is compared canonically; attrs is layered on top.
    check_lock("SIX==1.17\nattrs==25.1.0\ntorch==2.1.0+cpu\n", RUNTIME, IMAGE)
    check_lock("", RUNTIME, IMAGE)


def test_another_build_of_a_local_version_or_a_url_is_refused() -> None:
    with pytest.raises(ImageError, match=r"torch 2\.1\.0\+cu121, but .* has torch 2\.1\.0\+cpu"):
        check_lock("torch==2.1.0+cu121\n", RUNTIME, IMAGE)
    with pytest.raises(ImageError, match=r"pin six @ https://example.com/six.whl, but"):
        check_lock("six @ https://example.com/six.whl\n", RUNTIME, IMAGE)


def test_a_malformed_lock_line_is_named() -> None:
    with pytest.raises(ImageError, match=r"line 2 of the app's resolved lock .*'six=='"):
        check_lock("attrs==25.1.0\nsix==\n", RUNTIME, IMAGE)


def test_the_label_lists_canonical_names_and_reads_back() -> None:
    text = packages_label({"PyYAML": "6.0.4", "scikit-learn": "1.9.1"})
    assert text == "pyyaml==6.0.4 scikit-learn==1.9.1"
    config = {"config": {"Labels": {LABEL_PACKAGES: text}}}
    assert labelled_packages(config) == {"pyyaml": "6.0.4", "scikit-learn": "1.9.1"}
    assert labelled_packages({"config": {"Labels": {}}}) is None
