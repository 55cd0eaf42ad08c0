"""A real service to record and proxy: a plain grpc.aio server with its own implementation of
the bundled contracts (not the emulator), on 127.0.0.1, on an event loop of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from emulator.contracts import load_contracts
from tests.conftest import PROTOS

__all__ = ["Upstream", "running_upstream"]


class Upstream:
    """What it was asked (`seen`: method → requests), so tests can tell a forwarded call."""

    def __init__(self) -> None:
        self.contracts = load_contracts([PROTOS])
        self.seen: dict[str, list[Any]] = {}
        self.metadata: dict[str, list[tuple[tuple[str, Any], ...]]] = {}
        self.cancelled = threading.Event()
        self.port = 0

    def cls(self, name: str) -> Any:
        return self.contracts.method(name)

    # -- the implementation ---------------------------------------------------------------------

    def _note(self, name: str, request: Any, context: Any) -> None:
        self.seen.setdefault(name, []).append(request)
        self.metadata.setdefault(name, []).append(tuple(context.invocation_metadata()))

    async def get_product(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._note("GetProduct", request, context)
        spec = self.cls("acme.shop.v1.Catalog/GetProduct")
        if request.product_id == "missing":
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.ResourceInfo(
                    resource_type="product", resource_name="missing", description="no such"
                )
            )
            status = status_pb2.Status(
                code=grpc.StatusCode.NOT_FOUND.value[0], message="no product missing"
            )
            status.details.append(detail)
            await context.send_initial_metadata((("x-upstream", "real"),))
            await context.abort_with_status(rpc_status.to_status(status))
        if request.product_id == "unavailable":  # the service's own UNAVAILABLE: an answer
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again later")
        if request.product_id == "slow":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        await context.send_initial_metadata((("x-upstream", "real"),))
        context.set_trailing_metadata((("x-served-by", "upstream-1"),))
        count = len(self.seen["GetProduct"])
        return spec.output_class(
            product_id=request.product_id,
            name=f"Real {request.product_id}",
            tags=["real", str(count)],
            stock_count=7,
        )

    async def list_products(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self._note("ListProducts", request, context)
        spec = self.cls("acme.shop.v1.Catalog/ListProducts")
        for n in range(3):
            yield spec.output_class(product_id=f"{request.category_id}-{n}", name=f"item {n}")
        context.set_trailing_metadata((("x-count", "3"),))

    async def upload(self, requests: AsyncIterator[Any], context: Any) -> Any:
        spec = self.cls("acme.shop.v1.Orders/UploadLineItems")
        items = [item async for item in requests]
        self._note("UploadLineItems", items, context)
        return spec.output_class(
            item_count=len(items), total_quantity=sum(i.quantity for i in items)
        )

    async def chat(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        spec = self.cls("acme.shop.v1.Orders/Chat")
        async for message in requests:
            self._note("Chat", message, context)
            yield spec.output_class(order_id=message.order_id, text=message.text.upper())
            yield spec.output_class(order_id=message.order_id, text=f"{len(message.text)}")

    async def create_order(self, request: Any, context: Any) -> Any:
        self._note("CreateOrder", request, context)
        spec = self.cls("acme.shop.v1.Orders/CreateOrder")
        order = spec.output_class(order_id="6f1c2b7e-3d4a-4e5f-8a9b-0c1d2e3f4a5b")
        order.customer.customer_id = request.customer_id
        order.customer.email = f"{request.customer_id}@real-mail.com"
        order.customer.phone_number = "+44 20 7946 0958"
        order.customer.first_name = "Ada"
        return order

    def handlers(self) -> grpc.GenericRpcHandler:
        def unary(name: str, func: Any) -> Any:
            spec = self.cls(name)
            return grpc.unary_unary_rpc_method_handler(
                func,
                request_deserializer=spec.input_class.FromString,
                response_serializer=spec.output_class.SerializeToString,
            )

        catalog = {
            "GetProduct": unary("acme.shop.v1.Catalog/GetProduct", self.get_product),
            "ListProducts": grpc.unary_stream_rpc_method_handler(
                self.list_products,
                request_deserializer=self.cls(
                    "acme.shop.v1.Catalog/ListProducts"
                ).input_class.FromString,
                response_serializer=self.cls(
                    "acme.shop.v1.Catalog/ListProducts"
                ).output_class.SerializeToString,
            ),
        }
        chat = self.cls("acme.shop.v1.Orders/Chat")
        upload = self.cls("acme.shop.v1.Orders/UploadLineItems")
        orders = {
            "CreateOrder": unary("acme.shop.v1.Orders/CreateOrder", self.create_order),
            "UploadLineItems": grpc.stream_unary_rpc_method_handler(
                self.upload,
                request_deserializer=upload.input_class.FromString,
                response_serializer=upload.output_class.SerializeToString,
            ),
            "Chat": grpc.stream_stream_rpc_method_handler(
                self.chat,
                request_deserializer=chat.input_class.FromString,
                response_serializer=chat.output_class.SerializeToString,
            ),
        }
        return _Handlers(
            {
                **{f"/acme.shop.v1.Catalog/{k}": v for k, v in catalog.items()},
                **{f"/acme.shop.v1.Orders/{k}": v for k, v in orders.items()},
            }
        )


class _Handlers(grpc.GenericRpcHandler):
    def __init__(self, methods: dict[str, Any]) -> None:
        self.methods = methods

    def service(self, handler_call_details: Any) -> Any:
        return self.methods.get(handler_call_details.method)


@contextmanager
def running_upstream(credentials: grpc.ServerCredentials | None = None) -> Iterator[Upstream]:
    upstream = Upstream()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: list[grpc.aio.Server] = []

    async def serve() -> None:
        aio = grpc.aio.server()
        aio.add_generic_rpc_handlers((upstream.handlers(),))
        if credentials is None:
            upstream.port = aio.add_insecure_port("127.0.0.1:0")
        else:
            upstream.port = aio.add_secure_port("127.0.0.1:0", credentials)
        await aio.start()
        server.append(aio)
        started.set()

    thread = threading.Thread(target=loop.run_forever, name="upstream", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    assert started.wait(10)
    try:
        yield upstream
    finally:
        asyncio.run_coroutine_threadsafe(server[0].stop(0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
