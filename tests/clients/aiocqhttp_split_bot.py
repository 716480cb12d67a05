"""A minimal aiocqhttp bot with *split* reverse-WebSocket roles (tests/ws_reverse.rs).

aiocqhttp serves `/ws/api/` and `/ws/event/` (and the universal `/ws/`); the bridge dials the
first two with `X-Client-Role: API` and `X-Client-Role: Event`, as go-cqhttp's `ws-reverse` with
`api` and `event` URLs does. Served by hypercorn on a port the OS chooses. Settings:

    ACCESS_TOKEN=...   (optional; aiocqhttp then refuses dials without `Token|Bearer <it>`)

A private message is answered with an explicit API call, `send_private_msg(user_id, "echo: …")`,
which aiocqhttp sends over the API connection of the account the event came from. A group
message is answered with a quick operation `{"reply": "quick: …", "at_sender": True}`, which
aiocqhttp sends over the API connection as `.handle_quick_operation_async` with `sender`
stripped from the context.

Protocol with the test, on stdout (one line each, flushed):

    LISTENING <port>
    CONNECTED <role> <self_id>   a connection with that X-Client-Role is registered
    MESSAGE <json>               a private message event as aiocqhttp parsed it
    SENT <json>                  the answer (data) of the send_private_msg call

Everything else (logs, and a trace of every WebSocket frame with its role: `frame <- API ...`
received, `frame -> API ...` sent) goes to stderr. Exits at end of file on stdin.
"""

import asyncio
import json
import logging
import os
import sys
from harness import say, exit_on_stdin_eof, listening_socket


def trace_frames() -> None:
    from quart.wrappers.websocket import Websocket

    receive, send = Websocket.receive, Websocket.send

    async def traced_receive(self):
        data = await receive(self)
        role = self.headers.get("X-Client-Role", "?")
        print(f"frame <- {role} {data}", file=sys.stderr, flush=True)
        return data

    async def traced_send(self, data) -> None:
        role = self.headers.get("X-Client-Role", "?")
        print(f"frame -> {role} {data}", file=sys.stderr, flush=True)
        await send(self, data)

    Websocket.receive = traced_receive
    Websocket.send = traced_send


def main() -> None:
    exit_on_stdin_eof()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    server, port = listening_socket()

    from aiocqhttp import CQHttp
    from quart import websocket
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    trace_frames()
    bot = CQHttp(access_token=os.environ.get("ACCESS_TOKEN") or None)

    add_api, add_event = bot._add_wsr_api_client, bot._add_wsr_event_client

    def traced_add_api() -> None:
        add_api()
        say(f"CONNECTED API {websocket.headers['X-Self-ID']}")

    def traced_add_event() -> None:
        add_event()
        say(f"CONNECTED Event {websocket.headers['X-Self-ID']}")

    bot._add_wsr_api_client = traced_add_api
    bot._add_wsr_event_client = traced_add_event

    @bot.on_message("private")
    async def _echo(event) -> None:
        say(f"MESSAGE {json.dumps(dict(event), ensure_ascii=False)}")
        # An explicit API call (no quick operation): goes over the API connection.
        data = await bot.send_private_msg(user_id=event.user_id, message="echo: " + event.raw_message)
        say(f"SENT {json.dumps(data)}")

    @bot.on_message("group")
    async def _quick(event):
        say(f"GROUP {json.dumps(dict(event), ensure_ascii=False)}")
        return {"reply": "quick: " + event.raw_message, "at_sender": True}

    config = Config()
    config.bind = [f"fd://{server.fileno()}"]
    config.accesslog = None
    say(f"LISTENING {port}")
    asyncio.run(serve(bot.asgi, config))


if __name__ == "__main__":
    main()
