"""The processor's pure parts: outputs, error classes, the core's decisions, its Kafka configs."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException
from hypothesis import given
from hypothesis import strategies as st

from paykafka import (
    ConfigError,
    DecodeError,
    DecodeReason,
    FencedError,
    Output,
    PaymentEvent,
    PaymentProcessor,
    RegistryUnavailableError,
    Settings,
)
from paykafka._processing._base import WedgedCallError, call_within
from paykafka._processing._core import (
    AbortBatch,
    Batch,
    ProcessingCore,
    Step,
    TxnAction,
    as_outputs,
    checked_outputs,
    classify_txn_error,
)


def _event() -> PaymentEvent:
    return PaymentEvent(user="ola", amount=Decimal("12.50"), currency="PLN", method="blik")


class _Err:
    """A librdkafka error as far as classify_txn_error looks at one."""

    def __init__(self, *, fatal: bool = False, abort: bool = False, retry: bool = False) -> None:
        self._fatal, self._abort, self._retry = fatal, abort, retry

    def fatal(self) -> bool:
        return self._fatal

    def txn_requires_abort(self) -> bool:
        return self._abort

    def retriable(self) -> bool:
        return self._retry


class _Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def test_output_needs_a_topic_and_an_event() -> None:
    """An Output refuses an empty topic and anything but a PaymentEvent."""
    assert Output("payments.review", _event()).topic == "payments.review"
    with pytest.raises(ConfigError):
        Output(" ", _event())
    with pytest.raises(TypeError):
        Output("payments.review", {"user": "ola"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("err", "action"),
    [
        (_Err(fatal=True, abort=True, retry=True), TxnAction.FATAL),
        (_Err(abort=True, retry=True), TxnAction.ABORT),
        (_Err(retry=True), TxnAction.RETRY),
        (_Err(), TxnAction.ABORT),
    ],
)
def test_transactional_errors_are_fatal_then_abortable_then_retriable(
    err: Any, action: str
) -> None:
    """Fatal wins over abortable, abortable over retriable; an unclassified error aborts."""
    assert classify_txn_error(err) == action


def test_batch_commits_one_past_the_last_record_and_rewinds_to_the_first() -> None:
    """Offsets sent to the transaction are last+1 per partition; a rewind goes to the first."""
    batch = Batch([_Msg("in", 0, 5), _Msg("in", 1, 9), _Msg("in", 0, 6), _Msg("in", 0, 7)])
    assert batch.next_offsets() == [
        ("in", 0, 8),
        ("in", 1, 10),
    ]
    assert batch.first_offsets() == {("in", 0): 5, ("in", 1): 9}
    batch.drop("in", 0)
    assert batch.first_offsets() == {("in", 1): 9}


def test_processor_configs_read_committed_and_carry_the_transactional_id() -> None:
    """A processor reads committed inputs only, commits no offsets itself, is transactional."""
    settings = Settings(isolation_level="read_uncommitted")
    consumer = settings.processor_consumer_config()
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    producer = settings.transactional_producer_config("router-1")
    assert producer["transactional.id"] == "router-1"
    assert producer["enable.idempotence"] is True
    assert settings.consumer_config()["isolation.level"] == "read_uncommitted"


def test_passthrough_may_not_weaken_the_processor() -> None:
    """Neither kafka_options nor a client's overrides may set a processor's isolation level or
    transactional id."""
    with pytest.raises(ConfigError, match=r"isolation\.level"):
        Settings(kafka_options={"isolation.level": "read_uncommitted"}).processor_consumer_config()
    with pytest.raises(ConfigError, match=r"transactional\.id"):
        Settings(kafka_options={"transactional.id": "x"}).transactional_producer_config("y")
    with pytest.raises(ConfigError, match=r"isolation\.level"):
        Settings().processor_consumer_config({"isolation.level": "read_uncommitted"})
    with pytest.raises(ConfigError, match=r"transactional\.id"):
        Settings().transactional_producer_config("y", {"transactional.id": "x"})


def test_trackers_read_committed_by_default_and_the_variable_switches_it() -> None:
    """isolation_level defaults to read_committed; PAYKAFKA_ISOLATION_LEVEL sets it; typos fail."""
    assert Settings().consumer_config()["isolation.level"] == "read_committed"
    env = {"PAYKAFKA_ISOLATION_LEVEL": " Read_Uncommitted "}
    assert Settings.from_env(env).isolation_level == "read_uncommitted"
    with pytest.raises(ConfigError, match="PAYKAFKA_ISOLATION_LEVEL"):
        Settings(isolation_level="committed")
    batch_env = {"PAYKAFKA_TRANSACTION_BATCH_SIZE": "50", "PAYKAFKA_TRANSACTION_BATCH_MS": "20"}
    tuned = Settings.from_env(batch_env)
    assert (tuned.transaction_batch_size, tuned.transaction_batch_ms) == (50, 20)
    with pytest.raises(ConfigError):
        Settings(transaction_batch_size=0)


def _core(**kwargs: Any) -> ProcessingCore:
    options: dict[str, Any] = {"batch_size": 3, "batch_ms": 100, "retry_backoff": 0.5}
    return ProcessingCore(**(options | kwargs))


def test_a_batch_closes_when_full_or_its_window_after_the_first_record_is_over() -> None:
    """The window opens with the first record, not when collecting began; size closes it too."""
    core = _core()
    batch = core.collecting()
    assert batch.closes_in(10.0) is None
    assert not batch.done(10.0)
    core.fetched(batch, [_Msg("in", 0, 0)], 10.0)
    assert batch.closes_in(10.04) == pytest.approx(0.06)
    assert not batch.done(10.09)
    assert batch.done(10.1)
    core.fetched(batch, [_Msg("in", 0, 1), _Msg("in", 0, 2)], 10.05)
    assert (batch.room, batch.done(10.05)) == (0, True)


def test_records_queued_during_a_transaction_count_their_window_from_its_start() -> None:
    """While inputs keep coming, a batch's window counts from the end of the previous
    collection (as commit.interval.ms does), not from the read after a slow commit; after an
    idle spell (an empty collection) from the first record again."""
    core = _core(batch_size=10)
    first = core.collecting()
    core.fetched(first, [_Msg("in", 0, 0)], 5.0, queued=True)  # no previous batch
    assert first.closes_in(5.0) == pytest.approx(0.1)
    core.collected(first, 5.1)  # its transaction took 0.08 s
    second = core.collecting()
    core.fetched(second, [_Msg("in", 0, 1)], 5.18, queued=True)
    assert second.closes_in(5.18) == pytest.approx(0.02)
    core.collected(second, 5.2)
    third = core.collecting()
    core.fetched(third, [], 5.25, queued=True)
    core.fetched(third, [_Msg("in", 0, 2)], 5.26)  # arrived after the collection began
    assert third.closes_in(5.26) == pytest.approx(0.1)
    core.collected(core.collecting(), 6.0)  # an empty collection: idle
    fourth = core.collecting()
    core.fetched(fourth, [_Msg("in", 0, 3)], 7.0, queued=True)
    assert fourth.closes_in(7.0) == pytest.approx(0.1)


def test_a_revoke_drops_the_collecting_batchs_records_and_forgets_the_partition() -> None:
    """Records of a revoked partition leave the batch; all_at_end looks at what is assigned."""
    core = _core(batch_size=10)
    core.assigned([("in", 0), ("in", 1)])
    batch = core.collecting()
    core.fetched(batch, [_Msg("in", 0, 4), _Msg("in", 1, 7)], 0.0)
    core.at_end("in", 1)
    assert not core.all_at_end()
    core.revoked([("in", 0)])
    assert batch.first_offsets() == {("in", 1): 7}
    core.fetched(batch, [_Msg("in", 1, 8)], 0.0)
    assert not core.all_at_end()  # a record read after the end: not at the end any more
    core.at_end("in", 1)
    assert core.all_at_end()


@pytest.mark.parametrize("dead_letters", [True, False])
def test_a_handler_failing_on_one_input_aborts_until_its_retries_are_used_up(
    dead_letters: bool,
) -> None:
    """handler_retries=2: two aborts, then (dead letters on) a third abort and a dead letter
    on the next attempt, or (off) the error raised on the third failure."""
    core = _core(handler_retries=2, dead_letters=dead_letters)
    where = ("in", 0, 5)
    assert core.admit(where).step is Step.HANDLE
    assert core.handler_failed(where, "ValueError: 1") is Step.ABORT
    assert core.handler_failed(where, "ValueError: 2") is Step.ABORT
    third = core.handler_failed(where, "ValueError: 3")
    if not dead_letters:
        assert third is Step.RAISE
        return
    assert third is Step.ABORT
    admission = core.admit(where)
    assert (admission.step, admission.attempts, admission.error) == (
        Step.DEAD_LETTER,
        3,
        "ValueError: 3",
    )
    assert core.admit(("in", 0, 6)).step is Step.HANDLE  # only that input


def test_committing_counts_the_batch_forgets_its_failures_and_resets_the_backoff() -> None:
    """Backoff doubles per abort up to 5 s; a commit resets it and the inputs' failure counts."""
    core = _core(handler_retries=5)
    batch = core.collecting()
    core.fetched(batch, [_Msg("in", 0, 1), _Msg("in", 0, 2)], 0.0)
    core.handler_failed(("in", 0, 2), "boom")
    delays = [core.backing_off("x").delay for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    batch.written, batch.dead_reasons = 3, ["handler_failed"]
    core.committed(batch)
    assert (core.handled, core.written, core.dead_lettered) == (2, 3, 1)
    assert core.committed_count == 1
    assert core.attempts(("in", 0, 2)) == 0
    assert core.backing_off("x").delay == 0.5


def test_aborting_empties_the_batch_and_says_where_to_seek_back_to() -> None:
    """An aborted batch counts nothing it wrote and is read again from its first offsets."""
    core = _core(batch_size=10)
    batch = core.collecting()
    core.fetched(batch, [_Msg("in", 0, 3), _Msg("in", 2, 9), _Msg("in", 0, 4)], 0.0)
    batch.written = 2
    assert core.aborted(batch) == {("in", 0): 3, ("in", 2): 9}
    assert (batch.records, batch.written, core.aborted_count, core.handled) == ([], 0, 1, 0)


@pytest.mark.parametrize(
    ("exc", "abort", "retry_in"),
    [
        (AbortBatch("handler failed", 0.25), True, 0.25),
        (FencedError("fenced"), False, None),
        (RegistryUnavailableError("registry down"), True, 0.5),
        (DecodeError(DecodeReason.NOT_CONFLUENT_FRAMING, "garbage"), True, None),
        (ValueError("a bug"), True, None),
        (KeyboardInterrupt(), True, None),
    ],
)
def test_recovery_aborts_unless_fenced_and_retries_only_what_is_not_the_batchs_fault(
    exc: BaseException, abort: bool, retry_in: float | None
) -> None:
    """Abort-and-retry errors and outages retry; fenced raises without an abort; the rest
    abort and raise."""
    recovery = _core().recovery(exc)
    assert (recovery.abort, recovery.retry_in) == (abort, retry_in)


@pytest.mark.parametrize(
    ("retriable", "dead_letters", "step"),
    [(True, True, Step.ABORT), (False, True, Step.DEAD_LETTER), (False, False, Step.RAISE)],
)
def test_an_undecodable_input_waits_out_the_registry_or_is_dead_lettered(
    retriable: bool, dead_letters: bool, step: Step
) -> None:
    """A registry outage is not the record's fault; garbage is dead-lettered or raised."""
    assert _core(dead_letters=dead_letters).decode_failed(retriable=retriable) is step


def test_a_handler_result_is_read_as_outputs_and_anything_else_is_refused() -> None:
    """None is no output, one Output is one, a generator is read; other items are a TypeError."""
    out = Output("payments.review", _event())
    assert as_outputs(None) == []
    assert as_outputs(out) == [out]
    assert as_outputs(o for o in (out, out)) == [out, out]
    assert checked_outputs([out]) == [out]
    with pytest.raises(TypeError, match="must return Outputs"):
        checked_outputs([out, "payments.review"])


def test_the_processor_takes_kafka_options_and_warns_about_the_old_name() -> None:
    """kafka_options= like the producer and trackers; kafka_overrides= still works, deprecated."""
    assert PaymentProcessor(Settings(), kafka_options={"linger.ms": "1"})._overrides == {
        "linger.ms": "1"
    }
    with pytest.warns(DeprecationWarning, match="kafka_options"):
        old = PaymentProcessor(Settings(), kafka_overrides={"linger.ms": "2"})
    assert old._overrides == {"linger.ms": "2"}
    with pytest.raises(ConfigError), pytest.warns(DeprecationWarning, match="deprecated"):
        PaymentProcessor(Settings(), kafka_options={}, kafka_overrides={"linger.ms": "2"})


@given(
    fails=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=12),
    retries=st.integers(min_value=0, max_value=3),
    dead_letters=st.booleans(),
)
def test_a_batch_retried_by_the_core_ends_with_every_input_handled_or_dead_lettered_once(
    fails: list[int], retries: int, dead_letters: bool
) -> None:
    """A batch whose handler fails ``fails[i]`` times on input i, retried as a shell retries
    it: with dead letters, inputs failing more than ``retries`` times are dead-lettered, the
    rest handled, with one abort per failure counted; without, the first such input raises."""
    core = _core(batch_size=len(fails), handler_retries=retries, dead_letters=dead_letters)
    left = list(fails)
    outcome: dict[int, str] = {}
    raised_at = None
    for _attempt in range(100):
        batch = core.collecting()
        core.fetched(batch, [_Msg("in", 0, i) for i in range(len(fails))], 0.0)
        outcome = {}
        aborted = False
        for msg in batch.records:
            where = ("in", 0, msg.offset())
            if core.admit(where).step is Step.DEAD_LETTER:
                outcome[msg.offset()] = "dead"
                batch.dead_reasons.append("handler_failed")
                continue
            if left[msg.offset()]:
                left[msg.offset()] -= 1
                step = core.handler_failed(where, "boom")
                if step is Step.RAISE:
                    raised_at = msg.offset()
                core.aborted(batch)
                aborted = True
                break
            outcome[msg.offset()] = "handled"
        if raised_at is not None or not aborted:
            break
    too_many = [i for i, f in enumerate(fails) if f > retries]
    if not dead_letters and too_many:
        assert raised_at == too_many[0]
        return
    assert raised_at is None
    core.committed(batch)
    assert outcome == {i: "dead" if f > retries else "handled" for i, f in enumerate(fails)}
    assert core.aborted_count == sum(min(f, retries + 1) for f in fails)
    assert (core.handled, core.dead_lettered) == (len(fails), len(too_many))


