"""ISO 4217 currencies and their minor units (decimal places), for validating amounts.

Every active code with a minor unit is listed, the fund codes included (BOV, CHE, CHW, CLF,
COU, MXV, USN, UYI, UYW: units of account that do appear in payments, and dropping them would
make records already on the topic undecodable). Codes without a minor unit are left out:
precious metals, SDR and testing codes (XAU, XDR, XTS, XXX...) are not payment currencies.
The table is data, updated when ISO 4217 changes; a unit test checks it against well-known
cases.
"""

from __future__ import annotations

from types import MappingProxyType

from paykafka._errors import ValidationError

__all__ = ["MINOR_UNITS", "currencies", "minor_units"]

_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP "
    "GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT "
    "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN "
    "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE "
    "SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES "
    "WST XCD XCG YER ZAR ZMW ZWG"
)

#: ISO 4217 alphabetic code -> number of decimal places of its minor unit.
MINOR_UNITS: MappingProxyType[str, int] = MappingProxyType(
    {
        code: places
        for codes, places in ((_ZERO, 0), (_TWO, 2), (_THREE, 3), (_FOUR, 4))
        for code in codes.split()
    }
)


def minor_units(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit: ``minor_units("PLN") == 2``, ``"JPY"`` 0.

    Why public: amounts must have no more places than this (``PaymentEvent`` refuses
    ``Decimal("1.5")`` JPY), and code that converts from minor units (cents, fils) needs the
    same table instead of hard-coding it. Raises :class:`~paykafka.ValidationError` for a code
    that is not an ISO 4217 payment currency.
    """
    try:
        return MINOR_UNITS[currency]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        hint = ""
        if isinstance(currency, str) and currency.upper() in MINOR_UNITS:
            hint = f"; did you mean {currency.upper()!r}?"
        raise ValidationError(
            "currency", f"{currency!r} is not an ISO 4217 currency code (e.g. 'PLN', 'EUR'){hint}"
        ) from None


def currencies() -> frozenset[str]:
    """Every ISO 4217 code a ``PaymentEvent`` accepts (see :func:`minor_units`)."""
    return frozenset(MINOR_UNITS)
