"""README examples run from the repository root, as the README's relative paths assume."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT


@pytest.fixture
def in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """`protos/` and `behaviors/` as the README writes them: relative to the repository root."""
    monkeypatch.chdir(ROOT)
