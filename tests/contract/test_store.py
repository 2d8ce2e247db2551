"""The store contract: every backend must pass these (SQLite now; PostgreSQL joins the params)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.store import Store
from gateway.store.base import (
    JobKind,
    JobState,
    MessageOptions,
    NewDocument,
    NewJob,
    NewMessage,
    PartialTooBig,
    Recipient,
    TooManySplitMails,
)
from gateway.store.engine import SqlStore


def message(n: int, content: bytes = b"%PDF-1.4 test") -> NewMessage:
    return NewMessage(
        id=f"JOB{n:05d}",
        received_at=1000.0 + n,
        mailbox_user_id="u1",
        envelope_from="a@example.com",
        header_from="a@example.com",
        report_to="a@example.com",
        auth="trusted 127.0.0.1",
        message_id=f"<m{n}@example.com>",
        subject="s",
        recipients=[Recipient("13235551212", "+1 323-555-1212")],
        options=MessageOptions(pages=1),
        raw=b"raw mail",
        documents=[NewDocument("a.pdf", "PDF", "pdf", 1, content)],
    )


async def test_accept_stores_message_documents_and_job_together(store: Store) -> None:
    await store.accept_message(message(1))
    stored = await store.message("JOB00001")
    assert stored is not None
    assert stored.recipients == (Recipient("13235551212", "+1 323-555-1212"),)
    assert [d.filename for d in stored.documents] == ["a.pdf"]
    jobs = await store.jobs(kind=JobKind.DISPATCH)
    assert [(j.ref, j.state) for j in jobs] == [("JOB00001", JobState.QUEUED)]


async def test_a_failing_item_does_not_take_its_batch_down(store: Store) -> None:
    results = await asyncio.gather(
        store.accept_message(message(1)),
        store.accept_message(message(1)),
        store.accept_message(message(2)),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)  # duplicate id refused
    assert {j.ref for j in await store.jobs()} == {"JOB00001", "JOB00002"}


async def test_concurrent_accepts_share_commits(store: Store) -> None:
    assert isinstance(store, SqlStore)  # both backends: the commits are the engine's count
    before = store.commits
    await asyncio.gather(*(store.accept_message(message(n)) for n in range(100)))
    assert len(await store.jobs(limit=1000)) == 100
    assert store.commits - before < 100  # group commit: fewer fsyncs than mails


async def test_claim_is_exclusive_and_leases_expire(store: Store) -> None:
    await store.accept_message(message(1))
    job = await store.claim(JobKind.DISPATCH, owner="w1", now=2000, lease_s=60)
    assert job is not None and job.attempts == 1
    assert await store.claim(JobKind.DISPATCH, owner="w2", now=2010, lease_s=60) is None
    taken = await store.claim(JobKind.DISPATCH, owner="w2", now=2061, lease_s=60)
    assert taken is not None and taken.id == job.id and taken.attempts == 2
    # the first owner lost its lease: its late writes are refused
    assert not await store.finish(job, owner="w1", now=2062, state=JobState.DONE)
    assert await store.finish(taken, owner="w2", now=2062, state=JobState.DONE)


async def test_defer_then_due_again(store: Store) -> None:
    await store.accept_message(message(1))
    job = await store.claim(JobKind.DISPATCH, owner="w", now=2000, lease_s=60)
    assert job is not None
    assert await store.defer(job, owner="w", now=2000, run_after=2100, error="503")
    assert await store.claim(JobKind.DISPATCH, owner="w", now=2050, lease_s=60) is None
    again = await store.claim(JobKind.DISPATCH, owner="w", now=2100, lease_s=60)
    assert again is not None and again.last_error == "503"


async def test_an_administrative_state_change_may_replace_payload_and_error(store: Store) -> None:
    await store.accept_message(message(1))
    job = await store.claim(JobKind.DISPATCH, owner="w", now=2000, lease_s=60)
    assert job is not None
    assert await store.set_job_state(
        job.id, JobState.HELD, now=2001, payload={"crashes": 3}, error="crashed 3 times, last: boom"
    )
    held = await store.job(job.id)
    assert held is not None and (held.state, held.payload, held.last_error) == (
        JobState.HELD,
        {"crashes": 3},
        "crashed 3 times, last: boom",
    )
    assert held.lease_owner is None
    assert await store.set_job_state(job.id, JobState.QUEUED, now=2002, run_after=2002)  # both kept
    queued = await store.job(job.id)
    assert queued is not None and (queued.payload, queued.last_error) == ({"crashes": 3}, held.last_error)


async def test_release_gives_jobs_back(store: Store) -> None:
    await store.accept_message(message(1))
    job = await store.claim(JobKind.DISPATCH, owner="w", now=2000, lease_s=600)
    assert job is not None
    assert await store.release(owner="w", now=2001) == 1
    again = await store.claim(JobKind.DISPATCH, owner="x", now=2002, lease_s=600)
    assert again is not None and again.attempts == 1


async def test_record_submission_creates_track_jobs_once(store: Store) -> None:
    await store.accept_message(message(1))
    job = await store.claim(JobKind.DISPATCH, owner="w", now=2000, lease_s=60)
    assert job is not None
    ok = await store.record_submission(job, owner="w", now=2001, faxes=[("f1", "n1"), ("f2", "n2")], note="x")
    assert ok
    stored = await store.message("JOB00001")
    assert stored is not None and stored.submit_state == "submitted"
    assert [f.fax_id for f in await store.faxes("JOB00001")] == ["f1", "f2"]
    assert {j.ref for j in await store.jobs(kind=JobKind.TRACK)} == {"f1", "f2"}
    actions = [e.action for e in await store.events("JOB00001")]
    assert actions[0] == "accepted" and "handed to eFax" in actions


async def test_document_hashes_are_recorded_with_the_submission_and_survive_the_purge(store: Store) -> None:
    await store.accept_message(message(1))
    job = await store.claim(JobKind.DISPATCH, owner="w", now=2000, lease_s=60)
    assert job is not None
    before = await store.message("JOB00001")
    assert before is not None and [d.sha256 for d in before.documents] == [None]
    digest = "ab" * 32
    doc_id = before.documents[0].id
    ok = await store.record_submission(
        job, owner="w", now=2001, faxes=[("f1", "n1")], note="x", hashes=[(doc_id, digest)]
    )
    assert ok
    stored = await store.message("JOB00001")
    assert stored is not None and [d.sha256 for d in stored.documents] == [digest]
    assert await store.purge(before=10_000, now=10_000) == (1, 0)
    purged = await store.message("JOB00001")
    assert purged is not None and purged.purged_at is not None
    assert [d.sha256 for d in purged.documents] == [digest]


async def test_a_reply_token_works_once_and_not_after_it_ran_out(store: Store) -> None:
    await store.accept_message(message(1))
    await store.add_reply_token(
        token_hash="h1", message_id="JOB00001", report_ref="JOB00001", now=2000, expires_at=3000
    )
    await store.add_reply_token(
        token_hash="h2", message_id="JOB00001", report_ref="JOB00001:held", now=2000, expires_at=2500
    )
    token = await store.reply_token("h1")
    assert token is not None and token.usable(2999) and not token.usable(3001)
    job = NewJob(JobKind.REPLY, "R1", {"word": "retry"})
    assert await store.use_reply_token("h1", now=2100, used_for="retry", job=job, detail="retry from a")
    assert not await store.use_reply_token(
        "h1", now=2101, used_for="retry", job=NewJob(JobKind.REPLY, "R2"), detail=""
    )
    assert not await store.use_reply_token(
        "h2", now=2600, used_for="cancel", job=NewJob(JobKind.REPLY, "R3"), detail=""
    )
    assert not await store.use_reply_token(
        "nope", now=2100, used_for="retry", job=NewJob(JobKind.REPLY, "R4"), detail=""
    )
    used = await store.reply_token("h1")
    assert used is not None and used.used_at == 2100 and used.used_for == "retry" and not used.usable(2200)
    assert [j.ref for j in await store.jobs(kind=JobKind.REPLY)] == ["R1"]
    assert "reply" in [e.action for e in await store.events("JOB00001")]


async def test_copy_message_is_a_new_attempt_with_the_same_documents(store: Store) -> None:
    content = bytes(range(256)) * 100
    await store.accept_message(message(1, content))
    again = [Recipient("13235550000", "+1 323-555-0000", "Bob")]
    assert await store.copy_message(
        "JOB00001", new_id="JOB00002", recipients=again, auth="trusted x", now=5000, detail="reply from a"
    )
    copy = await store.message("JOB00002")
    assert copy is not None and copy.recipients == tuple(again) and copy.submit_state == "none"
    assert copy.received_at == 5000 and copy.message_id == "<m1@example.com>"
    chunks = [c async for c in store.document_chunks(copy.documents[0].id)]
    assert b"".join(chunks) == content
    assert await store.raw_message("JOB00002") == b"raw mail"
    dispatch = await store.find_job(JobKind.DISPATCH, "JOB00002")
    assert dispatch is not None and dispatch.state is JobState.QUEUED
    assert "new attempt" in [e.action for e in await store.events("JOB00001")]
    assert not await store.copy_message(
        "NOPE", new_id="JOB00003", recipients=again, auth="", now=1, detail=""
    )


async def test_document_chunks_stream_the_blob(store: Store) -> None:
    content = bytes(range(256)) * 10_000
    await store.accept_message(message(1, content))
    stored = await store.message("JOB00001")
    assert stored is not None
    chunks = [c async for c in store.document_chunks(stored.documents[0].id, chunk_size=65536)]
    assert len(chunks) > 1
    assert b"".join(chunks) == content


async def test_big_documents_and_raw_mails_come_back_byte_for_byte(store: Store) -> None:
    big = bytes(range(251)) * 12_600  # over 3 MiB and not a whole number of MiB: written a chunk at a time
    mail = message(1, big)
    raw = b"Subject: big\r\n\r\n" + bytes(range(256)) * 8_200
    documents = [*mail.documents, NewDocument("b.txt", "TXT", "text", 1, b"small")]
    await store.accept_message(NewMessage(**{**mail.__dict__, "raw": raw, "documents": documents}))
    stored = await store.message("JOB00001")
    assert stored is not None
    assert [(d.filename, d.size) for d in stored.documents] == [("a.pdf", len(big)), ("b.txt", 5)]
    assert b"".join([c async for c in store.document_chunks(stored.documents[0].id)]) == big
    assert b"".join([c async for c in store.document_chunks(stored.documents[1].id)]) == b"small"
    assert await store.raw_message("JOB00001") == raw


async def test_one_batch_of_small_and_big_mails_keeps_each_one_whole(store: Store) -> None:
    """Small mails go in with multi-row statements, big ones a chunk at a time: one batch."""
    big = bytes(range(251)) * 5_000  # over 1 MiB
    mails = []
    for n in range(150):  # more rows than one multi-row statement takes
        mail = message(n, big if n % 50 == 7 else f"%PDF-1.4 doc {n}".encode())
        two = [*mail.documents, NewDocument("b.txt", "TXT", "text", 1, f"text {n}".encode())]
        mails.append(NewMessage(**{**mail.__dict__, "raw": f"raw {n}".encode(), "documents": two}))
    await asyncio.gather(*(store.accept_message(m) for m in mails))
    assert len(await store.jobs(kind=JobKind.DISPATCH, limit=1000)) == 150
    for mail in mails[::7]:
        stored = await store.message(mail.id)
        assert stored is not None and stored.subject == "s"
        assert [d.seq for d in stored.documents] == [0, 1]
        for doc, new in zip(stored.documents, mail.documents, strict=True):
            assert b"".join([c async for c in store.document_chunks(doc.id)]) == new.content
        assert await store.raw_message(mail.id) == mail.raw
        assert [e.action for e in await store.events(mail.id)] == ["accepted"]


@pytest.mark.parametrize("left_out", [False, True], ids=["with-content", "content-left-out"])
@pytest.mark.parametrize("size", [10, 5_000, 3 << 20])  # small, a few chunks, big mail
async def test_a_document_kept_as_base64_in_the_raw_mail_comes_back_decoded(
    store: Store, tmp_path: Path, size: int, left_out: bool
) -> None:
    """Given its content, or only its size (as a reader process answers), the store keeps
    where the document is in the raw mail and decodes it from there."""
    import base64

    content = bytes(range(251)) * (size // 251) + b"%PDF"[: size % 4 + 1]
    text = base64.encodebytes(content).replace(b"\n", b"\r\n")  # 76 characters a line
    head = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    raw = head + text + b"\r\n--end--\r\n"
    span = (len(head), len(head) + len(text))
    if left_out:
        doc = NewDocument("a.pdf", "PDF", "pdf", 1, b"", raw_span=span, length=len(content))
    else:
        doc = NewDocument("a.pdf", "PDF", "pdf", 1, content, raw_span=span)
    mail = message(1)
    await store.accept_message(NewMessage(**{**mail.__dict__, "raw": raw, "documents": [doc]}))
    stored = await store.message("JOB00001")
    assert stored is not None and stored.documents[0].size == len(content)
    chunks = [c async for c in store.document_chunks(stored.documents[0].id, chunk_size=999)]
    assert b"".join(chunks) == content
    assert max(len(c) for c in chunks) <= 999 and (len(chunks) > 1) == (len(content) > 999)  # streamed


def test_a_document_may_leave_its_content_out_only_with_a_raw_span() -> None:
    with pytest.raises(ValueError, match="raw_span"):
        NewDocument("a.pdf", "PDF", "pdf", 1, b"", length=10)
    with pytest.raises(ValueError, match="raw_span"):
        NewDocument("a.pdf", "PDF", "pdf", 1, b"%PDF", raw_span=(0, 8), length=4)


async def test_enqueue_is_unique_by_kind_and_ref(store: Store) -> None:
    assert await store.enqueue(JobKind.DELIVER, "fax-1", {"a": 1}, now=1)
    assert not await store.enqueue(JobKind.DELIVER, "fax-1", {"a": 2}, now=2)


async def test_received_fax_is_recorded_once_with_one_deliver_job(store: Store) -> None:
    assert await store.record_received(user_id="u", fax_id="f1", metadata={"pages": 2}, now=10)
    assert not await store.record_received(user_id="u", fax_id="f1", metadata={"pages": 2}, now=11)
    assert [j.ref for j in await store.jobs(kind=JobKind.DELIVER)] == ["f1"]
    await store.store_received_image("f1", b"%PDF-image", now=12)
    await store.update_received("f1", now=13, state="mailed", delivered_to=["b@x", "a@x", "a@x"])
    record = await store.received("f1")
    assert record is not None
    assert (record.state, record.delivered_to, record.has_image) == ("mailed", ("a@x", "b@x"), True)
    assert await store.received_image("f1") == b"%PDF-image"


async def test_finish_and_enqueue_is_atomic_and_fenced(store: Store) -> None:
    from gateway.store.base import NewJob

    await store.enqueue(JobKind.TRACK, "fax-1", {}, now=1)
    job = await store.claim(JobKind.TRACK, owner="w", now=2, lease_s=10)
    assert job is not None
    assert not await store.finish_and_enqueue(
        job, owner="other", now=3, state=JobState.DONE, enqueue=[NewJob(JobKind.REPORT, "m1")]
    )
    assert await store.jobs(kind=JobKind.REPORT) == []
    assert await store.finish_and_enqueue(
        job, owner="w", now=3, state=JobState.DONE, enqueue=[NewJob(JobKind.REPORT, "m1")]
    )
    assert [j.ref for j in await store.jobs(kind=JobKind.REPORT)] == ["m1"]


async def test_expedite_makes_a_waiting_job_due(store: Store) -> None:
    await store.enqueue(JobKind.TRACK, "fax-1", {}, now=1, run_after=1000)
    assert await store.claim(JobKind.TRACK, owner="w", now=5, lease_s=10) is None
    assert await store.expedite(JobKind.TRACK, "fax-1", now=5)
    assert await store.claim(JobKind.TRACK, owner="w", now=5, lease_s=10) is not None
    assert not await store.expedite(JobKind.TRACK, "nope", now=5)


async def test_poll_bookkeeping(store: Store) -> None:
    await store.record_poll("u", now=10, ok=True)
    await store.record_poll("u", now=20, ok=False, error="503")
    [poll] = await store.polls()
    assert (poll.last_try_at, poll.last_ok_at, poll.last_error) == (20, 10, "503")


async def test_partial_pieces_complete_only_with_every_number(store: Store) -> None:
    async def add(number: int, total: int | None, raw: bytes) -> list[bytes] | None:
        return await store.add_partial(
            sender_key="a@x",
            partial_id="p1",
            number=number,
            total=total,
            raw=raw,
            now=1.0,
            expire_at=100.0,
            payload={},
        )

    assert await add(2, None, b"two") is None
    assert await add(3, 3, b"three") is None
    assert await add(2, None, b"two") is None  # a resend
    assert await add(1, None, b"one") == [b"one", b"two", b"three"]
    assert [j.ref for j in await store.jobs(kind=JobKind.PARTIAL)] == ["a@x p1"]  # one expiry job
    await store.drop_partial(sender_key="a@x", partial_id="p1")
    assert await store.partial_pieces(sender_key="a@x", partial_id="p1") == []


async def test_a_piece_over_the_split_mails_bounds_is_not_kept(store: Store) -> None:
    async def add(number: int, raw: bytes) -> list[bytes] | None:
        return await store.add_partial(
            sender_key="a@x",
            partial_id="p2",
            number=number,
            total=None,
            raw=raw,
            now=1.0,
            expire_at=100.0,
            payload={},
            max_pieces=3,
            max_bytes=10,
        )

    assert await add(1, b"1234") is None
    assert await add(1, b"1234") is None  # a resend of piece 1 is not counted twice
    with pytest.raises(PartialTooBig) as too_big:
        await add(2, b"1234567")
    assert (too_big.value.pieces, too_big.value.size) == (2, 11)
    assert await add(2, b"123") is None
    assert await add(3, b"12") is None  # 3 pieces, 9 bytes: within both
    with pytest.raises(PartialTooBig) as too_many:
        await add(4, b"")
    assert (too_many.value.pieces, too_many.value.size) == (4, 9)
    assert await store.partial_pieces(sender_key="a@x", partial_id="p2") == [(1, None), (2, None), (3, None)]


async def test_a_sender_has_at_most_max_open_split_mails_waiting(store: Store) -> None:
    async def first(ident: str, sender: str = "a@x") -> list[bytes] | None:
        return await store.add_partial(
            sender_key=sender,
            partial_id=ident,
            number=1,
            total=None,
            raw=b"one",
            now=1.0,
            expire_at=100.0,
            payload={},
            max_open=2,
        )

    assert await first("m1") is None and await first("m2") is None
    assert await first("m1") is None  # a resend of a waiting one is no new split mail
    with pytest.raises(TooManySplitMails) as refused:
        await first("m3")
    assert refused.value.open_mails == 2
    assert await first("m3", sender="b@x") is None  # another sender has its own
    await store.drop_partial(sender_key="a@x", partial_id="m1")
    assert await first("m3") is None


# -- retention -----------------------------------------------------------------------------------
async def _ended(store: Store, n: int, state: JobState, *, content: bytes = b"%PDF-1.4 test") -> str:
    """Message n accepted, its dispatch job moved to ``state``; its id."""
    mail = message(n, content)
    await store.accept_message(mail)
    job = await store.find_job(JobKind.DISPATCH, mail.id)
    assert job is not None
    await store.set_job_state(job.id, state, now=mail.received_at)
    return mail.id


async def _document_bytes(store: Store, message_id: str) -> bytes:
    stored = await store.message(message_id)
    assert stored is not None
    chunks = []
    for document in stored.documents:
        chunks += [c async for c in store.document_chunks(document.id)]
    return b"".join(chunks)


async def test_purge_deletes_the_bytes_of_old_ended_faxes_only_and_keeps_their_record(
    store: Store,
) -> None:
    sent = await _ended(store, 1, JobState.DONE)
    failed = await _ended(store, 2, JobState.FAILED)
    waiting = await _ended(store, 3, JobState.DEFERRED)  # may still be sent: kept
    recent = await _ended(store, 50, JobState.DONE)  # received after the cutoff: kept
    received = (("r-done", "done", 1000), ("r-mailed", "mailed", 1000), ("r-new", "done", 2000))
    for fax_id, state, at in received:
        assert await store.record_received(user_id="u1", fax_id=fax_id, metadata={}, now=at)
        await store.store_received_image(fax_id, b"%PDF received", now=at)
        await store.update_received(fax_id, now=at, state=state)

    assert await store.purge(before=1040, now=5000) == (2, 1)

    for gone in (sent, failed):
        stored = await store.message(gone)
        assert stored is not None and stored.purged_at == 5000  # the record stays
        assert stored.documents[0].size == len(b"%PDF-1.4 test") and stored.subject == "s"
        assert await store.raw_message(gone) == b""
        assert await _document_bytes(store, gone) == b""
    assert [e.action for e in await store.events(sent)] == ["accepted"]  # its story too
    for kept in (waiting, recent):
        stored = await store.message(kept)
        assert stored is not None and stored.purged_at is None
        assert await store.raw_message(kept) == b"raw mail"
        assert await _document_bytes(store, kept) == b"%PDF-1.4 test"
    assert await store.received_image("r-done") is None
    assert await store.received_image("r-mailed") == b"%PDF received"  # not mailed yet
    assert await store.received_image("r-new") == b"%PDF received"
    assert await store.purge(before=1040, now=5001) == (0, 0)  # nothing twice


async def test_purge_goes_by_batches_and_clears_documents_kept_in_the_raw_mail(store: Store) -> None:
    import base64

    content = b"%PDF" + bytes(range(256)) * 40
    text = base64.encodebytes(content).replace(b"\n", b"\r\n")
    head = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    span = (len(head), len(head) + len(text))
    for n in range(1, 4):
        mail = message(n)
        doc = NewDocument("a.pdf", "PDF", "pdf", 1, b"", raw_span=span, length=len(content))
        await store.accept_message(NewMessage(**{**mail.__dict__, "raw": head + text, "documents": [doc]}))
        job = await store.find_job(JobKind.DISPATCH, mail.id)
        assert job is not None
        await store.set_job_state(job.id, JobState.DONE, now=1)
    assert await _document_bytes(store, "JOB00001") == content
    assert [await store.purge(before=2000, now=3000, limit=2) for _ in range(3)] == [(2, 0), (1, 0), (0, 0)]
    for n in range(1, 4):
        assert await _document_bytes(store, f"JOB{n:05d}") == b""


# -- leases and locks shared by several processes -----------------------------------------------
async def test_a_heartbeat_renews_only_the_jobs_named(store: Store) -> None:
    await store.accept_message(message(1))
    await store.accept_message(message(2))
    held = await store.claim(JobKind.DISPATCH, owner="w", now=2000, lease_s=30)
    dropped = await store.claim(JobKind.DISPATCH, owner="w", now=2000, lease_s=30)
    assert held is not None and dropped is not None
    assert await store.renew([(held.id, "w")], now=2025, lease_s=30) == 1  # runs until 2055
    assert await store.renew([(held.id, "someone else")], now=2026, lease_s=30) == 0
    taken = await store.claim(JobKind.DISPATCH, owner="x", now=2040, lease_s=30)
    assert taken is not None and taken.id == dropped.id  # the one let go ran out at 2030
    assert await store.claim(JobKind.DISPATCH, owner="x", now=2050, lease_s=30) is None
    assert await store.renew([(dropped.id, "w")], now=2051, lease_s=30) == 0  # x has it now
    assert not await store.mark_submitting(dropped, owner="w", now=2051)
    assert await store.mark_submitting(taken, owner="x", now=2051)
    stored = await store.message(taken.ref)
    assert stored is not None and stored.submit_state == "submitting"


async def test_a_lock_has_one_holder_until_it_runs_out(store: Store) -> None:
    assert await store.take_lock("poll:u1", owner="a", now=100, lease_s=30)
    assert await store.take_lock("poll:u1", owner="a", now=110, lease_s=30)  # its holder again
    assert not await store.take_lock("poll:u1", owner="b", now=120, lease_s=30)
    assert await store.take_lock("poll:u2", owner="b", now=120, lease_s=30)  # another name
    await store.renew([], owners=["a"], now=135, lease_s=30)  # a's heartbeat: until 165
    assert not await store.take_lock("poll:u1", owner="b", now=150, lease_s=30)
    assert await store.take_lock("poll:u1", owner="b", now=166, lease_s=30)  # a went silent
    assert not await store.take_lock("poll:u1", owner="a", now=170, lease_s=30)
    await store.release(owner="b", now=171)  # a clean stop gives its locks back
    assert await store.take_lock("poll:u1", owner="a", now=172, lease_s=30)


async def test_the_deliveries_of_one_mail_are_found_by_sender_and_message_id(store: Store) -> None:
    """A mail server that got 452 for some numbers delivers them in another transaction:
    the same sender and Message-ID, other recipients."""

    def part(n: int, sender: str, message_id: str, at: float, deferred: tuple[str, ...] = ()) -> NewMessage:
        return NewMessage(
            **{
                **message(n).__dict__,
                "envelope_from": sender,
                "message_id": message_id,
                "received_at": at,
                "options": MessageOptions(pages=1, deferred=deferred),
            }
        )

    await store.accept_message(part(1, "a@example.com", "<split@x>", 1000.0, ("+1 323-555-0300",)))
    await store.accept_message(part(2, "A@Example.com", "<split@x>", 1600.0))  # the retry of the rest
    await store.accept_message(part(3, "a@example.com", "<other@x>", 1700.0))
    await store.accept_message(part(4, "b@example.com", "<split@x>", 1700.0))
    await store.accept_message(part(5, "a@example.com", "<split@x>", 1000.0 + 10 * 86_400))
    first, second = await store.message("JOB00001"), await store.message("JOB00002")
    assert first is not None and second is not None
    assert first.options.deferred == ("+1 323-555-0300",)
    assert [m.id for m in await store.deliveries_of(first, within_s=5 * 86_400)] == ["JOB00002"]
    assert [m.id for m in await store.deliveries_of(second, within_s=5 * 86_400)] == ["JOB00001"]
    assert await store.deliveries_of(first, within_s=60) == []
