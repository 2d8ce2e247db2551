"""The streamed POST /faxes body: exact length, valid JSON, bounded memory."""

from __future__ import annotations

import base64
import hashlib
import json
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.efax.body import b64_length, build_send_body
from gateway.efax.client import EfaxClient
from gateway.efax.errors import EfaxPermanentError
from gateway.efax.models import Destination, DocumentSource, FaxOptions

DEST = (Destination("18665559999"),)


def source(data: bytes, chunk: int = 7, document_type: str = "PDF") -> DocumentSource:
    async def open_() -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk):
            yield data[start : start + chunk]

    return DocumentSource(document_type, len(data), open_)


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 6, 7, 100, 1000])
def test_b64_length(size: int) -> None:
    assert b64_length(size) == len(base64.b64encode(b"x" * size))


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64, 10_000])
async def test_body_is_valid_json_of_exact_length(chunk: int) -> None:
    docs = [bytes(range(256)) * 3 + b"tail", b"", b"ab", "héllo ☃".encode()]
    body = build_send_body(
        [Destination("18665559999", to_name="Joe «Bloggs»"), Destination("+442079460958")],
        [source(doc, chunk, kind) for doc, kind in zip(docs, ["PDF", "TXT", "pdf", "TXT"], strict=True)],
        FaxOptions(),
        "job-1",
    )
    raw = await collect(body.stream())
    assert len(raw) == body.content_length
    data = json.loads(raw)
    assert [base64.b64decode(d["document_content"]) for d in data["documents"]] == docs
    assert [d["document_type"] for d in data["documents"]] == ["PDF", "TXT", "PDF", "TXT"]
    assert data["destinations"] == [
        {"fax_number": "18665559999", "to_name": "Joe «Bloggs»"},
        {"fax_number": "+442079460958"},
    ]
    assert data["fax_options"] == {"include_cover_page": False}
    assert data["client_data"] == {"client_reference_id": "job-1"}
    assert await collect(body.stream()) == raw  # a second stream starts over


async def test_all_options_rendered() -> None:
    options = FaxOptions(
        include_cover_page=True,
        cover_from_name="Mary Adams",
        cover_subject="Endorsement",
        cover_message="Hello",
        image_resolution="fine",
        retry_non_billable=5,
        retry_billable=2,
        retry_human_answer=1,
        custom_csid="ACME FAX",
    )
    body = build_send_body([Destination("18665559999", "Joe", "Acme")], [source(b"x")], options, "r")
    data = json.loads(await collect(body.stream()))
    assert data["destinations"] == [{"fax_number": "18665559999", "to_name": "Joe", "to_company": "Acme"}]
    assert data["fax_options"] == {
        "include_cover_page": True,
        "image_resolution": "FINE",
        "cover_page_options": {"from_name": "Mary Adams", "subject": "Endorsement", "message": "Hello"},
        "retry_options": {"non_billable": 5, "billable": 2, "human_answer": 1},
        "custom_CSID": "ACME FAX",
    }


def test_cover_text_not_sent_without_cover_page() -> None:
    body = build_send_body(DEST, [source(b"x")], FaxOptions(cover_subject="s"), "r")
    assert b"cover_page_options" not in body.prefix


@pytest.mark.parametrize(
    ("destinations", "documents", "options", "words"),
    [
        ([], [source(b"x")], FaxOptions(), "no destination"),
        ([Destination("1")] * 51, [source(b"x")], FaxOptions(), "51 destinations"),
        ([Destination(" ")], [source(b"x")], FaxOptions(), "empty fax number"),
        (DEST, [], FaxOptions(), "no document"),
        (DEST, [source(b"x")] * 26, FaxOptions(), "26 documents"),
        (DEST, [source(b"x", document_type="")], FaxOptions(), "no document type"),
        (DEST, [source(b"x")], FaxOptions(image_resolution="HIGH"), "FINE or STANDARD"),
        (DEST, [source(b"x")], FaxOptions(retry_billable=0), "billable=0"),
        (DEST, [source(b"x")], FaxOptions(retry_human_answer=4), "human_answer=4"),
        (
            DEST,
            [DocumentSource("PDF", 80_000_000, lambda: source(b"").open())],
            FaxOptions(),
            "MB once encoded",
        ),
    ],
)
def test_refused_before_sending(
    destinations: list[Destination],
    documents: list[DocumentSource],
    options: FaxOptions,
    words: str,
) -> None:
    with pytest.raises(EfaxPermanentError) as caught:
        build_send_body(destinations, documents, options, "r")
    assert caught.value.status == 0
    assert words in str(caught.value)
    assert "Nothing was sent" in str(caught.value)


