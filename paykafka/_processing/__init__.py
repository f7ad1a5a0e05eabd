"""Exactly-once processing between topics: one pure core and two thin faces that do the I/O.

:mod:`paykafka._processing._core` decides (batches, handler failures and dead letters,
backoff, which errors abort and which stop); :mod:`._base` holds the steps of a transaction
both faces share; :mod:`._sync` is ``PaymentProcessor`` (threads) and
``paykafka.aio.AsyncPaymentProcessor`` the asyncio face.
"""

from paykafka._processing._base import ProcessorBase
from paykafka._processing._core import (
    Batch,
    Output,
    ProcessingCore,
    Step,
    TxnAction,
    classify_txn_error,
)
from paykafka._processing._sync import Handler, PaymentProcessor

__all__ = [
    "Batch",
    "Handler",
    "Output",
    "PaymentProcessor",
    "ProcessingCore",
    "ProcessorBase",
    "Step",
    "TxnAction",
    "classify_txn_error",
]
