"""What every test client script shares: its stdout protocol, its life bound to the test's stdin,
a listening socket on a port the OS chooses, and (for the nonebot scripts) a nonebot set up with
explicit settings and its log on stderr.

stdout carries only the protocol lines the Rust tests wait for (`LISTENING <port>`,
`CONNECTED <self_id>`, ...); logs and frame traces go to stderr.
"""

import os
import socket
import sys
import threading


def say(line: str) -> None:
    """One protocol line on stdout."""
    print(line, flush=True)


def exit_on_stdin_eof() -> None:
    """Exit as soon as the test closes our stdin (or dies): a client never outlives its test."""

    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def listening_socket() -> tuple[socket.socket, int]:
    """A socket bound and listening on 127.0.0.1 on a port the OS chose, inheritable so that a
    server (uvicorn, hypercorn) can take it by file descriptor: bound before the port is
    announced, so the bridge can connect the moment it reads `LISTENING`."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.set_inheritable(True)
    return server, server.getsockname()[1]


def init_nonebot(port: int, driver: str, trace=None):
    """nonebot with the OneBot v11 adapter and the builtin `echo` plugin, its log on stderr, and
    settings given explicitly so that stray environment variables (HOST, PORT, DRIVER, ...)
    cannot change them. nonebot's config refuses port 0, hence the port from
    `listening_socket`. `trace` (patching nonebot's I/O to trace frames) runs after
    `nonebot.init` and before the adapter is registered, whose handlers are bound then.
    Returns the driver."""
    import nonebot
    import nonebot.log
    from nonebot.adapters.onebot.v11 import Adapter

    nonebot.log.logger.remove(nonebot.log.logger_id)
    nonebot.log.logger_id = nonebot.log.logger.add(
        sys.stderr,
        level=0,
        colorize=False,
        diagnose=False,
        filter=nonebot.log.default_filter,
        format=nonebot.log.default_format,
    )
    nonebot.init(
        driver=driver,
        host="127.0.0.1",
        port=port,
        command_start=["/"],
        command_sep=["."],
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
        fastapi_reload=False,
    )
    if trace is not None:
        trace()
    nonebot_driver = nonebot.get_driver()
    nonebot_driver.register_adapter(Adapter)
    nonebot.load_builtin_plugins("echo")
    return nonebot_driver


def run_nonebot(server: socket.socket, port: int, driver) -> None:
    """Announces the bot's connections (`CONNECTED`/`DISCONNECTED <self_id>`) and its port
    (`LISTENING <port>`), then runs nonebot on the socket from `listening_socket`."""
    import nonebot
    from nonebot.adapters.onebot.v11 import Bot

    @driver.on_bot_connect
    async def _connected(bot: Bot) -> None:
        say(f"CONNECTED {bot.self_id}")

    @driver.on_bot_disconnect
    async def _disconnected(bot: Bot) -> None:
        say(f"DISCONNECTED {bot.self_id}")

    say(f"LISTENING {port}")
    nonebot.run(fd=server.fileno())
