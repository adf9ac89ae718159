"""Fixtures for the edge agent's tests (helpers in ``edgekit``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from edgekit import Subscriber, localise_sample, sample_raw

from carbonwatch.contracts.site import Site


@pytest.fixture
def make_site(tmp_path) -> Callable[..., Site]:
    """The sample site on a free TCP port, a pty path and buffer in tmp_path (see localise_sample)."""

    def make(**kw) -> Site:
        return localise_sample(sample_raw(), tmp_path, **kw)

    return make


@pytest.fixture
def subscriber(broker):
    """Records everything the test broker delivers under cw/v1/#."""
    sub = Subscriber(broker.port)
    yield sub
    sub.close()
