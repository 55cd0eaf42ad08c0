"""Serving an aiohttp application on the emulator's event loop (the admin API's JSON door, the
metrics port): bound like the emulator's own ports, a bind that fails named by its key."""

from __future__ import annotations

from typing import Any

from emulator.errors import ConfigError

__all__ = ["serve_app"]


async def serve_app(app: Any, host: str, port: int, key: str) -> tuple[Any, int]:
    """Serve `app` on `host:port` (0: a free port); its runner (`cleanup()` stops it) and the
    port bound. ConfigError naming `key` when the port cannot be had."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), port, reuse_port=False)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"{key}: cannot listen on {host}:{port}: {exc.strerror}; choose another {key} "
            "(0 picks a free one)"
        ) from None
    return runner, int(runner.addresses[0][1])
