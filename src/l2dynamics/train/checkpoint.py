"""Checkpoints: checksummed, written atomically, one previous good copy kept, loaded safely.

File format: the bytes of ``torch.save(payload)`` followed by an 84-byte trailer
``b"\\nL2DYNAMICS-SHA256:" + <64 hex digits> + b"\\n"``, the SHA-256 of those torch bytes. The
trailer sits after the zip archive, so ``torch.load(path, weights_only=True)`` still reads the
file directly; :func:`load_checkpoint` checks the digest first. (A file without a trailer, from an
older version, is accepted when torch can read it.)

Writing (:func:`save_checkpoint`): the new file is written to a temporary file in the same
folder, flushed and fsynced; then the current ``path`` — only if it is itself valid — becomes
``path.prev`` (hard link + rename, so ``path`` never disappears), the temporary file is renamed
onto ``path``, and the folder is fsynced. A crash at any moment leaves ``path`` (old or new) and
``path.prev`` valid; at worst a stray ``*.tmp`` file, removed by the next successful save.

Loading (:func:`load_checkpoint`): ``path`` if its checksum matches and torch reads it with
``weights_only=True`` (tensors and plain containers; no code runs); otherwise a
:class:`CheckpointWarning` naming the file and the reason, and ``path.prev``; if neither is
usable, a :class:`~l2dynamics.errors.StoreError` naming both files and why.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from l2dynamics.errors import StoreError
from l2dynamics.store.sqlite import fault_point

MAGIC = b"\nL2DYNAMICS-SHA256:"
TRAILER_SIZE = len(MAGIC) + 64 + 1
PREVIOUS_SUFFIX = ".prev"


class CheckpointWarning(UserWarning):
    """A checkpoint was unusable (truncated, corrupt, missing) and an older one was loaded."""


class _Unusable(Exception):
    """Why one checkpoint file cannot be loaded (internal)."""


def previous_path(path: str | Path) -> Path:
    """Where the previous good checkpoint of `path` is kept: ``<path>.prev``."""
    path = Path(path)
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` with its SHA-256, keeping the previous good file as
    ``<path>.prev``, so that a crash leaves a valid checkpoint (the old one or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    data = body + MAGIC + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n"
    tmp = _write_temp(path, data, fault=True)
    try:
        if path.exists() and _problem(path) is None:
            _keep_previous(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    for stray in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):  # left by a crash mid-write
        with contextlib.suppress(OSError):
            stray.unlink()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load `path` with ``weights_only=True`` after checking its SHA-256; if it is missing,
    truncated or corrupt, warn (:class:`CheckpointWarning`) and load ``<path>.prev``; if that
    is unusable too, raise :class:`~l2dynamics.errors.StoreError`."""
    path = Path(path)
    problems = []
    for candidate in (path, previous_path(path)):
        try:
            payload = _load_one(candidate)
        except _Unusable as exc:
            problems.append(f"{candidate} {exc}")
            continue
        if problems:
            warnings.warn(f"checkpoint {problems[0]}; falling back to the previous checkpoint "
                          f"{candidate} (an earlier step)", CheckpointWarning, stacklevel=2)
        return payload
    raise StoreError(f"no usable checkpoint: {'; '.join(problems)}")


# --- internals ----------------------------------------------------------------------------------


def _load_one(path: Path) -> dict[str, Any]:
    """The payload of one checkpoint file, or :class:`_Unusable` saying why not."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Unusable("is missing") from None
    except OSError as exc:
        raise _Unusable(f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise _Unusable("is empty (0 bytes)")
    body = _verified_body(data)
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, a type weights_only refuses, …
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise _Unusable(f"is truncated or corrupt (torch.load: {type(exc).__name__}: "
                        f"{first})") from None
    if not isinstance(payload, dict):
        raise _Unusable(f"holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def _verified_body(data: bytes) -> bytes:
    """The torch bytes of a file: checked against its trailer's SHA-256 when it has one."""
    trailer = data[-TRAILER_SIZE:]
    if len(data) < TRAILER_SIZE or not trailer.startswith(MAGIC) or trailer[-1:] != b"\n":
        return data  # no trailer: an older checkpoint, or one cut short (torch.load decides)
    body, expected = data[:-TRAILER_SIZE], trailer[len(MAGIC):-1]
    actual = hashlib.sha256(body).hexdigest().encode("ascii")
    if actual != expected:
        stored = expected[:12].decode("ascii", "replace")
        raise _Unusable(f"fails its SHA-256 check (stored {stored}…, computed "
                        f"{actual[:12].decode()}…): the file is corrupt")
    return body


def _problem(path: Path) -> str | None:
    """Why `path` is not a usable checkpoint, or None when it is."""
    try:
        _load_one(path)
    except _Unusable as exc:
        return str(exc)
    return None


def _write_temp(path: Path, data: bytes, *, fault: bool = False) -> Path:
    """`data` in a fsynced temporary file beside `path`; its path. ``fault``: the
    ``checkpoint_write`` test hook fires half-way through (see :func:`fault_point`)."""
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            half = len(data) // 2
            handle.write(data[:half])
            if fault:
                handle.flush()
                fault_point("checkpoint_write")  # a no-op unless $L2DYNAMICS_FAULT says so
            handle.write(data[half:])
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _keep_previous(path: Path) -> None:
    """Make ``<path>.prev`` a copy of `path` (a hard link where the filesystem allows), by an
    atomic rename, without `path` ever being absent."""
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    link = Path(name)
    try:
        link.unlink()
        try:
            os.link(path, link)
        except OSError:  # no hard links here (some network / FAT filesystems): copy
            shutil.copyfile(path, link)
            with open(link, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(link, previous_path(path))
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the renames in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
