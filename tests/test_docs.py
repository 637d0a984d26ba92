"""The docs stay true: their code runs, every command and recipe is documented.

- Every ```python block of docs/**/*.md and README.md runs, the blocks of one
  page in order and in one namespace (a page reads like one session), in a
  fresh working directory. A block preceded by an HTML comment starting with
  ``<!-- no-run`` is skipped; the comment should say why.
- Every subcommand of the CLI and every one of its flags is in docs/cli.md.
- Every recipe has a page under docs/recipes/, is in the site's nav, and runs
  in some test module.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from agent_resume._cli._main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*no-run\b[^>]*-->\s*$")

# Blocks in pages written by others that do not run and carry no marker yet,
# as (page, first line of the block). Their owners are asked to mark them
# `<!-- no-run: why -->` (or make them runnable); then the entry goes.
UNMARKED: dict[tuple[str, str], str] = {}


def _blocks(page: Path) -> list[tuple[int, str, bool]]:
    """``(line number, code, runnable)`` of each python block of a page."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        line = text.count("\n", 0, match.start()) + 2
        code = match.group(1)
        first = code.lstrip().split("\n", 1)[0].strip()
        runnable = not MARKER.search(before) and (_name(page), first) not in UNMARKED
        found.append((line, code, runnable))
    return found


def _name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix() if page.is_relative_to(DOCS) else page.name


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(run for *_, run in _blocks(p))], ids=_name
)
def test_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A real module, so that dataclasses and pickling in the blocks work.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict[str, Any] = module.__dict__
    for line, code, runnable in _blocks(page):
        if runnable:
            exec(compile(code, f"{page}:{line}", "exec"), namespace)


def test_unmarked_entries_still_match_a_block() -> None:
    # An entry whose block was marked, fixed or removed must go.
    firsts = {
        (_name(p), code.lstrip().split("\n", 1)[0].strip())
        for p in PAGES
        for _, code, _ in _blocks(p)
    }
    assert set(UNMARKED) <= firsts


def test_no_run_markers_are_rare() -> None:
    marked = sum(1 for p in PAGES for *_, runnable in _blocks(p) if not runnable)
    total = sum(len(_blocks(p)) for p in PAGES)
    assert marked * 2 < total, f"{marked} of {total} blocks are not run"


# -- the CLI reference -----------------------------------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_has_a_section_in_cli_md() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name in _subcommands():
        assert f"## `{name}`" in text, f"docs/cli.md has no section for `{name}`"


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_flag_is_in_cli_md(command: str) -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    section = text.split(f"## `{command}`", 1)[1].split("\n## ", 1)[0]
    for action in _subcommands()[command]._actions:
        if action.help == argparse.SUPPRESS:
            continue
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert flag in section, f"`{command} {flag}` is not in its docs/cli.md section"


def test_exit_codes_are_documented() -> None:
    from agent_resume._cli import _main as _cli

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name in dir(_cli):
        if name.startswith("EXIT_"):
            assert f"| {getattr(_cli, name)} |" in text, name


# -- recipes -----------------------------------------------------------------------------


RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_is_documented_and_tested(recipe: Path) -> None:
    page = DOCS / "recipes" / f"{recipe.stem}.md"
    assert page.exists(), f"{recipe.name} has no page {page.relative_to(ROOT)}"
    assert f"recipes/{recipe.stem}.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    tests = [p for p in (ROOT / "tests").glob("test_*.py") if recipe.name in p.read_text("utf-8")]
    tests = [p for p in tests if p.name != "test_docs.py"]
    assert tests, f"no test module runs recipes/{recipe.name}"


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in DOCS.rglob("*.md"):
        assert page.relative_to(DOCS).as_posix() in nav, f"{page} is not in mkdocs.yml's nav"


def test_api_page_documents_the_package() -> None:
    assert "::: agent_resume" in (DOCS / "api.md").read_text(encoding="utf-8")
    assert sys.modules.get("agent_resume") is not None