def test_a_call_that_never_returns_is_given_up_after_its_deadline() -> None:
    """librdkafka#5511: send_offsets_to_transaction can block forever; the processor must not."""
    release = threading.Event()
    began = time.monotonic()
    with pytest.raises(WedgedCallError, match=r"send-offsets did not return within 0\.2 s"):
        call_within(release.wait, 0.2, "send-offsets")
    assert 0.2 <= time.monotonic() - began < 5
    release.set()  # the abandoned thread ends once the call returns


def test_a_bounded_call_returns_or_raises_in_the_callers_thread() -> None:
    """What the bounded call returns or raises reaches its caller; it ran on its own thread."""
    ran_in: list[str] = []
    call_within(lambda: ran_in.append(threading.current_thread().name), 5, "send-offsets")
    assert ran_in == ["paykafka-send-offsets"]

    def fail() -> None:
        raise KafkaException("coordinator not available")

    with pytest.raises(KafkaException, match="coordinator not available"):
        call_within(fail, 5, "send-offsets")


class _TxnProducer:
    """A transactional producer's calls as the processor's abort makes them."""

    def __init__(self, abort_error: Any = None) -> None:
        self.calls: list[str] = []
        self._abort_error = abort_error

    def flush(self, timeout: float) -> int:
        self.calls.append(f"flush({timeout})")
        return 0

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")
        if self._abort_error is not None:
            raise KafkaException(self._abort_error)


