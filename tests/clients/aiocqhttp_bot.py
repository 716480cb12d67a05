"""A minimal aiocqhttp bot on go-cqhttp's HTTP POST, for tests/http.rs.

aiocqhttp receives events by HTTP POST at `/` on the bot's own port and checks their
`X-Signature` with `AIOCQHTTP_SECRET`. It answers a group message `<text>` with the quick
operation `{"reply": "echo: <text>", "at_sender": true}` in the HTTP response, which the
bridge must turn into a reply that mentions the sender.

Protocol with the test, on stdout (one line each, flushed):

    LISTENING <port>    the bot's HTTP server is bound to 127.0.0.1:<port> (and listening)

On stderr: Quart's log and `frame <- <event>` for every event aiocqhttp handled. The bot runs
until killed, or until its stdin reaches end of file.
"""

import json
import os
import sys
from harness import exit_on_stdin_eof, listening_socket


def main() -> None:
    secret = os.environ.get("AIOCQHTTP_SECRET")
    if not secret:
        sys.exit("aiocqhttp_bot.py: set AIOCQHTTP_SECRET")

    exit_on_stdin_eof()

    # Bound and listening before the port is announced; hypercorn takes it by file descriptor.
    server, port = listening_socket()

    import asyncio

    from aiocqhttp import CQHttp, Event

    bot = CQHttp(secret=secret)

    @bot.on_message("group")
    async def _group(event: Event):
        print(f"frame <- {json.dumps(dict(event), ensure_ascii=False)}", file=sys.stderr, flush=True)
        text = event.message if isinstance(event.message, str) else str(event.message)
        return {"reply": f"echo: {text}", "at_sender": True}

    print(f"LISTENING {port}", flush=True)
    asyncio.run(bot.run_task(host=f"fd://{server.fileno()}"))


if __name__ == "__main__":
    main()
