"""aws-chunked decoding: AWS's examples, botocore's encoder, h11-style feeding, fuzzing."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.httpchecksum import (  # type: ignore[import-untyped]
    AwsChunkedWrapper,
    Crc32Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from kvbox.auth import sigv4
from kvbox.errors import ProtocolError, wire
from kvbox.proto import awschunked as ac

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "sigv4_s3_examples.json").read_text()
)
CREDS = VECTORS["credentials"]
SIGNED_EXAMPLE, TRAILER_EXAMPLE = VECTORS["streaming_examples"]
KEY = sigv4.signing_key(CREDS["secret_key"], "20130524", "us-east-1", "s3")
SIGNER = sigv4.ChunkSigner(KEY, CREDS["now"], "20130524/us-east-1/s3/aws4_request")
DOC_DATA = b"a" * 66560

Factory = Callable[[], ac.AwsChunkedDecoder]


def doc_body(example: dict[str, Any]) -> bytes:
    """The example's wire body, written out by hand from the documented signatures."""
    out = b""
    for size, sig in zip(example["chunk_sizes"], example["chunk_signatures"], strict=True):
        out += b"%x;chunk-signature=%s\r\n" % (size, sig.encode())
        if size:
            out += b"a" * size + b"\r\n"
    for name, value in example["trailers"]:
        out += f"{name}:{value}\r\n".encode()
    if example["trailer_signature"]:
        out += f"x-amz-trailer-signature:{example['trailer_signature']}\r\n".encode()
    return out + b"\r\n"


def signed_decoder(example: dict[str, Any] = SIGNED_EXAMPLE, **kwargs: Any) -> ac.AwsChunkedDecoder:
    mode = (
        sigv4.PayloadMode.STREAMING_SIGNED_TRAILER
        if example["trailer_signature"]
        else sigv4.PayloadMode.STREAMING_SIGNED
    )
    kwargs.setdefault("decoded_length", 66560)
    return ac.AwsChunkedDecoder(
        mode, signer=SIGNER, seed_signature=example["seed_signature"], **kwargs
    )


def unsigned_decoder(**kwargs: Any) -> ac.AwsChunkedDecoder:
    return ac.AwsChunkedDecoder(sigv4.PayloadMode.STREAMING_UNSIGNED_TRAILER, **kwargs)


def normalize(events: Sequence[ac.Event]) -> list[ac.Event]:
    """Merge adjacent Data events: how bytes were split is not part of the meaning."""
    out: list[ac.Event] = []
    for event in events:
        if isinstance(event, ac.Data) and out and isinstance(out[-1], ac.Data):
            out[-1] = ac.Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def decode(factory: Factory, body: bytes, step: int | None = None) -> list[ac.Event]:
    decoder = factory()
    events: list[ac.Event] = []
    if step is None:
        events += decoder.feed(body)
    else:
        for i in range(0, len(body), step):
            events += decoder.feed(body[i : i + step])
    events += decoder.finish()
    assert decoder.done
    return normalize(events)


def tr(factory: Factory, body: bytes, expected: list[ac.Event]) -> None:
    """h11's three feedings: all at once, byte by byte, and with trailing junk."""
    assert decode(factory, body) == expected
    assert decode(factory, body, step=1) == expected
    decoder = factory()
    events = decoder.feed(body + b"junk")
    assert normalize(events) == expected
    assert decoder.unused_data == b"junk"
    with pytest.raises(ac.TrailingData):
        decoder.finish()


def decode_error(factory: Factory, body: bytes) -> ac.AwsChunkedError:
    """Both feedings must fail the same way; returns the error."""
    errors = []
    for step in (None, 1):
        decoder = factory()
        with pytest.raises(ac.AwsChunkedError) as info:
            if step is None:
                decoder.feed(body)
            else:
                for i in range(len(body)):
                    decoder.feed(body[i : i + 1])
            decoder.finish()
        errors.append(info.value)
        with pytest.raises(ac.AwsChunkedError):
            decoder.feed(b"more")  # a failed decoder stays failed
    assert type(errors[0]) is type(errors[1])
    return errors[0]


