#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the test data, with no build.

    python3 fuzz/seed.py        # from the repository root; rewrites fuzz/corpus/<target>/seed-*

- cq_round_trip: the `cq` string of each case in tests/fixtures/cq/cases.json, and each string
  `message` of the action cases.
- v12_event: each file of tests/cases/events/ as it is (the target reads the case format).
- v11_action: each file of tests/cases/actions/ as it is (likewise).
- msgpack_decode: each event case's `v12` event and action case's `v12_response` in MessagePack
  (written by the small encoder below, so no package is needed), with one `bin` and one `ext`.

Seeds are named `seed-<source>`; inputs a campaign adds under another name are not touched.
"""

import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


class Bin(bytes):
    """A MessagePack `bin` (plain `bytes` would be ambiguous with `str` in intent)."""


class Ext:
    def __init__(self, code, data):
        self.code, self.data = code, data


def msgpack(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        if 0 <= v < 2**64:
            return b"\xcf" + struct.pack(">Q", v) if v >= 2**32 else b"\xce" + struct.pack(">I", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, Bin):
        return b"\xc4" + bytes([len(v)]) + bytes(v) if len(v) < 256 else b"\xc6" + struct.pack(">I", len(v)) + bytes(v)
    if isinstance(v, Ext):
        return b"\xc7" + bytes([len(v.data)]) + struct.pack(">b", v.code) + v.data
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xdb" + struct.pack(">I", len(b))) + b
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdd" + struct.pack(">I", len(v))
        return head + b"".join(msgpack(x) for x in v)
    if isinstance(v, dict):
        head = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xdf" + struct.pack(">I", len(v))
        return head + b"".join(msgpack(k) + msgpack(x) for k, x in v.items())
    raise TypeError(type(v))


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    for target in ["cq_round_trip", "v12_event", "v11_action", "msgpack_decode"]:
        for old in (CORPUS / target).glob("seed-*"):
            old.unlink()
    cases = json.loads((ROOT / "tests/fixtures/cq/cases.json").read_text())
    for i, case in enumerate(cases):
        write("cq_round_trip", f"fixture-{i:02}", case["cq"])
    for path in sorted((ROOT / "tests/cases/events").glob("*.json")):
        write("v12_event", path.stem, path.read_bytes())
        case = json.loads(path.read_text())
        write("msgpack_decode", f"event-{path.stem}", msgpack(case["v12"]))
    for path in sorted((ROOT / "tests/cases/actions").glob("*.json")):
        write("v11_action", path.stem, path.read_bytes())
        case = json.loads(path.read_text())
        message = case.get("v11", {}).get("params", {}).get("message")
        if isinstance(message, str) and message:
            write("cq_round_trip", f"action-{path.stem}", message)
        if isinstance(case.get("v12_response"), dict):
            write("msgpack_decode", f"response-{path.stem}", msgpack(case["v12_response"]))
    upload = {"action": "upload_file", "params": {"type": "data", "name": "a.png", "data": Bin(b"\x89PNG\r\n")}}
    write("msgpack_decode", "upload-bin", msgpack(upload))
    write("msgpack_decode", "ext-float-big", msgpack([Ext(5, b"\x01\x02"), 1.5, 2**63, -2**40, {"k": None}]))


if __name__ == "__main__":
    main()
