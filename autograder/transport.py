"""How data crosses the sandbox wall: plain arrays in ``.npz`` files, never pickles.

Into the sandbox go the check inputs the grader made (nested dicts, lists and tuples of
arrays and scalars, encoded as a JSON skeleton plus arrays); out of it come framed messages
on a pipe: cell outputs as JSON, each check's outputs as an ``.npz``. The reader side treats
every byte as hostile: sizes are capped, ``allow_pickle=False`` everywhere, object arrays
refused, and a damaged stream ends the reading instead of raising from deep inside.

This module is also copied into the sandbox next to the runner, so it needs numpy only.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import IO, Any, Iterator

import numpy as np

SKELETON = "__skeleton__"
MAGIC = b"AGF1"
_HEADER = struct.Struct(">4s16sQ")  # magic, kind (ASCII, padded), payload length


class Unshippable(TypeError):
    """A value that is not plain data (a torch module, a generator, a function)."""


class BadPayload(ValueError):
    """Bytes from the sandbox that are not what the protocol allows."""


# --- plain data <-> (JSON skeleton, arrays) -------------------------------------------------


def encode(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Split plain data into a JSON-able skeleton and a dict of arrays, or raise Unshippable."""
    arrays: dict[str, np.ndarray] = {}

    def walk(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise Unshippable("object arrays are not plain data")
            key = f"a{len(arrays)}"
            arrays[key] = v
            return {"a": key}
        if isinstance(v, np.generic):
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(v)
            return {"s": key}
        if v is None or isinstance(v, (bool, str)):
            return {"v": v}
        if isinstance(v, (int, float)):
            return {"v": v} if type(v) in (int, float) else walk(np.asarray(v)[()])
        if isinstance(v, tuple):
            return {"t": [walk(x) for x in v]}
        if isinstance(v, list):
            return {"l": [walk(x) for x in v]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"d": [[k, walk(x)] for k, x in v.items()]}
        raise Unshippable(f"{type(v).__module__}.{type(v).__name__} is not plain data")

    return walk(value), arrays


def decode(skeleton: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode`."""
    if not isinstance(skeleton, dict) or len(skeleton) != 1:
        raise BadPayload("malformed skeleton")
    ((tag, body),) = skeleton.items()
    if tag == "a":
        return arrays[body]
    if tag == "s":
        return arrays[body][()]
    if tag == "v":
        return body
    if tag == "t":
        return tuple(decode(x, arrays) for x in body)
    if tag == "l":
        return [decode(x, arrays) for x in body]
    if tag == "d":
        return {k: decode(x, arrays) for k, x in body}
    raise BadPayload(f"unknown skeleton tag {tag!r}")


def pack(value: Any) -> bytes:
    """Plain data as the bytes of an uncompressed ``.npz``."""
    skeleton, arrays = encode(value)
    buf = io.BytesIO()
    meta = np.frombuffer(json.dumps(skeleton).encode(), dtype=np.uint8)
    np.savez(buf, **{SKELETON: meta}, **arrays)
    return buf.getvalue()


def load_npz(data: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` from an untrusted source: no pickles, no object arrays, capped.

    :func:`pack` never compresses, so a compressed member (a possible bomb) is refused, and
    each member's header must declare a plain dtype and a size that fits in what is left of
    ``max_bytes`` before its data is read."""
    if len(data) > max_bytes:
        raise BadPayload(f"{len(data)} bytes, more than the limit of {max_bytes}")
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            budget = max_bytes
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    raise BadPayload(f"{info.filename} is compressed")
                if info.file_size > budget:
                    raise BadPayload(f"arrays larger than the limit of {max_bytes} bytes")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
                    if dtype.hasobject:
                        raise BadPayload(f"{info.filename} is an object array")
                    size = int(np.prod(shape, dtype=np.int64))
                    budget -= size * dtype.itemsize
                    if budget < 0:
                        raise BadPayload(f"arrays larger than the limit of {max_bytes} bytes")
                    raw = member.read(size * dtype.itemsize)
                if len(raw) != size * dtype.itemsize:
                    raise BadPayload(f"{info.filename} is truncated")
                arr = np.frombuffer(raw, dtype=dtype, count=size)
                arr = arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                arrays[name] = arr
    except BadPayload:
        raise
    except Exception as exc:  # truncated zip, bad header...
        raise BadPayload(f"not a valid npz ({type(exc).__name__}: {exc})") from None
    return arrays


def unpack(data: bytes, max_bytes: int) -> Any:
    """Inverse of :func:`pack` for untrusted bytes."""
    arrays = load_npz(data, max_bytes)
    meta = arrays.pop(SKELETON, None)
    if meta is None or meta.dtype != np.uint8 or meta.ndim != 1:
        raise BadPayload("no skeleton")
    try:
        skeleton = json.loads(meta.tobytes().decode())
        return decode(skeleton, arrays)
    except BadPayload:
        raise
    except Exception as exc:
        raise BadPayload(f"malformed skeleton ({type(exc).__name__})") from None


# --- framed messages on a pipe --------------------------------------------------------------


def frame(kind: str, payload: bytes) -> bytes:
    tag = kind.encode("ascii")
    if len(tag) > 16:
        raise ValueError("frame kind too long")
    return _HEADER.pack(MAGIC, tag.ljust(16, b"\0"), len(payload)) + payload


def json_frame(kind: str, obj: Any) -> bytes:
    return frame(kind, json.dumps(obj, allow_nan=False).encode())


def read_frames(stream: IO[bytes], max_total: int, max_frame: int) -> Iterator[tuple[str, bytes]]:
    """Frames from ``stream`` until it ends; raises BadPayload on damage or when a limit is hit.

    Frames read before the damage have already been yielded, so a caller keeps them.
    """
    total = 0
    while True:
        header = _read_exactly(stream, _HEADER.size)
        if header is None:
            return
        magic, tag, length = _HEADER.unpack(header)
        if magic != MAGIC:
            raise BadPayload("damaged result stream (bad frame header)")
        if length > max_frame:
            raise BadPayload(f"a result of {length} bytes, more than the limit of {max_frame}")
        total += _HEADER.size + length
        if total > max_total:
            raise BadPayload(f"more than {max_total} bytes of results")
        payload = _read_exactly(stream, length)
        if payload is None:
            raise BadPayload("result stream cut off in the middle of a frame")
        try:
            kind = tag.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            raise BadPayload("damaged result stream (bad frame kind)") from None
        yield kind, payload


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            if got:
                raise BadPayload("result stream cut off in the middle of a frame")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
