"""README.md stays in step with the code it documents."""

import re
from pathlib import Path

import attrs

from paykafka import Settings
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
