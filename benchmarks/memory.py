"""Peak memory of a producer sending N events: it must stay flat as N grows.

Each N runs in a fresh subprocess that streams events into ``PaymentProducer.send`` (keeping
none of them or their futures) and reports its peak RSS (``ru_maxrss``). librdkafka's queue
is bounded (``queue.buffering.max.messages``), and the producer forgets each event once its
delivery is reported, so the peak should not depend on N.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from benchmarks._common import Row, stream_events
from benchmarks.pipeline import drop, fresh_settings
from paykafka import PaymentProducer, Settings

FLAT_TOLERANCE = 0.10  # peak RSS at the largest N within 10 % of the smallest


def run(base: Settings, sizes: list[int]) -> list[Row]:
    """Peak RSS of one producer process per N in ``sizes`` (one shared fresh topic)."""
    settings = fresh_settings(base, "memory")
    try:
        peaks = {n: _child(settings.topic, n) for n in sizes}
    finally:
        drop(settings)
    smallest, largest = peaks[sizes[0]], peaks[sizes[-1]]
    growth = largest["peak_rss_mib"] / smallest["peak_rss_mib"] - 1
    rows = []
    for n in sizes:
        last = n == sizes[-1]
        rows.append(
            Row(
                group="memory",
                name=f"peak RSS producing N={n:,}",
                unit="MiB",
                stock=None,
                paykafka=peaks[n]["peak_rss_mib"],
                target=f"flat (<= +{FLAT_TOLERANCE:.0%} from N={sizes[0]:,})" if last else None,
                met=growth <= FLAT_TOLERANCE if last else None,
                detail=dict(peaks[n], growth=round(growth, 3)),
            )
        )
    return rows


def _child(topic: str, n: int) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "benchmarks.memory", topic, str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _produce(topic: str, n: int) -> None:
    """Child process: stream ``n`` events, then print the peak RSS as JSON."""
    settings = Settings.from_env(topic=topic)
    start = time.perf_counter()
    with PaymentProducer(settings) as producer:
        for event in stream_events(n):
            producer.send(event)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {"n": n, "peak_rss_mib": round(peak_kib / 1024, 1), "events_per_s": round(n / seconds)}
        )
    )


if __name__ == "__main__":
    _produce(sys.argv[1], int(sys.argv[2]))