# --- AWS's examples -------------------------------------------------------------------


def test_signed_example_decodes() -> None:
    body = doc_body(SIGNED_EXAMPLE)
    assert len(body) == SIGNED_EXAMPLE["content_length"]
    tr(signed_decoder, body, [ac.Data(DOC_DATA), ac.End(66560)])


def test_signed_trailer_example_decodes() -> None:
    body = doc_body(TRAILER_EXAMPLE)
    expected: list[ac.Event] = [
        ac.Data(DOC_DATA),
        ac.Trailer("x-amz-checksum-crc32c", "sOO8/Q=="),
        ac.End(66560),
    ]
    tr(
        lambda: signed_decoder(TRAILER_EXAMPLE, declared_trailers=["x-amz-checksum-crc32c"]),
        body,
        expected,
    )


def test_example_through_verify_request() -> None:
    """The documented seed request, verified, hands the decoder what it needs."""
    seed = next(e for e in VECTORS["header_examples"] if e["name"] == "streaming-seed")
    auth = (
        f"AWS4-HMAC-SHA256 Credential={CREDS['access_key']}/20130524/us-east-1/s3/aws4_request, "
        f"SignedHeaders={seed['signed_headers']}, Signature={seed['signature']}"
    )
    result = sigv4.verify_request(
        "PUT",
        seed["path"],
        [],
        [*map(tuple, seed["headers"]), ("Authorization", auth)],
        None,
        lambda ak: CREDS["secret_key"],
        datetime(2013, 5, 24, tzinfo=UTC),
    )
    decoder = ac.AwsChunkedDecoder.for_request(result, decoded_length=66560)
    events = normalize(decoder.feed(doc_body(SIGNED_EXAMPLE)) + decoder.finish())
    assert events == [ac.Data(DOC_DATA), ac.End(66560)]


def test_encoder_reproduces_the_examples() -> None:
    for example in (SIGNED_EXAMPLE, TRAILER_EXAMPLE):
        encoded = b"".join(
            ac.encode_aws_chunked(
                [b"a" * 65536, b"a" * 1024],
                signer=SIGNER,
                seed_signature=example["seed_signature"],
                trailers=[tuple(t) for t in example["trailers"]],
            )
        )
        assert encoded == doc_body(example)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda b: b.replace(b"aaaa", b"aaab", 1), ac.ChunkSignatureMismatch),
        (lambda b: b.replace(b"ad80c730", b"ad80c731", 1), ac.ChunkSignatureMismatch),
        (lambda b: b.replace(b"b6c6ea8a", b"00000000", 1), ac.ChunkSignatureMismatch),
        (lambda b: b[:100], ac.IncompleteBody),
        (lambda b: b[: 65536 + 87], ac.IncompleteBody),  # cut before the CRLF after data
        (lambda b: b[: len(b) - 90], ac.IncompleteBody),  # inside the final chunk line
        (lambda b: b.replace(b"\r\n400;", b"\r\n401;", 1), ac.DecodedLengthMismatch),
        (lambda b: b.replace(b"\r\n400;", b"\r\n3ff;", 1), ac.IncompleteBody),
        (lambda b: b.replace(b"a\r\n400;", b"aX\r\n400;", 1), ac.IncompleteBody),
        (
            lambda b: b.replace(b"\r\n\r\n", b"\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"),
            ac.MalformedTrailer,
        ),
    ],
)
def test_signed_example_corruptions(
    mutate: Callable[[bytes], bytes], error: type[Exception]
) -> None:
    assert isinstance(decode_error(signed_decoder, mutate(doc_body(SIGNED_EXAMPLE))), error)


