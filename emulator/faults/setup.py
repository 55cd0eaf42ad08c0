"""The faults interceptor built from the configuration, its rules checked against the contracts."""

from __future__ import annotations

from emulator.clock import Clock
from emulator.config import Config
from emulator.contracts.model import Contracts
from emulator.contracts.patterns import method_matches
from emulator.errors import ConfigError
from emulator.faults.config import FaultConfig
from emulator.faults.engine import FaultInterceptor, rate_limiters
from emulator.faults.rules import compile_rule
from emulator.journal.matching import message_differences

__all__ = ["build_faults", "check_request_match"]


def build_faults(config: Config, *, clock: Clock | None = None) -> FaultInterceptor:
    """The faults interceptor; windows and rate limits count in `clock`'s monotonic seconds.
    Its rules are checked against the contracts with each snapshot (`check_snapshot`)."""
    monotonic = (clock or Clock()).monotonic
    rules = [compile_rule(c, f"faults[{i}] ({c.name})") for i, c in enumerate(config.faults)]
    return FaultInterceptor(
        rules,
        rate_limiters(config.rate_limits, monotonic),
        seed=config.seed,
        header_faults=config.header_faults,
        max_active=config.max_active_faults,
        clock=monotonic,
    )


def check_request_match(rule: FaultConfig, contracts: Contracts, where: str) -> None:
    """A misspelt field in `match.request` would make a rule silently never fire: refuse it."""
    if not rule.match.request:
        return
    for path, spec in contracts.methods.items():
        if not method_matches(rule.match.method, path):
            continue
        for problem in message_differences(spec.input_class(), rule.match.request):
            if "has no field" in problem:
                raise ConfigError(f"{where}: {problem} (method {spec.name})")
