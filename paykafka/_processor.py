"""The processor's old home: it lives in :mod:`paykafka._processing` now (core and faces)."""

from paykafka._processing import Output, PaymentProcessor, TxnAction, classify_txn_error

__all__ = ["Output", "PaymentProcessor", "TxnAction", "classify_txn_error"]
