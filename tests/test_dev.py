"""`./dev`, the one entry point the README starts from."""

import subprocess

import pytest

from tests.conftest import ROOT


def run_dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "dev"), *args], capture_output=True, text=True, timeout=30, cwd=ROOT
    )


def test_dev_with_no_command_prints_its_help_and_nothing_else():
    result = run_dev()
    assert result.returncode == 0 and result.stderr == ""
    assert "./dev serve" in result.stdout and "./dev involve ARGS" in result.stdout
    assert "set -euo" not in result.stdout and "#" not in result.stdout


def test_dev_with_an_unknown_command_says_so_and_exits_2():
    result = run_dev("frob")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("./dev: unknown command 'frob'\n")
    assert "./dev serve" in result.stderr and "set -euo" not in result.stderr


@pytest.mark.slow  # a whole pytest run of its own
def test_a_test_run_leaves_nothing_in_the_temp_folder(tmp_path):
    """Run a few tests that use tmp_path, an instance folder and lint, in an empty TMPDIR."""
    import os
    import sys

    temp = tmp_path / "t"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    env.pop("TEST_DATABASE_URL", None)  # SQLite is enough to see what is left behind
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_lint.py",
            "tests/test_health.py::test_redis_down_is_503",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(temp.iterdir()) == [], list(temp.rglob("*"))[:10]
