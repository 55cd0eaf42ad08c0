"""The admin API as JSON over HTTP (`admin.http_port`), for `curl` and test frameworks that
speak HTTP: the operation table's routes, on the emulator's own event loop (aiohttp).

    POST   /admin/v1/stubs        {"stubs": [{"method": ..., "respond": ...}]}  or {"text": ...}
    GET    /admin/v1/calls?method=acme.shop.v1.Catalog/*&session=s1&page_size=50
    POST   /admin/v1/verify       {"method": ..., "request": {...}, "times": 1}
    POST   /admin/v1/reset        {"session": "s1"}

A request is the operation's message of admin.proto in protobuf's JSON mapping: the body for
POST, the query for GET and DELETE (`metadata.x-tenant=acme` for a map entry, a repeated field
given more than once). Answers are the response message as JSON; WatchCalls is a stream of JSON
lines. Errors answer 400 (INVALID_ARGUMENT, with `field_violations`), 401, 403, 404, 409 (a
reload that does not load) or 501, with
`{"code", "message"}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from emulator._aiohttp import serve_app
from emulator.admin.descriptor import pb
from emulator.admin.operations import OPERATIONS, AdminError, Operation, Operations, to_json
from emulator.admin.service import AdminHandler

__all__ = ["start_http"]

log = logging.getLogger("emulator")

_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,  # a reload that does not load
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}
MAX_BODY = 64 * 1024 * 1024  # as a stub file may be


async def start_http(
    operations: Operations, handler: AdminHandler, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Serve the routes on `host:port` (0: a free port); the runner and the port bound."""
    app = web.Application(client_max_size=MAX_BODY)
    for op in OPERATIONS:
        app.router.add_route(op.verb, op.route, _route(op, operations, handler))
    app.router.add_route("*", "/{tail:.*}", _unknown)
    return await serve_app(app, host, port, "admin.http_port")


def _error(error: AdminError) -> web.Response:
    body: dict[str, Any] = {"code": error.code.name, "message": error.message}
    if error.field:
        body["field_violations"] = [{"field": error.field, "description": error.message}]
    return web.json_response(body, status=_STATUS.get(error.code, 500))


async def _unknown(request: web.Request) -> web.Response:
    routes = sorted({f"{op.verb} {op.route}" for op in OPERATIONS})
    return web.json_response(
        {
            "code": "NOT_FOUND",
            "message": f"no admin route {request.method} {request.path}",
            "routes": routes,
        },
        status=404,
    )


def _route(
    op: Operation, operations: Operations, handler: AdminHandler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    header = operations.control.session_header
    guard = handler._guard

    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            guard.admit(
                [(k.lower(), v) for k, v in request.headers.items()], ()
            )  # (no client certificates over HTTP: a token, or a loopback address)
            message = await _parse(op, request)
        except AdminError as error:
            return _error(error)
        session = request.headers.get(header) or None
        if op.streaming:
            return await _stream(request, operations, message, session)
        try:
            answer = await operations.run(op.name, message, session)
        except AdminError as error:
            return _error(error)
        return web.json_response(to_json(answer))

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await serve(request)
        except Exception as exc:  # a bug of ours: a JSON answer, and the server keeps serving
            log.error("admin %s %s failed", request.method, request.path, exc_info=exc)
            message = f"the admin API failed: {type(exc).__name__}: {exc}"
            return _error(AdminError(grpc.StatusCode.INTERNAL, message))

    return guarded


async def _parse(op: Operation, request: web.Request) -> Any:
    cls = getattr(pb, op.request)
    if request.method in ("POST", "PUT"):
        text = await request.text()
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise AdminError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                "body",
            ) from None
        if not isinstance(data, dict):  # ParseDict would name a list item as a field
            raise AdminError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the body must be a JSON object (a {cls.DESCRIPTOR.name}), "
                f"not {type(data).__name__}",
                "body",
            )
    else:
        data = _from_query(cls, request)
    try:
        return json_format.ParseDict(data, cls())
    except json_format.ParseError as exc:
        raise AdminError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"not a {cls.DESCRIPTOR.name}: {exc}",
            _field_of(str(exc)),
        ) from None


def _from_query(cls: Any, request: web.Request) -> dict[str, Any]:
    """Query parameters as the message's JSON: typed by its fields, `map.key=value` entries."""
    fields = {f.name: f for f in cls.DESCRIPTOR.fields}
    fields.update({f.json_name: f for f in cls.DESCRIPTOR.fields})
    data: dict[str, Any] = {}
    for key, value in request.query.items():
        name, _, entry = key.partition(".")
        field = fields.get(name)
        if field is None:
            raise AdminError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{cls.DESCRIPTOR.name} has no field {name!r}; it has "
                + ", ".join(f.name for f in cls.DESCRIPTOR.fields),
                name,
            )
        if entry and field.message_type is not None and field.message_type.GetOptions().map_entry:
            data.setdefault(field.name, {})[entry] = value
        elif field.is_repeated:
            data.setdefault(field.name, []).append(value)
        elif field.message_type is not None:  # a Struct (a partial request) as JSON text
            try:
                data[field.name] = json.loads(value)
            except json.JSONDecodeError:
                raise AdminError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{name}: not JSON: {value!r}", name
                ) from None
        elif field.type == FieldDescriptor.TYPE_BOOL:
            data[field.name] = value.lower() in ("1", "true", "yes", "")
        else:
            data[field.name] = value  # numbers as text: the JSON mapping takes them
    return data


def _field_of(text: str) -> str:
    # json_format names the field as `Failed to parse <name> field: ...`.
    marker = "Failed to parse "
    if marker in text:
        return text.split(marker, 1)[1].split(" ", 1)[0]
    return ""


async def _stream(
    request: web.Request, operations: Operations, message: Any, session: str | None
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    try:
        operations.check_watch(message)  # a bad method pattern: a 400, not a broken stream
    except AdminError as error:
        return _error(error)
    watch = operations.watch(message, session)
    await response.prepare(request)
    try:
        async for record in watch:
            line = json.dumps(to_json(record), separators=(",", ":")) + "\n"
            await response.write(line.encode())
    except (ConnectionResetError, RuntimeError):
        pass  # the client went away
    finally:
        await watch.aclose()
    return response
