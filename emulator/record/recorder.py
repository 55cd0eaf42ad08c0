"""Forwarded calls as stubs: what `emulate record` writes, in the stub format.

One stub per distinct request of a method: it matches that request (every field set in it, but
those `record.ignore_fields` names), and answers what the upstream answered — the message as it
was (`replace: true`, so replay sends the same bytes), headers, trailers, the status with its
details, and the waits between messages. The same request again adds to the stub's `sequence`:
replay answers identical requests in the order they were recorded. A bidi call becomes one rule
per inbound message (`on_message`), with the messages the upstream sent before the next one.

Before anything is kept, the pseudonymizer rewrites the fields its rules name (requests and
responses alike, so the match keys and the answers join up), and secret headers are dropped.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import logging
from collections.abc import Collection, Sequence
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from emulator.contracts.model import MethodSpec, RpcKind
from emulator.errors import EmulatorError
from emulator.record.files import RecordingFiles
from emulator.record.tape import Tape

__all__ = ["Recorder", "method_fingerprint"]

log = logging.getLogger("emulator")

_DETAILS = "grpc-status-details-bin"


class Recorder:
    """Tapes → stub mappings, kept by `RecordingFiles` (made on its thread)."""

    def __init__(
        self,
        files: RecordingFiles,
        *,
        ignore_fields: Sequence[str] = (),
        pseudonymizer: Any = None,
        secret_headers: Collection[str] = (),
    ) -> None:
        self.files = files
        self._fingerprints: dict[str, tuple[MethodSpec, str]] = {}
        self.ignore = tuple(ignore_fields)
        self.pseudonymizer = pseudonymizer
        self._redacts: dict[str, bool] = {}  # field full name → a redact rule names it
        self.secrets = frozenset(h.lower() for h in secret_headers)

    def __call__(self, tape: Tape) -> None:
        """From the serving loop: the work is the writer thread's (`RecordingFiles.submit`)."""
        self.files.submit(functools.partial(self._record, tape))

    def _record(self, tape: Tape) -> None:
        try:
            name, stub = self.stub(tape)
            self.files.keep(tape.spec, name, stub)
        except EmulatorError as exc:  # (a recording file that went bad while it served)
            log.error("%s: the call could not be recorded: %s", tape.spec.name, exc)
        except Exception:  # a recording lost is said; the call it came from has its answer
            log.error("%s: the call could not be recorded", tape.spec.name, exc_info=True)

    def stub(self, tape: Tape) -> tuple[str, dict[str, Any]]:
        """(the stub's name, which its request decides; the stub) for one call."""
        spec = tape.spec
        kind = spec.kind
        # The method's answer, not the request's: an upstream without the method refuses every
        # request, so one stub of no conditions, whatever request met it first.
        unimplemented = tape.complete and tape.code is grpc.StatusCode.UNIMPLEMENTED
        matches = (
            []
            if unimplemented
            else [
                self._match(spec.input_class.DESCRIPTOR, self._dict(spec.input_class, data))
                for data in tape.requests
            ]
        )
        key = json.dumps([spec.name, matches], sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        stub: dict[str, Any] = {
            "name": f"{spec.service.rsplit('.', 1)[-1]}.{spec.method}-{digest}",
            "method": spec.name,
            "recorded": {
                "at": tape.at.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "upstream": tape.upstream,
                "messages": self._fingerprint(spec),
            },
        }
        if kind is RpcKind.STREAM_UNARY:
            if matches:
                stub["match"] = {"requests": matches}
        elif kind is not RpcKind.STREAM_STREAM and matches and matches[0]:
            stub["match"] = {"request": matches[0]}
        if unimplemented:
            stub["respond"] = {"status": self._status(tape)}
        elif kind is RpcKind.STREAM_STREAM:
            stub.update(self._bidi(tape, matches))
        else:
            stub["respond"] = self._response(tape)
        return stub["name"], stub

    # -- pieces --------------------------------------------------------------------------------

    def _fingerprint(self, spec: MethodSpec) -> str:
        known = self._fingerprints.get(spec.path)
        if known is None or known[0] is not spec:  # (a reload makes specs of its own)
            known = self._fingerprints[spec.path] = (spec, method_fingerprint(spec))
        return known[1]

    def _dict(self, cls: type[Message], data: bytes) -> dict[str, Any]:
        message = cls.FromString(data)
        if self.pseudonymizer is not None:
            self.pseudonymizer.message(message)
        # Through JSON text: plain dicts and lists (an Any gives OrderedDicts), as YAML writes.
        text = json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None)
        out: dict[str, Any] = json.loads(text)
        return out

    def _match(self, descriptor: Any, request: dict[str, Any]) -> dict[str, Any]:
        """The conditions that pick this request: each field set, by dotted path into nested
        messages (so a field never reads as an operator), but the fields ignored."""
        out: dict[str, Any] = {}
        self._flatten(descriptor, request, "", out)
        return out

    def _flatten(
        self, descriptor: Any, values: dict[str, Any], prefix: str, out: dict[str, Any]
    ) -> None:
        for name, value in values.items():
            field = descriptor.fields_by_name.get(name)
            if field is None:
                continue
            if any(fnmatch.fnmatchcase(field.full_name, p) for p in self.ignore):
                continue
            if self._redacted(field.full_name):
                continue  # no request carries `[redacted]`: as an ignored field, any value
            path = prefix + name
            nested = field.message_type
            if (
                nested is not None
                and not field.is_repeated
                and not nested.full_name.startswith("google.protobuf.")
                and isinstance(value, dict)
            ):
                self._flatten(nested, value, path + ".", out)
            else:
                out[path] = value

    def _redacted(self, field_name: str) -> bool:
        known = self._redacts.get(field_name)
        if known is None:
            kind = self.pseudonymizer.kind_of(field_name) if self.pseudonymizer else None
            known = self._redacts[field_name] = kind == "redact"
        return known

    def _response(self, tape: Tape) -> dict[str, Any]:
        spec = tape.spec
        cls = spec.output_class
        out: dict[str, Any] = {}
        outs = [(t, data) for way, t, data in tape.events if way == "out"]
        last_in = max((t for way, t, _ in tape.events if way == "in"), default=0.0)
        if spec.kind.server_streaming:
            stream = []
            previous = last_in
            for moment, data in outs:
                item: dict[str, Any] = {"message": self._dict(cls, data), "replace": True}
                wait = moment - previous
                if wait >= 0.001:
                    item["delay"] = _duration(wait)
                previous = moment
                stream.append(item)
            out["stream"] = stream
        elif outs:
            moment, data = outs[0]
            out["message"] = self._dict(cls, data)
            out["replace"] = True
            if moment - last_in >= 0.001:
                out["delay"] = _duration(moment - last_in)
        headers = self._headers(tape.headers)
        trailers = self._headers(tape.trailers)
        if headers:
            out["headers"] = headers
        if tape.code is not grpc.StatusCode.OK:
            out["status"] = self._status(tape)
            if "delay" not in out and not spec.kind.server_streaming:
                wait = _ended(tape) - last_in
                if wait >= 0.001:
                    out["delay"] = _duration(wait)
        if trailers:
            out["trailers"] = trailers
        return out

    def _bidi(self, tape: Tape, matches: list[dict[str, Any]]) -> dict[str, Any]:
        cls = tape.spec.output_class
        before: list[dict[str, Any]] = []
        rules: list[dict[str, Any]] = []
        previous = 0.0
        seen = 0
        for way, moment, data in tape.events:
            if way == "in":
                rules.append({"match": matches[seen], "reply": []})
                seen += 1
                previous = moment
                continue
            item: dict[str, Any] = {"message": self._dict(cls, data), "replace": True}
            if moment - previous >= 0.001:
                item["delay"] = _duration(moment - previous)
            previous = moment
            (rules[-1]["reply"] if rules else before).append(item)
        out: dict[str, Any] = {}
        respond: dict[str, Any] = {}
        if before:
            respond["stream"] = before
        headers, trailers = self._headers(tape.headers), self._headers(tape.trailers)
        if headers:
            respond["headers"] = headers
        if trailers:
            respond["trailers"] = trailers
        if tape.code is not grpc.StatusCode.OK:
            respond["status"] = self._status(tape)
        if respond:
            out["respond"] = respond
        if rules:
            out["on_message"] = rules
        return out

    def _status(self, tape: Tape) -> dict[str, Any]:
        status: dict[str, Any] = {"code": tape.code.name}
        if tape.details:
            status["message"] = tape.details
        raw = next((v for k, v in tape.trailers if k == _DETAILS), None)
        if isinstance(raw, bytes):
            details = _details(raw)
            if details:
                status["details"] = details
        return status

    def _headers(self, pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in self.secrets or key == _DETAILS or key.startswith(("grpc-", ":")):
                continue
            if isinstance(value, bytes):
                continue  # binary headers: the stub format writes text headers
            out.setdefault(key, value)
        return out


def _details(raw: bytes) -> list[dict[str, Any]]:
    """The google.rpc details of a status, as JSON with `@type` (unknown types are left out:
    nothing could check them when the stub loads)."""
    from google.rpc import status_pb2  # type: ignore[import-untyped]

    status = status_pb2.Status.FromString(raw)
    out = []
    for packed in status.details:
        try:
            out.append(json.loads(json_format.MessageToJson(packed)))  # plain dicts for YAML
        except (TypeError, KeyError, json_format.Error):
            log.warning(
                "a status detail of type %s was not recorded: unknown type", packed.type_url
            )
    return out


def _ended(tape: Tape) -> float:
    return max((t for _, t, _ in tape.events), default=0.0)


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def method_fingerprint(spec: MethodSpec) -> str:
    """A digest of the method's messages as the contract defines them (every message type
    they reach): a recording made against other messages can be told apart."""
    digest = hashlib.sha256(spec.name.encode())
    seen: set[str] = set()
    todo: list[Any] = [spec.input_class.DESCRIPTOR, spec.output_class.DESCRIPTOR]
    while todo:
        descriptor = todo.pop()
        if descriptor.full_name in seen:
            continue
        seen.add(descriptor.full_name)
        digest.update(descriptor.full_name.encode())
        fields: list[FieldDescriptor] = sorted(descriptor.fields, key=lambda f: f.number)
        for field in fields:
            digest.update(f"{field.number}:{field.name}:{field.type}:{_label(field)};".encode())
            if field.message_type is not None:
                todo.append(field.message_type)
            if field.enum_type is not None:
                values = ",".join(f"{v.name}={v.number}" for v in field.enum_type.values)
                digest.update(values.encode())
    return digest.hexdigest()[:16]


def _label(field: FieldDescriptor) -> str:
    return "repeated" if field.is_repeated else "single"
