"""docs/defaults.md, "Pinned defaults and enums": its examples, read from the page and run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emulator import Emulator
from tests.conftest import ROOT, TEST_PROTOS, emulate

PAGE = ROOT / "docs" / "defaults.md"


def _blocks(language: str) -> list[str]:
    """The fenced blocks of the section written in `language` ("" for plain text)."""
    section = PAGE.read_text().split("## Pinned defaults and enums", 1)[1]
    found: list[tuple[str, list[str]]] = []
    inside = False
    for line in section.splitlines(keepends=True):
        if line.startswith("```"):
            if not inside:
                found.append((line[3:].strip(), []))
            inside = not inside
        elif inside:
            found[-1][1].append(line)
    return ["".join(lines) for lang, lines in found if lang == language]


@pytest.mark.usefixtures("in_repo_root")
def test_the_yaml_example_pins_status_and_currency() -> None:
    (block,) = _blocks("yaml")
    config = yaml.safe_load(block)
    assert config["defaults"]["enums"] == "first"
    with Emulator(protos="protos/", **config) as emu:
        orders = emu.stub("acme.shop.v1.Orders")
        for key in ("a", "b", "c"):
            order = orders.CreateOrder({"idempotency_key": key})
            assert order.status == 2  # PAID
            assert order.total.currency_code == "EUR"


@pytest.mark.usefixtures("in_repo_root")
def test_the_python_example_runs() -> None:
    # region pinned
    from emulator import Emulator

    pins = {"acme.shop.v1.Order.status": "PAID", "acme.common.v1.Money.currency_code": "EUR"}
    with Emulator(protos="protos/", defaults={"fields": pins}) as emu:
        orders = emu.stub("acme.shop.v1.Orders")
        for key in ("3f6c1c0e-a5b1-4c5e-9d1b-0a7e6c2f9b11", "9b2d7e4a-1f3c-4a8e-b6d5-c4e2a1f08d37"):
            order = orders.CreateOrder({"idempotency_key": key})
            assert order.status == 2  # PAID, whatever the request
            assert order.total.currency_code == "EUR"  # Money, wherever it appears
            assert {item.unit_price.currency_code for item in order.line_items} == {"EUR"}
    # endregion


def test_the_error_shown_is_the_error_emulate_gives(tmp_path: Path) -> None:
    (shown,) = _blocks("")
    (tmp_path / "emulator.yaml").write_text(
        f"protos: [{TEST_PROTOS / 'payments'}]\n"
        "seed: 3\n"
        "defaults:\n"
        "  enums: seeded\n"
        "  fields:\n"
        "    payments.v1.Reservation.amount: {currencyCode: EUR, units: 12}\n"
        "    payments.v1.Reservation.state: HELDD\n"
    )
    result = emulate("check", "--config", "emulator.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == shown
