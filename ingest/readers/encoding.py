"""Character encodings of delivered attribute files (DBF, CSV) and of zip member names.

Rules: a ``.cpg`` file wins. Without one the DBF language-driver byte (LDID,
header byte 29) is not trusted: county files routinely claim Windows-1252 while holding GBK.
The encoding is decided from the bytes themselves (field names and a sample of the records):
valid UTF-8 with non-ASCII bytes → UTF-8; otherwise the first of GBK / GB18030 that decodes
without error. Every decision is recorded as a :class:`~ingest.model.Note`.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass
from pathlib import Path

from cim.errors import UnreadableInput

SAMPLE_BYTES = 4 << 20          # bytes of the record area sampled (head and tail)
CANDIDATES = ("UTF-8", "GBK", "GB18030")

# .cpg contents seen in the wild → codec names GDAL (iconv) and Python both know.
_CPG_ALIASES = {"65001": "UTF-8", "UTF8": "UTF-8", "936": "GBK", "CP936": "GBK", "ANSI936": "GBK",
                "54936": "GB18030", "1252": "CP1252", "ANSI1252": "CP1252", "OEM": "CP437"}


@dataclass(frozen=True)
class EncodingChoice:
    """The encoding used for one file and why."""

    encoding: str
    reason: str          # cpg | detected | ascii | declared
    declared: str | None  # what the LDID byte claimed, if anything

    def describe(self) -> tuple[str, str]:
        """Chinese and English sentence for the report."""
        if self.reason == "cpg":
            return (f"按 .cpg 文件使用编码 {self.encoding}", f"encoding {self.encoding} taken from the .cpg file")
        if self.reason == "ascii":
            return ("属性全为 ASCII 字符，编码无歧义", "attributes are plain ASCII; encoding is unambiguous")
        claim_zh = f"（文件头声明 {self.declared}，未采信）" if self.declared else ""
        claim_en = f" (header claims {self.declared}; not trusted)" if self.declared else ""
        return (f"无 .cpg，根据字节内容判定编码为 {self.encoding}{claim_zh}",
                f"no .cpg; encoding detected from the bytes as {self.encoding}{claim_en}")


def normalise_cpg(text: str) -> str:
    """Codec name for the contents of a .cpg file (``UTF-8``, ``936``, ``GBK`` …)."""
    key = text.strip().upper().replace(" ", "").replace("_", "")
    name = _CPG_ALIASES.get(key, text.strip())
    try:
        codecs.lookup(name)
    except LookupError as exc:
        raise UnreadableInput(f".cpg 文件声明了未知编码：{text.strip()}",
                              f".cpg file names an unknown encoding: {text.strip()}") from exc
    return name


# LDID byte → code page claimed by the header (only for the report)
_LDID = {0x57: "CP1252", 0x03: "CP1252", 0x01: "CP437", 0x4D: "GBK", 0x7A: "GBK", 0x00: None}


def _dbf_text_bytes(path: Path) -> tuple[bytes, str | None]:
    """Field-name bytes and the character-field bytes of sampled records, plus the LDID claim."""
    with path.open("rb") as fh:
        head = fh.read(32)
        if len(head) < 32:
            raise UnreadableInput(f"DBF 文件 {path.name} 不完整", f"DBF file {path.name} is truncated")
        nrec, hlen, rlen = struct.unpack("<IHH", head[4:12])
        ldid = _LDID.get(head[29], f"LDID 0x{head[29]:02X}")
        desc = fh.read(max(hlen - 32, 0))
        names, spans, off = [], [], 1
        for i in range(0, len(desc) - 31, 32):
            d = desc[i:i + 32]
            if d[0] == 0x0D:
                break
            names.append(d[:11].split(b"\0", 1)[0])
            ftype, flen = chr(d[11]), d[16]
            if ftype in "CM":
                spans.append((off, off + flen))
            off += flen
        body = b""
        if rlen > 0 and nrec > 0 and spans:
            per = max(1, SAMPLE_BYTES // 2 // rlen)
            fh.seek(hlen)
            body = fh.read(per * rlen)
            if nrec > 2 * per:
                fh.seek(hlen + (nrec - per) * rlen)
                body += fh.read(per * rlen)
        chunks = [b"\n".join(names)]
        for r in range(0, len(body) - rlen + 1, rlen):
            rec = body[r:r + rlen]
            chunks.extend(rec[a:b].rstrip(b" \0") for a, b in spans)
    return b"\n".join(chunks), ldid


def detect_bytes(data: bytes) -> str | None:
    """UTF-8, GBK or GB18030 for bytes holding text; None when they are pure ASCII."""
    if data.isascii():
        return None
    best, best_bad = CANDIDATES[-1], None
    for cand in CANDIDATES:
        text = data.decode(cand, errors="replace")
        bad = text.count("\ufffd")
        if bad == 0:
            return cand
        if best_bad is None or bad < best_bad:
            best, best_bad = cand, bad
    return best


def dbf_encoding(dbf: Path) -> EncodingChoice:
    """Encoding of a DBF file: its .cpg, else detected from the bytes (never the LDID byte)."""
    for ext in (".cpg", ".CPG"):
        cpg = dbf.with_suffix(ext)
        if cpg.exists():
            return EncodingChoice(normalise_cpg(cpg.read_text(errors="replace")), "cpg", None)
    data, claimed = _dbf_text_bytes(dbf)
    found = detect_bytes(data)
    if found is None:
        return EncodingChoice("UTF-8", "ascii", claimed)
    return EncodingChoice(found, "detected", claimed)


def text_file_encoding(path: Path) -> EncodingChoice:
    """Encoding of a CSV or other text file (BOM, else detected from the first megabytes)."""
    with path.open("rb") as fh:
        data = fh.read(SAMPLE_BYTES)
    if data.startswith(codecs.BOM_UTF8):
        return EncodingChoice("utf-8-sig", "detected", None)
    found = detect_bytes(data)
    if found is None:
        return EncodingChoice("UTF-8", "ascii", None)
    return EncodingChoice(found, "detected", None)


def zip_member_name(raw_name: str, flag_bits: int) -> str:
    """Decoded name of a zip member: UTF-8 when flag bit 11 is set, else GBK or UTF-8 bytes
    that Python's zipfile decoded as cp437."""
    if flag_bits & 0x800:
        return raw_name
    try:
        raw = raw_name.encode("cp437")
    except UnicodeEncodeError:
        return raw_name
    if raw.isascii():
        return raw_name
    enc = detect_bytes(raw) or "UTF-8"
    return raw.decode(enc, errors="replace")
