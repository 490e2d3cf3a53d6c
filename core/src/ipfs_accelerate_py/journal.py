"""The batch journal: what makes ``ipfs-accelerate batch`` resumable after a SIGKILL.

The invariant: an id is recorded as done only after its output line is on disk
(written and fsynced), and the journal row stores where that line ends in OUT and the
line itself.  So at any kill point OUT is "journaled lines" + possibly some unjournaled
tail.  On resume :class:`ResumableOutput` checks that OUT starts with exactly the journaled
lines and truncates it after them (dropping the tail, whose ids are not done and run
again) -- or, if OUT is missing, shorter or different, rebuilds it from the journal --
and the runner skips done ids.
Every id therefore appears in OUT exactly once.

The journal is SQLite (standard library), one file next to OUT.  It holds ids, line
numbers, offsets, output lines and a digest of the input -- never a key.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS done (
    seq INTEGER PRIMARY KEY,          -- order of the line in OUT
    id TEXT NOT NULL UNIQUE,
    line_no INTEGER NOT NULL,         -- the request's line in the input
    ok INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,      -- byte offset in OUT just after this line
    line BLOB NOT NULL                -- the output line itself (for rebuilding OUT)
);
"""


class JournalError(Exception):
    """A journal we cannot use (another input's, or not a journal at all)."""


class JournalMismatch(JournalError):
    """The journal belongs to a different input file."""


class JournalCorrupt(JournalError):
    """The journal file is not a readable journal (damaged, or some other file)."""


def file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Journal:
    """Done ids and their output lines, in SQLite."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # a process kill never loses a commit
            self.db.executescript(SCHEMA)
            self.db.execute("SELECT id, line_no, ok, end_offset, line FROM done LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
                raise
            raise JournalCorrupt(f"the journal {self.path} is not a usable journal ({exc}); "
                                 f"move it away, or use --restart to start over") from None

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    def bind_input(self, digest: str, name: str) -> None:
        """Tie the journal to one input; a different input raises :class:`JournalMismatch`."""
        known = self.get_meta("input_sha256")
        if known is None:
            self.set_meta("input_sha256", digest)
            self.set_meta("input_name", name)
        elif known != digest:
            raise JournalMismatch(
                f"the journal {self.path} belongs to another input ({self.get_meta('input_name')}, "
                f"sha256 {known[:12]}...); use --restart to start over")

    def done_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM done")}

    def count(self) -> tuple[int, int]:
        """(done, of which ok)."""
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(ok), 0) FROM done").fetchone()
        return int(row[0]), int(row[1])

    def last(self) -> tuple[int, bytes] | None:
        """(end offset, line) of the last journaled line."""
        row = self.db.execute("SELECT end_offset, line FROM done ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def lines(self) -> Iterator[bytes]:
        for (line,) in self.db.execute("SELECT line FROM done ORDER BY seq"):
            yield bytes(line)

    def record(self, rows: Iterable[tuple[str, int, bool, int, bytes]]) -> None:
        """Mark ids done, in one transaction: (id, line_no, ok, end_offset, line)."""
        with self.db:  # BEGIN ... COMMIT
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO done (id, line_no, ok, end_offset, line) VALUES (?, ?, ?, ?, ?)",
                ((i, n, int(ok), end, line) for i, n, ok, end, line in rows))

    def close(self) -> None:
        self.db.close()


class ResumableOutput:
    """OUT plus its journal: append result lines durably, exactly once per id."""

    def __init__(self, out_path: str | os.PathLike[str], journal_path: str | os.PathLike[str],
                 input_digest: str, input_name: str = "", *, restart: bool = False) -> None:
        self.out_path = Path(out_path)
        jpath = Path(journal_path)
        if restart:
            for p in (jpath, Path(str(jpath) + "-wal"), Path(str(jpath) + "-shm"), self.out_path):
                if p.is_file():  # never a device or a pipe given as OUT
                    p.unlink()
        self.journal = Journal(jpath)
        self.journal.bind_input(input_digest, input_name)
        self.rebuilt = False
        self.truncated = 0
        self._recover()
        self.file = open(self.out_path, "ab")
        self.offset = self.file.tell()
        self.done = self.journal.done_ids()

    def _recover(self) -> None:
        last = self.journal.last()
        end = last[0] if last else 0
        size = self.out_path.stat().st_size if self.out_path.exists() else -1
        if size >= end and (last is None or self._matches(end)):
            if size > end:
                self.truncated = size - end
                with open(self.out_path, "r+b") as f:
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
            elif size < 0:
                self.out_path.touch()
            return
        # OUT was lost, cut short or edited: rewrite it from the journal.
        tmp = self.out_path.with_name(self.out_path.name + ".rebuild")
        with open(tmp, "wb") as f:
            for line in self.journal.lines():
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.out_path)
        self.rebuilt = True

    def _matches(self, end: int) -> bool:
        """Whether OUT starts with exactly the journaled lines (one sequential read)."""
        with open(self.out_path, "rb") as f:
            for line in self.journal.lines():
                if f.read(len(line)) != line:
                    return False
            return f.tell() == end

    def write(self, items: Iterable[tuple[str, int, bool, bytes]]) -> int:
        """Append lines (id, line_no, ok, line ending in newline), fsync OUT, then journal
        the ids.  Returns how many were written (ids already done are skipped)."""
        rows = []
        chunks = []
        offset = self.offset
        taken: set[str] = set()
        for rid, line_no, ok, line in items:
            if rid in self.done or rid in taken:
                continue
            taken.add(rid)
            chunks.append(line)
            offset += len(line)
            rows.append((rid, line_no, ok, offset, line))
        if not rows:
            return 0
        # Done (in memory and in the journal) only once the lines are on disk: a failed
        # write (a full disk) leaves an unjournaled tail that the next run drops.
        self.file.write(b"".join(chunks))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.journal.record(rows)
        self.offset = offset
        self.done |= taken
        return len(rows)

    def close(self) -> None:
        self.file.close()
        self.journal.close()
