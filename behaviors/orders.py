"""Example behaviours for acme.shop.v1.Orders: state across calls and both streaming styles."""

from __future__ import annotations

import grpc

from emulator import Behavior, RpcAbort


class Orders(Behavior):
    service = "acme.shop.v1.Orders"

    def CreateOrder(self, request, ctx):
        if not request.line_items:
            raise RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT, "an order needs at least one line item"
            )
        orders = ctx.state.setdefault("orders", {})
        key = request.idempotency_key or f"order-{len(orders) + 1}"
        if key not in orders:  # the same idempotency key returns the same order
            order = ctx.default_response()
            order.customer.customer_id = request.customer_id
            del order.line_items[:]
            order.line_items.extend(request.line_items)
            order.status = 1  # PENDING
            orders[key] = order
        return orders[key]

    async def UploadLineItems(self, requests, ctx):
        count = quantity = 0
        async for item in requests:
            count += 1
            quantity += item.quantity
        return {"item_count": count, "total_quantity": quantity}

    async def Chat(self, requests, ctx):
        async for message in requests:
            yield {"order_id": message.order_id, "text": f"Support: we got '{message.text}'"}
