"""Compressed HTTP bodies, as Triton's HTTP endpoint and tritonclient use them (tritonclient.http
``InferenceServerClient.infer``: ``request_compression_algorithm`` sends ``Content-Encoding: gzip`` or ``deflate``,
the zlib format; ``response_compression_algorithm`` sends ``Accept-Encoding``; its ``InferResult`` inflates a
response by its ``Content-Encoding``). The request limit applies to the inflated size: a small body that inflates
past it (a zip bomb) is refused with 413 before it is held in memory."""

from __future__ import annotations

import gzip
import zlib

from mlflow_kserve_server.errors import V2Error

ENCODINGS = ("gzip", "deflate")
_CHUNK = 1 << 20
LEVEL = 1  # fastest: a response is compressed on every request that accepts it


def too_big(limit: int) -> V2Error:
    return V2Error(
        f"the request body is over {limit} bytes (decompressed); send smaller batches, or raise the server's "
        "--max-request-bytes (MLFLOW_KSERVE_SERVER_MAX_REQUEST_BYTES)",
        413,
    )


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """``body`` inflated by its ``Content-Encoding`` (none, identity, gzip, deflate), at most ``limit`` bytes."""
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    if name == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":  # HTTP's deflate is the zlib format; some clients send bare deflate: accept both
        wbits = zlib.MAX_WBITS if _zlib_header(body) else -15
    else:
        raise V2Error(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or an uncompressed body", 415
        )
    inflater = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    size = 0
    try:
        data = inflater.decompress(body, _CHUNK)
        while True:
            size += len(data)
            if size > limit:
                raise too_big(limit)
            parts.append(data)
            if not inflater.unconsumed_tail:
                break
            data = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        rest = inflater.flush()
    except zlib.error as exc:
        raise V2Error(
            f"the request body is not valid {name} data ({exc}); compress it whole, or send it plain"
        ) from None
    if size + len(rest) > limit:
        raise too_big(limit)
    if not inflater.eof or inflater.unused_data:
        raise V2Error(f"the request body is not one whole {name} stream; send the whole compressed body, once")
    parts.append(rest)
    return b"".join(parts)


def _zlib_header(body: bytes) -> bool:
    """RFC 1950: a deflate method nibble and a header checksum (CMF*256 + FLG divisible by 31)."""
    return len(body) >= 2 and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2], "big") % 31 == 0


def accepted(accept_encoding: str | None) -> str | None:
    """The response encoding ``Accept-Encoding`` allows: gzip, else deflate, else None (uncompressed)."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        token, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        weights[token.strip().lower()] = quality
    for name in ENCODINGS:
        if weights.get(name, weights.get("*", 0.0)) > 0:
            return name
    return None


def encode_body(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=LEVEL, mtime=0)
    return zlib.compress(body, LEVEL)
