import pytest

from hil.model.predict import _effect


@pytest.fixture(autouse=True)
def _fresh_effects():
    """Each test computes its cells afresh: a cell cached by an earlier test would hide what
    this test exercises (and a mutation test would not see it run)."""
    _effect.cache_clear()
    yield
