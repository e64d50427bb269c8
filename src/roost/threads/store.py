"""Threads and their messages in SQLite: `ROOST_HOME/roost.db`, the server's alone.

WAL and a busy timeout let two servers (or two requests) share the file safely, and every
commit is synced before its call returns, so an acknowledged write survives kill -9 and power
loss; the schema grows through MIGRATIONS, an ordered list of functions whose applied names are
kept in a table, so an old database is brought up to date on open and never rewritten by hand. A
connection per operation keeps the store usable from any thread (the server calls it through
`asyncio.to_thread`). Ids sort by creation time, so "after" and "before" paging is a compare.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []
migration = MIGRATIONS.append


@migration
def threads_and_messages(db: sqlite3.Connection) -> None:
    _run(db, """
        CREATE TABLE threads (
            id TEXT PRIMARY KEY, title TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
            metadata TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL);
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
            role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'completed',
            metadata TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL,
            completed_at INTEGER);
        CREATE INDEX messages_by_thread ON messages(thread_id, id);
    """)


@migration
def engines_and_configs(db: sqlite3.Connection) -> None:
    _run(db, """
        CREATE TABLE engines (
            name TEXT PRIMARY KEY, url TEXT NOT NULL, api_key TEXT NOT NULL DEFAULT '',
            created_at INTEGER NOT NULL);
        CREATE TABLE configs (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


@migration
def presets(db: sqlite3.Connection) -> None:
    _run(db, """
        CREATE TABLE presets (
            name TEXT PRIMARY KEY, system TEXT NOT NULL DEFAULT '',
            options TEXT NOT NULL DEFAULT '{}', updated_at INTEGER NOT NULL);
    """)


def _run(db: sqlite3.Connection, script: str) -> None:
    """Statements one by one: executescript would commit the migration's transaction early."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


class NotFound(LookupError):
    pass


@dataclass
class Thread:
    id: str
    title: str = ""
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    message_count: int = 0


@dataclass
class Message:
    id: str
    thread_id: str
    role: str
    content: str
    status: str = "completed"  # or "incomplete": a turn cut off before its end
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    completed_at: int | None = None


@dataclass
class Preset:
    """Saved settings, as Cortex's presets: a system prompt and generation options."""

    name: str
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    updated_at: int = 0


@dataclass
class Engine:
    """An OpenAI-compatible endpoint that serves models as MODEL:NAME."""

    name: str
    url: str
    api_key: str = ""
    created_at: int = 0


@dataclass
class Page:
    items: list[Any]
    has_more: bool


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1000:015x}{secrets.token_hex(4)}"


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        with self._db() as db:
            done = {row[0] for row in db.execute("SELECT name FROM migrations")}
            for step in MIGRATIONS:
                if step.__name__ not in done:
                    step(db)
                    db.execute("INSERT INTO migrations(name) VALUES (?)", (step.__name__,))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # it holds engines' API keys: the owner's alone
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL, whatever this SQLite was built with: WAL's NORMAL is safe against a killed
            # process but may drop the last commits on power loss, and a message the API
            # acknowledged must survive both.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # -- threads ---------------------------------------------------------------------------

    def create_thread(self, title: str = "", model: str = "",
                      metadata: dict[str, Any] | None = None) -> Thread:
        now = int(time.time())
        thread = Thread(new_id("thread"), title, model, dict(metadata or {}), now, now)
        with self._db() as db:
            db.execute("INSERT INTO threads VALUES (?, ?, ?, ?, ?, ?)",
                       (thread.id, title, model, json.dumps(thread.metadata), now, now))
        return thread

    def thread(self, thread_id: str) -> Thread:
        with self._db() as db:
            row = db.execute(f"{_THREADS} WHERE id = ?", (thread_id,)).fetchone()
        if row is None:
            raise NotFound(f"thread '{thread_id}' not found")
        return _thread(row)

    def threads(self, limit: int = 20, order: str = "desc", after: str | None = None,
                before: str | None = None) -> Page:
        rows = self._page(_THREADS, "", (), limit, order, after, before)
        return Page([_thread(r) for r in rows[:limit]], len(rows) > limit)

    def update_thread(self, thread_id: str, title: str | None = None, model: str | None = None,
                      metadata: dict[str, Any] | None = None) -> Thread:
        """Read and write in one transaction, so concurrent updates merge instead of racing."""
        with self._db() as db:
            row = db.execute(f"{_THREADS} WHERE id = ?", (thread_id,)).fetchone()
            if row is None:
                raise NotFound(f"thread '{thread_id}' not found")
            thread = _thread(row)
            thread.title = thread.title if title is None else title
            thread.model = thread.model if model is None else model
            thread.metadata = thread.metadata if metadata is None else {**thread.metadata, **metadata}
            thread.updated_at = int(time.time())
            db.execute("UPDATE threads SET title = ?, model = ?, metadata = ?, updated_at = ? "
                       "WHERE id = ?", (thread.title, thread.model, json.dumps(thread.metadata),
                                        thread.updated_at, thread_id))
        return thread

    def delete_thread(self, thread_id: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM threads WHERE id = ?", (thread_id,)).rowcount == 0:
                raise NotFound(f"thread '{thread_id}' not found")

    # -- messages --------------------------------------------------------------------------

    def add_message(self, thread_id: str, role: str, content: str, status: str = "completed",
                    metadata: dict[str, Any] | None = None) -> Message:
        now = int(time.time())
        msg = Message(new_id("msg"), thread_id, role, content, status, dict(metadata or {}), now,
                      now if status == "completed" else None)
        with self._db() as db:
            if db.execute("SELECT 1 FROM threads WHERE id = ?", (thread_id,)).fetchone() is None:
                raise NotFound(f"thread '{thread_id}' not found")
            db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (msg.id, thread_id, role, content, status, json.dumps(msg.metadata), now,
                        msg.completed_at))
            db.execute("UPDATE threads SET updated_at = ? WHERE id = ?", (now, thread_id))
        return msg

    def messages(self, thread_id: str, limit: int = 20, order: str = "desc",
                 after: str | None = None, before: str | None = None) -> Page:
        self.thread(thread_id)
        rows = self._page("SELECT * FROM messages", "thread_id = ?", (thread_id,), limit, order,
                          after, before)
        return Page([_message(r) for r in rows[:limit]], len(rows) > limit)

    def message(self, thread_id: str, message_id: str) -> Message:
        with self._db() as db:
            row = db.execute("SELECT * FROM messages WHERE id = ? AND thread_id = ?",
                             (message_id, thread_id)).fetchone()
        if row is None:
            raise NotFound(f"message '{message_id}' not found in thread '{thread_id}'")
        return _message(row)

    def update_message(self, thread_id: str, message_id: str, content: str | None = None,
                       metadata: dict[str, Any] | None = None) -> Message:
        with self._db() as db:
            row = db.execute("SELECT * FROM messages WHERE id = ? AND thread_id = ?",
                             (message_id, thread_id)).fetchone()
            if row is None:
                raise NotFound(f"message '{message_id}' not found in thread '{thread_id}'")
            msg = _message(row)
            msg.content = msg.content if content is None else content
            msg.metadata = msg.metadata if metadata is None else {**msg.metadata, **metadata}
            db.execute("UPDATE messages SET content = ?, metadata = ? WHERE id = ?",
                       (msg.content, json.dumps(msg.metadata), message_id))
        return msg

    def delete_message(self, thread_id: str, message_id: str) -> None:
        with self._db() as db:
            deleted = db.execute("DELETE FROM messages WHERE id = ? AND thread_id = ?",
                                 (message_id, thread_id)).rowcount
        if deleted == 0:
            raise NotFound(f"message '{message_id}' not found in thread '{thread_id}'")

    # -- presets: a system prompt and options, by name -----------------------------------

    def presets(self) -> list[Preset]:
        with self._db() as db:
            return [Preset(r[0], r[1], json.loads(r[2]), r[3])
                    for r in db.execute("SELECT * FROM presets ORDER BY name")]

    def preset(self, name: str) -> Preset:
        with self._db() as db:
            row = db.execute("SELECT * FROM presets WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"preset '{name}' not found")
        return Preset(row[0], row[1], json.loads(row[2]), row[3])

    def put_preset(self, name: str, system: str, options: dict[str, Any]) -> Preset:
        preset = Preset(name, system, dict(options), int(time.time()))
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO presets VALUES (?, ?, ?, ?)",
                       (name, system, json.dumps(options), preset.updated_at))
        return preset

    def delete_preset(self, name: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"preset '{name}' not found")

    # -- remote engines and settings -------------------------------------------------------

    def engines(self) -> list[Engine]:
        with self._db() as db:
            return [Engine(*row) for row in db.execute(
                "SELECT name, url, api_key, created_at FROM engines ORDER BY name")]

    def engine(self, name: str) -> Engine | None:
        with self._db() as db:
            row = db.execute("SELECT name, url, api_key, created_at FROM engines WHERE name = ?",
                             (name,)).fetchone()
        return Engine(*row) if row else None

    def put_engine(self, name: str, url: str, api_key: str = "") -> Engine:
        engine = Engine(name, url, api_key, int(time.time()))
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO engines VALUES (?, ?, ?, ?)",
                       (name, url, api_key, engine.created_at))
        return engine

    def delete_engine(self, name: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM engines WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"engine '{name}' not found")

    def configs(self) -> dict[str, str]:
        with self._db() as db:
            return dict(db.execute("SELECT key, value FROM configs ORDER BY key").fetchall())

    def set_config(self, key: str, value: str) -> None:
        with self._db() as db:
            if value:
                db.execute("INSERT OR REPLACE INTO configs VALUES (?, ?)", (key, value))
            else:
                db.execute("DELETE FROM configs WHERE key = ?", (key,))

    def _page(self, select: str, where: str, args: tuple[Any, ...], limit: int, order: str,
              after: str | None, before: str | None) -> list[Any]:
        """One more row than asked for tells whether more follow."""
        desc = order.lower() != "asc"
        clauses, params = ([where] if where else []), list(args)
        if after:
            clauses.append("id < ?" if desc else "id > ?")
            params.append(after)
        if before:
            clauses.append("id > ?" if desc else "id < ?")
            params.append(before)
        sql = select + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += f" ORDER BY id {'DESC' if desc else 'ASC'} LIMIT ?"
        with self._db() as db:
            return db.execute(sql, (*params, limit + 1)).fetchall()


_THREADS = ("SELECT *, (SELECT count(*) FROM messages m WHERE m.thread_id = threads.id) "
            "FROM threads")


def _thread(row: Any) -> Thread:
    return Thread(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])


def _message(row: Any) -> Message:
    return Message(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7])
