"""The paykafka pipeline with telemetry off, timed; run as a child without the extras.

``python -m benchmarks.no_extras '<json spec>'`` makes ``opentelemetry`` and
``prometheus_client`` unimportable before paykafka is imported, as for a user who did not
install ``paykafka[otel]`` or ``paykafka[prometheus]``, runs produce + track once and prints
its wall-clock and CPU seconds as JSON. :mod:`benchmarks.observability` compares that with
"off" in its own run.
This module imports neither extra itself.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

BLOCKED = ("opentelemetry", "prometheus_client")
_IDLE = 60.0


class _Unimportable:
    """A meta path finder refusing the extras, as if they were not installed."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".", maxsplit=1)[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


class _Watch:
    """A handler noting when (wall clock and process CPU) the first and last events came."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = self.first_cpu = self.last_cpu = 0.0

    def __call__(self, _event: object) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if not self.count:
            self.first, self.first_cpu = now, cpu
        self.count += 1
        self.last, self.last_cpu = now, cpu


def timed_pipeline(settings: Any, events: list[Any], telemetry: Any) -> tuple[float, float]:
    """Seconds from the first send to the last acknowledgement, plus first to last handled:
    wall clock, and the process's CPU time (every thread, librdkafka's too) over the same
    spans, which other load on a shared machine disturbs much less."""
    from paykafka import PaymentProducer, PaymentTracker  # noqa: PLC0415 - after the block

    producer = PaymentProducer(settings, telemetry=telemetry).start()
    try:
        start, start_cpu = time.perf_counter(), time.process_time()
        for event in events:
            producer.send(event)
        producer.flush()
        produced = time.perf_counter() - start
        produced_cpu = time.process_time() - start_cpu
    finally:
        producer.close()
    watch = _Watch()
    with PaymentTracker(settings, telemetry=telemetry) as tracker:
        handled = tracker.run(
            watch, max_events=len(events), idle_timeout=_IDLE, handle_signals=False
        )
    if handled != len(events):
        raise RuntimeError(f"tracked {handled} of {len(events)}")
    return produced + watch.last - watch.first, produced_cpu + watch.last_cpu - watch.first_cpu


def main(spec: dict[str, Any]) -> None:
    """Block the extras, run the "off" pipeline once, print its seconds."""
    if any(m.split(".")[0] in BLOCKED for m in sys.modules):
        raise RuntimeError("an extra was imported before it could be blocked")
    sys.meta_path.insert(0, _Unimportable())
    from benchmarks._common import make_events  # noqa: PLC0415 - after the extras are blocked
    from paykafka import Settings  # noqa: PLC0415

    settings = Settings.from_env(topic=spec["topic"], group_id=spec["group_id"])
    seconds, cpu = timed_pipeline(settings, make_events(spec["n"]), None)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if loaded:
        raise RuntimeError(f"extras imported although blocked: {loaded}")
    print(json.dumps({"seconds": seconds, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