def test_chunks_cannot_be_reordered_or_reseeded() -> None:
    body = doc_body(SIGNED_EXAMPLE)

    def wrong_seed() -> ac.AwsChunkedDecoder:
        return signed_decoder(SIGNED_EXAMPLE | {"seed_signature": "0" * 64})

    assert isinstance(decode_error(wrong_seed, body), ac.ChunkSignatureMismatch)
    first_end = body.index(b"\r\n400;") + 2
    last_start = body.index(b"0;chunk-signature=")
    swapped = body[first_end:last_start] + body[:first_end] + body[last_start:]
    assert isinstance(decode_error(signed_decoder, swapped), ac.ChunkSignatureMismatch)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda b: b.replace(b"sOO8/Q==", b"sOO8/Q=A"), ac.ChunkSignatureMismatch),
        (lambda b: b.replace(b"d81f82fc", b"d81f82fd"), ac.ChunkSignatureMismatch),
        (lambda b: b[: b.index(b"x-amz-trailer-signature")], ac.MalformedTrailer),
        (
            lambda b: b.replace(
                b"x-amz-trailer-signature", b"x-amz-checksum-sha1:AA==\r\nx-amz-trailer-signature"
            ),
            ac.ChunkSignatureMismatch,
        ),
        (lambda b: b.replace(b"\r\n\r\n", b"\r\nlate:1\r\n\r\n"), ac.MalformedTrailer),
    ],
)
def test_signed_trailer_corruptions(
    mutate: Callable[[bytes], bytes], error: type[Exception]
) -> None:
    body = mutate(doc_body(TRAILER_EXAMPLE))
    assert isinstance(decode_error(lambda: signed_decoder(TRAILER_EXAMPLE), body), error)


def test_client_variants_of_the_trailer_block() -> None:
    """Forms seen from real clients: LF-ended trailer lines, a blank line before the
    trailer signature, a missing final blank line, stray CRLFs at the very end."""
    body = doc_body(TRAILER_EXAMPLE)
    expected = decode(lambda: signed_decoder(TRAILER_EXAMPLE), body)
    variants = [
        body.replace(b"sOO8/Q==\r\n", b"sOO8/Q==\n\r\n"),
        body.replace(b"sOO8/Q==\r\n", b"sOO8/Q==\n"),
        body.replace(
            b"0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n",
            b"0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n\r\n",
        ),
        body[:-2],
        body + b"\r\n\r\n",
    ]
    for variant in variants:
        assert variant != body
        assert decode(lambda: signed_decoder(TRAILER_EXAMPLE), variant) == expected
        assert decode(lambda: signed_decoder(TRAILER_EXAMPLE), variant, step=1) == expected


def test_decoded_length_must_match() -> None:
    body = doc_body(SIGNED_EXAMPLE)
    short = decode_error(lambda: signed_decoder(decoded_length=66559), body)
    assert isinstance(short, ac.DecodedLengthMismatch) and wire(short).s3 == "IncompleteBody"
    long = decode_error(lambda: signed_decoder(decoded_length=66561), body)
    assert isinstance(long, ac.DecodedLengthMismatch)
    assert decode(lambda: signed_decoder(decoded_length=None), body)[-1] == ac.End(66560)


def test_min_chunk_size_rule() -> None:
    body = b"".join(ac.encode_aws_chunked([b"x" * 10, b"y" * 10]))
    assert isinstance(
        decode_error(lambda: unsigned_decoder(min_chunk_size=8192), body), ac.InvalidChunkSize
    )
    # The last data chunk may be small.
    ok = b"".join(ac.encode_aws_chunked([b"x" * 8192, b"y" * 10]))
    assert decode(lambda: unsigned_decoder(min_chunk_size=8192), ok)[0] == ac.Data(
        b"x" * 8192 + b"y" * 10
    )


# --- botocore's encoder (STREAMING-UNSIGNED-PAYLOAD-TRAILER) ---------------------------


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 2048), st.booleans(), st.integers(1, 700))
def test_botocore_aws_chunked_wrapper_decodes(
    data: bytes, chunk_size: int, with_checksum: bool, step: int
) -> None:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=Crc32Checksum if with_checksum else None,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=chunk_size,
    )
    body = wrapper.read()
    declared = ["x-amz-checksum-crc32"] if with_checksum else []
    events = decode(
        lambda: unsigned_decoder(decoded_length=len(data), declared_trailers=declared), body, step
    )
    expected: list[ac.Event] = [ac.Data(data)] if data else []
    if with_checksum:
        crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        expected.append(ac.Trailer("x-amz-checksum-crc32", crc))
    expected.append(ac.End(len(data)))
    assert events == expected


