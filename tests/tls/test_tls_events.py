from __future__ import annotations

import dataclasses

import pytest

from tlswatch.tls import events


@pytest.mark.parametrize("name", events.__all__)
def test_events_are_frozen_and_slotted(name: str) -> None:
    cls = getattr(events, name)
    if name == "Event":
        return
    assert dataclasses.is_dataclass(cls)
    assert "__slots__" in cls.__dict__
    assert getattr(cls, "__dataclass_params__").frozen  # noqa: B009


def test_public_api_exports_resolve() -> None:
    import tlswatch.tls as tls

    for name in tls.__all__:
        assert getattr(tls, name) is not None
