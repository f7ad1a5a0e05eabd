"""A failing ``stack up`` (a full disk) is one StackError and leaves no process behind.

No JVM: a ``sleep`` stands in for one, so these are fast and not marked ``stack``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from paykafka import StackError
from paykafka._stack import Stack, StackConfig
from paykafka._stack._process import ProcessRecord, is_running


def _full_disk(*_args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/state/run/registry.json")


def _stack(tmp_path: Path) -> Stack:
    return Stack(StackConfig.from_env(state_dir=tmp_path, kafka_port=24190, registry_port=24191))


def test_a_process_whose_pid_cannot_be_recorded_is_stopped_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full when writing the pid record: the JVM just started is stopped, one-line error."""
    spawned: list[ProcessRecord] = []

    def save(record: ProcessRecord, _path: Path) -> None:
        spawned.append(record)
        _full_disk()

    monkeypatch.setattr(ProcessRecord, "save", save)
    with pytest.raises(StackError) as failed:
        _stack(tmp_path)._spawn("registry", ["sleep", "60"], tmp_path / "out.log", (24191, 25191))
    assert "No space left on device" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert spawned
    assert not is_running(spawned[0])


def test_an_os_error_during_up_is_a_stack_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any OSError while starting (writing configs, layout, logs) becomes one StackError line."""
    monkeypatch.setattr(Stack, "_start", _full_disk)
    with pytest.raises(StackError, match=r"No space left on device \(/state/run/registry.json\)"):
        _stack(tmp_path).up()
