"""PaymentProcessor on the real broker and registry: one transaction per batch, exactly once."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import attrs
import pytest
from _events import make_events
from _outputs import assert_committed_once, read_ids
from confluent_kafka import Producer

from paykafka import (
    DeadLetterQueue,
    FencedError,
    KafkaAdmin,
    Output,
    PaymentEvent,
    PaymentProcessor,
    PaymentProducer,
    PaymentTracker,
    Settings,
    load_schema,
)
from paykafka._serde import EventSerializer

from ._cli import connection_flags, run_cli

THRESHOLD = Decimal(1000)


@pytest.fixture
def routed(topic_settings: Settings) -> tuple[Settings, str, str]:
    """Input settings (own group and transactional id) and two output topics of its own."""
    settings = attrs.evolve(topic_settings, transactional_id=f"{topic_settings.topic}-tx")
    return settings, f"{settings.topic}.review", f"{settings.topic}.cleared"


def _router(review: str, cleared: str) -> object:
    def route(event: PaymentEvent) -> Output:
        return Output(review if event.amount > THRESHOLD else cleared, event)

    return route


def _send(settings: Settings, events: list[PaymentEvent]) -> None:
    with PaymentProducer(settings) as producer:
        for event in events:
            producer.send(event)


def test_router_writes_each_input_once_and_commits_its_offsets(
    routed: tuple[Settings, str, str],
) -> None:
    """300 inputs: each output once on the right topic, and the group is at the end."""
    settings, review, cleared = routed
    sent = make_events(300)
    _send(settings, sent)
    with PaymentProcessor(settings, output_topics=[review, cleared]) as processor:
        handled = processor.run(
            _router(review, cleared),  # type: ignore[arg-type]
            stop_at_end=True,
            handle_signals=False,
        )
        assert processor.transactions[0] >= 1
    assert handled == 300
    big = {e.payment_id for e in sent if e.amount > THRESHOLD}
    assert read_ids(settings, [review], isolation="read_committed").keys() == big
    assert_committed_once(settings, [review, cleared], {e.payment_id for e in sent})
    assert KafkaAdmin(settings).lag(settings.group_id, settings.topic).total == 0


def test_a_handler_error_aborts_the_batch_and_it_is_handled_again(
    routed: tuple[Settings, str, str],
) -> None:
    """A failure mid-batch aborts what the batch wrote; committed readers see no duplicate."""
    settings, review, cleared = routed
    settings = attrs.evolve(settings, transaction_batch_size=100)
    sent = make_events(200)
    _send(settings, sent)
    route = _router(review, cleared)
    failed = threading.Event()

    def flaky(event: PaymentEvent) -> object:
        if event.payment_id == sent[150].payment_id and not failed.is_set():
            failed.set()
            raise RuntimeError("downstream hiccup")
        return route(event)  # type: ignore[operator]

    with PaymentProcessor(settings, output_topics=[review, cleared], retry_backoff=0.1) as p:
        p.run(flaky, stop_at_end=True, handle_signals=False)  # type: ignore[arg-type]
        assert p.transactions[1] >= 1
        assert p.dead_lettered == 0
    assert failed.is_set()
    committed = assert_committed_once(settings, [review, cleared], {e.payment_id for e in sent})
    uncommitted = read_ids(settings, [review, cleared], isolation="read_uncommitted")
    assert sum(uncommitted.values()) > sum(committed.values())  # the aborted writes exist


def test_undecodable_inputs_are_dead_lettered_in_the_same_transaction(
    routed: tuple[Settings, str, str],
) -> None:
    """Garbage on the input goes to the DLQ, the good events to their outputs, once each."""
    settings, review, cleared = routed
    sent = make_events(20)
    _send(settings, sent)
    raw = Producer(settings.producer_config())
    raw.produce(settings.topic, b"not avro at all", b"k")
    raw.flush(10)
    with PaymentProcessor(settings, output_topics=[review, cleared]) as processor:
        processor.run(
            _router(review, cleared),  # type: ignore[arg-type]
            stop_at_end=True,
            handle_signals=False,
        )
        assert processor.dead_lettered == 1
    letters = DeadLetterQueue(settings).letters()
    assert [letter.reason for letter in letters] == ["not_confluent_framing"]
    assert letters[0].value == b"not avro at all"
    assert read_ids(settings, [review, cleared], isolation="read_committed").keys() == {
        e.payment_id for e in sent
    }


def test_a_second_instance_with_the_same_transactional_id_fences_the_first(
    routed: tuple[Settings, str, str],
) -> None:
    """The older processor stops with FencedError; the newer one routes everything once."""
    settings, review, cleared = routed
    first_batch, second_batch = make_events(50, prefix="a"), make_events(50, prefix="b")
    _send(settings, first_batch)
    route = _router(review, cleared)
    errors: dict[str, BaseException] = {}

    def serve(name: str, processor: PaymentProcessor) -> None:
        try:
            with processor:
                processor.run(route, handle_signals=False)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            errors[name] = exc

    old = PaymentProcessor(settings, output_topics=[review, cleared])
    new = PaymentProcessor(settings, output_topics=[review, cleared])
    old_thread = threading.Thread(target=serve, args=("old", old), daemon=True)
    old_thread.start()
    deadline = time.monotonic() + 60
    while old.handled < len(first_batch) and time.monotonic() < deadline:
        time.sleep(0.1)
    new_thread = threading.Thread(target=serve, args=("new", new), daemon=True)
    new_thread.start()
    while new._producer is None and time.monotonic() < deadline:  # the id is claimed
        time.sleep(0.1)
    _send(settings, second_batch)
    old_thread.join(60)
    while new.handled < len(second_batch) and time.monotonic() < deadline:
        time.sleep(0.1)
    new.stop()
    new_thread.join(30)
    assert isinstance(errors.pop("old", None), FencedError)
    assert not errors
    assert (old.handled, new.handled) == (len(first_batch), len(second_batch))
    assert_committed_once(
        settings, [review, cleared], {e.payment_id for e in first_batch + second_batch}
    )


def test_without_dead_letters_a_failing_handler_stops_the_processor_uncommitted(
    routed: tuple[Settings, str, str],
) -> None:
    """dead_letters=False: the handler's own error is raised once retries run out."""
    settings, review, _cleared = routed
    _send(settings, make_events(5))

    def broken(event: PaymentEvent) -> Output:
        raise ValueError("no route")

    with PaymentProcessor(
        settings, output_topics=[review], dead_letters=False, handler_retries=1, retry_backoff=0.05
    ) as processor:
        with pytest.raises(ValueError, match="no route"):
            processor.run(broken, idle_timeout=20, handle_signals=False)
        assert processor.handled == 0
    assert KafkaAdmin(settings).lag(settings.group_id, settings.topic).total == 5


