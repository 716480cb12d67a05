"""A minimal nonebot2 bot for the bridge's integration tests (tests/nonebot.rs).

It uses the OneBot v11 adapter as a *forward WebSocket client*, as a go-cqhttp user would:

    ONEBOT_V11_WS_URLS='["ws://127.0.0.1:PORT/"]'   (required)
    ONEBOT_V11_ACCESS_TOKEN=...                      (optional)
    LOG_LEVEL=DEBUG                                  (optional; default INFO)

and loads nonebot's builtin `echo` plugin: a private message `/echo <text>` is answered with
`<text>` (segments kept, so a face comes back as a face).

Protocol with the test, on stdout (one line each, flushed):

    LISTENING <port>       the bot's own HTTP server (unused) is bound to 127.0.0.1:<port>
    CONNECTED <self_id>    nonebot accepted the bridge's lifecycle.connect: the bot is ready
    DISCONNECTED <self_id>

Everything else (nonebot's log and a trace of every WebSocket frame, `frame <- ...` for what the
bot received and `frame -> ...` for what it sent) goes to stderr. The bot runs until killed, or
until its stdin reaches end of file (so that it never outlives a test process that died).
"""

import json
import os
import sys
from harness import exit_on_stdin_eof, listening_socket, init_nonebot, run_nonebot


def trace_frames() -> None:
    """Logs every frame of the websockets driver's client connections to stderr."""
    from nonebot.drivers import websockets as ws_driver

    receive, send_text = ws_driver.WebSocket.receive, ws_driver.WebSocket.send_text

    async def traced_receive(self):
        data = await receive(self)
        print(f"frame <- {data}", file=sys.stderr, flush=True)
        return data

    async def traced_send_text(self, data: str) -> None:
        print(f"frame -> {data}", file=sys.stderr, flush=True)
        await send_text(self, data)

    ws_driver.WebSocket.receive = traced_receive
    ws_driver.WebSocket.send_text = traced_send_text


def main() -> None:
    urls = os.environ.get("ONEBOT_V11_WS_URLS")
    if not urls or not json.loads(urls):
        sys.exit("nonebot_bot.py: set ONEBOT_V11_WS_URLS='[\"ws://127.0.0.1:PORT/\"]'")

    exit_on_stdin_eof()

    # nonebot's HTTP server must not need a fixed port, and its config refuses port 0: bind a
    # socket on an OS-chosen port here and hand it to uvicorn by file descriptor.
    server, port = listening_socket()

    driver = init_nonebot(port, "~fastapi+~httpx+~websockets", trace=trace_frames)
    run_nonebot(server, port, driver)


if __name__ == "__main__":
    main()