def test_unsigned_trailer_form_variants() -> None:
    data = b"a" * 17408
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    # 8 KiB + 8 KiB + 1 KiB with the LF-then-CRLF-CRLF ending some clients write.
    body = (
        b"2000\r\n"
        + data[:8192]
        + b"\r\n2000\r\n"
        + data[8192:16384]
        + b"\r\n400\r\n"
        + data[16384:]
        + b"\r\n0\r\n"
        + f"x-amz-checksum-crc32:{crc}\n\r\n\r\n".encode()
    )

    def factory() -> ac.AwsChunkedDecoder:
        return unsigned_decoder(decoded_length=17408, declared_trailers=["x-amz-checksum-crc32"])

    expected = [ac.Data(data), ac.Trailer("x-amz-checksum-crc32", crc), ac.End(17408)]
    assert decode(factory, body) == expected
    assert decode(factory, body, step=1) == expected
    # Whitespace around the colon is accepted, as S3 does.
    spaced = body.replace(b"crc32:", b"crc32 :  ")
    assert decode(factory, spaced) == expected


# --- framing errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nab\r\n0\r\n\r\n",
        b"+2\r\nab\r\n0\r\n\r\n",
        b"0x2\r\nab\r\n0\r\n\r\n",
        b" 2\r\nab\r\n0\r\n\r\n",
        b"2 \r\nab\r\n0\r\n\r\n",
        b"2_0\r\nab\r\n0\r\n\r\n",
        b"\r\n",
        b"2\nab\r\n0\r\n\r\n",
        b"1" * 17 + b"\r\n",
        b"1" * 300,
        b"%x\r\n" % (ac.MAX_CHUNK_SIZE + 1),
    ],
)
def test_bad_size_lines(body: bytes) -> None:
    assert isinstance(decode_error(unsigned_decoder, body), ac.InvalidChunkSize)


def test_signed_size_line_needs_a_signature() -> None:
    for line in (
        b"10000\r\n",
        b"10000;chunk-signature=abc\r\n",
        b"10000;chunk-signature=" + b"A" * 64 + b"\r\n",
    ):
        assert isinstance(decode_error(signed_decoder, line), ac.InvalidChunkSize)


def test_unsigned_chunk_extensions_are_ignored() -> None:
    assert decode(unsigned_decoder, b"2;ext=1\r\nab\r\n0\r\n\r\n") == [ac.Data(b"ab"), ac.End(2)]


@pytest.mark.parametrize(
    ("trailer_block", "declared"),
    [
        (b"no-colon\r\n\r\n", None),
        (b":empty-name\r\n\r\n", None),
        (b"bad name:1\r\n\r\n", None),
        (b"x-amz-checksum-crc32:\xc3\xa9\r\n\r\n", None),
        (b"x-amz-checksum-crc32:a\x01b\r\n\r\n", None),
        (b"x-amz-checksum-crc32:AA==\r\n\r\n", ["x-amz-checksum-sha256"]),
        (b"\r\n", ["x-amz-checksum-sha256"]),
        (b"a:1\r\na:2\r\n\r\n", None),
        (b"".join(b"t%d:1\r\n" % i for i in range(ac.MAX_TRAILERS + 1)) + b"\r\n", None),
        (b"a:" + b"x" * ac.MAX_TRAILER_LINE + b"\r\n\r\n", None),
        (b"x-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n", None),
    ],
)
def test_bad_trailers(trailer_block: bytes, declared: list[str] | None) -> None:
    body = b"2\r\nab\r\n0\r\n" + trailer_block
    error = decode_error(lambda: unsigned_decoder(declared_trailers=declared), body)
    assert isinstance(error, ac.MalformedTrailer)
    assert wire(error).s3 == "MalformedTrailerError"


