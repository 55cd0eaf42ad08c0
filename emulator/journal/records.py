"""The call journal: every call recorded, queried and verified, with near-miss reports.

    emu.calls("acme.shop.v1.Catalog/GetProduct").last.request.product_id
    emu.assert_called("acme.shop.v1.Catalog/GetProduct", times=2, request={"product_id": "42"})

Records keep raw bytes and are built and decoded on first access, so journalling costs the call
path next to nothing. Secret headers are redacted in every record a query returns.

Memory is bounded three ways: by calls (`limit`), by the message bytes all kept calls hold
(`max_bytes`; the newest call is kept whatever its size), and per stream, whose record keeps its
first and last messages and counts the rest (`request_count`, `response_count`).
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
import typing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias, TypeVar, overload

import grpc
from google.protobuf.message import Message

from emulator.call import Call, Metadata, NearMiss, first_value
from emulator.chain import Interceptor
from emulator.contracts.generated import generated_class
from emulator.contracts.model import MethodSpec
from emulator.headers import Headers
from emulator.journal.matching import message_text

__all__ = ["DEFAULT_MAX_BYTES", "REDACTED", "SECRET_HEADERS", "CallList", "CallRecord", "Journal"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024

M = TypeVar("M", bound=Message)

# What the journal keeps of a finished call, until a read makes a CallRecord of it:
# (number of the method spec, metadata, trailers, peer, status code number, details, started,
# duration, faults, requests, responses, request count, response count, answered by, near
# misses, violations): only strings, bytes, numbers and tuples of them (near misses: rarely),
# which the garbage collector stops tracking.
_Kept: TypeAlias = tuple[Any, ...]
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_NUMBERS = {code: number for number, code in _CODES.items()}
_OK = grpc.StatusCode.OK

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)


class CallRecord:
    """One finished call. Read-only; `request`/`response` are the first and last messages.

    `metadata` (the request headers) and `trailers` are `Headers`: read-only mappings from each
    key to its first value, with `get_all(key)` for every value; secret headers are redacted.

    `requests`/`responses` are the messages kept: all of a unary call or short stream, the first
    and last `journal.keep_messages` of a longer one; `request_count`/`response_count` count them
    all, so a stream dropped `request_count - len(requests)` messages from its middle.
    """

    __slots__ = (
        "_decoded",
        "_input",
        "_output",
        "_raw_requests",
        "_raw_responses",
        "answered_by",
        "code",
        "details",
        "duration",
        "exported",
        "faults",
        "index",
        "metadata",
        "method",
        "near_misses",
        "peer",
        "request_count",
        "response_count",
        "started_at",
        "trailers",
        "violations",
    )

    def __init__(self, kept: _Kept, index: int, secrets: frozenset[str], spec: MethodSpec) -> None:
        (_, metadata, trailers, peer, code, details, started, duration, faults) = kept[:9]
        self.index = index  # position in the journal since the last reset, from 1
        self.method = spec.name
        self.metadata = Headers(_redact(metadata, secrets))
        self.trailers = Headers(_redact(trailers, secrets))
        self.peer: str = peer
        self.code: grpc.StatusCode = _CODES[code]
        self.details: str = details
        self.started_at = datetime.datetime.fromtimestamp(started, datetime.UTC)
        self.duration: float = duration
        self.faults: tuple[str, ...] = faults  # fault rules that fired
        self._input = spec.input_class
        self._output = spec.output_class
        self._raw_requests: tuple[bytes, ...] = kept[9]
        self._raw_responses: tuple[bytes, ...] = kept[10]
        self.request_count: int = kept[11]  # every message, kept or not
        self.response_count: int = kept[12]
        # `stub NAME`, `behaviour Class.Method at file:line`, `override ...`, `default`.
        self.answered_by: str = kept[13]
        # A call to a method with stubs that none matched: the closest, and why not.
        self.near_misses: tuple[NearMiss, ...] = kept[14]
        # The validation rules its messages broke (`request.name: is required`): refused ones
        # with `validation.requests: enforce`, let through with `report`.
        self.violations: tuple[str, ...] = kept[15] if len(kept) > 15 else ()
        self._decoded: tuple[tuple[Message, ...], tuple[Message, ...]] | None = None
        # Forms of the record other modules derive and keep (the admin API's encoded record):
        # a record never changes, so neither do they.
        self.exported: dict[object, Any] | None = None

    def _decode(self) -> tuple[tuple[Message, ...], tuple[Message, ...]]:
        if self._decoded is None:
            # As the user's generated classes when the process has imported matching ones, so
            # `isinstance` and `==` with the test's own messages hold; decoded once, when first
            # read (a module imported after that read does not change the record).
            requests = generated_class(self._input) or self._input
            responses = generated_class(self._output) or self._output
            self._decoded = (
                tuple(_parse(requests, r) for r in self._raw_requests),
                tuple(_parse(responses, r) for r in self._raw_responses),
            )
        return self._decoded

    @property
    def requests(self) -> tuple[Message, ...]:
        return self._decode()[0]

    @property
    def responses(self) -> tuple[Message, ...]:
        return self._decode()[1]

    @property
    def raw_requests(self) -> tuple[bytes, ...]:
        """The request messages kept, as the bytes the client sent."""
        return self._raw_requests

    @property
    def raw_responses(self) -> tuple[bytes, ...]:
        return self._raw_responses

    @property
    def request_type(self) -> type[Message]:
        """The method's request class (of the contracts the call was served with)."""
        return self._input

    @property
    def response_type(self) -> type[Message]:
        return self._output

    @property
    def request(self) -> Message | None:
        return self.requests[0] if self.requests else None

    @property
    def response(self) -> Message | None:
        return self.responses[-1] if self.responses else None

    def request_as(self, cls: type[M]) -> M | None:
        """The first request as your own generated class (`GetProductRequest` from your
        `_pb2` module), so that `==` and `isinstance` work with your messages."""
        return _converted(self.request, cls, self._input, self.method, "request")

    def response_as(self, cls: type[M]) -> M | None:
        """The last response as your own generated class; see `request_as`."""
        return _converted(self.response, cls, self._output, self.method, "response")

    def requests_as(self, cls: type[M]) -> list[M]:
        """Every request message, in order, as your own generated class."""
        return [_as(m, cls, self._input, self.method, "request") for m in self.requests]

    def responses_as(self, cls: type[M]) -> list[M]:
        """Every response message, in order, as your own generated class."""
        return [_as(m, cls, self._output, self.method, "response") for m in self.responses]

    @property
    def ok(self) -> bool:
        return bool(self.code == grpc.StatusCode.OK)

    def header(self, name: str) -> str | bytes | None:
        """The first value of a request header (redacted if secret): `metadata.get(name)`."""
        return self.metadata.get(name)

    def summary(self) -> str:
        """One line: `#3 acme.shop.v1.Catalog/GetProduct OK 1.2ms {"productId": "p1"}`."""
        status = self.code.name + (f" ({self.details})" if self.details else "")
        first = message_text(self.request, limit=120) if self.request is not None else ""
        return f"#{self.index} {self.method} {status} {self.duration * 1000:.1f}ms {first}".strip()

    def __repr__(self) -> str:
        return f"<CallRecord {self.summary()}>"


