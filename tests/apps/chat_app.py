"""A chat app with its own WebSocket endpoint, the kind the `proxy` router
is put in front of: it trusts the user wsgate names in X-Wsgate-User,
greets, broadcasts every message to everyone, and closes with 4200 on
"/quit". Usage: chat_app.py PORT_FILE (it listens on a free loopback port
and writes the port there)."""

import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

CLIENTS = set()


async def chat(ws):
    user = ws.request.headers.get("X-Wsgate-User", "anonymous")
    CLIENTS.add(ws)
    try:
        await ws.send(f"welcome {user}")
        async for message in ws:
            if message == "/quit":
                await ws.close(4200, "see you")
                break
            broadcast(CLIENTS, f"{user}: {message}")
    finally:
        CLIENTS.discard(ws)


async def main(port_file):
    async with serve(chat, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with open(port_file, "w") as f:
            f.write(str(port))
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
