"""The join protocol's messages: one JSON document each way, each sent as a
4-byte big-endian length and that many bytes of UTF-8 JSON, with a size cap
so that neither side reads without bound."""

import json
import struct

MAX_REQUEST = 16 * 1024  # an identity (tinc's RSA key and two certificates) is ~4 KiB
MAX_RESPONSE = 8 * 1024 * 1024  # the site's public inventory: ~4 KiB per node
_LENGTH = struct.Struct(">I")


class WireError(ValueError):
    """`problem` is too_large (the length exceeds the cap) or malformed."""

    def __init__(self, problem: str, message: str, length: int = 0):
        super().__init__(message)
        self.problem = problem
        self.length = length


def encode(document: dict) -> bytes:
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return _LENGTH.pack(len(data)) + data


def send(sock, document: dict) -> None:
    sock.sendall(encode(document))


def _exactly(sock, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(size - got, 65536))
        if not chunk:
            raise WireError("malformed", f"the message ended after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(sock, limit: int) -> dict:
    (length,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    if length > limit:
        raise WireError("too_large", f"a message of {length} bytes is more than the {limit} allowed", length)
    data = _exactly(sock, length)
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("malformed", "the message is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise WireError("malformed", "the message is not a JSON object")
    return document
