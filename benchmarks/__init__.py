"""Side-by-side benchmarks: paykafka against the stock confluent-kafka Avro pipeline.

Run ``python -m benchmarks`` (``--quick`` for a short run, ``--json`` for machine-readable
output). Every comparison runs both paths in the same process and the same run, alternating,
because on a shared machine only ratios measured together mean anything.
"""