class CallList:
    """Calls, oldest first, with respx-style helpers; indexes, slices and iterates like a list.

    (Not a `Sequence`: its `count` is a number, as in respx, not `Sequence.count(value)`.)"""

    def __init__(self, records: Iterable[CallRecord]) -> None:
        self._records = list(records)

    @overload
    def __getitem__(self, index: int) -> CallRecord: ...
    @overload
    def __getitem__(self, index: slice) -> CallList: ...
    def __getitem__(self, index: int | slice) -> CallRecord | CallList:
        if isinstance(index, slice):
            return CallList(self._records[index])
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self._records)

    @property
    def count(self) -> int:
        return len(self._records)

    @property
    def called(self) -> bool:
        return bool(self._records)

    @property
    def last(self) -> CallRecord | None:
        return self._records[-1] if self._records else None

    @property
    def first(self) -> CallRecord | None:
        return self._records[0] if self._records else None

    @property
    def requests(self) -> list[Message]:
        """The first request message of each call."""
        return [r.request for r in self._records if r.request is not None]

    def filter(
        self,
        request: Mapping[str, Any] | Message | None = None,
        metadata: Mapping[str, str] | None = None,
        code: grpc.StatusCode | None = None,
    ) -> CallList:
        """Calls whose request contains `request` (partial, by field; or equals a message of
        any generated module) and whose headers include `metadata`."""
        from emulator.journal.matching import differences

        return CallList(
            r
            for r in self._records
            if (code is None or r.code == code)
            and not differences(r.request, r.metadata, request, metadata)
        )

    def __repr__(self) -> str:
        return f"<CallList {len(self._records)} calls>"

    def describe(self) -> str:
        """One line per call, for failure messages and test reports; a call no stub matched
        is followed by the closest stubs and why each did not match."""
        lines = []
        for record in self._records:
            lines.append(record.summary())
            lines.extend(f"    no stub matched; close: {miss}" for miss in record.near_misses)
        return "\n".join(lines) or "(no calls)"


