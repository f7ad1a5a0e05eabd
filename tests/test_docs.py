"""README.md stays in step with the code it documents."""

import argparse
import re
from pathlib import Path

import attrs

from paykafka import DecodeReason, Settings
from paykafka._cli import build_parser
from paykafka._dlq import REPLAYABLE_REASONS
from paykafka._stack import StackConfig

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_settings_variable_is_documented() -> None:
    """Each Settings field's PAYKAFKA_* variable appears in the README."""
    variables = [f"PAYKAFKA_{f.name.upper()}" for f in attrs.fields(Settings)]
    assert [v for v in variables if v not in README] == []


def test_every_stack_variable_is_documented() -> None:
    """Each PAYKAFKA_* variable the stack reads appears in the README."""
    source = Path(StackConfig.__module__.replace(".", "/") + ".py")
    text = (Path(__file__).resolve().parent.parent / source).read_text()
    names = set(re.findall(r"PAYKAFKA_[A-Z_]+[A-Z]", text))
    assert names
    assert sorted(n for n in names if n not in README) == []


def test_the_two_commands_are_the_makefile_targets() -> None:
    """The README's two commands exist in the Makefile, and CI runs the test one."""
    root = Path(__file__).resolve().parent.parent
    makefile = (root / "Makefile").read_text()
    assert "make demo" in README
    assert "make test" in README
    assert re.search(r"^demo:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
    assert "exec make test" in (root / ".ci" / "run").read_text()


ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_every_docs_page_is_linked_from_the_readme_and_every_link_works() -> None:
    """docs/*.md pages are all reachable from the README, and no README or docs link is dead."""
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert pages
    linked = set(re.findall(r"\]\(docs/([^)#]+)", README))
    assert [p for p in pages if p not in linked] == []
    assert [p for p in sorted(linked) if not (DOCS / p).is_file()] == []
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def _json_flag(parser: argparse.ArgumentParser) -> bool:
    return any("--json" in a.option_strings for a in parser._actions)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_the_cli_table_says_which_commands_take_json() -> None:
    """Each row of the README's command table matches the parser: its commands exist, and its
    --json column says yes exactly when they accept --json."""
    commands = _subcommands(build_parser())
    rows = re.findall(
        r"^\| `paykafka ([a-z-]+)(?: ([^`\[]+))?[^|]*\| [^|]+\| ([^|]*)\|", README, re.M
    )
    assert len(rows) >= 10
    seen = set()
    for name, rest, json_column in rows:
        seen.add(name)
        parser = commands[name]
        actions = [a.replace("\\", "") for a in re.split(r"\\?\|", rest.strip())] if rest else []
        actions = [a for a in actions if a and not a.startswith("-")]
        children = _subcommands(parser)
        targets = {a: children[a] for a in actions if a in children} or {name: parser}
        for action, target in targets.items():
            column = json_column.strip()
            expected = column.startswith("yes") or column == f"`{action}` only"
            assert _json_flag(target) == expected, f"{name} {action}: README says {column!r}"
    assert seen == set(commands)


def test_the_readme_says_which_dead_letter_reasons_are_worth_replaying() -> None:
    """Every reason is in the README's 'worth replaying' line exactly when replay accepts it."""
    worth = re.search(r"\*\*Worth replaying:\*\*(.*?)\n- ", README, re.S)
    not_worth = re.search(r"\*\*Not worth it:\*\*(.*?)\n- ", README, re.S)
    assert worth is not None
    assert not_worth is not None
    for reason in [*(r.value for r in DecodeReason), "handler_failed"]:
        replayable = reason in REPLAYABLE_REASONS
        assert (f"`{reason}`" in worth[1]) == replayable, reason
        assert (f"`{reason}`" in not_worth[1]) != replayable, reason
