"""Writing files so that a crash, a kill or a full disk never leaves a partial one.

Engines, models, reports, predictions and checkpoints are all written through
`atomic_write`: the bytes go to a temporary file beside the target, are flushed to
disk, and only then renamed over it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(file_object) on a temp file beside `path`, then rename it into place.

    A crash or a full disk leaves the previous file untouched and no partial file.
    """
    temp_name = _staged(Path(path), write)
    try:
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def atomic_write_texts(texts: dict) -> None:
    """Write several UTF-8 files {path: text} all or none: every one is written and synced to a temp file
    before the first is renamed into place, so a failing write (a full disk) changes none of them."""
    staged: dict[Path, str] = {}
    try:
        for path, text in texts.items():
            staged[Path(path)] = _staged(Path(path), lambda file, text=text: file.write(text.encode()))
        for path, temp_name in staged.items():
            os.replace(temp_name, path)
    except BaseException:
        for temp_name in staged.values():
            Path(temp_name).unlink(missing_ok=True)
        raise


def _staged(path: Path, write) -> str:
    """The name of a synced temp file beside `path` holding what write(file_object) wrote; none is left on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_current_umask())  # mkstemp's 0600 would surprise users sharing files
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return temp_name


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda file: file.write(text.encode()))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints and engines are large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