class Journal(Interceptor):
    """Keeps the last `limit` calls, and no more than `max_bytes` of their messages (oldest
    dropped, the newest always kept); safe to read from any thread."""

    def __init__(
        self,
        limit: int = 10_000,
        secrets: Iterable[str] = (),
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        # Entries are (index, bytes, what a record needs); a read turns them into CallRecords
        # once, so the call path pays for one tuple and an append.
        self._entries: deque[tuple[int, int, _Kept | CallRecord]] = deque()
        # Each method spec once (by identity: a swapped snapshot has specs of its own, whose
        # message types may differ under the same path), kept apart so that entries hold only
        # strings, bytes and numbers: an entry names its spec by position.
        self._spec_numbers: dict[int, int] = {}
        self._specs: list[MethodSpec] = []
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0  # message bytes the entries hold
        self._lock = threading.Lock()
        self._secrets = SECRET_HEADERS | {s.lower() for s in secrets}
        self._counter = itertools.count(1)
        self._cleared_at = 0.0
        self.clears = 0  # how many times clear() has run: indexes start again at 1 after it
        self.dropped = 0  # calls dropped to keep within the bounds, since the start
        self.settle: Callable[[], None] | None = None
        # Given each call's record as it is kept (`journal.out`, the admin API's WatchCalls);
        # none on the usual path, where no record is built until a test reads the journal.
        self.record_listeners: list[Callable[[CallRecord], None]] = []

    @property
    def size(self) -> int:
        """Calls kept now."""
        return len(self._entries)

    @property
    def kept_bytes(self) -> int:
        """Message bytes the kept calls hold."""
        return self._bytes

    def after(self, call: Call) -> None:
        requests, responses = call.requests, call.responses
        size = requests.kept_bytes + responses.kept_bytes
        # Plain values in a tuple, not the Call: the garbage collector stops tracking tuples of
        # strings, bytes and numbers, so thousands of kept calls cost its collections next to
        # nothing (kept as Call objects they cost 15 µs a call), and the Call is freed now.
        spec = call.spec
        number = self._spec_numbers.get(id(spec))
        if number is None:
            number = self._number(spec)
        kept: _Kept = (
            number,
            call.metadata,
            call.trailers,
            call.peer,
            # (OK by identity: an enum's __hash__ is a Python call)
            0 if call.code is _OK else _NUMBERS[call.code],
            call.details,
            call.started,
            call.duration,
            call.faults,
            requests.kept(),
            responses.kept(),
            requests.count,
            responses.count,
            call.answered_by,
            call.near_misses,
            call.violations,
        )
        with self._lock:  # uncontended but for reads and clear(): index and entry stay together
            if call.started < self._cleared_at:
                return  # a call from before the last reset (an earlier test) finishing late
            entries = self._entries
            index = next(self._counter)
            entries.append((index, size, kept))
            self._bytes += size
            while len(entries) > self._limit or (
                self._bytes > self._max_bytes and len(entries) > 1
            ):
                self._bytes -= entries.popleft()[1]
                self.dropped += 1
        if self.record_listeners:
            record = CallRecord(kept, index, self._secrets, self._specs[number])
            for tell in list(self.record_listeners):
                tell(record)

    def _number(self, spec: MethodSpec) -> int:
        with self._lock:
            number = self._spec_numbers.get(id(spec))
            if number is None:
                number = self._spec_numbers[id(spec)] = len(self._specs)
                self._specs.append(spec)  # held, so its id is never reused
            return number

    def records(self, since: int = 0) -> list[CallRecord]:
        """The calls kept, oldest first; with `since`, those after that index only."""
        if self.settle is not None:
            self.settle()  # calls the client has seen end (deadlines) are in before we read
        with self._lock:
            entries = self._entries
            if any(type(entry[2]) is tuple for entry in entries):
                specs = self._specs
                entries = deque(
                    (index, size, CallRecord(kept, index, self._secrets, specs[kept[0]]))
                    if type(kept) is tuple
                    else (index, size, kept)
                    for index, size, kept in entries
                )
                self._entries = entries
            if since:
                start = len(entries)
                while start and entries[start - 1][0] > since:
                    start -= 1
                tail = itertools.islice(entries, start, None)
                return [typing.cast(CallRecord, entry[2]) for entry in tail]
            return [typing.cast(CallRecord, entry[2]) for entry in entries]

    @property
    def last_index(self) -> int:
        """The index of the newest call kept (0 for none): whether calls came, cheaply."""
        entries = self._entries
        return entries[-1][0] if entries else 0

    def build(self, count: int, since: int = 0) -> list[CallRecord]:
        """Up to `count` records of the calls after index `since`, oldest first, making those
        not read yet as a read would (idle-time work, so that a later read finds them made)."""
        with self._lock:
            entries = self._entries
            # Indexes grow along the deque, and calls read are a prefix of it (a read makes
            # them all; calls come at the end), so making them in order keeps it one.
            low, high = 0, len(entries)
            while low < high:
                middle = (low + high) // 2
                if entries[middle][0] <= since:
                    low = middle + 1
                else:
                    high = middle
            out = []
            for position in range(low, min(low + count, len(entries))):
                index, size, entry = entries[position]
                if type(entry) is tuple:
                    entry = CallRecord(entry, index, self._secrets, self._specs[entry[0]])
                    entries[position] = (index, size, entry)
                out.append(typing.cast(CallRecord, entry))
            return out

    def drop(self, header: str, value: str) -> None:
        """Forget the calls whose `header` is `value` (one session's, at its reset)."""

        def tagged(entry: _Kept | CallRecord) -> bool:
            if type(entry) is tuple:
                return first_value(entry[1], header) == value
            return typing.cast(CallRecord, entry).metadata.get(header) == value

        with self._lock:
            kept = deque(e for e in self._entries if not tagged(e[2]))
            self._bytes = sum(e[1] for e in kept)
            self._entries = kept

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._counter = itertools.count(1)
            self.clears += 1
            self._cleared_at = time.time()


def _redact(metadata: Metadata, secrets: frozenset[str]) -> Metadata:
    if secrets.isdisjoint([k for k, _ in metadata]):  # (a list: no generator to drive)
        return metadata
    return tuple((k, REDACTED if k in secrets else v) for k, v in metadata)


def _parse(cls: type[Message], data: bytes) -> Message:
    try:
        return cls.FromString(data)
    except Exception:  # bytes the server refused (INVALID_ARGUMENT) are kept, not decoded
        return cls()


def _converted(
    message: Message | None, cls: type[M], own: type[Message], method: str, what: str
) -> M | None:
    return None if message is None else _as(message, cls, own, method, what)


def _as(message: Message, cls: type[M], own: type[Message], method: str, what: str) -> M:
    """`message` re-read as `cls` through its wire bytes: classes of different generated modules
    (descriptor pools) never compare equal, even for the same type."""
    descriptor = getattr(cls, "DESCRIPTOR", None)
    if not (isinstance(cls, type) and issubclass(cls, Message)) or descriptor is None:
        raise TypeError(f"{what}_as() takes a generated message class, not {cls!r}")
    expected = own.DESCRIPTOR.full_name
    if descriptor.full_name != expected:
        raise TypeError(
            f"{what}_as({cls.__name__}): {method} {what}s are {expected}, "
            f"not {descriptor.full_name}"
        )
    if type(message) is cls:
        return message
    return cls.FromString(message.SerializeToString())
