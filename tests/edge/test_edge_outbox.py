"""The outbox: durable, ordered, bounded, with a persistent sequence per stream."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from carbonwatch.edge.buffer import EVENTS, TELEMETRY, BufferFull, Outbox, OutboxError


def _chunk(*values: int) -> bytes:
    return json.dumps([{"p": "x", "v": v} for v in values], separators=(",", ":")).encode()


def _items(outbox: Outbox) -> list[int]:
    return [item["v"] for m in outbox.peek(0, 10_000) for item in json.loads(m.payload)]


def test_chunks_are_sealed_in_order_with_consecutive_seqs(tmp_path):
    box = Outbox(tmp_path / "b.sqlite", 10**7, batch_max_items=3, batch_max_age=60)
    for v in range(7):
        box.add(TELEMETRY, _chunk(v), 1)
    # two full messages sealed as they filled; the seventh item waits for more or for its age
    assert [(m.seq, m.count) for m in box.peek()] == [(1, 3), (2, 3)]
    assert box.pending_items == 1 and box.depth == 2
    assert box.seal() == 0  # not old enough
    assert box.seal(now=time.time() + 61) == 1
    assert [m.seq for m in box.peek()] == [1, 2, 3] and _items(box) == list(range(7))
    box.add(EVENTS, _chunk(100), 1)
    box.seal(force=True)
    events = [m for m in box.peek() if m.stream == EVENTS]
    assert [(m.seq, m.count) for m in events] == [(1, 1)], "events have a sequence of their own"
    box.close()


def test_ack_removes_only_what_the_broker_has_and_seq_survives_an_empty_restart(tmp_path):
    path = tmp_path / "b.sqlite"
    box = Outbox(path, 10**7, batch_max_items=2, batch_max_age=0)
    for v in range(6):
        box.add(TELEMETRY, _chunk(v), 1)
    m1, m2, m3 = box.peek()
    assert box.ack([m2.id]) == 1
    assert [m.seq for m in box.peek()] == [1, 3]
    assert box.peek(after_id=m1.id) == [m3]
    box.ack([m1.id, m3.id, m3.id])
    assert box.depth == 0 and box.bytes == 0 and box.oldest_created() is None
    box.close()
    box = Outbox(path, 10**7, batch_max_items=2, batch_max_age=0)
    box.add(TELEMETRY, _chunk(6, 7), 2)
    assert [m.seq for m in box.peek()] == [4], "the sequence never goes back"
    assert box.last_seq(TELEMETRY) == 4
    box.close()


def test_drop_oldest_keeps_the_newest_and_counts_what_it_dropped(tmp_path):
    path = tmp_path / "b.sqlite"
    one = len(_chunk(0))
    box = Outbox(path, max_bytes=5 * one + 10, when_full="drop_oldest", batch_max_items=1, batch_max_age=0)
    for v in range(12):
        box.add(TELEMETRY, _chunk(v), 1)
    assert box.bytes <= box.max_bytes
    assert _items(box) == list(range(7, 12))
    assert box.dropped_items_total == 7 and box.dropped_messages_total == 7
    assert [m.seq for m in box.peek()] == [8, 9, 10, 11, 12]
    box.close()
    box = Outbox(path, max_bytes=5 * one + 10, when_full="drop_oldest")
    assert box.dropped_items_total == 7, "the drop count is kept in the file"
    box.close()


def test_stop_polling_refuses_new_data_and_keeps_the_old(tmp_path):
    one = len(_chunk(0))
    box = Outbox(tmp_path / "b.sqlite", max_bytes=3 * one, when_full="stop_polling", batch_max_items=1)
    for v in range(3):
        box.add(TELEMETRY, _chunk(v), 1)
    assert box.full
    with pytest.raises(BufferFull):
        box.add(TELEMETRY, _chunk(3), 1)
    assert _items(box) == [0, 1, 2] and box.dropped_items_total == 0
    box.ack([box.peek()[0].id])
    box.add(TELEMETRY, _chunk(3), 1)
    assert _items(box) == [1, 2, 3]
    box.close()


def test_a_corrupt_file_is_moved_aside_not_deleted(tmp_path):
    path = tmp_path / "b.sqlite"
    path.write_bytes(b"this is not an SQLite database, it is a disk error" * 100)
    box = Outbox(path, 10**7)
    box.add(TELEMETRY, _chunk(1), 1)
    box.close()
    aside = list(tmp_path.glob("b.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")


def test_an_unusable_path_fails_clearly(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(tmp_path / "file" / "b.sqlite", 10**7)


def test_a_schema_1_outbox_is_migrated_with_its_sequence(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, created REAL NOT NULL, payload BLOB NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT INTO meta VALUES ('last_seq', 41);"
    )
    db.execute("INSERT INTO outbox VALUES (41, 1.0, ?)", (_chunk(1, 2),))
    db.commit()
    db.close()
    box = Outbox(path, 10**7, batch_max_items=1)
    [old] = box.peek()
    assert (old.seq, old.count, _items(box)) == (41, 2, [1, 2])
    box.add(TELEMETRY, _chunk(3), 1)
    assert [m.seq for m in box.peek()] == [41, 42]
    box.close()


WRITER = textwrap.dedent(
    """
    import json, sys
    from carbonwatch.edge.buffer import Outbox
    box = Outbox(sys.argv[1], 10**9, batch_max_items=7, batch_max_age=0.05)
    i = 0
    while True:
        box.add("telemetry", json.dumps([{"v": i}]).encode(), 1)
        if i % 5 == 0:
            box.seal()
        print(i, flush=True)  # only after add() returned: durable from here
        i += 1
    """
)


def test_nothing_written_is_lost_when_the_writer_is_killed_with_sigkill(tmp_path):
    path = tmp_path / "b.sqlite"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        confirmed = -1
        deadline = time.monotonic() + 30
        while confirmed < 150 * (round_ + 1) and time.monotonic() < deadline:
            confirmed = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        box = Outbox(path, 10**9, batch_max_items=7)
        box.seal(force=True)
        items = _items(box)
        # every confirmed item is there, once, in order (the writer restarts its counter each round)
        runs = []
        for v in items:
            if v == 0:
                runs.append([])
            runs[-1].append(v)
        assert len(runs) == round_ + 1
        assert all(run == list(range(len(run))) for run in runs), "an item is missing, doubled or out of order"
        assert len(runs[-1]) >= confirmed + 1
        seqs = [m.seq for m in box.peek(0, 10**6)]
        assert seqs == list(range(1, len(seqs) + 1))
        box.close()


class OutboxMachine(RuleBasedStateMachine):
    """Random adds, seals, acks and restarts against a model: what is not acknowledged is kept
    in order, and every stream's seqs count up by one without a gap, across restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        self.box = self._open()
        self.model: list[int] = []  # items not yet acknowledged, in order
        self.next_item = 0
        self.seen_seqs: list[int] = []

    def _open(self) -> Outbox:
        return Outbox(self.dir / "b.sqlite", 10**9, batch_max_items=4, batch_max_age=3600)

    @rule(n=st.integers(1, 5))
    def add(self, n):
        values = list(range(self.next_item, self.next_item + n))
        self.next_item += n
        self.box.add(TELEMETRY, _chunk(*values), n)
        self.model.extend(values)

    @rule()
    def seal(self):
        self.box.seal(force=True)

    @rule(k=st.integers(1, 3))
    def ack_oldest(self, k):
        messages = self.box.peek(0, k)
        for m in messages:
            if m.seq not in self.seen_seqs:
                self.seen_seqs.append(m.seq)
            for item in json.loads(m.payload):
                assert self.model.pop(0) == item["v"]
        self.box.ack([m.id for m in messages])

    @rule()
    def restart(self):
        self.box.close()
        self.box = self._open()

    @invariant()
    def kept_in_order(self):
        sealed = _items(self.box)
        assert sealed == self.model[: len(sealed)]
        assert len(sealed) + self.box.pending_items == len(self.model)
        seqs = self.seen_seqs + [m.seq for m in self.box.peek(0, 10**6)]
        assert seqs == list(range(1, len(seqs) + 1))

    def teardown(self):
        self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
