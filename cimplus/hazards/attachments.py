"""Attachments of ledger entries: before/after photos and reports.

The bytes are stored under ``$CIM_HOME/hazards/attachments`` (``CIM_HAZARDS_ATTACHMENTS_DIR``)
as ``<sha256[:2]>/<sha256>.<ext>``: the name a client sent is kept only as a label (its last
path component, control characters removed), so no upload can choose where it lands. The type
is sniffed from the first bytes (JPEG, PNG, WebP, PDF; the declared content type and the name's
extension are ignored), the size is limited while streaming (``CIM_HAZARDS_ATTACHMENT_MAX_MB``),
and every upload is audited and recorded as an event of its entry.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from cim import auth
from cim.auth import Action, Principal
from cim.errors import InvalidInput, NotFound, PayloadTooLarge
from cimplus.hazards import config
from cimplus.hazards.model import HazardAttachment, HazardEvent
from cimplus.hazards.workflow import _audit, load

CHUNK = 1 << 16
_CTRL = re.compile(r"[\x00-\x1f\x7f]")


def sniff(head: bytes) -> tuple[str, str]:
    """(media type, extension) from a file's first bytes; images and PDF only."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf", "pdf"
    raise InvalidInput("附件只能是 JPEG、PNG、WebP 图片或 PDF 文件", "attachments must be JPEG, PNG or WebP images or PDF files")


def safe_name(name: str | None) -> str:
    """A label for the uploaded name: its last path component (``/`` or ``\\``), NFC, without
    control characters or leading dots, at most 200 characters."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name or ""))[-1]
    base = _CTRL.sub("", base).strip().lstrip(".").strip()
    return base[:200] or "attachment"


@dataclass
class Stored:
    """A file written into the store."""

    sha256: str
    size: int
    media_type: str
    path: Path


def store(root: Path, stream: BinaryIO, limit_bytes: int) -> Stored:
    """Stream ``stream`` into the store (content-addressed); :class:`PayloadTooLarge` past the
    limit, :class:`InvalidInput` when empty or of a refused type. Nothing is kept on refusal."""
    incoming = root / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd, tmp = tempfile.mkstemp(dir=incoming, prefix="up-")
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit_bytes:
                    raise PayloadTooLarge(f"附件超过 {limit_bytes / (1 << 20):g} MB 上限",
                                          f"attachment exceeds the {limit_bytes / (1 << 20):g} MB limit")
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidInput("附件为空", "the attachment is empty")
        media, ext = sniff(head)
        sha = digest.hexdigest()
        final = root / sha[:2] / f"{sha}.{ext}"
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return Stored(sha, size, media, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_fields(kind: str, caption: str | None) -> None:
    """:class:`InvalidInput` for a kind not in ledger.yaml or a caption over 500 characters or with
    control characters (checked before the file is stored, so a refused upload leaves no file)."""
    led = config.ledger()
    if kind not in led.attachment_kinds:
        raise InvalidInput(f"附件类别须为 {sorted(led.attachment_kinds)} 之一",
                           f"kind must be one of {sorted(led.attachment_kinds)}")
    if caption is not None and (len(caption) > 500 or _CTRL.search(caption)):
        raise InvalidInput("附件说明过长或含控制字符", "caption too long or has control characters")


def add(session: Session, who: Principal, hazard_id: int, stored: Stored, *, kind: str, file_name: str | None,
        caption: str | None, client_addr: str | None = None) -> HazardAttachment:
    """Record a stored file as an attachment of an entry (``report`` access for its county),
    with its event and audit rows, in one transaction."""
    check_fields(kind, caption)
    led = config.ledger()
    h = load(session, hazard_id)
    auth.authorize(who, Action.report, county=h.county_code)
    att = HazardAttachment(hazard_id=h.id, kind=kind, sha256=stored.sha256, media_type=stored.media_type,
                           size_bytes=stored.size, file_name=safe_name(file_name), caption=caption or None,
                           uploaded_by=who.name)
    session.add(att)
    session.flush()
    info = {"id": att.id, "kind": kind, "file_name": att.file_name, "sha256": stored.sha256,
            "media_type": stored.media_type, "size_bytes": stored.size}
    session.add(HazardEvent(hazard_id=h.id, actor=who.name, role=who.role.value if who.role else None,
                            action="attach", from_status=h.status, to_status=h.status,
                            comment=f"上传附件（{led.attachment_kinds[kind].zh}）{att.file_name}",
                            changes={"attachment": [None, info]}, version=h.version))
    _audit(session, who, "hazard.attach", h, client_addr, info)
    session.commit()
    return att


def locate(session: Session, root: Path, hazard_id: int, attachment_id: int) -> tuple[Path, HazardAttachment]:
    """The stored file of an attachment (checked to lie inside the store)."""
    att = session.get(HazardAttachment, attachment_id)
    if att is None or att.hazard_id != hazard_id:
        raise NotFound(f"没有附件 {attachment_id}", f"no attachment {attachment_id} of entry {hazard_id}")
    ext = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "application/pdf": "pdf"}[att.media_type]
    path = (root / att.sha256[:2] / f"{att.sha256}.{ext}").resolve()
    if root.resolve() not in path.parents or not path.is_file():
        raise NotFound("附件文件不存在", "the attachment's file is missing")
    return path, att
