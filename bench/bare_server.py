"""A hand-built grpc.aio server on the emulator's contract (protos/): the benchmark's baseline.

    python bench/bare_server.py --port 0 [--gen-dir DIR] [--stream-messages 100]

It generates the `_pb2` / `_pb2_grpc` modules of catalog.proto and orders.proto (what the
emulator compiles from protos/) with grpc_tools.protoc at run time (into a temporary directory,
or into --gen-dir, reused when already there), and serves three methods: Catalog/GetProduct
returns a fixed Product, Catalog/ListProducts streams --stream-messages prebuilt Products and
Orders/Chat echoes each message back. It prints its port alone on the first stdout line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROTOS = REPO / "protos"
# catalog.proto, orders.proto and everything they import that is not a well-known type.
SOURCES = (
    "acme/shop/v1/catalog.proto",
    "acme/shop/v1/orders.proto",
    "acme/common/v1/money.proto",
    "google/api/annotations.proto",
    "google/api/http.proto",
)


def generate(out: Path) -> None:
    """Run protoc (bundled with grpc_tools) unless `out` already holds the generated modules."""
    if (out / "acme/shop/v1/orders_pb2_grpc.py").exists():
        return
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *SOURCES,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"bare_server: protoc failed for {', '.join(SOURCES)}")


def load_modules(out: Path, name: str = "catalog") -> tuple[ModuleType, ModuleType]:
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    pb2 = importlib.import_module(f"acme.shop.v1.{name}_pb2")
    pb2_grpc = importlib.import_module(f"acme.shop.v1.{name}_pb2_grpc")
    return pb2, pb2_grpc


def fixed_product(pb2: Any) -> Any:
    """A Product of about the size of the emulator's default one, built once."""
    product = pb2.Product(
        product_id="sku-1",
        sku="SKU-0001",
        name="Bench Product",
        description="A fixed product returned by the bare benchmark server.",
        availability=pb2.IN_STOCK,
        tags=["bench", "fixed"],
        image_url="https://example.com/images/sku-1.png",
        stock_count=42,
    )
    product.price.currency_code = "EUR"
    product.price.units = 19
    product.attributes["colour"] = "blue"
    product.created_at.seconds = 1_700_000_000
    product.updated_at.seconds = 1_700_000_600
    product.rating.value = 4.5
    product.dimensions.width_cm = 10.0
    return product


async def serve(port: int, out: Path, stream_messages: int) -> None:
    import grpc

    pb2, pb2_grpc = load_modules(out)
    _, orders_grpc = load_modules(out, "orders")
    product = fixed_product(pb2)
    stream = [fixed_product(pb2) for _ in range(stream_messages)]
    for number, item in enumerate(stream):
        item.product_id = f"sku-{number}"

    class Catalog(pb2_grpc.CatalogServicer):  # type: ignore[misc,name-defined]
        async def GetProduct(self, request: Any, context: Any) -> Any:
            return product

        async def ListProducts(self, request: Any, context: Any) -> Any:
            for item in stream:
                yield item

    class Orders(orders_grpc.OrdersServicer):  # type: ignore[misc,name-defined]
        async def Chat(self, request_iterator: Any, context: Any) -> Any:
            async for message in request_iterator:
                yield message

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb2_grpc.add_CatalogServicer_to_server(Catalog(), server)
    orders_grpc.add_OrdersServicer_to_server(Orders(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(bound, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--gen-dir", type=Path, help="where generated modules go (kept)")
    parser.add_argument("--stream-messages", type=int, default=100, help="ListProducts sends")
    args = parser.parse_args()
    if args.gen_dir is not None:
        generate(args.gen_dir)
        asyncio.run(serve(args.port, args.gen_dir, args.stream_messages))
        return 0
    with tempfile.TemporaryDirectory(prefix="bare-pb2-") as tmp:
        generate(Path(tmp))
        asyncio.run(serve(args.port, Path(tmp), args.stream_messages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
