"""A nonebot2 bot for the playground walk (tests/playground.rs): the kind of small plugin a
newcomer would point at `onebot-bridge --demo`.

It uses the OneBot v11 adapter as a *forward WebSocket client*, as a go-cqhttp user would:

    ONEBOT_V11_WS_URLS='["ws://127.0.0.1:PORT/"]'   (required)
    ONEBOT_V11_ACCESS_TOKEN=...                      (optional)

Its plugin answers a group message that mentions the bot (nonebot's `to_me` rule):

- every picture in it is fetched at its `url` with httpx, as a bot that looks at pictures would,
  and reported on stdout as `FETCHED {"url": ..., "status": 200, "len": 123}`;
- the reply quotes the message (`reply`), greets the sender by name, says how many pictures it
  saw and how many bytes they were, and sends a picture of its own: a PNG drawn here (a
  coloured badge), sent as `base64://` by the adapter's own `MessageSegment.image`. The call's
  outcome is reported as `REPLIED {"message_id": ...}` or `FAILED {...}`.

It also answers the rest of what a person does on the page:

- a friend request is approved (`set_friend_add_request` with the request's flag), and the new
  friend, once `friend_add` arrives, is greeted in a private message: `GREETED {"user_id": ...}`;
- a recall in a group is reported as `RECALLED {"message_id": ...}`, the id the bot saw the
  message under (`SAW {"message_id": ...}` when it arrived).

Other stdout lines: `LISTENING <port>`, `CONNECTED <self_id>` (see harness.py). nonebot's log
goes to stderr. The bot runs until killed, or until its stdin reaches end of file.
"""

import json
import struct
import zlib

from harness import say, exit_on_stdin_eof, listening_socket, init_nonebot, run_nonebot


def badge_png(width: int = 160, height: int = 96) -> bytes:
    """A small RGB PNG: a diagonal gradient with a light stripe, written without any imaging
    library (zlib and the PNG chunk layout are enough)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            stripe = abs((x - 2 * y) % 64 - 32) < 6
            r, g, b = (40 + x, 90 + y, 200 - x // 2) if not stripe else (250, 245, 220)
            rows += bytes((r & 0xFF, g & 0xFF, b & 0xFF))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")


def load_playground_plugin() -> None:
    import httpx
    from nonebot import on_message
    from nonebot.rule import to_me
    from nonebot.adapters.onebot.v11 import Bot, GroupMessageEvent, Message, MessageSegment
    from nonebot.adapters.onebot.v11.exception import ActionFailed

    from nonebot import on_notice, on_request
    from nonebot.adapters.onebot.v11 import FriendAddNoticeEvent, FriendRequestEvent, GroupRecallNoticeEvent

    greet = on_message(rule=to_me(), priority=1, block=True)
    requests = on_request(priority=1, block=True)
    notices = on_notice(priority=1, block=True)

    @requests.handle()
    async def _(bot: Bot, event: FriendRequestEvent) -> None:
        await event.approve(bot)

    @notices.handle()
    async def _(bot: Bot, event: FriendAddNoticeEvent | GroupRecallNoticeEvent) -> None:
        if isinstance(event, GroupRecallNoticeEvent):
            say("RECALLED " + json.dumps({"message_id": event.message_id}))
            return
        await bot.send_private_msg(user_id=event.user_id, message="Nice to meet you! Mention me in a group with a picture.")
        say("GREETED " + json.dumps({"user_id": event.user_id}))

    @greet.handle()
    async def _(bot: Bot, event: GroupMessageEvent) -> None:
        say("SAW " + json.dumps({"message_id": event.message_id}))
        sizes = []
        async with httpx.AsyncClient(timeout=10) as client:
            for seg in event.message:
                if seg.type != "image":
                    continue
                url = seg.data.get("url") or seg.data.get("file")
                resp = await client.get(url)
                sizes.append(len(resp.content))
                say("FETCHED " + json.dumps({"url": url, "status": resp.status_code, "len": len(resp.content)}))
        name = event.sender.card or event.sender.nickname or str(event.user_id)
        text = f"Hello {name}! I saw {len(sizes)} picture(s), {sum(sizes)} bytes. Here is mine:"
        reply = Message([MessageSegment.reply(event.message_id), MessageSegment.text(text), MessageSegment.image(badge_png())])
        try:
            sent = await bot.send(event, reply)
            say("REPLIED " + json.dumps({"message_id": sent.get("message_id")}))
        except ActionFailed as failed:
            say("FAILED " + json.dumps({"info": str(failed)}))


def main() -> None:
    exit_on_stdin_eof()
    server, port = listening_socket()
    driver = init_nonebot(port, "~fastapi+~httpx+~websockets")
    load_playground_plugin()
    run_nonebot(server, port, driver)


if __name__ == "__main__":
    main()
