"""PaymentEvent: construction, validation and the tutorial's JSON view."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, Inexact, localcontext

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import paykafka
from paykafka import PaymentEvent, PaymentMethod, ValidationError
from paykafka._currencies import MINOR_UNITS
from paykafka._event import extra, optional_fields


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
        ("amount", True, "is a bool, not an amount"),
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
    user=st.text(min_size=1, max_size=40).filter(
        lambda s: any(c.isascii() and c.isalnum() for c in s)
    ),
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


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("amount", " 12.50 ", "ASCII digits"),
        ("amount", "12.50\n", "ASCII digits"),
        ("amount", "1_000", "ASCII digits"),
        ("amount", "\u0661\u0662.\u0665\u0660", "ASCII digits"),  # Arabic-Indic 12.50
        ("amount", "\uff11\uff12", "ASCII digits"),  # full-width 12
        ("user", "\u200b", "invisible"),
        ("user", " \u200b\u2060\ufeff ", "invisible"),
        ("user", "\u3164", "invisible"),  # Hangul filler: a letter that shows nothing
        ("user", "marek\ud800", "lone surrogate"),
        ("note", "\udfffnote", "lone surrogate"),
        ("timestamp", datetime.min.replace(tzinfo=timezone(timedelta(hours=1))), "years 1-9999"),
        ("timestamp", datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))), "years 1-9999"),
    ],
)
def test_values_decimal_or_str_would_take_are_refused(
    field: str, value: object, needle: str
) -> None:
    """Looser inputs Python accepts (spaces, other digits, invisible users) are refused."""
    with pytest.raises(ValidationError) as info:
        make(**{field: value})
    assert info.value.field == field
    assert needle in str(info.value)


def test_visible_text_around_invisible_characters_is_a_user() -> None:
    """Invisible characters are fine next to visible ones; only an all-blank user is refused."""
    assert make(user="marek\u200b").user == "marek\u200b"
    assert make(user="\u0645\u0627\u0631\u0643").user == "\u0645\u0627\u0631\u0643"


def test_validation_ignores_the_callers_decimal_context() -> None:
    """A caller's 5-digit decimal context changes nothing: 12345.67 PLN stays valid."""
    with localcontext() as ctx:
        ctx.prec = 5
        ctx.traps[Inexact] = True
        event = make(amount="12345.67")
        decoded = PaymentEvent.from_dict({**event.to_dict(), "amount": Decimal("12345.6700")})
    assert event.amount == decoded.amount == Decimal("12345.67")


def test_currency_table_holds_funds_but_no_metals_or_test_codes() -> None:
    """The table matches its docstring: fund codes in, metals and testing codes out."""
    funds = {"BOV": 2, "CHE": 2, "CHW": 2, "CLF": 4, "COU": 2, "MXV": 2, "USN": 2, "UYI": 0}
    assert {code: MINOR_UNITS.get(code) for code in funds} == funds
    assert MINOR_UNITS["UYW"] == 4
    assert not {"XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX", "XSU", "XUA"} & MINOR_UNITS.keys()
    assert (MINOR_UNITS["JPY"], MINOR_UNITS["PLN"], MINOR_UNITS["KWD"]) == (0, 2, 3)


class _NoOffset(tzinfo):
    """A tzinfo that does not know its offset: as naive as no tzinfo at all."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("note", 42, "invalid note: must be a string or None, got int"),
        ("timestamp", "2026-01-01", "invalid timestamp: must be a datetime, got str"),
        (
            "currency",
            42,
            "invalid currency: 42 is not an ISO 4217 currency code (e.g. 'PLN', 'EUR')",
        ),
        (
            "amount",
            True,
            (
                "invalid amount: True is a bool, not an amount: pass a Decimal such as "
                "Decimal('249.99') or a string such as '249.99'"
            ),
        ),
        (
            "amount",
            2.5,
            (
                "invalid amount: 2.5 is a float, and money is never a float: "
                "pass Decimal('2.5') or the string '2.5'"
            ),
        ),
    ],
)
def test_messages_say_exactly_what_to_do(field: str, value: object, message: str) -> None:
    """The whole message, for the values people get wrong most."""
    with pytest.raises(ValidationError) as info:
        make(**{field: value})
    assert info.value.field == field
    assert str(info.value) == message


def test_a_timezone_without_an_offset_is_refused() -> None:
    """A tzinfo whose utcoffset() is None is no timezone: refused like a naive datetime."""
    with pytest.raises(ValidationError, match="no timezone"):
        make(timestamp=datetime(2026, 1, 1, tzinfo=_NoOffset()))


def test_an_unknown_method_lists_the_known_ones() -> None:
    """The method error names every symbol it would accept."""
    with pytest.raises(ValidationError) as info:
        make(method="cheque")
    assert ", ".join(m.value for m in PaymentMethod) in str(info.value)
    assert "credit_card, debit_card, " in str(info.value)


def test_from_dict_says_the_field_is_missing() -> None:
    """A record without a field: the field is named and the message says it is missing."""
    record = make().to_dict()
    del record["user"]
    with pytest.raises(ValidationError, match="invalid user: is missing from the record"):
        PaymentEvent.from_dict(record)


def test_json_carries_the_note_only_when_set() -> None:
    """to_json adds "note" when the event has one, after the tutorial's keys."""
    assert json.loads(make(note="invoice 7").to_json())["note"] == "invoice 7"
    assert "note" not in json.loads(make().to_json())