def _one_aborted_one_committed(settings: Settings) -> tuple[PaymentEvent, PaymentEvent]:
    """Write an event in an aborted transaction, then one in a committed one."""
    aborted, committed = make_events(2, prefix="txn")
    with PaymentProducer(settings) as plain:
        schema_id = plain.schema_id
    serialize = EventSerializer(load_schema(), schema_id)
    producer = Producer(settings.transactional_producer_config(f"{settings.topic}-raw"))
    producer.init_transactions(30)
    for event, commit in ((aborted, False), (committed, True)):
        producer.begin_transaction()
        producer.produce(settings.topic, serialize(event), event.user.encode())
        producer.flush(30)
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    return aborted, committed


def test_trackers_and_events_read_committed_hide_aborted_transactions(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tracker (by default) and `events --read-committed` skip an aborted event;
    `events` alone, like the console consumer, shows it."""
    aborted, committed = _one_aborted_one_committed(topic_settings)
    with PaymentTracker(topic_settings) as tracker:
        got = [r.event for r in tracker.records(stop_at_end=True)]
    assert got == [committed]
    flags = [*connection_flags(topic_settings), "--from-beginning", "--until-end"]
    code, out, _ = run_cli(capsys, "events", *flags, "--read-committed")
    assert code == 0
    assert str(committed.payment_id) in out
    assert str(aborted.payment_id) not in out
    code, out, _ = run_cli(capsys, "events", *flags)
    assert code == 0
    assert str(aborted.payment_id) in out
    assert str(committed.payment_id) in out


def test_an_input_the_handler_keeps_failing_on_is_dead_lettered_after_its_retries(
    routed: tuple[Settings, str, str],
) -> None:
    """After handler_retries aborted attempts, the poison input goes to the DLQ in the
    transaction, with the handler's error; every other input is routed once."""
    settings, review, cleared = routed
    sent = make_events(40)
    poison = sent[17].payment_id
    _send(settings, sent)
    route = _router(review, cleared)

    def picky(event: PaymentEvent) -> object:
        if event.payment_id == poison:
            raise LookupError("no route for this one")
        return route(event)  # type: ignore[operator]

    with PaymentProcessor(
        settings, output_topics=[review, cleared], handler_retries=2, retry_backoff=0.05
    ) as processor:
        processor.run(picky, stop_at_end=True, handle_signals=False)  # type: ignore[arg-type]
        assert processor.dead_lettered == 1
        assert processor.transactions[1] == 3  # the first try and two retries
    [letter] = DeadLetterQueue(settings).letters()
    assert letter.reason == "handler_failed"
    assert "LookupError: no route for this one" in letter.message
    assert_committed_once(settings, [review, cleared], {e.payment_id for e in sent} - {poison})
