"""A minimal nonebot2 bot on go-cqhttp's HTTP transports, for tests/http.rs.

The OneBot v11 adapter receives events by HTTP POST at `/onebot/v11/` on the bot's own port and
calls actions through the HTTP API, as a go-cqhttp user would configure it:

    ONEBOT_V11_API_ROOTS='{"10001":"http://127.0.0.1:PORT/"}'   (required)
    ONEBOT_V11_ACCESS_TOKEN=...     token for the HTTP API (optional)
    ONEBOT_V11_SECRET=...           the HTTP POST signature is checked with it (optional)
    LOG_LEVEL=DEBUG                 (optional; default INFO)

and loads nonebot's builtin `echo` plugin: a private message `/echo <text>` is answered with
`<text>`.

Protocol with the test, on stdout (one line each, flushed):

    LISTENING <port>       the bot's HTTP server is bound to 127.0.0.1:<port> (and listening)
    CONNECTED <self_id>    nonebot accepted a first signed POST from the bridge

On stderr: nonebot's log, and a trace of the HTTP traffic: `frame <- {...}` for every POST the
bot received (`{"headers": {...}, "body": <event>}`) and every API answer it got,
`frame -> {...}` for every API call it made (`{"url": ..., "headers": {...}, "body": <params>}`).
The bot runs until killed, or until its stdin reaches end of file.
"""

import json
import os
import sys
from harness import exit_on_stdin_eof, listening_socket, init_nonebot, run_nonebot


def trace(direction: str, value) -> None:
    print(f"frame {direction} {json.dumps(value, ensure_ascii=False)}", file=sys.stderr, flush=True)


def as_json(content):
    if content is None:
        return None
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    try:
        return json.loads(content)
    except ValueError:
        return content


def trace_http() -> None:
    """Logs what the adapter receives by HTTP POST and what it sends to the HTTP API."""
    from nonebot.adapters.onebot.v11 import Adapter
    from nonebot.drivers import httpx as httpx_driver

    handle_http = Adapter._handle_http

    async def traced_handle_http(self, request):
        trace("<-", {"headers": dict(request.headers), "body": as_json(request.content)})
        response = await handle_http(self, request)
        print(f"post answered {response.status_code}", file=sys.stderr, flush=True)
        return response

    Adapter._handle_http = traced_handle_http

    request = httpx_driver.Mixin.request

    async def traced_request(self, setup):
        trace("->", {"url": str(setup.url), "headers": dict(setup.headers), "body": as_json(setup.content)})
        response = await request(self, setup)
        trace("<-", as_json(response.content))
        return response

    httpx_driver.Mixin.request = traced_request


def main() -> None:
    roots = os.environ.get("ONEBOT_V11_API_ROOTS")
    if not roots or not json.loads(roots):
        sys.exit("nonebot_http_bot.py: set ONEBOT_V11_API_ROOTS='{\"10001\":\"http://127.0.0.1:PORT/\"}'")

    exit_on_stdin_eof()

    # The bridge must be able to POST as soon as the port is announced: bind and listen here,
    # then hand the socket to uvicorn by file descriptor (nonebot's config refuses port 0).
    server, port = listening_socket()

    driver = init_nonebot(port, "~fastapi+~httpx+~websockets", trace=trace_http)
    run_nonebot(server, port, driver)


if __name__ == "__main__":
    main()
