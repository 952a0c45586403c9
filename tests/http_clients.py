"""Raw HTTP/1.1 clients for tests of Conveyor's servers: bytes as they are, answers as they come."""

from __future__ import annotations

import asyncio

SLOW = 60.0


async def exchange(host: str, port: int, data: bytes) -> bytes:
    """Send ``data`` as it is; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(-1), SLOW)
    finally:
        writer.close()
        await writer.wait_closed()


async def hold(host: str, port: int, count: int, request: bytes) -> list[asyncio.StreamWriter]:
    """Open ``count`` keep-alive connections, each answered once (so the server counts them)."""
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(host, port)
            held.append(writer)
            writer.write(request)
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLOW)
    except BaseException:
        await release(held)
        raise
    return held


async def release(held: list[asyncio.StreamWriter]) -> None:
    for writer in held:
        writer.close()
        await writer.wait_closed()
