"""A minimal nonebot2 bot serving the OneBot v11 *reverse WebSocket* (tests/ws_reverse.rs).

The bridge dials it, as go-cqhttp's `ws-reverse` would, at

    ws://127.0.0.1:<port>/onebot/v11/ws

with the FastAPI driver (`~fastapi+~websockets`) on a port the OS chooses. Settings:

    ONEBOT_V11_ACCESS_TOKEN=...   (optional; nonebot then refuses dials without it)
    LOG_LEVEL=DEBUG               (optional; default INFO)

It loads nonebot's builtin `echo` plugin: a private message `/echo <text>` is answered with
`<text>`.

Protocol with the test, on stdout (one line each, flushed):

    LISTENING <port>          the reverse-WS server is bound to 127.0.0.1:<port>
    HANDSHAKE <json>          the headers of a connection nonebot is handling (lower-case names)
    CONNECTED <self_id>       nonebot registered the bot (it does so on the WebSocket accept)
    DISCONNECTED <self_id>

Everything else (nonebot's log and a trace of every WebSocket frame, `frame <- ...` for what the
bot received and `frame -> ...` for what it sent) goes to stderr. The bot runs until killed, or
until its stdin reaches end of file (so that it never outlives a test process that died).
"""

import json
import os
import sys
from harness import say, exit_on_stdin_eof, listening_socket, init_nonebot, run_nonebot


def trace() -> None:
    """Logs every frame of the FastAPI driver's server connections, and each handshake's headers."""
    from nonebot.adapters.onebot.v11 import Adapter
    from nonebot.drivers import fastapi as fastapi_driver

    ws_class = fastapi_driver.FastAPIWebSocket
    receive, send_text = ws_class.receive, ws_class.send_text

    async def traced_receive(self):
        data = await receive(self)
        print(f"frame <- {data}", file=sys.stderr, flush=True)
        return data

    async def traced_send_text(self, data: str) -> None:
        print(f"frame -> {data}", file=sys.stderr, flush=True)
        await send_text(self, data)

    ws_class.receive = traced_receive
    ws_class.send_text = traced_send_text

    handle_ws = Adapter._handle_ws

    async def traced_handle_ws(self, websocket) -> None:
        headers = {k.lower(): v for k, v in websocket.request.headers.items()}
        say(f"HANDSHAKE {json.dumps(headers)}")
        await handle_ws(self, websocket)

    Adapter._handle_ws = traced_handle_ws


def main() -> None:
    exit_on_stdin_eof()

    # nonebot's config refuses port 0: bind a socket on an OS-chosen port here and hand it to
    # uvicorn by file descriptor.
    server, port = listening_socket()

    driver = init_nonebot(port, "~fastapi+~websockets", trace=trace)
    run_nonebot(server, port, driver)


if __name__ == "__main__":
    main()