class _Seekless:
    def seek(self, _partition: object) -> None:
        pass


def _aborting(old: _TxnProducer, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[object]]:
    """A processor mid-batch whose producer is ``old``; new producers are recorded."""
    processor = PaymentProcessor(Settings())
    made: list[object] = []

    def new_producer() -> object:
        made.append(_TxnProducer())
        return made[-1]

    monkeypatch.setattr(processor, "_new_producer", new_producer)
    processor._producer = old  # type: ignore[assignment]
    processor._consumer = _Seekless()  # type: ignore[assignment]
    processor._decode = object()  # type: ignore[assignment]
    return processor, made


def test_a_stuck_producer_is_replaced_without_being_touched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A producer stuck inside a call (librdkafka#5511) is left to the thread stuck in it:
    no flush, no abort (either could block behind the stuck call); a new one claims the id."""
    old = _TxnProducer()
    processor, made = _aborting(old, monkeypatch)
    batch = processor._core.collecting()
    processor._core.fetched(batch, [_Msg("in", 0, 3)], 0.0)
    processor._abort(batch, "send-offsets never returned", wedged=True)
    assert old.calls == []
    assert processor._producer is made[0]


def test_an_abort_that_leaves_the_producer_fatal_renews_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An abort failing with a fatal error that is not fencing: the producer is flushed once
    more (without waiting) and replaced; a clean abort keeps it."""
    clean = _TxnProducer()
    processor, made = _aborting(clean, monkeypatch)
    batch = processor._core.collecting()
    processor._abort(batch, "handler failed")
    assert (clean.calls, made) == ([f"flush({processor._timeout})", "abort"], [])
    fatal = RdKafkaError(RdKafkaError.INVALID_TXN_STATE, "state", fatal=True)
    broken = _TxnProducer(abort_error=fatal)
    processor._producer = broken
    processor._abort(batch, "handler failed")
    assert broken.calls == [f"flush({processor._timeout})", "abort", "flush(0)"]
    assert processor._producer is made[0]
