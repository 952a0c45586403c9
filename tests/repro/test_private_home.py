"""A run's records are private to its user whatever the umask: home, run folder, reproduction."""

from __future__ import annotations

from tests.repro.conftest import Cli
from tests.store.test_private_files import mode, permissive_umask  # noqa: F401 (fixture)


def test_a_first_run_makes_a_private_home_and_reproduction(cli: Cli) -> None:
    (cli.project / "secret.csv").write_text("name,salary\nada,1\n")
    (cli.project / "secret.csv").chmod(0o600)
    (cli.project / "train.py").write_text("print(open('secret.csv').read())\n")

    cli("run", "--input", "secret.csv", "--", "python", "train.py")
    run = cli.last_run()

    home = cli.home
    for folder in (home, home / "runs", home / "runs" / run["id"], home / "artifacts"):
        assert mode(folder) == 0o700, folder
    for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
        if (home / name).exists():  # the WAL may have been checkpointed away
            assert mode(home / name) == 0o600, name
    for blob in (home / "artifacts" / "blake3").rglob("*"):
        assert mode(blob) == (0o700 if blob.is_dir() else 0o400), blob

    cli("reproduce", run["id"], "--no-env")
    (reproduction,) = (home / "reproductions").iterdir()
    assert mode(home / "reproductions") == 0o700
    assert mode(reproduction) == 0o700
