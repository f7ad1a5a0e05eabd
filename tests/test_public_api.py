"""The public surface: ``paykafka.__all__`` is exactly what the package exposes."""

import types

import paykafka
import paykafka.aio


def test_all_matches_public_names() -> None:
    """Every public attribute is in __all__ and every __all__ name exists."""
    public = {
        name
        for name, value in vars(paykafka).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(paykafka.__all__)


def test_all_has_no_duplicates() -> None:
    """Each public name is listed once (ruff's RUF022 keeps the list sorted)."""
    assert len(paykafka.__all__) == len(set(paykafka.__all__))


def test_errors_share_one_root() -> None:
    """Every exported exception class derives from PayKafkaError."""
    errors = [
        getattr(paykafka, n)
        for n in paykafka.__all__
        if isinstance(getattr(paykafka, n), type)
        and issubclass(getattr(paykafka, n), BaseException)
    ]
    assert len(errors) >= 15
    assert all(issubclass(e, paykafka.PayKafkaError) for e in errors)


def test_version_is_a_string() -> None:
    """The version comes from the one version module and looks like a version."""
    assert paykafka.__version__.count(".") == 2


def test_aio_all_matches_public_names() -> None:
    """paykafka.aio exposes exactly its __all__, sorted."""
    public = {
        name
        for name, value in vars(paykafka.aio).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(paykafka.aio.__all__)
    assert list(paykafka.aio.__all__) == sorted(paykafka.aio.__all__)
