"""``ipfs-accelerate batch IN.jsonl -o OUT.jsonl``: a resumable JSONL batch.

The command checks the paths (never the input, never a user's file it did not write,
writable places only), builds a :class:`~ipfs_accelerate_py.jobs.BatchJob`, offers it to
the ``accelerate_cli_run_batch`` hook (a plugin may run it another way), and otherwise
runs it here with the SQLite journal, holding a lock next to it so two runs never share
OUT.
SIGINT and SIGTERM stop it cleanly: what is journaled stays, the rest runs next time.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import queue
import signal
import sqlite3
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..jobs import BatchJob, JobError, Progress, result_record
from ..journal import JournalError, ResumableOutput
from .common import (EXIT_FAILED, EXIT_OK, REDACT, CliError, add_key_options,
                     add_pipeline_options, err, parse_base_urls, plugin_manager, start_watchers,
                     stop_watchers)
from .keys import backend_config, read_keys_file

DESCRIPTION = (
    "Run every request of IN.jsonl through the pipeline and write one result line per "
    "request to OUT: {\"id\", \"ok\": true, \"result\"} or {\"id\", \"ok\": false, \"error\"}, as "
    "they complete.  Input lines: {\"id\"?, \"backend\", \"operation\", \"payload\", \"priority\"? "
    "(HIGH/NORMAL/LOW or 0/1/2)}; a line without an id gets \"line-N\".  A SQLite journal "
    "(OUT.journal.sqlite3) makes it resumable: killed at any moment (even SIGKILL), run the "
    "same command again and it finishes with every request exactly once in OUT.  Bad lines "
    "are reported with their line number and written to OUT.errors.jsonl; they do not stop "
    "the job.  OUT is never the input, and an existing OUT without a journal is only "
    "overwritten with --force.  Exit status: 0 all ok, 1 some failed or bad lines, 2 usage "
    "or an environment problem (a path, a lock, a full disk: fix it and run again).")


def register(sub: Any) -> None:
    p = sub.add_parser("batch", help="run a JSONL file of requests (resumable)",
                       description=DESCRIPTION)
    p.add_argument("input", metavar="IN.jsonl")
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--base-url", action="append", metavar="[BACKEND=]URL",
                   help="a backend's base URL (repeatable; BACKEND= needed with several backends)")
    p.add_argument("--journal", metavar="PATH", help="journal path (default: OUT.journal.sqlite3)")
    p.add_argument("--errors", metavar="PATH", help="bad-lines file (default: OUT.errors.jsonl)")
    p.add_argument("--restart", action="store_true",
                   help="discard OUT and the journal and start over")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing OUT (or errors file) that has no journal")
    p.add_argument("--cache", metavar="PATH|URL",
                   help="answer repeated requests from this response cache (a SQLite file, "
                        "made if missing, or a URL such as redis://host:6379/0); see "
                        "docs/caching.md")
    add_key_options(p)
    add_pipeline_options(p)
    from .prices import add_cost_options

    add_cost_options(p)
    p.set_defaults(func=run)


# --------------------------------------------------------------------------- paths
def _same_file(a: Path, b: Path) -> bool:
    """Same path, through a symlink, or a hard link of the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: Path, what: str, input_path: Path) -> None:
    """A one-line error for a path we could not (or must not) write."""
    if _same_file(path, input_path):
        raise CliError(f"{what} {path} is the input file {input_path}; choose another path")
    if path.is_dir():
        raise CliError(f"{what} {path} is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"{what} {path}: directory {parent} does not exist")
    # Try it (os.access says yes to root on a read-only file system): an existing file is
    # opened for appending and left as it was; for a new one the directory is probed with
    # an anonymous file of our own.  This runs before the run's lock is taken, so it never
    # creates or removes the named path: a concurrent run may be creating it right now
    # (a probe that did once made that run find its journal "existing", or unlinked it).
    try:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            return
        except FileNotFoundError:
            pass
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise CliError(f"{what} {path}: {exc.strerror}") from None


def _nonempty_regular(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size > 0


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path, Path]:
    inp = Path(args.input)
    if not inp.is_file():
        raise CliError(f"cannot read {inp}: " + ("is a directory" if inp.is_dir() else
                                                 "no such file"))
    out = Path(args.output)
    journal = Path(args.journal or f"{out}.journal.sqlite3")
    errors = Path(args.errors or f"{out}.errors.jsonl")
    named = {"output": out, "errors file": errors, "journal": journal}
    for what, path in named.items():
        check_writable(path, what, inp)
    items = list(named.items())
    for i, (wa, pa) in enumerate(items):
        for wb, pb in items[i + 1:]:
            if _same_file(pa, pb):
                raise CliError(f"the {wa} and the {wb} are the same file {pa}")
    return inp, out, errors, journal


@contextlib.contextmanager
def _lock(out: Path, journal: Path) -> Iterator[None]:
    """An exclusive lock on ``JOURNAL.lock`` (by default ``OUT.journal.sqlite3.lock``) for
    the run: the journal is the job's state, and a second run on the same OUT with another
    journal is refused anyway (no journal vouches for that OUT).  The kernel drops the
    lock when the process dies, so a killed run never leaves a stale one."""
    import fcntl

    lock_path = Path(f"{journal}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CliError(f"cannot create the lock file {lock_path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(f"another run is writing {out} (it holds {lock_path}); wait for it "
                           f"or choose another output") from None
        yield
    finally:
        os.close(fd)


class _Stop(KeyboardInterrupt):
    """SIGTERM, delivered to the main thread like SIGINT."""


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise _Stop()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave it alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- the command
def run(args: argparse.Namespace) -> int:
    inp, out, errors, journal = _paths(args)
    pm = plugin_manager()
    installed = pm.backends()
    keys_file = read_keys_file(args.keys_file) if args.keys_file else None

    def make_client(used: Sequence[str]) -> Any:
        from ..client import Client
        from ..jobs import client_config_from_options

        bases = parse_base_urls(args.base_url, used)
        configs = [backend_config(n, installed[n], args, keys_file, bases.get(n)) for n in used]
        return Client(configs, client_config_from_options(args))

    job = BatchJob(input_path=inp, output_path=out, errors_path=errors, journal_path=journal,
                   options=args, backends=installed, make_client=make_client, redact=REDACT,
                   report=err)
    with _sigterm_stops():
        try:
            code = pm.hooks.accelerate_cli_run_batch(job=job)
            if code is not None:
                return int(code)
            with _lock(out, journal):
                return run_local(job)
        except _Stop:
            err("stopped (SIGTERM); run the same command again to resume")
            return 128 + signal.SIGTERM


def _write_errors_file(job: BatchJob, bad: list[dict]) -> None:
    import json

    try:
        with open(job.errors_path, "w", encoding="utf-8") as ef:
            for b in bad:
                ef.write(job.redact(json.dumps(b)) + "\n")
    except OSError as exc:
        raise CliError(f"cannot write the errors file {job.errors_path}: {exc.strerror}") from None


def _open_output(job: BatchJob, restart: bool) -> ResumableOutput:
    try:
        return ResumableOutput(job.output_path, job.journal_path, job.digest(),
                               str(job.input_path), restart=restart)
    except JournalError as exc:
        raise CliError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise CliError(f"the journal {job.journal_path} is unusable ({exc}); move it away, or "
                       f"use --restart to start over") from None
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or job.output_path}: {exc.strerror}") from None


def _write_failed(job: BatchJob, exc: BaseException) -> CliError:
    reason = getattr(exc, "strerror", None) or str(exc)
    full = getattr(exc, "errno", None) == errno.ENOSPC or "full" in str(exc)
    hint = "free some space and" if full else "fix it and"
    return CliError(f"writing {job.output_path} failed: {reason}; {hint} run the same command "
                    f"again to resume (every journaled result is kept)")


def run_local(job: BatchJob) -> int:
    """The core's runner: journaled, resumable, exactly once per id in OUT."""
    from ..request import Request

    args = job.options
    restart = bool(getattr(args, "restart", False))
    journaled = job.journal_path.exists()
    if not journaled and not restart and not getattr(args, "force", False):
        for what, path in (("output", job.output_path), ("errors file", job.errors_path)):
            if _nonempty_regular(path):
                raise CliError(f"the {what} {path} exists and no journal says this job wrote "
                               f"it; pass --force to overwrite it, or choose another path")
    lines, bad = job.read_input()
    output = _open_output(job, restart)  # first: from here on the journal vouches for OUT
    # The errors file is rebuilt from the input on every run: idempotent across resumes.
    try:
        _write_errors_file(job, bad)
    except CliError:
        output.close()
        raise
    for b in bad:
        job.report(f"{job.input_path}:{b['line']}: {b['error']}")
    pending = [ln for ln in lines if ln.id not in output.done]
    if output.done:
        note = f" (rebuilt {job.output_path} from the journal)" if output.rebuilt else (
            f" (dropped {output.truncated} unjournaled bytes)" if output.truncated else "")
        job.report(f"resuming: {len(lines) - len(pending)} of {len(lines)} already done{note}")
    if pending:
        client = job.make_client(sorted({ln.backend for ln in pending}))
        results: queue.Queue = queue.Queue()
        stop = threading.Event()

        def submit_all() -> None:
            for ln in pending:
                if stop.is_set():
                    return
                try:  # a request the pipeline refuses up front is a failed result, not a hang
                    req = Request(operation=ln.operation, payload=ln.payload, backend=ln.backend,
                                  priority=ln.priority, tags={"id": ln.id})
                    fut = client.submit(req, block=True)
                except Exception as exc:
                    results.put((ln, exc))
                    continue
                fut.add_done_callback(lambda f, ln=ln: results.put((ln, f)))

        submitter = threading.Thread(target=submit_all, name="batch-submit", daemon=True)
        written = 0
        progress = Progress(len(pending), client)
        watchers = start_watchers("batch", job.options, client, progress)
        try:
            with progress:
                submitter.start()
                while written < len(pending):
                    batch = [results.get()]
                    with contextlib.suppress(queue.Empty):
                        while len(batch) < 256:
                            batch.append(results.get_nowait())
                    items = []
                    nfail = 0
                    for ln, outcome in batch:
                        ok, text = result_record(ln.id, outcome, job.redact)
                        nfail += not ok
                        items.append((ln.id, ln.line_no, ok, (text + "\n").encode("utf-8")))
                    try:
                        written += output.write(items)
                    except (OSError, sqlite3.Error) as exc:
                        raise _write_failed(job, exc) from None
                    progress.advance(len(batch), nfail)
        except (KeyboardInterrupt, JobError) as exc:
            stop.set()
            client.close(wait=False)
            with contextlib.suppress(OSError, sqlite3.Error):
                output.close()
            if isinstance(exc, KeyboardInterrupt) and type(exc) is KeyboardInterrupt:
                err("interrupted; run the same command again to resume")
                return 130
            raise
        finally:
            stop.set()
            stop_watchers(watchers)
        client.close()
        stats = client.stats()
        print(stats.table())
        from ..costs.report import summary_line

        print(summary_line(stats))
    done, succeeded = output.journal.count()
    output.close()
    failed = done - succeeded
    print(f"requests: {len(lines)}  written: {done}  ok: {succeeded}  failed: {failed}  "
          f"bad lines: {len(bad)}  lost: {len(lines) - done}")
    print(f"output: {job.output_path}" + (f"  errors: {job.errors_path}" if bad else ""))
    return EXIT_OK if failed == 0 and not bad and done == len(lines) else EXIT_FAILED