def test_eof_rules() -> None:
    # The final blank line may be missing; a body ending before the zero chunk may not.
    assert decode(unsigned_decoder, b"2\r\nab\r\n0\r\n") == [ac.Data(b"ab"), ac.End(2)]
    assert decode(unsigned_decoder, b"2\r\nab\r\n0\r\nx-a:1\r\n")[-1] == ac.End(2)
    for cut in (
        b"",
        b"2\r\n",
        b"2\r\na",
        b"2\r\nab",
        b"2\r\nab\r",
        b"2\r\nab\r\n",
        b"2\r\nab\r\n0",
    ):
        assert isinstance(decode_error(unsigned_decoder, cut), ac.IncompleteBody)
    assert isinstance(decode_error(unsigned_decoder, b"2\r\nab\r\n0\r\nx-a:1"), ac.IncompleteBody)


def test_constructor_guards() -> None:
    with pytest.raises(ValueError):
        ac.AwsChunkedDecoder(sigv4.PayloadMode.UNSIGNED)
    with pytest.raises(ValueError):
        ac.AwsChunkedDecoder(sigv4.PayloadMode.STREAMING_SIGNED)
    with pytest.raises(ValueError):
        list(ac.encode_aws_chunked([b"x"], signer=SIGNER))


def test_parse_trailer_header() -> None:
    assert ac.parse_trailer_header(" X-Amz-Checksum-CRC32 , x-amz-checksum-sha256,") == (
        "x-amz-checksum-crc32",
        "x-amz-checksum-sha256",
    )


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (ac.IncompleteBody, "IncompleteBody", 400),
        (ac.DecodedLengthMismatch, "IncompleteBody", 400),
        (ac.ChunkSignatureMismatch, "SignatureDoesNotMatch", 403),
        (ac.InvalidChunkSize, "InvalidChunkSizeError", 400),
        (ac.MalformedTrailer, "MalformedTrailerError", 400),
        (ac.TrailingData, "IncompleteBody", 400),
    ],
)
def test_error_tree(error: type[ac.AwsChunkedError], code: str, status: int) -> None:
    assert issubclass(error, ProtocolError)
    assert (wire(error).s3, wire(error).status) == (code, status)


def test_data_streams_without_buffering() -> None:
    """A big chunk comes out piece by piece, as fed: memory is one piece, not the body."""
    decoder = unsigned_decoder()
    size = 1 << 20
    assert decoder.feed(b"%x\r\n" % size) == []
    piece = b"z" * 4096
    for _ in range(size // len(piece)):
        events = decoder.feed(piece)
        assert events == [ac.Data(piece)]
        event = events[0]
        assert isinstance(event, ac.Data) and event.data is piece  # passed on without a copy
    assert decoder.feed(b"\r\n0\r\n\r\n") == [ac.End(size)]


# --- properties -----------------------------------------------------------------------

chunk_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=6)
trailer_lists = st.lists(
    st.tuples(
        st.sampled_from(["x-amz-checksum-crc32", "x-amz-checksum-sha256", "x-amz-meta-t"]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    ),
    max_size=3,
    unique_by=lambda t: t[0],
)
_SEED = "f" * 64


@settings(max_examples=150, deadline=None)
@given(chunk_lists, trailer_lists, st.sampled_from(list(sigv4.PayloadMode)), st.data())
def test_roundtrip(
    chunks: list[bytes],
    trailers: list[tuple[str, str]],
    mode: sigv4.PayloadMode,
    data: st.DataObject,
) -> None:
    if not mode.streaming:
        return
    signed = mode is not sigv4.PayloadMode.STREAMING_UNSIGNED_TRAILER
    if mode is sigv4.PayloadMode.STREAMING_SIGNED:
        trailers = []
    body = b"".join(
        ac.encode_aws_chunked(
            chunks,
            signer=SIGNER if signed else None,
            seed_signature=_SEED if signed else None,
            trailers=trailers,
            sign_trailers=mode is sigv4.PayloadMode.STREAMING_SIGNED_TRAILER,
        )
    )
    payload = b"".join(chunks)
    decoder = ac.AwsChunkedDecoder(
        mode,
        signer=SIGNER if signed else None,
        seed_signature=_SEED if signed else None,
        decoded_length=len(payload),
        declared_trailers=[name for name, _ in trailers],
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    events: list[ac.Event] = []
    for start, stop in zip([0, *cuts], [*cuts, len(body)], strict=True):
        events += decoder.feed(body[start:stop])
    events += decoder.finish()
    expected: list[ac.Event] = [ac.Data(payload)] if payload else []
    expected += [ac.Trailer(name, value.strip()) for name, value in trailers]
    expected.append(ac.End(len(payload)))
    assert normalize(events) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=400)
    | st.builds(
        lambda a, b: a + b,
        st.sampled_from([b"5\r\n", b"0\r\n", b"10;chunk-signature=" + b"0" * 64 + b"\r\n"]),
        st.binary(max_size=100),
    ),
    st.sampled_from(
        [
            sigv4.PayloadMode.STREAMING_SIGNED,
            sigv4.PayloadMode.STREAMING_SIGNED_TRAILER,
            sigv4.PayloadMode.STREAMING_UNSIGNED_TRAILER,
        ]
    ),
    st.integers(1, 50),
)
def test_random_bytes_only_raise_protocol_errors(
    raw: bytes, mode: sigv4.PayloadMode, step: int
) -> None:
    decoder = ac.AwsChunkedDecoder(mode, signer=SIGNER, seed_signature=_SEED, decoded_length=None)
    try:
        for i in range(0, len(raw), step):
            decoder.feed(raw[i : i + step])
        decoder.finish()
    except ac.AwsChunkedError:
        pass


