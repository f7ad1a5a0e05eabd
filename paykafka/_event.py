"""``PaymentEvent``: the one typed view of a payment, mirroring ``schemas/payment.avsc``.

Validation lives here, not in the serializer, so an invalid payment is refused where it is
made (with the field named), and an event decoded from the wire has passed the same rules as
one built in code. Money is a ``Decimal`` quantized to the currency's minor unit: ``249.99 PLN``
reads back as ``Decimal("249.99")`` even though the wire carries scale 4.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any, cast

import attrs

from paykafka._currencies import MINOR_UNITS, minor_units
from paykafka._errors import ValidationError

__all__ = ["PaymentEvent", "PaymentMethod", "extra", "optional_fields"]

# The schema's decimal(18, 4): at most 14 digits before the point.
_MAX_INTEGER_DIGITS = 14
_MAX_AMOUNT = Decimal(10) ** _MAX_INTEGER_DIGITS
_MAX_USER_LENGTH = 256
# An amount string as the wire would write it: ASCII digits, optional sign, point, exponent.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
# Spelled out so they reach the "not a finite number" message instead of the syntax one.
_NON_FINITE = frozenset({"nan", "snan", "inf", "infinity"})
_VISIBLE_ASCII = re.compile(r"[!-~]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Letters (so "printable") that render as blank space: Hangul fillers and the Braille blank.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


class PaymentMethod(enum.StrEnum):
    """How a payment was made: the symbols of the schema's ``PaymentMethod`` enum.

    ``other`` is the enum's Avro default: a reader that does not know a newer method reads it
    as ``other`` instead of failing.
    """

    CREDIT_CARD = "credit_card"
    DEBIT_CARD = "debit_card"
    BANK_TRANSFER = "bank_transfer"
    BLIK = "blik"
    PAYPAL = "paypal"
    APPLE_PAY = "apple_pay"
    GOOGLE_PAY = "google_pay"
    CASH = "cash"
    OTHER = "other"
    GIFT_CARD = "gift_card"  # schema v2; v1 readers see it as OTHER


def _to_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError("payment_id", f"{value!r} is not a UUID such as {uuid.uuid4()}")


def _to_user(value: str) -> str:
    if not isinstance(value, str):
        raise ValidationError("user", f"must be a string, got {type(value).__name__}")
    if not _visible(value):
        raise ValidationError(
            "user", "must not be empty or blank (whitespace or invisible characters only)"
        )
    if len(value) > _MAX_USER_LENGTH:
        raise ValidationError("user", f"is {len(value)} characters; at most {_MAX_USER_LENGTH}")
    _refuse_surrogates("user", value)
    return value


def _visible(text: str) -> bool:
    """Whether ``text`` shows anything: a user of only U+200B looks like no user at all."""
    if _VISIBLE_ASCII.search(text):  # the common case, in C
        return True
    return any(c.isprintable() and not c.isspace() and c not in _BLANK_LETTERS for c in text)


def _refuse_surrogates(field: str, text: str) -> None:
    # Refused here, not at send(): a lone surrogate cannot be encoded as UTF-8 at all.
    # (isascii() is a flag lookup: ASCII text, the common case, is not scanned.)
    if not text.isascii() and _SURROGATE.search(text):
        raise ValidationError(
            field, "contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode text"
        )


def _to_decimal(value: Decimal | str | int) -> Decimal:
    if isinstance(value, bool):
        raise ValidationError(
            "amount",
            f"{value!r} is a bool, not an amount: pass a Decimal such as Decimal('249.99') "
            "or a string such as '249.99'",
        )
    if isinstance(value, float):
        raise ValidationError(
            "amount",
            f"{value!r} is a float, and money is never a float: pass "
            f"Decimal({str(value)!r}) or the string {str(value)!r}",
        )
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        # Decimal() also takes spaces, underscores and any script's digits (' 12 ', '1_000',
        # full-width or Arabic-Indic digits); an amount on the wire is plain ASCII, so one
        # given in code must be too.
        if not _PLAIN_NUMBER.fullmatch(value) and value.lower().lstrip("+-") not in _NON_FINITE:
            raise ValidationError(
                "amount",
                f"{value!r} is not a decimal number written with ASCII digits, such as "
                "'249.99' (no spaces, underscores or other digits)",
            )
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValidationError("amount", f"{value!r} is not a decimal number") from None
    else:
        raise ValidationError(
            "amount", f"must be a Decimal, str or int, got {type(value).__name__}"
        )
    if not amount.is_finite():
        raise ValidationError("amount", f"{value!r} is not a finite number")
    return amount


def _to_currency(value: str) -> str:
    minor_units(value)  # raises ValidationError naming the field for an unknown code
    return value


def _to_method(value: PaymentMethod | str) -> PaymentMethod:
    try:
        return PaymentMethod(value)
    except ValueError:
        known = ", ".join(m.value for m in PaymentMethod)
        raise ValidationError("method", f"{value!r} is not a known method ({known})") from None


def _to_timestamp(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError("timestamp", f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            "timestamp",
            f"{value.isoformat()} has no timezone; pass an aware datetime such as "
            "datetime.now(timezone.utc)",
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            "timestamp", f"{value.isoformat()} is outside the years 1-9999 once converted to UTC"
        ) from None


def _to_note(value: str | None) -> str | None:
    if value is None:
        return value
    if isinstance(value, str):
        _refuse_surrogates("note", value)
        return value
    raise ValidationError("note", f"must be a string or None, got {type(value).__name__}")


def _now() -> datetime:
    return datetime.now(UTC)


#: Metadata key of an ``extra`` field: the Avro types its schema field may have (non-null part).
_AVRO = "paykafka.avro"
_AVRO_NAMES: Mapping[type, tuple[str, ...]] = {
    str: ("string",),
    int: ("int", "long"),
    float: ("float", "double"),
    bool: ("boolean",),
    bytes: ("bytes",),
}


def extra(kind: type) -> Any:
    """An optional field beyond the six core ones: ``None`` by default, else a ``kind``.

    The one declaration an optional schema field needs (``channel: str | None = extra(str)``):
    ``to_dict``, ``from_dict``, ``to_json`` and the decoder's fast path handle every such
    field from the class itself, and the value's type is checked like the core fields'.
    """

    accepted = (int, float) if kind is float else (kind,)

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
            raise ValidationError(
                attribute.name, f"must be a {kind.__name__} or None, got {type(value).__name__}"
            )

    return attrs.field(default=None, validator=check, metadata={_AVRO: _AVRO_NAMES[kind]})


@attrs.frozen(kw_only=True)
class PaymentEvent:
    """One payment, valid by construction.

    ``PaymentEvent(user="marek", amount=Decimal("249.99"), currency="PLN",
    method="credit_card")`` fills ``payment_id`` and ``timestamp``. Invalid values raise
    :class:`~paykafka.ValidationError` naming the field.
    """

    payment_id: uuid.UUID = attrs.field(factory=uuid.uuid4, converter=_to_uuid)
    user: str = attrs.field(converter=_to_user)
    amount: Decimal = attrs.field(converter=_to_decimal)
    currency: str = attrs.field(converter=_to_currency)
    method: PaymentMethod = attrs.field(converter=_to_method)
    timestamp: datetime = attrs.field(factory=_now, converter=_to_timestamp)
    #: Optional free text (schema v2); ``None`` for events written with v1.
    note: str | None = attrs.field(default=None, converter=_to_note)

    def __attrs_post_init__(self) -> None:
        # Amount rules depend on the currency, so they run once both fields are converted.
        places = MINOR_UNITS[self.currency]
        quantum = Decimal(1).scaleb(-places, _EXACT)
        try:
            exact = self.amount.quantize(quantum, context=_EXACT)
        except InvalidOperation:
            exact = None
        if exact is None or exact != self.amount:
            raise ValidationError(
                "amount",
                f"{self.amount} has more decimal places than {self.currency} allows ({places})",
            )
        if exact <= 0:
            raise ValidationError("amount", f"{self.amount} must be greater than zero")
        if exact >= _MAX_AMOUNT:
            raise ValidationError("amount", f"{self.amount} exceeds the schema's 14 integer digits")
        object.__setattr__(self, "amount", exact)

    def to_dict(self) -> dict[str, Any]:
        """The Avro record for this event (what the serializer writes)."""
        record = {
            "payment_id": str(self.payment_id),
            "user": self.user,
            "amount": self.amount,
            "currency": self.currency,
            "method": self.method.value,
            "timestamp": self.timestamp,
        }
        for name in _EXTRA_NAMES:
            record[name] = getattr(self, name)
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PaymentEvent:
        """Build an event from a decoded Avro record; fields the class does not know are ignored."""
        try:
            return cls(
                payment_id=record["payment_id"],
                user=record["user"],
                amount=record["amount"],
                currency=record["currency"],
                method=record["method"],
                timestamp=record["timestamp"],
                # A reader schema older than an optional field has no key: it stays None.
                **{name: record.get(name) for name in _EXTRA_NAMES},
            )
        except KeyError as exc:
            raise ValidationError(str(exc.args[0]), "is missing from the record") from None

    @classmethod
    def _trusted(  # noqa: PLR0917 - positional on purpose: called once per decoded event
        cls,
        payment_id: uuid.UUID,
        user: str,
        units: int,
        scale: int,
        currency: str,
        method: PaymentMethod,
        timestamp: datetime,
        extras: Mapping[str, Any],
    ) -> PaymentEvent | None:
        """An event from a decoded Avro record, skipping the converters; ``None`` when unsure.

        Why: this is the hot path of every tracker, and the Avro types already give what most
        converters check (a UUID, an exact integer amount at ``scale``, a UTC timestamp, an
        enum symbol). The cheap string converters still run; the amount rule, the costly one
        in ``Decimal``, is checked here in integers. ``None`` means "not clearly valid": the
        caller then goes through ``from_dict``, which accepts or raises exactly as always, so
        this path is faster but never more lenient. Keep the amount check in step with
        ``__attrs_post_init__``: tests/test_codec.py checks with hypothesis that both agree.
        """
        places = MINOR_UNITS.get(currency)
        if (
            places is None
            or places > scale
            or type(payment_id) is not uuid.UUID
            or type(method) is not PaymentMethod
            or timestamp.tzinfo is not UTC
        ):
            return None
        whole, rest = divmod(units, 10 ** (scale - places))
        if rest or units <= 0 or units >= 10 ** (_MAX_INTEGER_DIGITS + scale):
            return None
        event = object.__new__(cls)
        set_ = object.__setattr__
        try:
            set_(event, "user", _to_user(user))
            # Each optional field through its converter and validator, as the constructor
            # does; set as it goes (no list per event: this runs for every record tracked).
            for name, convert, attribute, validate in _EXTRA_CHECKS:
                value = extras.get(name)
                if convert is not None:
                    value = convert(value)
                if validate is not None:
                    validate(None, attribute, value)
                set_(event, name, value)
        except ValidationError:
            return None  # the half-built event is dropped; from_dict decides
        set_(event, "payment_id", payment_id)
        set_(event, "amount", Decimal(whole).scaleb(-places, _EXACT))
        set_(event, "currency", currency)
        set_(event, "method", method)
        set_(event, "timestamp", timestamp)
        return event

    def to_json(self) -> str:
        """The tutorial's JSON line, keys in its order; the amount is an exact decimal string.

        Why a string: a JSON number is read back as a float by nearly every parser (Python's
        ``json``, JavaScript, jq), and ``99999999999999.99`` becomes ``99999999999999.98``.
        ``"249.99"`` survives every parser; ``Decimal(data["amount"])`` gets the money back.
        Every JSON the CLI and the examples print carries the amount this way.
        """
        fields: dict[str, Any] = {
            "payment_id": str(self.payment_id),
            "user": self.user,
            "amount": f"{self.amount:f}",
            "currency": self.currency,
            "method": self.method.value,
            "timestamp": self.timestamp.isoformat(),
        }
        for name in _EXTRA_NAMES:  # optional fields follow the tutorial's keys, only when set
            value = getattr(self, name)
            if value is not None:
                fields[name] = value
        return json.dumps(fields)


# The six core fields have their own code everywhere; every other field is an optional extra
# (``note``, and whatever a schema evolution adds) handled generically from the class itself,
# so adding one takes one declaration and never turns the decoder's fast path off.
_CORE = ("payment_id", "user", "amount", "currency", "method", "timestamp")
_EXTRAS = tuple(a for a in attrs.fields(PaymentEvent) if a.name not in _CORE)
_EXTRA_NAMES = tuple(a.name for a in _EXTRAS)
# What ``_trusted`` runs per optional field: name, converter, attribute, validator.
_EXTRA_CHECKS: tuple[
    tuple[str, Callable[[Any], Any] | None, attrs.Attribute[Any], Callable[..., Any] | None], ...
] = tuple(
    (a.name, cast("Callable[[Any], Any] | None", a.converter), a, a.validator) for a in _EXTRAS
)


# Decimal arithmetic on the fast path must not depend on the caller's thread context.
_EXACT = Context(prec=40)


def optional_fields(assignments: Iterable[str]) -> dict[str, Any]:
    """``["note=rent"]`` -> ``{"note": "rent"}``: PaymentEvent's optional fields from text.

    Why: command lines (``paykafka produce --set``, the examples) reach every optional field
    of the schema this way, including ones a user adds later, without an option each. Names
    are checked against the class and values converted to the field's type; the constructor
    then validates them like any other value.
    """
    out: dict[str, Any] = {}
    for item in assignments:
        name, sep, text = item.partition("=")
        attribute = next((a for a in _EXTRAS if a.name == name), None)
        if not sep or attribute is None:
            raise ValidationError(
                name or item,
                f"{item!r} does not set an optional field: write NAME=VALUE with NAME one of "
                f"{', '.join(_EXTRA_NAMES)}",
            )
        out[name] = _from_text(name, attribute.metadata.get(_AVRO, ("string",)), text)
    return out


def _from_text(name: str, avro: tuple[str, ...], text: str) -> Any:
    try:
        if "boolean" in avro:
            return {"true": True, "false": False}[text.lower()]
        if "long" in avro:
            return int(text)
        if "double" in avro:
            return float(text)
    except (KeyError, ValueError):
        raise ValidationError(name, f"{text!r} is not a {avro[-1]}") from None
    return text
