"""``PaymentEvent``: the one typed view of a payment, mirroring ``schemas/payment.avsc``.

Validation lives here, not in the serializer, so an invalid payment is refused where it is
made (with the field named), and an event decoded from the wire has passed the same rules as
one built in code. Money is a ``Decimal`` quantized to the currency's minor unit: ``249.99 PLN``
reads back as ``Decimal("249.99")`` even though the wire carries scale 4.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import attrs

from paykafka._currencies import MINOR_UNITS, minor_units
from paykafka._errors import ValidationError

__all__ = ["PaymentEvent", "PaymentMethod"]

# The schema's decimal(18, 4): at most 14 digits before the point.
_MAX_INTEGER_DIGITS = 14
_MAX_AMOUNT = Decimal(10) ** _MAX_INTEGER_DIGITS
_MAX_USER_LENGTH = 256


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
    if not value.strip():
        raise ValidationError("user", "must not be empty or blank")
    if len(value) > _MAX_USER_LENGTH:
        raise ValidationError("user", f"is {len(value)} characters; at most {_MAX_USER_LENGTH}")
    return value


def _to_decimal(value: Decimal | str | int) -> Decimal:
    if isinstance(value, bool | float):
        raise ValidationError(
            "amount",
            f"{value!r} is a {type(value).__name__}, and money is never a float: pass "
            f"Decimal({str(value)!r}) or the string {str(value)!r}",
        )
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int | str):
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
    return value.astimezone(UTC)


def _to_note(value: str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValidationError("note", f"must be a string or None, got {type(value).__name__}")


def _now() -> datetime:
    return datetime.now(UTC)


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
        quantum = Decimal(1).scaleb(-places)
        try:
            exact = self.amount.quantize(quantum)
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
        return {
            "payment_id": str(self.payment_id),
            "user": self.user,
            "amount": self.amount,
            "currency": self.currency,
            "method": self.method.value,
            "timestamp": self.timestamp,
            "note": self.note,
        }

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
                # A reader schema older than the field has no key: the event has no note.
                note=record.get("note"),
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
            not _TRUSTED_FIELDS_MATCH
            or places is None
            or places > scale
            or type(payment_id) is not uuid.UUID
            or type(method) is not PaymentMethod
            or timestamp.tzinfo is not UTC
        ):
            return None
        try:
            user = _to_user(user)
            note = _to_note(extras.get("note"))
        except ValidationError:
            return None
        whole, rest = divmod(units, 10 ** (scale - places))
        if rest or units <= 0 or units >= 10 ** (_MAX_INTEGER_DIGITS + scale):
            return None
        event = object.__new__(cls)
        set_ = object.__setattr__
        set_(event, "payment_id", payment_id)
        set_(event, "user", user)
        set_(event, "amount", Decimal(whole).scaleb(-places, _EXACT))
        set_(event, "currency", currency)
        set_(event, "method", method)
        set_(event, "timestamp", timestamp)
        set_(event, "note", note)
        return event

    def to_json(self) -> str:
        """The tutorial's JSON line, keys in its order; the amount is an exact decimal string.

        Why a string: a JSON number is read back as a float by nearly every parser (Python's
        ``json``, JavaScript, jq), and ``99999999999999.99`` becomes ``99999999999999.98``.
        ``"249.99"`` survives every parser; ``Decimal(data["amount"])`` gets the money back.
        Every JSON the CLI and the examples print carries the amount this way.
        """
        fields: dict[str, str] = {
            "payment_id": str(self.payment_id),
            "user": self.user,
            "amount": f"{self.amount:f}",
            "currency": self.currency,
            "method": self.method.value,
            "timestamp": self.timestamp.isoformat(),
        }
        if self.note is not None:  # optional fields follow the tutorial's keys, only when set
            fields["note"] = self.note
        return json.dumps(fields)


# PaymentEvent._trusted sets exactly these fields: a field added to the class without teaching
# _trusted about it turns the fast path off (events then take from_dict) instead of leaving the
# new field unset.
_TRUSTED_FIELDS_MATCH = tuple(f.name for f in attrs.fields(PaymentEvent)) == (
    "payment_id",
    "user",
    "amount",
    "currency",
    "method",
    "timestamp",
    "note",
)
# Decimal arithmetic on the fast path must not depend on the caller's thread context.
_EXACT = Context(prec=40)
