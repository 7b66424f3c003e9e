"""The real `digest` command through click's CliRunner, for the per-noun CLI tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result
from conftest import TEST_SECRET

from digest.cli import cli


def cli_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """DIGEST_* variables for one test: its database, the test secret, an outbox in tmp_path."""
    return {
        "DIGEST_DATABASE_URL": database_url,
        "DIGEST_SECRET_KEY": TEST_SECRET,
        **extra,
        "DIGEST_OUTBOX": str(tmp_path / "outbox"),
    }


def noun_runner(noun: str, env: dict[str, str]) -> Callable[..., Result]:
    """`invoke(*args, input=None)` runs `digest <noun> *args`; exceptions propagate."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, [noun, *args], env=env, input=input, catch_exceptions=False)

    return invoke


def one_line_error(result: Result) -> str:
    """The one-line error a ClickException prints, checked to be exactly one line."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0].removeprefix("Error: ")
