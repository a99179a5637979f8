"""Fixtures shared by the emulator's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from requests_ppauth.testing import Emulator


@pytest.fixture(scope="module")
def _module_emulator() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def emu(_module_emulator: Emulator) -> Emulator:
    """One emulator for this module, its request log emptied for each test.

    Tests taking ``emu`` only add apps and users; those that change the token policy
    or add tenants take a fresh ``ppauth_emulator`` instead. (Stopping an emulator
    costs ~0.2 s, more than most tests here.)
    """
    _module_emulator.reset_counts()
    return _module_emulator