def lying_source(declared: int, actual: bytes) -> DocumentSource:
    async def open_() -> AsyncIterator[bytes]:
        yield actual

    return DocumentSource("PDF", declared, open_)


@pytest.mark.parametrize(("declared", "actual"), [(10, b"x" * 9), (10, b"x" * 11), (0, b"x")])
async def test_document_of_wrong_size_is_refused(declared: int, actual: bytes) -> None:
    sent: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)  # pragma: no cover - the body never completes
        return httpx.Response(201, json=[])  # pragma: no cover

    def tokens(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "t", "expires_in": 100})

    async def route(request: httpx.Request) -> httpx.Response:
        return tokens(request) if request.url.path == "/tokens" else await handler(request)

    async with EfaxClient(
        base_url="https://efax.test", app_id="a", api_key="k", transport=httpx.MockTransport(route)
    ) as client:
        with pytest.raises(EfaxPermanentError) as caught:
            await client.send_fax(
                user_id="u",
                destinations=DEST,
                documents=[lying_source(declared, actual)],
                options=FaxOptions(),
                client_reference_id="r",
                transaction_id="t",
            )
    assert caught.value.status == 0
    assert "declared" in str(caught.value)
    assert sent == []


class StreamingEfax(httpx.AsyncBaseTransport):
    """Reads POST /faxes incrementally, as a server would, checking the document."""

    MARK = b'"document_content":"'

    def __init__(self) -> None:
        self.received = 0
        self.declared = 0
        self.digest = hashlib.sha256()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/tokens":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 100})
        self.declared = int(request.headers["content-length"])
        head, pending, in_document = b"", b"", False
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for chunk in request.stream:
            self.received += len(chunk)
            if not in_document:
                head += chunk
                if self.MARK not in head:
                    continue
                in_document = True
                chunk = head.split(self.MARK, 1)[1]
            pending += chunk.split(b'"', 1)[0]
            usable = len(pending) - len(pending) % 4
            self.digest.update(base64.b64decode(pending[:usable]))
            pending = pending[usable:]
        self.digest.update(base64.b64decode(pending))
        return httpx.Response(
            201,
            json=[
                {
                    "fax_id": "ea7382cf-8483-4bc5-954e-d3bc7074246a",
                    "destination_fax_number": "8665559999",
                }
            ],
        )


def generated_pdf(megabytes: int) -> tuple[DocumentSource, str]:
    block = bytes(range(256)) * 256  # 64 KiB, yielded again and again
    count = megabytes * 16
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)

    def open_() -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield block

        return chunks()

    return DocumentSource("PDF", len(block) * count, open_), expected.hexdigest()


async def test_forty_megabyte_pdf_streams_with_small_buffers() -> None:
    document, expected = generated_pdf(40)
    server = StreamingEfax()
    client = EfaxClient(base_url="https://efax.test", app_id="a", api_key="k", transport=server)
    tracemalloc.start()
    try:
        submitted = await client.send_fax(
            user_id="u",
            destinations=DEST,
            documents=[document],
            options=FaxOptions(),
            client_reference_id="r",
            transaction_id="t",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await client.aclose()
    assert submitted[0].destination_fax_number == "8665559999"
    assert server.received == server.declared > b64_length(document.size)
    assert server.digest.hexdigest() == expected
    assert peak < 4_000_000, f"peak traced memory {peak} bytes"
