"""Data crossing the sandbox wall: plain data in .npz files, framed messages on a pipe, and a
reader that treats every byte as hostile."""
import enum
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

from autograder import transport
from autograder.transport import BadPayload, Unshippable

MB = 2**20


def nested_value() -> dict:
    return {
        "x": np.arange(12, dtype=np.float64).reshape(3, 4),
        "ints": np.array([1, 2, 3], dtype=np.int32),
        "pair": (np.float32(1.5), np.int64(-7)),
        "zero_d": np.array(2.5),
        "list": [1, 2.0, True, None, "text", (), []],
        "deep": {"a": {"b": [(np.bool_(True), np.uint8(200))]}},
        "empty": np.zeros((0, 3)),
        "big_int": 2**70,
    }


def assert_same(got, want) -> None:
    """Equal values of the same types, all the way down."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, np.generic):
        assert got.dtype == want.dtype and got == want
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    else:
        assert got == want


def npz_bytes(compressed: bool = False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def skeleton(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


# --- encode / decode / pack / unpack -----------------------------------------------------


def test_encode_decode_round_trip_keeps_types_and_values():
    value = nested_value()
    skel, arrays = transport.encode(value)
    json.dumps(skel)  # the skeleton is plain JSON
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    assert_same(transport.decode(skel, arrays), value)


def test_pack_unpack_round_trip_through_npz_bytes():
    value = nested_value()
    data = transport.pack(value)
    assert data[:2] == b"PK"  # an ordinary zip (.npz), readable by numpy without pickles
    assert_same(transport.unpack(data, max_bytes=MB), value)


def test_zero_d_array_and_numpy_scalar_stay_distinct():
    out = transport.unpack(transport.pack([np.array(3.0), np.float64(3.0)]), MB)
    assert isinstance(out[0], np.ndarray) and out[0].ndim == 0
    assert isinstance(out[1], np.float64) and not isinstance(out[1], np.ndarray)


def test_int_subclass_is_shipped_as_a_numpy_integer():
    class Level(enum.IntEnum):
        HIGH = 3

    out = transport.unpack(transport.pack({"level": Level.HIGH}), MB)
    assert out["level"] == 3 and isinstance(out["level"], np.integer)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: None, id="function"),
        pytest.param((i for i in range(3)), id="generator"),
        pytest.param(np.array([1, "a"], dtype=object), id="object array"),
        pytest.param({"nested": [np.array([None])]}, id="nested object array"),
        pytest.param({1: 2.0}, id="non-string dict key"),
        pytest.param({1, 2}, id="set"),
        pytest.param(np.random.default_rng(0), id="numpy generator"),
    ],
)
def test_values_that_are_not_plain_data_are_unshippable(value):
    with pytest.raises(Unshippable):
        transport.encode(value)


def test_torch_objects_are_unshippable():
    torch = pytest.importorskip("torch")
    for value in (torch.nn.Linear(2, 3), torch.nn.functional.relu, {"t": torch.zeros(2)}):
        with pytest.raises(Unshippable, match="not plain data"):
            transport.pack(value)


def test_unpack_refuses_a_pickled_object_array():
    data = npz_bytes(**{transport.SKELETON: skeleton({"a": "a0"})}, a0=np.array([{"x": 1}, None], dtype=object))
    with np.load(io.BytesIO(data), allow_pickle=True) as npz:  # the file really holds a pickle
        assert npz["a0"].dtype == object
    with pytest.raises(BadPayload, match="object array|not a valid npz"):
        transport.unpack(data, MB)


@pytest.mark.parametrize("cut", [1, 10, 100, -30, -1])
def test_unpack_refuses_truncated_bytes(cut):
    data = transport.pack(nested_value())
    with pytest.raises(BadPayload):
        transport.unpack(data[:cut], MB)


@pytest.mark.parametrize("data", [b"", b"not a zip at all", b"PK\x03\x04" + b"\0" * 100])
def test_unpack_refuses_bytes_that_are_not_an_npz(data):
    with pytest.raises(BadPayload):
        transport.unpack(data, MB)


def test_unpack_refuses_oversize_bytes_before_reading_them():
    data = transport.pack({"x": np.zeros(1000)})
    with pytest.raises(BadPayload, match="more than the limit"):
        transport.unpack(data, max_bytes=len(data) - 1)
    assert transport.unpack(data, max_bytes=len(data))["x"].shape == (1000,)


def test_unpack_refuses_arrays_larger_than_the_limit_once_decompressed():
    data = npz_bytes(compressed=True, **{transport.SKELETON: skeleton({"a": "a0"})}, a0=np.zeros(2**17))
    assert len(data) < 64 * 1024  # small on the wire, 1 MiB of float64 inside
    with pytest.raises(BadPayload, match="larger than the limit|is compressed"):
        transport.unpack(data, max_bytes=64 * 1024)


def test_unpack_of_a_compressed_bomb_does_not_allocate_the_bomb():
    data = npz_bytes(compressed=True, **{transport.SKELETON: skeleton({"a": "a0"})}, a0=np.zeros(16 * MB // 8))
    assert len(data) < 100 * 1024
    tracemalloc.start()  # numpy reports its array buffers to tracemalloc
    try:
        with pytest.raises(BadPayload):
            transport.unpack(data, max_bytes=MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB, f"allocated {peak / MB:.0f} MiB for a {len(data) / 1024:.0f} KiB payload"


@pytest.mark.parametrize(
    "arrays",
    [
        pytest.param({"a0": np.zeros(3)}, id="no skeleton"),
        pytest.param({transport.SKELETON: np.zeros(3)}, id="skeleton of the wrong dtype"),
        pytest.param({transport.SKELETON: np.zeros((2, 2), np.uint8)}, id="2-d skeleton"),
        pytest.param({transport.SKELETON: np.frombuffer(b"{not json", np.uint8)}, id="skeleton not JSON"),
        pytest.param({transport.SKELETON: skeleton({"q": 1})}, id="unknown tag"),
        pytest.param({transport.SKELETON: skeleton({"a": "a0", "v": 1})}, id="two tags"),
        pytest.param({transport.SKELETON: skeleton({"a": "missing"})}, id="array that is not there"),
        pytest.param({transport.SKELETON: skeleton({"d": [[1]]})}, id="dict entry without a value"),
        pytest.param({transport.SKELETON: skeleton([1, 2])}, id="skeleton is a list"),
    ],
)
def test_unpack_refuses_a_malformed_skeleton_with_bad_payload(arrays):
    with pytest.raises(BadPayload):
        transport.unpack(npz_bytes(**arrays), MB)


def test_decode_refuses_unknown_tags():
    with pytest.raises(BadPayload, match="unknown skeleton tag"):
        transport.decode({"x": 1}, {})


# --- frames --------------------------------------------------------------------------------

FRAMES = [("begin", b'{"index": 0}'), ("check", b"\x00\x01binary" * 10), ("empty", b""), ("done", b"{}")]


def stream_of(frames) -> bytes:
    return b"".join(transport.frame(kind, payload) for kind, payload in frames)


def read_all(data: bytes, max_total: int = MB, max_frame: int = MB):
    """(frames read, the BadPayload that ended the reading or None)."""
    got = []
    try:
        for item in transport.read_frames(io.BytesIO(data), max_total, max_frame):
            got.append(item)
    except BadPayload as exc:
        return got, exc
    return got, None


class Trickle(io.RawIOBase):
    """A pipe that hands out at most three bytes per read."""

    def __init__(self, data: bytes):
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk, self.data = self.data[: min(n, 3)], self.data[min(n, 3):]
        return chunk


def test_frames_round_trip():
    assert read_all(stream_of(FRAMES)) == (FRAMES, None)


def test_frames_round_trip_through_short_reads():
    assert list(transport.read_frames(Trickle(stream_of(FRAMES)), MB, MB)) == FRAMES


def test_json_frame_carries_json_and_refuses_nan():
    (kind, payload), = list(transport.read_frames(io.BytesIO(transport.json_frame("cell", {"a": [1, "é"]})), MB, MB))
    assert kind == "cell" and json.loads(payload) == {"a": [1, "é"]}
    with pytest.raises(ValueError):
        transport.json_frame("cell", {"x": float("nan")})


def test_a_frame_kind_longer_than_the_header_allows_is_refused():
    transport.frame("x" * 16, b"")
    with pytest.raises(ValueError, match="too long"):
        transport.frame("x" * 17, b"")


def test_an_empty_stream_has_no_frames():
    assert read_all(b"") == ([], None)


def test_damaged_header_ends_the_reading_after_the_good_frames():
    data = stream_of(FRAMES[:2]) + b"XXXX" + stream_of(FRAMES[2:])[4:]
    got, error = read_all(data)
    assert got == FRAMES[:2]
    assert isinstance(error, BadPayload) and "bad frame header" in str(error)


def test_garbage_between_frames_is_damage():
    got, error = read_all(stream_of(FRAMES[:1]) + b"student wrote this to stdout\n" + stream_of(FRAMES[1:]))
    assert got == FRAMES[:1] and error is not None


def test_non_ascii_frame_kind_is_damage():
    header = transport._HEADER.pack(transport.MAGIC, "ü".encode().ljust(16, b"\0"), 0)
    got, error = read_all(stream_of(FRAMES[:1]) + header)
    assert got == FRAMES[:1] and "bad frame kind" in str(error)


@pytest.mark.parametrize("cut", [5, transport._HEADER.size, transport._HEADER.size + 3])
def test_cut_off_frame_keeps_the_frames_before_it(cut):
    whole = stream_of(FRAMES)
    last = transport.frame("check", b"p" * 10)
    got, error = read_all(whole + last[:cut])
    assert got == FRAMES
    assert isinstance(error, BadPayload) and "cut off" in str(error)


def test_per_frame_cap():
    big = [("check", b"x" * 100)]
    assert read_all(stream_of(big), max_frame=100) == (big, None)
    got, error = read_all(stream_of(FRAMES[:1] + big), max_frame=99)
    assert got == FRAMES[:1] and "more than the limit of 99" in str(error)


def test_total_cap_counts_headers_and_payloads():
    frames = [("cell", b"y" * 50)] * 4
    size = len(stream_of(frames))
    assert read_all(stream_of(frames), max_total=size) == (frames, None)
    got, error = read_all(stream_of(frames), max_total=size - 1)
    assert got == frames[:3] and f"more than {size - 1} bytes" in str(error)


def test_a_huge_declared_length_is_refused_without_waiting_for_it():
    header = transport._HEADER.pack(transport.MAGIC, b"check".ljust(16, b"\0"), 2**62)
    got, error = read_all(stream_of(FRAMES[:1]) + header)
    assert got == FRAMES[:1] and "more than the limit" in str(error)


def test_npz_written_by_pack_has_no_pickle_and_no_compression():
    data = transport.pack({"x": np.ones(3)})
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert not any(npz[name].dtype.hasobject for name in npz.files)