_TRUSTED = {
    "payment_id": uuid.UUID(int=7),
    "user": "marek",
    "units": 2499900,
    "scale": 4,
    "currency": "PLN",
    "method": PaymentMethod.BLIK,
    "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
    "extras": {},
}


@pytest.mark.parametrize(
    "change",
    [
        {"timestamp": datetime(2026, 1, 1, tzinfo=timezone(timedelta(0), "Z"))},  # not UTC itself
        {"method": "blik"},
        {"payment_id": "00000000-0000-0000-0000-000000000007"},
        {"scale": 1},  # fewer places on the wire than PLN has
        {"units": 10**18},  # exactly 10^14 PLN: one past the schema's 14 integer digits
        {"units": 0},
        {"units": 2499901},  # 249.9901 PLN: too many places
    ],
)
def test_the_trusted_constructor_steps_aside_when_unsure(change: dict[str, object]) -> None:
    """_trusted returns None (the caller then goes through from_dict) for anything unusual."""
    assert PaymentEvent._trusted(**{**_TRUSTED, **change}) is None  # type: ignore[arg-type]
    assert PaymentEvent._trusted(**_TRUSTED) == make(  # type: ignore[arg-type]
        payment_id=uuid.UUID(int=7),
        amount="249.99",
        method="blik",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )


@attrs.frozen(kw_only=True)
class _WithExtras:
    text: str | None = extra(str)
    count: int | None = extra(int)
    ratio: float | None = extra(float)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("text", 5, "must be a str or None, got int"),
        ("count", True, "got bool"),
        ("ratio", "1", "got str"),
    ],
)
def test_optional_extra_fields_are_type_checked(field: str, value: object, needle: str) -> None:
    """A field declared with extra() checks its type like the core fields, naming the field."""
    with pytest.raises(ValidationError, match=needle) as caught:
        _WithExtras(**{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field
    assert _WithExtras(text="a", count=2, ratio=1).ratio == 1
    assert _WithExtras().text is None


def test_every_optional_field_round_trips_generically() -> None:
    """to_dict, from_dict and to_json carry every optional field of the class, not a list."""
    event = PaymentEvent(user="u", amount="1.00", currency="PLN", method="blik", note="rent")
    record = event.to_dict()
    optional = [a.name for a in attrs.fields(PaymentEvent) if a.default is None]
    assert set(optional) <= set(record)
    assert PaymentEvent.from_dict(record) == event


def test_optional_fields_are_set_from_text_by_name() -> None:
    """`--set note=rent` reaches any optional field; unknown names and bad text are refused."""
    assert optional_fields(["note=rent"]) == {"note": "rent"}
    assert optional_fields([]) == {}
    with pytest.raises(ValidationError, match="NAME=VALUE with NAME one of note"):
        optional_fields(["zz_not_a_field=1"])
    with pytest.raises(ValidationError, match="NAME=VALUE"):
        optional_fields(["note"])
    event = PaymentEvent(
        user="u", amount="1.00", currency="PLN", method="blik", **optional_fields(["note=a=b"])
    )
    assert event.note == "a=b"


def test_minor_units_are_public() -> None:
    """paykafka.minor_units gives a currency's decimal places; unknown codes are refused."""
    assert (paykafka.minor_units("PLN"), paykafka.minor_units("JPY")) == (2, 0)
    assert paykafka.minor_units("BHD") == 3
    assert paykafka.currencies() == frozenset(MINOR_UNITS)
    with pytest.raises(ValidationError, match="did you mean 'EUR'"):
        paykafka.minor_units("eur")
    with pytest.raises(ValidationError, match="currency"):
        paykafka.minor_units("XYZ")
