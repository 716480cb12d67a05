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
import socket
import sys
import threading


def say(line: str) -> None:
    print(line, flush=True)


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


def exit_on_stdin_eof() -> None:
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    exit_on_stdin_eof()

    # nonebot's config refuses port 0: bind a socket on an OS-chosen port here and hand it to
    # uvicorn by file descriptor.
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.set_inheritable(True)
    port = server.getsockname()[1]

    import nonebot
    import nonebot.log
    from nonebot.adapters.onebot.v11 import Adapter, Bot

    # nonebot logs to stdout by default; stdout is reserved for the lines above.
    nonebot.log.logger.remove(nonebot.log.logger_id)
    nonebot.log.logger_id = nonebot.log.logger.add(
        sys.stderr,
        level=0,
        colorize=False,
        diagnose=False,
        filter=nonebot.log.default_filter,
        format=nonebot.log.default_format,
    )

    # Explicit settings win over any stray environment variable (HOST, PORT, DRIVER, ...).
    nonebot.init(
        driver="~fastapi+~websockets",
        host="127.0.0.1",
        port=port,
        command_start=["/"],
        command_sep=["."],
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
        fastapi_reload=False,
    )
    trace()
    driver = nonebot.get_driver()
    driver.register_adapter(Adapter)
    nonebot.load_builtin_plugins("echo")

    @driver.on_bot_connect
    async def _connected(bot: Bot) -> None:
        say(f"CONNECTED {bot.self_id}")

    @driver.on_bot_disconnect
    async def _disconnected(bot: Bot) -> None:
        say(f"DISCONNECTED {bot.self_id}")

    say(f"LISTENING {port}")
    nonebot.run(fd=server.fileno())


if __name__ == "__main__":
    main()
