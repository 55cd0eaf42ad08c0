"""Each interceptor alone, on `Call`s of the unit contract: identity, auth, faults, max_duration
and the journal. (Real clients over real sockets: tests/test_security.py, tests/test_faults.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from emulator.call import Call
from emulator.config import Config
from emulator.contracts import Contracts
from emulator.errors import RpcAbort
from emulator.faults.config import RateLimitConfig
from emulator.faults.engine import FaultInterceptor, RateLimiter
from emulator.faults.max_duration import MaxDurationInterceptor
from emulator.faults.rules import Rule, compile_rule
from emulator.journal.records import REDACTED, Journal
from emulator.security.auth import AuthInterceptor
from emulator.security.authz import Policy, ScopeRules
from emulator.security.certs import CertificateAuthority
from emulator.security.identity import IdentityInterceptor
from emulator.security.tokens import Identity, TokenVerifier
from tests.unit.conftest import SERVICE, FakeServicerContext

UNARY, BIDI = f"{SERVICE}/Unary", f"{SERVICE}/Bidi"
CLIENT_STREAM, SERVER_STREAM = f"{SERVICE}/ClientStream", f"{SERVICE}/ServerStream"
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


async def refusal(coroutine: Any) -> RpcAbort:
    with pytest.raises(RpcAbort) as refused:
        await coroutine
    return refused.value


# -- identity (mTLS) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def billing_cert() -> bytes:
    ca = CertificateAuthority()
    return ca.issue("billing", client=True, uris=["spiffe://acme/billing"]).cert_pem


def with_cert(pem: bytes | None) -> FakeServicerContext:
    return FakeServicerContext(auth={"x509_pem_cert": [pem]} if pem else {})


async def test_identity_sets_the_certificate_names_and_enforces_the_allowlist(
    call: Callable[..., Call], billing_cert: bytes
) -> None:
    identity = IdentityInterceptor({UNARY: ["billing"], BIDI: ["shipping"]})
    allowed = call("Unary", servicer_context=with_cert(billing_cert))
    await identity.before(allowed)
    assert allowed.identities == ("spiffe://acme/billing", "billing")  # URI SAN, DNS SAN, CN

    other = await refusal(identity.before(call("Bidi", servicer_context=with_cert(billing_cert))))
    assert (other.code, other.message) == (
        DENIED,
        f"client 'spiffe://acme/billing' is not allowed to call {BIDI}",
    )
    anonymous = await refusal(identity.before(call("Unary", servicer_context=with_cert(None))))
    assert (anonymous.code, anonymous.message) == (
        DENIED,
        f"{UNARY} requires a client certificate of: billing",
    )
    open_call = call("ServerStream", servicer_context=with_cert(None))
    await identity.before(open_call)  # no pattern covers it: open to any client
    assert open_call.identities == ()


async def test_identity_exempt_methods_need_no_certificate(call: Callable[..., Call]) -> None:
    identity = IdentityInterceptor({"*": ["billing"]}, exempt=[CLIENT_STREAM])
    await identity.before(call("ClientStream", servicer_context=with_cert(None)))
    refused = await refusal(identity.before(call("Unary", servicer_context=with_cert(None))))
    assert refused.code == DENIED


# -- auth (tokens, scopes, A43) -------------------------------------------------------------------


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_auth_checks_the_token_then_the_scopes(call: Callable[..., Call]) -> None:
    verifier = TokenVerifier(
        static={"s3cret": Identity("alice", frozenset({"read"}), {"team": "a"})}
    )
    auth = AuthInterceptor(
        verifier, scopes=ScopeRules({BIDI: ["write"]}), exempt=[f"{SERVICE}/Server*"]
    )
    missing = await refusal(auth.before(call("Unary")))
    assert missing.code == UNAUTHENTICATED and "missing `authorization`" in missing.message
    wrong = await refusal(auth.before(call("Unary", metadata=bearer("guess"))))
    assert (wrong.code, wrong.message) == (UNAUTHENTICATED, "unknown token")

    ok = call("Unary", metadata=bearer("s3cret"))
    await auth.before(ok)
    assert (ok.principal, dict(ok.claims)) == ("alice", {"team": "a"})

    scoped = await refusal(auth.before(call("Bidi", metadata=bearer("s3cret"))))
    assert (scoped.code, scoped.message) == (DENIED, f"{BIDI} requires scope write")

    exempt = call("ServerStream")
    await auth.before(exempt)  # no token needed
    assert exempt.principal is None


async def test_auth_policy_counts_certificate_identities_as_principals(
    call: Callable[..., Call],
) -> None:
    policy = Policy(
        {
            "name": "billing-only",
            "allow_rules": [
                {"name": "billing", "source": {"principals": ["spiffe://acme/billing"]}}
            ],
        }
    )
    auth = AuthInterceptor(TokenVerifier(), policy=policy)  # no tokens configured: policy only
    billing = call("Unary")
    billing.identities = ("spiffe://acme/billing", "billing")  # as IdentityInterceptor sets them
    await auth.before(billing)
    refused = await refusal(auth.before(call("Unary")))
    assert refused.code == DENIED and "no allow rule of policy 'billing-only'" in refused.message


# -- faults ---------------------------------------------------------------------------------------


def compiled(*faults: dict[str, Any]) -> list[Rule]:
    configs = Config.from_mapping({"faults": list(faults)}, source="test").faults
    return [compile_rule(c, f"faults[{i}]") for i, c in enumerate(configs)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def req(contracts: Contracts, name: str) -> bytes:
    return contracts.methods[f"/{UNARY}"].input_class(name=name).SerializeToString()


async def test_a_fault_rule_fires_on_the_matching_calls_its_gate_picks(
    call: Callable[..., Call],
) -> None:
    rules = compiled(
        {
            "name": "outage",
            "match": {"method": UNARY},
            "when": {"calls": [2]},
            "abort": {"code": "UNAVAILABLE"},
        }
    )
    faults = FaultInterceptor(rules, [], seed=1)
    first, second, other = call("Unary"), call("Unary"), call("Bidi")
    await faults.before(first)
    refused = await refusal(faults.before(second))
    await faults.before(other)  # another method: the rule does not see it
    assert (refused.code, refused.message) == (grpc.StatusCode.UNAVAILABLE, "fault outage")
    assert (first.faults, second.faults, other.faults) == ((), ("outage",), ())
    assert faults.stats() == {"outage": {"matched": 2, "injected": 1}}


async def test_match_request_waits_for_the_matching_message_of_a_stream(
    call: Callable[..., Call], contracts: Contracts
) -> None:
    rule = {"name": "stop", "match": {"request": {"name": "stop"}}, "abort": {"code": "ABORTED"}}
    faults = FaultInterceptor(compiled(rule), [], seed=1)

    stream = call("Bidi")
    await faults.before(stream)  # no message yet: nothing to match
    stream.requests.append(req(contracts, "go"))
    await faults.on_request(stream, 0)
    stream.requests.append(req(contracts, "stop"))
    refused = await refusal(faults.on_request(stream, 1))
    assert refused.code == grpc.StatusCode.ABORTED and stream.faults == ("stop",)

    # A unary request is there before the call starts: the rule fires in `before`.
    unary = call("Unary", requests=[req(contracts, "stop")])
    assert (await refusal(faults.before(unary))).code == grpc.StatusCode.ABORTED
    await faults.before(call("Unary", requests=[req(contracts, "go")]))
    assert faults.stats() == {"stop": {"matched": 2, "injected": 2}}


async def test_faults_keep_no_state_on_calls_no_rule_needs_the_request_of(
    call: Callable[..., Call], contracts: Contracts
) -> None:
    rules = compiled(
        {
            "name": "unary-only",
            "match": {"method": UNARY, "request": {"name": "x"}},
            "abort": {"code": "ABORTED"},
        },
        {
            "name": "tenant",
            "match": {"metadata": {"x-tenant": "acme"}, "request": {"name": "x"}},
            "abort": {"code": "ABORTED"},
        },
    )
    faults = FaultInterceptor(rules, [], seed=1)
    stream = call("Bidi", requests=[req(contracts, "x")])  # another tenant: no rule waits
    await faults.before(stream)
    await faults.on_request(stream, 0)
    assert stream.slots is None and stream.faults == ()


async def test_a_stream_fault_cuts_the_stream_and_holds_its_slot_until_the_end(
    call: Callable[..., Call],
) -> None:
    rule = {
        "name": "cut",
        "match": {"method": SERVER_STREAM},
        "stream": {"abort_after": 2},
        "abort": {"code": "ABORTED", "message": "cut"},
    }
    faults = FaultInterceptor(compiled(rule), [], seed=1, max_active=1)
    first = call("ServerStream")
    await faults.before(first)
    await faults.before_response(first, 0)
    await faults.before_response(first, 1)
    cut = await refusal(faults.before_response(first, 2))
    assert (cut.code, cut.message) == (grpc.StatusCode.ABORTED, "cut")

    during = call("ServerStream")  # the first stream still holds the one active-fault slot
    await faults.before(during)
    await faults.before_response(during, 5)
    assert during.faults == ()
    faults.after(during)
    faults.after(first)  # over: the slot is free again
    after = call("ServerStream")
    await faults.before(after)
    assert after.faults == ("cut",)


async def test_a_delay_past_the_deadline_ends_deadline_exceeded(
    call: Callable[..., Call],
) -> None:
    rule = {"name": "slow", "match": {"method": UNARY}, "delay": {"fixed": "60s"}}
    faults = FaultInterceptor(compiled(rule), [], seed=1)
    late = call("Unary", deadline=time.time() - 1)  # sleeps no longer than the time left: none
    assert (await refusal(faults.before(late))).code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_rate_limit_refuses_past_its_burst_until_the_clock_refills_it(
    call: Callable[..., Call],
) -> None:
    clock = FakeClock()
    limit = RateLimiter(RateLimitConfig(name="ping", rps=2, burst=2), 0, clock)
    faults = FaultInterceptor([], [limit], seed=1, clock=clock)
    await faults.before(call("Unary"))
    await faults.before(call("Unary"))
    limited = await refusal(faults.before(call("Unary")))
    assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited.trailers == {"grpc-retry-pushback-ms": "500"}  # one token at 2 a second
    clock.now += 0.5
    await faults.before(call("Unary"))


# -- max_duration ---------------------------------------------------------------------------------


async def test_max_duration_gives_limited_methods_their_budget(
    call: Callable[..., Call], contracts: Contracts
) -> None:
    budgets = MaxDurationInterceptor({UNARY: 0.5, "*/ClientStream": 2})
    assert budgets
    limited, streamed, free = call("Unary"), call("ClientStream"), call("Bidi")
    for one in (limited, streamed, free):
        await budgets.before(one)
    assert limited.budget == (0.5, f"{UNARY} ran longer than its max_duration of 0.5s")
    assert streamed.budget == (2, f"{CLIENT_STREAM} ran longer than its max_duration of 2s")
    assert free.budget is None
    assert not MaxDurationInterceptor({})  # left out of the chain


# -- the journal ----------------------------------------------------------------------------------


def finished(call: Callable[..., Call], *, size: int = 2, **extra: Any) -> Call:
    done = call("Unary", requests=[b"\x0a" + bytes([size - 2]) + b"x" * (size - 2)], **extra)
    done.code, done.details = grpc.StatusCode.NOT_FOUND, "gone"
    return done


def test_the_journal_records_calls_with_secrets_redacted(call: Callable[..., Call]) -> None:
    journal = Journal(secrets=["X-Session"])
    metadata = (("authorization", "Bearer t"), ("x-session", "s"), ("x-tenant", "acme"))
    journal.after(finished(call, size=5, metadata=metadata))
    (record,) = journal.records()
    assert (record.index, record.method, record.code) == (1, UNARY, grpc.StatusCode.NOT_FOUND)
    assert record.request.name == "xxx"
    assert record.metadata == (
        ("authorization", REDACTED),
        ("x-session", REDACTED),
        ("x-tenant", "acme"),
    )


def test_the_journal_keeps_the_newest_calls_within_its_limits(call: Callable[..., Call]) -> None:
    by_count = Journal(limit=2)
    for _ in range(3):
        by_count.after(finished(call))
    assert [r.index for r in by_count.records()] == [2, 3]

    by_bytes = Journal(max_bytes=25)
    for _ in range(3):
        by_bytes.after(finished(call, size=10))
    assert [r.index for r in by_bytes.records()] == [2, 3] and by_bytes.kept_bytes == 20
    by_bytes.after(finished(call, size=40))  # over the limit alone: still kept, as the newest
    assert [r.index for r in by_bytes.records()] == [4]


def test_the_journal_ignores_calls_from_before_a_clear(call: Callable[..., Call]) -> None:
    journal = Journal()
    journal.after(finished(call))
    earlier = finished(call)
    earlier.started = time.time() - 1  # began in the previous test, ends after the reset
    journal.clear()
    journal.after(earlier)
    journal.after(finished(call))
    assert [r.index for r in journal.records()] == [1]  # numbering restarts too
