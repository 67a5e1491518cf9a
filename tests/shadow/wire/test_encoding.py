"""Undoing content codings: every supported coding, chunked, bounded, cut short, or broken."""

from __future__ import annotations

import gzip
import time
import zlib

import pytest

from shadow.wire.encoding import BodyDecoder, Undecodable, decode_body, parse_codings
from tests.capture.encoded import CODINGS, compress

PLAIN = b'{"model":"m","messages":[{"role":"user","content":"refactor the parser"}]}' * 40


@pytest.mark.parametrize("coding", CODINGS)
def test_each_coding_decodes_whole_and_byte_by_byte(coding: str) -> None:
    """One call or one byte at a time, the output is the plain body."""
    packed = compress(PLAIN, coding)
    assert decode_body(packed, coding, limit=1 << 20) == (PLAIN, False)
    one_by_one = [packed[i : i + 1] for i in range(len(packed))]
    assert decode_body(one_by_one, coding, limit=1 << 20) == (PLAIN, False)


@pytest.mark.parametrize("coding", CODINGS)
def test_output_stops_at_the_limit_so_a_bomb_costs_nothing(coding: str) -> None:
    """64 MiB of zeros compressed to a few KiB decode to the 1 MiB limit, flagged, at once."""
    bomb = compress(b"\0" * (64 << 20), coding)
    started = time.perf_counter()
    body, truncated = decode_body(bomb, coding, limit=1 << 20)
    assert time.perf_counter() - started < 1.0
    assert body == b"\0" * (1 << 20)
    assert truncated


@pytest.mark.parametrize("coding", CODINGS)
def test_a_body_cut_by_the_cap_decodes_as_far_as_it_goes(coding: str) -> None:
    """Input cut short: a prefix when the cap cut it, an error when it claimed to be whole."""
    packed = compress(bytes(range(256)) * 400, coding)  # little redundancy: output per byte
    cut = packed[: len(packed) * 3 // 4]
    body, truncated = decode_body(cut, coding, limit=1 << 20, complete=False)
    assert (bytes(range(256)) * 400).startswith(body)
    assert not truncated
    with pytest.raises(Undecodable, match="ends before its compressed stream does"):
        decode_body(cut, coding, limit=1 << 20)


@pytest.mark.parametrize("coding", CODINGS)
def test_bytes_that_are_not_in_the_coding_raise_with_the_reason(coding: str) -> None:
    """Plain text under a coding's header is undecodable, named by the coding."""
    with pytest.raises(Undecodable, match=f"^{coding} body does not decode"):
        decode_body(b"this was never compressed, whatever the header says", coding, limit=4096)


def test_raw_deflate_gzip_members_zstd_frames_and_stacked_codings() -> None:
    """What real clients send besides the textbook case."""
    raw = zlib.compressobj(wbits=-15)
    assert decode_body(raw.compress(PLAIN) + raw.flush(), "deflate", limit=1 << 20)[0] == PLAIN
    assert decode_body(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", limit=99)[0] == b"abcd"
    zstd_frames = compress(b"ab", "zstd") + compress(b"cd", "zstd")
    assert decode_body(zstd_frames, "zstd", limit=99)[0] == b"abcd"
    stacked = compress(compress(PLAIN, "gzip"), "br")
    assert decode_body(stacked, "gzip, br", limit=1 << 20) == (PLAIN, False)
    assert decode_body(compress(PLAIN, "gzip"), "X-GZIP", limit=1 << 20)[0] == PLAIN
    assert decode_body(PLAIN, "identity", limit=1 << 20) == (PLAIN, False)


def test_unknown_codings_are_refused_by_name() -> None:
    """``compress`` (LZW) and made-up codings are named in the reason."""
    with pytest.raises(Undecodable, match="unsupported content-encoding compress, snappy"):
        parse_codings("gzip, compress, snappy")
    with pytest.raises(Undecodable):
        BodyDecoder("lzma", limit=10)
    assert parse_codings(" GZip , identity, br ") == ["gzip", "br"]
