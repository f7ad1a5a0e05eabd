"""Differential test of the schema gate against the runtime truth (no network).

Generated evolutions (tests/_schema_pairs.py) are judged by paykafka's checker at every level;
each "compatible" must be backed by fastavro actually reading data written with the writer
schema through the reader schema, in every direction the level promises. The registry's side
of the comparison is tests/integration/test_compat_registry.py.
"""

from __future__ import annotations

from typing import Any

from _schema_pairs import cases, read_fails
from hypothesis import HealthCheck, assume, given, settings

from paykafka._compat import LEVELS, check, schema_errors


def _labelled(history: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"version {n}", s) for n, s in enumerate(history, start=1)]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_compatible_verdict_is_backed_by_a_successful_read(
    case: tuple[list[dict[str, Any]], dict[str, Any], list[str]],
) -> None:
    """Ours says compatible -> fastavro reads old data with the new schema (and/or new data
    with the old), for every version the level covers (600 generated evolutions x 7 levels)."""
    history, candidate, edits = case
    assume(not any(schema_errors(old) for old in history))
    if schema_errors(candidate):
        assert not any(check(candidate, _labelled(history), lv).compatible for lv in LEVELS)
        return
    for level in LEVELS:
        report = check(candidate, _labelled(history), level, policy=False)
        if not report.compatible or level == "NONE":
            continue
        against = history if level.endswith("_TRANSITIVE") else history[-1:]
        for old in against:
            if level.startswith(("BACKWARD", "FULL")):
                failure = read_fails(writer=old, reader=candidate)
                assert failure is None, f"{level} {edits}: new cannot read old: {failure}"
            if level.startswith(("FORWARD", "FULL")):
                failure = read_fails(writer=candidate, reader=old)
                assert failure is None, f"{level} {edits}: old cannot read new: {failure}"
