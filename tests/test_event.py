"""PaymentEvent: construction, validation and the tutorial's JSON view."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import paykafka
from paykafka import PaymentEvent, PaymentMethod, ValidationError
from paykafka._currencies import MINOR_UNITS


def make(**kw: object) -> PaymentEvent:
    base: dict[str, object] = {
        "user": "marek",
        "amount": Decimal("249.99"),
        "currency": "PLN",
        "method": "credit_card",
    }
    base.update(kw)
    return PaymentEvent(**base)  # type: ignore[arg-type]


def test_fills_id_and_timestamp() -> None:
    """The tutorial's four fields are enough: id and UTC timestamp are filled in."""
    event = make()
    assert isinstance(event.payment_id, uuid.UUID)
    assert event.timestamp.tzinfo is UTC
    assert abs(datetime.now(UTC) - event.timestamp) < timedelta(seconds=5)
    assert event.method is PaymentMethod.CREDIT_CARD


def test_json_view_has_the_tutorial_shape() -> None:
    """to_json prints the tutorial's line: same keys, same order, amount as exact text."""
    ts = datetime(2026, 2, 26, 9, 52, 20, 102594, tzinfo=UTC)
    pid = uuid.UUID("94ab1a01-064e-4590-88a2-aab4ba9f4a84")
    line = make(payment_id=pid, timestamp=ts).to_json()
    assert line == (
        '{"payment_id": "94ab1a01-064e-4590-88a2-aab4ba9f4a84", "user": "marek", '
        '"amount": "249.99", "currency": "PLN", "method": "credit_card", '
        '"timestamp": "2026-02-26T09:52:20.102594+00:00"}'
    )
    assert list(json.loads(line)) == [
        "payment_id",
        "user",
        "amount",
        "currency",
        "method",
        "timestamp",
    ]


def test_json_amount_is_exact_not_float() -> None:
    """The JSON amount is the exact decimal as a string, which no JSON parser turns into a float."""
    line = make(amount=Decimal("0.10"), currency="EUR").to_json()
    assert '"amount": "0.10",' in line
    assert Decimal(json.loads(line)["amount"]) == Decimal("0.10")
    huge = make(amount=Decimal("99999999999999.99"), currency="PLN").to_json()
    assert json.loads(huge)["amount"] == "99999999999999.99"
    assert json.loads(make(amount=Decimal(5), currency="EUR").to_json())["amount"] == "5.00"


def test_timestamp_normalised_to_utc() -> None:
    """An aware timestamp in another zone is stored as the same instant in UTC."""
    warsaw = timezone(timedelta(hours=1))
    event = make(timestamp=datetime(2026, 2, 26, 10, 0, tzinfo=warsaw))
    assert event.timestamp == datetime(2026, 2, 26, 9, 0, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("amount", 249.99, "never a float"),
        ("amount", "1.234", "more decimal places than PLN allows (2)"),
        ("amount", "0", "greater than zero"),
        ("amount", "-5", "greater than zero"),
        ("amount", "NaN", "not a finite number"),
        ("amount", "abc", "not a decimal number"),
        ("amount", True, "never a float"),
        ("amount", "100000000000000", "14 integer digits"),
        ("currency", "pln", "did you mean 'PLN'"),
        ("currency", "XYZ", "not an ISO 4217"),
        ("method", "cheque", "not a known method"),
        ("user", "", "must not be empty"),
        ("user", "   ", "must not be empty"),
        ("user", 42, "must be a string"),
        ("payment_id", "not-a-uuid", "not a UUID"),
        ("timestamp", datetime(2026, 1, 1), "no timezone"),
        ("timestamp", "2026-01-01", "must be a datetime"),
    ],
)
def test_invalid_fields_are_named(field: str, value: object, needle: str) -> None:
    """Each invalid value raises ValidationError naming the field and the fix."""
    with pytest.raises(ValidationError) as info:
        make(**{field: value})
    assert info.value.field == field
    assert needle in str(info.value)


def test_amount_from_string_is_exact() -> None:
    """A string amount converts exactly, and is quantized to the currency's minor unit."""
    assert make(amount="249.9").amount == Decimal("249.90")
    assert str(make(amount="249.9").amount) == "249.90"
    assert str(make(amount="1500", currency="JPY").amount) == "1500"
    assert str(make(amount="1.125", currency="KWD").amount) == "1.125"


def test_events_are_frozen_and_hashable() -> None:
    """Events are immutable values: equal by content, usable as dict keys."""
    event = make()
    with pytest.raises(AttributeError):
        event.user = "eve"  # type: ignore[misc]
    assert {event: 1}[PaymentEvent.from_dict(event.to_dict())] == 1


def test_from_dict_names_a_missing_field() -> None:
    """A record without a required field is refused with the field's name."""
    record = make().to_dict()
    del record["currency"]
    with pytest.raises(ValidationError, match="currency"):
        PaymentEvent.from_dict(record)


currencies = st.sampled_from(sorted(MINOR_UNITS))


@given(
    currency=currencies,
    units=st.integers(min_value=1, max_value=10**13),
    user=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""),
    method=st.sampled_from(list(PaymentMethod)),
)
def test_valid_events_round_trip_through_dict(
    currency: str, units: int, user: str, method: PaymentMethod
) -> None:
    """Any valid event survives to_dict/from_dict unchanged."""
    amount = Decimal(units).scaleb(-MINOR_UNITS[currency])
    event = PaymentEvent(user=user, amount=amount, currency=currency, method=method)
    assert PaymentEvent.from_dict(event.to_dict()) == event


@given(
    currency=currencies,
    amount=st.decimals(allow_nan=True, allow_infinity=True, places=None),
)
def test_amount_is_valid_exactly_when_rules_allow(currency: str, amount: Decimal) -> None:
    """Hypothesis: an amount is accepted iff finite, positive, within the currency's places."""
    places = MINOR_UNITS[currency]
    ok = (
        amount.is_finite()
        and amount > 0
        and amount < Decimal(10) ** 14
        and amount == amount.quantize(Decimal(1).scaleb(-places))
    )
    if ok:
        assert make(amount=amount, currency=currency).amount == amount
    else:
        with pytest.raises(ValidationError) as info:
            make(amount=amount, currency=currency)
        assert info.value.field == "amount"


def test_minor_units_are_public() -> None:
    """paykafka.minor_units gives a currency's decimal places; unknown codes are refused."""
    assert (paykafka.minor_units("PLN"), paykafka.minor_units("JPY")) == (2, 0)
    assert paykafka.minor_units("BHD") == 3
    assert paykafka.currencies() == frozenset(MINOR_UNITS)
    with pytest.raises(ValidationError, match="did you mean 'EUR'"):
        paykafka.minor_units("eur")
    with pytest.raises(ValidationError, match="currency"):
        paykafka.minor_units("XYZ")
