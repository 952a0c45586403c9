"""Staging with the real uv: droplets built, cached by their lock, failures leave nothing."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from conveyor.platform.errors import PlatformError, StagingError
from conveyor.platform.staging import Droplet, compile_droplet, stage

# Packages already in uv's cache on this machine, so builds need no download.
SIX = "six==1.17.0"
IDNA = "idna==3.20"


def make_app(root: Path, requirements: str) -> tuple[Path, Path]:
    app = root / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "main.py").write_text("import six\nprint('hello from', six.__name__)\n")
    (app / "__pycache__").mkdir(exist_ok=True)
    (app / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"junk")
    reqs = app / "requirements.txt"
    reqs.write_text(requirements)
    return app, reqs


def run_in(droplet: Droplet, code: str) -> str:
    proc = subprocess.run(
        [str(droplet.python), "-c", code],
        cwd=droplet.source,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return proc.stdout.strip()


def test_first_stage_builds_a_byte_compiled_env_and_the_second_installs_nothing(
    tmp_path: Path,
) -> None:
    app, reqs = make_app(tmp_path, f"{SIX}\n")
    cache = tmp_path / "cache"

    lines: list[str] = []
    first = stage(app, reqs, cache, progress=lines.append)
    assert not first.cached
    assert lines[0] == "Resolving requirements..."
    assert "Installing 1 packages..." in lines
    assert run_in(first, "import six; print(six.__version__)") == "1.17.0"
    # Byte-compiled as a step of its own (the platform runs it in the background),
    # once: instances do not pay for compiling at start.
    compiled = "lib/python*/site-packages/__pycache__/six.*.pyc"
    assert compile_droplet(first.venv)
    assert list(first.venv.glob(compiled))
    assert not compile_droplet(first.venv)
    # The app's source is a snapshot, without the caches it had locally.
    assert (first.source / "main.py").read_text() == (app / "main.py").read_text()
    assert not (first.source / "__pycache__" / "stale.cpython-311.pyc").exists()
    assert run_in(first, "import main") == "hello from six"

    # Same requirements from another folder, with a comment: the same resolved lock.
    other, other_reqs = make_app(tmp_path / "elsewhere", f"# pinned\n{SIX}\n")
    lines.clear()
    second = stage(other, other_reqs, cache, progress=lines.append)
    assert second.cached
    assert second.venv == first.venv
    assert second.lock_digest == first.lock_digest
    assert lines == ["Resolving requirements...", f"Environment {first.lock_digest} is cached"]
    assert not any("Installing" in line for line in lines)


def test_changed_requirements_build_a_new_env_and_keep_the_old(tmp_path: Path) -> None:
    app, reqs = make_app(tmp_path, f"{SIX}\n")
    cache = tmp_path / "cache"
    first = stage(app, reqs, cache)

    reqs.write_text(f"{SIX}\n{IDNA}\n")
    lines: list[str] = []
    second = stage(app, reqs, cache, progress=lines.append)
    assert not second.cached
    assert second.lock_digest != first.lock_digest
    assert "Installing 2 packages..." in lines
    assert run_in(second, "import idna, six; print(idna.encode('bücher.de').decode())") == (
        "xn--bcher-kva.de"
    )
    assert stage(app, None, cache).lock_digest not in {first.lock_digest, second.lock_digest}
    assert (first.venv / "bin" / "python").exists()


def test_two_stagings_of_one_lock_at_once_build_it_once(tmp_path: Path) -> None:
    app, reqs = make_app(tmp_path, f"{SIX}\n")
    cache = tmp_path / "cache"
    droplets: list[Droplet] = []

    def one() -> None:
        droplets.append(stage(app, reqs, cache))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(droplets) == 2
    assert sorted(d.cached for d in droplets) == [False, True]
    assert droplets[0].venv == droplets[1].venv


@pytest.mark.slow
def test_an_unresolvable_requirement_names_it_and_leaves_nothing(tmp_path: Path) -> None:
    missing = "conveyor-no-such-package-zz9"
    app, reqs = make_app(tmp_path, f"{SIX}\n{missing}\n")
    cache = tmp_path / "cache"

    with pytest.raises(StagingError) as caught:
        stage(app, reqs, cache)
    assert isinstance(caught.value, PlatformError)
    assert missing in str(caught.value)
    assert "requirements" in str(caught.value)
    envs = cache / "envs"
    assert not envs.exists() or not [p for p in envs.iterdir() if p.is_dir()]

    reqs.write_text(f"{SIX}\n")
    droplet = stage(app, reqs, cache)
    assert run_in(droplet, "import six; print(six.__version__)") == "1.17.0"


def test_an_unparsable_requirements_file_is_named_as_the_user_wrote_it(tmp_path: Path) -> None:
    app, reqs = make_app(tmp_path, "-r nope.txt\n")
    with pytest.raises(StagingError) as caught:
        stage(app, reqs, tmp_path / "cache", shown_as="requirements.txt")
    assert "the requirements in requirements.txt" in caught.value.message
    assert str(app) not in caught.value.message


def test_missing_requirements_file_is_a_clear_error(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, "")
    with pytest.raises(StagingError, match="does not exist"):
        stage(app, app / "nope.txt", tmp_path / "cache")


def test_pyproject_and_its_uv_lock_stage_the_same_env(tmp_path: Path) -> None:
    app = tmp_path / "proj"
    app.mkdir()
    (app / "pyproject.toml").write_text(
        '[project]\nname = "demo-app"\nversion = "0.1"\nrequires-python = ">=3.11"\n'
        f'dependencies = ["{SIX}", "{IDNA}"]\n'
    )
    from uv import find_uv_bin

    subprocess.run([find_uv_bin(), "lock", "--quiet"], cwd=app, check=True, timeout=120)
    cache = tmp_path / "cache"
    from_lock = stage(app, app / "uv.lock", cache)
    from_pyproject = stage(app, app / "pyproject.toml", cache)
    assert from_pyproject.cached
    assert from_pyproject.venv == from_lock.venv
    assert run_in(from_lock, "import idna, six; print(six.__version__)") == "1.17.0"


def test_unchanged_requirements_reuse_their_resolution_until_a_refresh(tmp_path: Path) -> None:
    app, reqs = make_app(tmp_path, f"{SIX}\n")
    cache = tmp_path / "cache"
    first = stage(app, reqs, cache)
    lines: list[str] = []
    again = stage(app, reqs, cache, progress=lines.append)
    assert lines[0] == "Requirements unchanged: reusing their resolution"
    assert again.lock_digest == first.lock_digest
    assert again.cached
    lines.clear()
    refreshed = stage(app, reqs, cache, progress=lines.append, refresh=True)
    assert lines[0] == "Resolving requirements..."  # restage asks the index again
    assert refreshed.lock_digest == first.lock_digest
