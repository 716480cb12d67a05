"""A nonebot2 bot that moves media through the bridge, for tests/media_clients.rs.

Like nonebot_bot.py it uses the OneBot v11 adapter as a *forward WebSocket client*:

    ONEBOT_V11_WS_URLS='["ws://127.0.0.1:PORT/"]'   (required)
    LOG_LEVEL=DEBUG                                  (optional; default INFO)

It does two things with a group message:

- every `image` segment received is fetched at its `url` with httpx, as a bot that keeps the
  pictures it sees would, and reported as

      FETCHED {"file": ..., "url": ..., "status": 200, "len": 123, "sha256": "<hex>"}

- a text `/send <json>` makes it send to the same group one message per element of the JSON
  list, each a list of images built with the adapter's own `MessageSegment.image`:

      {"bytes_of": "/some/path"}   the file's bytes, read here (the adapter sends `base64://…`)
      {"path": "/some/path"}       a `pathlib.Path` (the adapter sends `file:///…`)
      {"file": "http://…"}         the string as it is

  and each call's outcome is reported, in order, as

      RESULT {"ok": true, "data": {"message_id": ...}}
      RESULT {"ok": false, "info": {"retcode": 100, "msg": "FILE_REFUSED", ...}}   (ActionFailed)

Other stdout lines: `LISTENING <port>`, `CONNECTED <self_id>` (see harness.py). nonebot's log
and a trace of every WebSocket frame (`frame <- ...` received, `frame -> ...` sent) go to
stderr. The bot runs until killed, or until its stdin reaches end of file.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from harness import say, exit_on_stdin_eof, listening_socket, init_nonebot, run_nonebot
from nonebot_bot import trace_frames


def image_of(item: dict):
    from nonebot.adapters.onebot.v11 import MessageSegment

    if "bytes_of" in item:
        return MessageSegment.image(Path(item["bytes_of"]).read_bytes())
    if "path" in item:
        return MessageSegment.image(Path(item["path"]))
    return MessageSegment.image(item["file"])


def load_media_plugin() -> None:
    import httpx
    from nonebot import on_message
    from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent, Message
    from nonebot.adapters.onebot.v11.exception import ActionFailed

    media = on_message(priority=1, block=False)

    @media.handle()
    async def _media(bot: Bot, event: GroupMessageEvent) -> None:
        for seg in event.message:
            if seg.type != "image":
                continue
            url = seg.data.get("url")
            report = {"file": seg.data.get("file"), "url": url}
            if not url:
                say(f"FETCHED {json.dumps(report)}")
                continue
            async with httpx.AsyncClient(timeout=20, trust_env=False) as client:
                resp = await client.get(url)
            body = resp.content
            report.update(status=resp.status_code, len=len(body), sha256=hashlib.sha256(body).hexdigest())
            say(f"FETCHED {json.dumps(report)}")

        text = event.message.extract_plain_text().strip()
        if not text.startswith("/send "):
            return
        for images in json.loads(text[len("/send ") :]):
            message = Message([image_of(item) for item in images])
            try:
                data = await bot.send_group_msg(group_id=event.group_id, message=message)
                say(f"RESULT {json.dumps({'ok': True, 'data': data})}")
            except ActionFailed as e:
                say(f"RESULT {json.dumps({'ok': False, 'info': e.info}, default=str)}")


def main() -> None:
    urls = os.environ.get("ONEBOT_V11_WS_URLS")
    if not urls or not json.loads(urls):
        sys.exit("media_bot.py: set ONEBOT_V11_WS_URLS='[\"ws://127.0.0.1:PORT/\"]'")

    exit_on_stdin_eof()
    server, port = listening_socket()
    driver = init_nonebot(port, "~fastapi+~httpx+~websockets", trace=trace_frames)
    load_media_plugin()
    run_nonebot(server, port, driver)


if __name__ == "__main__":
    main()
