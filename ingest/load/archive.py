"""The uploaded originals kept under ``<archive_dir>/<sha256>/<file name>`` (written before the commit)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ingest.model import Delivery


def archive_original(path: Path, sha256: str, archive_dir: Path) -> Path:
    """Keep the original upload under ``<archive_dir>/<sha256>/<file name>`` (idempotent).

    The copy is written beside its final name and renamed, so a crash never leaves a partial
    archive under the final name.
    """
    dest_dir = archive_dir / sha256
    dest = dest_dir / path.name
    if dest.exists():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest_dir)) / path.name
    if path.is_dir():
        shutil.copytree(path, tmp)
    else:
        shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return dest


def archive(delivery: Delivery, archive_dir: Path | None, originals: list[Path] | None) -> Path | None:
    """Archive each original (default: ``delivery.path``) under the delivery's sha256; the first
    one's archived path, or None without an archive directory."""
    archived = None
    if archive_dir:
        for original in originals or [delivery.path]:
            archived = archived or archive_original(original, delivery.sha256, archive_dir)
    return archived
