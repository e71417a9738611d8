"""The files one command writes, as one consistent set, and CSV cells safe to open in a spreadsheet.

A command (``optimize``, ``simulate``, ``replan``, ``scenario``) writes several files that belong
together: a plan beside its schedule. ``OutputSet`` checks the folder before any work is done,
takes the new files in a private staging folder inside it, and only when all are written moves
them into place, removes the files the folder's previous command listed and this one does not
write, and writes the manifest ``outputs.json`` (every file with its sha256, and the command)
last. Ctrl-C or SIGTERM during that swap is held until it is over; an interrupt before it leaves
the folder as it was. Only files a manifest lists are ever removed, and never one the command
reads (``simulate --out out out/plan.json`` keeps the plan): a folder the user shares with other
files keeps them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from apportion.core import atomic
from apportion.core.errors import SpecError, excerpt

MANIFEST = "outputs.json"
_STAGING_PREFIX = ".apportion-staging-"
# OWASP's CSV injection rule: a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """``cell`` as a spreadsheet shows it as text: a string that starts like a formula (``=``,
    ``+``, ``-``, ``@``, tab, carriage return) gets a leading single quote; numbers, and strings
    that are numbers (``-0.5``), stay as they are."""
    if not isinstance(cell, str) or not cell.startswith(_FORMULA_START):
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell


def csv_text(rows) -> str:
    """The rows as CSV text, every cell ``spreadsheet_safe``: the one CSV writer of the project."""
    text = io.StringIO()
    writer = csv.writer(text)
    for row in rows:
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    return text.getvalue()


def write_csv_table(path: str | Path, columns, rows) -> Path:
    """``rows`` (mappings; a missing key is an empty cell) under a header of ``columns``, every
    cell ``spreadsheet_safe``, written atomically."""
    return atomic.write_text(path, csv_text([list(columns), *([row.get(c) for c in columns] for row in rows)]))


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM until the block is over, then deliver them (main thread only:
    elsewhere Python cannot set handlers, and no signal reaches a worker thread's code)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: caught.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listed_files(folder: Path) -> set[str]:
    """The file names the folder's manifest lists; plain names only (a manifest edited to name
    ``../x`` or a path removes nothing outside the folder)."""
    try:
        files = json.loads((folder / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return set()
    if not isinstance(files, dict):
        return set()
    return {name for name in files
            if isinstance(name, str) and name not in ("", ".", "..", MANIFEST) and Path(name).name == name}


class OutputSet:
    """The files of one command in ``folder``: checked and staged before the work, swapped in
    together by ``commit``. Use it as a context manager: leaving the block without ``commit``
    (an error, Ctrl-C) removes the staging folder and leaves ``folder`` as it was."""

    def __init__(self, folder: str | os.PathLike, command: list[str], inputs=()):
        self.folder = Path(folder)
        self.command = [str(word) for word in command]
        self.inputs = {Path(path).resolve() for path in inputs}
        created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.folder))
        except FileExistsError:
            raise SpecError("out", f"{excerpt(str(folder))} exists and is not a folder") from None
        except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
            reason = getattr(error, "strerror", None) or str(error)
            raise SpecError("out", f"cannot write into {excerpt(str(folder))}: {reason}") from None
        self._created = created
        self._done = False

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            self.discard()

    def path(self, name: str) -> Path:
        """Where to write the file ``name`` now (in the staging folder)."""
        return self.staging / name

    def target(self, name: str) -> Path:
        """Where the file ``name`` will be once committed."""
        return self.folder / name

    def write_text(self, name: str, text: str) -> Path:
        """Stage ``name`` with ``text``; returns its final path."""
        atomic.write_text(self.path(name), text)
        return self.target(name)

    def discard(self) -> None:
        """Drop the staged files; a folder this set created and nothing else uses goes too."""
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._created:
            with contextlib.suppress(OSError):
                self.folder.rmdir()
        self._done = True

    def commit(self) -> dict[str, Path]:
        """Move the staged files into place, remove the previous set's files this one does not
        have, write the manifest last; returns {file name: final path}."""
        names = sorted(p.name for p in self.staging.iterdir() if p.is_file())
        manifest = {"command": self.command, "files": {name: {"sha256": _sha256(self.path(name))} for name in names}}
        stale = {name for name in _listed_files(self.folder) - set(names)
                 if (self.folder / name).resolve() not in self.inputs}
        with _signals_held():
            (self.folder / MANIFEST).unlink(missing_ok=True)  # no manifest while the set is mixed
            for name in names:
                os.replace(self.path(name), self.target(name))
            for name in stale:
                with contextlib.suppress(OSError):  # gone, or now a folder: nothing to remove
                    (self.folder / name).unlink()
            atomic.write_json(self.folder / MANIFEST, manifest)
            shutil.rmtree(self.staging, ignore_errors=True)
            self._done = True
        return {name: self.target(name) for name in names}