def test_decoder_hashes_incrementally() -> None:
    # The chunk hash is over the data, however it was split across feeds.
    chunk = bytes(range(256)) * 40
    body = b"".join(ac.encode_aws_chunked([chunk], signer=SIGNER, seed_signature=_SEED))
    for step in (1, 7, 4096):
        events = decode(
            lambda: ac.AwsChunkedDecoder(
                sigv4.PayloadMode.STREAMING_SIGNED, signer=SIGNER, seed_signature=_SEED
            ),
            body,
            step,
        )
        assert events == [ac.Data(chunk), ac.End(len(chunk))]
    assert hashlib.sha256(chunk).hexdigest()  # the payload is not all one byte


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=1500),
    st.integers(1, 300),
    st.booleans(),
)
def test_split_line_then_a_long_read(chunks: list[bytes], first: int, signed: bool) -> None:
    """A read that finishes a split line and carries many more small chunks: the decoder
    completes the line from a bounded look-ahead, then walks the rest of the read."""
    body = b"".join(
        ac.encode_aws_chunked(
            chunks, signer=SIGNER if signed else None, seed_signature=_SEED if signed else None
        )
    )
    mode = (
        sigv4.PayloadMode.STREAMING_SIGNED
        if signed
        else sigv4.PayloadMode.STREAMING_UNSIGNED_TRAILER
    )
    decoder = ac.AwsChunkedDecoder(
        mode,
        signer=SIGNER if signed else None,
        seed_signature=_SEED if signed else None,
        decoded_length=sum(map(len, chunks)),
    )
    events = decoder.feed(body[:first]) + decoder.feed(body[first:]) + decoder.finish()
    assert normalize(events) == [ac.Data(b"".join(chunks)), ac.End(sum(map(len, chunks)))]


def test_input_after_the_end() -> None:
    decoder = unsigned_decoder()
    assert decoder.feed(b"2\r\nab\r\n0\r\n\r\n") == [ac.Data(b"ab"), ac.End(2)]
    assert decoder.feed(b"\r\n") == []  # stray line ends are tolerated
    assert decoder.finish() == []
    decoder = unsigned_decoder()
    decoder.feed(b"2\r\nab\r\n0\r\n\r\n")
    assert decoder.feed(b"\r\nnext request") == []
    assert decoder.unused_data == b"next request"
    with pytest.raises(ac.TrailingData):
        decoder.finish()
