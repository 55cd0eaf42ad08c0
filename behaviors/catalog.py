"""Example behaviours for acme.shop.v1.Catalog: logic for two methods, defaults for the rest."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from emulator import Behavior, RpcAbort


class Catalog(Behavior):
    service = "acme.shop.v1.Catalog"

    def GetProduct(self, request, ctx):
        if not request.product_id:
            raise RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "product_id is required",
                details=[
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field="product_id", description="must not be empty"
                            )
                        ]
                    )
                ],
            )
        if request.product_id.startswith("missing-"):
            raise RpcAbort(grpc.StatusCode.NOT_FOUND, f"no product {request.product_id}")
        # Start from the deterministic default and pin the fields the caller asked about.
        product = ctx.default_response()
        product.product_id = request.product_id
        return product

    async def ListProducts(self, request, ctx):
        page_size = request.page.page_size or 3
        for index in range(page_size):
            yield {
                "productId": f"{request.category_id or 'all'}-{index + 1}",
                "name": f"Product {index + 1}",
                "price": {"currencyCode": "EUR", "units": 10 + index},
            }
