"""A client that knows only the server's address: it lists the services through server
reflection, then calls acme.shop.v1.Catalog/GetProduct with message types built from the
descriptors the server sends. Exits 0 when the reply is for the product it asked for.

    TARGET=127.0.0.1:50051 python client.py
"""

import os
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

target = os.environ.get("TARGET", "127.0.0.1:50051")
with grpc.insecure_channel(target) as channel:
    grpc.channel_ready_future(channel).result(timeout=30)
    database = ProtoReflectionDescriptorDatabase(channel)
    print(f"{target} serves: {', '.join(database.get_services())}")
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindMethodByName("acme.shop.v1.Catalog.GetProduct")
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    get_product = channel.unary_unary(
        "/acme.shop.v1.Catalog/GetProduct",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    reply = get_product(request_type(product_id="p1"), timeout=10)
    print(json_format.MessageToJson(reply))
    sys.exit(0 if reply.product_id == "p1" else f"unexpected reply for p1: {reply}")
