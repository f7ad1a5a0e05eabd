"""Observability: what a running payment pipeline shows about itself.

Three views, each optional and each off by default:

- traces (``paykafka[otel]``): a ``send <topic>`` span per event and a ``process <topic>`` span
  around each handler call, joined through a W3C ``traceparent`` header on the record
  (:mod:`._tracing`);
- metrics (``paykafka[prometheus]``): counters, histograms and lag gauges in a Prometheus
  registry, optionally served over HTTP (:mod:`._metrics`);
- the live terminal view behind ``paykafka top`` (:mod:`._top`).

Producers and trackers talk to one :class:`Telemetry` object, or to nothing at all: when every
view is off they hold ``None`` and pay one ``is None`` test per event (:mod:`._telemetry`).
"""

from paykafka._observability._telemetry import Telemetry, telemetry_for

__all__ = ["Telemetry", "telemetry_for"]
