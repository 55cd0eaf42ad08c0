"""docs/journal.md: the failure message of `assert_called`."""

from __future__ import annotations

import re

import pytest

from emulator import Emulator

# The block docs/journal.md shows, between its region markers.
MESSAGE = """\
# region message
expected 2 calls to acme.shop.v1.Catalog/GetProduct with request {"product_id": "42"}, got 0
2 call(s) to acme.shop.v1.Catalog/GetProduct; closest:
  #1 acme.shop.v1.Catalog/GetProduct OK 2.9ms {"productId": "41"}
      product_id: expected '42', got '41'
  #2 acme.shop.v1.Catalog/GetProduct OK 1.5ms {"productId": "43"}
      product_id: expected '42', got '43'
# endregion
"""
README = "\n".join(MESSAGE.splitlines()[1:-1])


def _durations(text: str) -> str:
    return re.sub(r" \d+(\.\d+)?ms ", " <t>ms ", text)


@pytest.mark.usefixtures("in_repo_root")
def test_assert_called_explains_the_near_misses() -> None:
    with Emulator(protos="protos/", behaviors="behaviors/") as emu:
        catalog = emu.stub("acme.shop.v1.Catalog")
        catalog.GetProduct({"product_id": "41"})
        catalog.GetProduct({"product_id": "43"})
        with pytest.raises(AssertionError) as info:
            emu.assert_called(
                "acme.shop.v1.Catalog/GetProduct", times=2, request={"product_id": "42"}
            )
    assert _durations(str(info.value)) == _durations(README)
