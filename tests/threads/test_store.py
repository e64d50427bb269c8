"""The thread store on a real SQLite file: paging, updates, cascades, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from roost.threads.store import MIGRATIONS, NotFound, Store


def test_threads_and_messages_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "roost.db")
    t = store.create_thread("first", "qwen2.5-coder:0.5b", {"tag": "x"})
    assert store.thread(t.id).title == "first" and store.thread(t.id).metadata == {"tag": "x"}
    m1 = store.add_message(t.id, "user", "hello")
    m2 = store.add_message(t.id, "assistant", "hi", status="incomplete")
    asc = store.messages(t.id, order="asc").items
    assert [m.id for m in asc] == [m1.id, m2.id] and asc[1].completed_at is None
    assert [m.id for m in store.messages(t.id).items] == [m2.id, m1.id]  # newest first by default
    assert store.update_message(t.id, m1.id, content="hello!").content == "hello!"
    store.delete_message(t.id, m2.id)
    assert [m.id for m in store.messages(t.id).items] == [m1.id]
    assert store.update_thread(t.id, title="renamed").title == "renamed"
    store.delete_thread(t.id)
    with pytest.raises(NotFound):
        store.thread(t.id)
    with sqlite3.connect(tmp_path / "roost.db") as db:  # the messages went with their thread
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_paging_after_and_before(tmp_path: Path) -> None:
    store = Store(tmp_path / "roost.db")
    ids = [store.create_thread(f"t{i}").id for i in range(5)]
    first = store.threads(limit=2, order="asc")
    assert [t.id for t in first.items] == ids[:2] and first.has_more
    rest = store.threads(limit=10, order="asc", after=ids[1])
    assert [t.id for t in rest.items] == ids[2:] and not rest.has_more
    assert [t.id for t in store.threads(limit=10, before=ids[3]).items] == ids[4:]


def test_unknown_ids_raise_not_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "roost.db")
    for call in (lambda: store.thread("nope"), lambda: store.add_message("nope", "user", "x"),
                 lambda: store.messages("nope"), lambda: store.delete_thread("nope")):
        with pytest.raises(NotFound):
            call()


def test_reopening_applies_each_migration_once(tmp_path: Path) -> None:
    Store(tmp_path / "roost.db").create_thread("kept")
    store = Store(tmp_path / "roost.db")
    assert [t.title for t in store.threads().items] == ["kept"]
    with sqlite3.connect(tmp_path / "roost.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM migrations")]
        assert names == [m.__name__ for m in MIGRATIONS]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    thread = Store(path).create_thread("busy")

    def write(n: int) -> None:
        store = Store(path)  # as a second server on the same ROOST_HOME would
        for i in range(25):
            store.add_message(thread.id, "user", f"{n}-{i}")

    workers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    contents = {m.content for m in Store(path).messages(thread.id, limit=100).items}
    assert len(contents) == 100
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_concurrent_metadata_updates_merge(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    thread = Store(path).create_thread("t")

    def update(n: int) -> None:
        store = Store(path)
        for i in range(10):
            store.update_thread(thread.id, metadata={f"k{n}-{i}": i})

    workers = [threading.Thread(target=update, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(Store(path).thread(thread.id).metadata) == 40
