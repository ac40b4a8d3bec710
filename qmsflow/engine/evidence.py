"""Evidence files: staged by their uploader, attached to a case when it is opened or advanced, audited.

The one service the web pages, the JSON API and the CLI upload and download through:

- ``stage`` checks the bytes (type decided from the content, never from the name; size limited),
  stores the file once under its SHA-256 and records an upload owned by the uploader that expires
  after ``EvidenceStore.staging`` unless attached.
- ``claim`` (or ``check_claim`` then ``attach``) lets only the uploader attach their unexpired, not
  yet attached uploads to a case whose unit they can see; it returns the list a history row records
  under the reserved key ``_evidence``, so the HMAC chain covers each file's hash.
- ``open_attachment`` opens an attached file by attachment id, for an actor who can see the case.
  A hash alone never opens a file.
- ``purge_expired`` removes expired staged uploads and the files no other upload refers to;
  ``purge_orphans`` the stored files no upload refers to at all (of a request refused after staging).
- ``verify_files`` reports a stored file that is missing or altered, and an upload row that no longer
  matches what the history recorded.

Files live under ``<directory>/<first two hex digits>/<sha256>``. They are written to a temporary file
in ``<directory>/.tmp`` (same file system), synced, then renamed into place, so a crash leaves either
no file or the whole file, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .clock import local_date
from .errors import Conflict, FieldProblem, NotFound, ValidationFailed
from .history import AuditFinding
from .models import Case, EvidenceUpload, HistoryEntry
from .permissions import Actor, Decision, decide

EVIDENCE_KEY = "_evidence"  # reserved key in a history row's data; never merged into the case's data
PDF, JPEG, PNG = "application/pdf", "image/jpeg", "image/png"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class EvidenceStore:
    """Where evidence files live and the limits uploads meet (from the ``[evidence]`` settings)."""

    directory: Path
    max_bytes: int = 20 * 1024 * 1024
    staging: timedelta = timedelta(hours=24)

    def path_of(self, sha256: str) -> Path:
        """Return where the file with this hash is stored."""
        return self.directory / sha256[:2] / sha256


@dataclass(frozen=True)
class PurgeReport:
    """What one purge removed."""

    uploads: int
    files: int
    orphans: int = 0  # files of the store that no upload refers to (of a refused request), removed


# ------------------------------------------------------------------------------- type from bytes


def _refuse(message: str, code: str = "file_broken", **params: object) -> ValidationFailed:
    """A refused file: ``code`` names why (qmsflow/engine/language.py), ``reason`` says it in English detail."""
    return ValidationFailed([FieldProblem("file", code, {"reason": message, **params})])


def _check_png(path: Path, size: int) -> None:
    """PNG by its signature plus a sanity check: a well-formed IHDR first and the IEND chunk last."""
    with path.open("rb") as f:
        head = f.read(33)
        f.seek(max(0, size - 12))
        tail = f.read(12)
    if len(head) < 33 or head[12:16] != b"IHDR" or int.from_bytes(head[8:12], "big") != 13:
        raise _refuse("not a valid PNG image (no IHDR header)")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if not (0 < width < 2**31 and 0 < height < 2**31) or head[24] not in (1, 2, 4, 8, 16) or head[25] not in (0, 2, 3, 4, 6):
        raise _refuse("not a valid PNG image (bad IHDR)")
    if tail != b"\x00\x00\x00\x00IEND\xaeB`\x82":
        raise _refuse("not a complete PNG image (no IEND at the end)")


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _check_jpeg(path: Path, size: int) -> None:
    """JPEG by its SOI marker plus a sanity check: marker segments up to the scan include a frame
    header with a non-zero size, and the file ends with EOI (trailing zero padding allowed)."""
    with path.open("rb") as f:
        data = f.read(min(size, 1 << 20))  # headers sit before the scan; 1 MiB covers large EXIF blocks
        f.seek(max(0, size - 64))
        tail = f.read(64).rstrip(b"\x00")
    if not tail.endswith(b"\xff\xd9"):
        raise _refuse("not a complete JPEG image (no end marker)")
    pos, framed = 2, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise _refuse("not a valid JPEG image (broken marker segments)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            raise _refuse("not a valid JPEG image (bad segment length)")
        if marker in _SOF and pos + 9 <= len(data):
            height, width = int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
            framed = height > 0 and width > 0
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        pos += 2 + length
    if not framed:
        raise _refuse("not a valid JPEG image (no frame header before the scan)")


def _check_pdf(path: Path) -> None:
    """A PDF must parse with pypdf, down to its page tree."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _refuse("an encrypted PDF cannot be kept as evidence", "file_encrypted")
        pages = len(reader.pages)
    except ValidationFailed:
        raise
    except Exception as exc:  # untrusted bytes: pypdf raises many kinds (PdfReadError, ValueError, KeyError...)
        raise _refuse(f"not a readable PDF ({type(exc).__name__})") from None
    if pages < 1:
        raise _refuse("a PDF without pages")


def detect_type(path: Path, size: int) -> str:
    """Return the content type of the file at ``path`` from its bytes; ValidationFailed unless PDF, JPEG or PNG.

    PDFs are parsed with pypdf. JPEG and PNG are recognised by their magic bytes plus the structural
    checks above; they are not decoded (no image library), so a corrupt scan body passes.
    """
    with path.open("rb") as f:
        magic = f.read(8)
    if magic.startswith(b"%PDF-"):
        _check_pdf(path)
        return PDF
    if magic == b"\x89PNG\r\n\x1a\n":
        _check_png(path, size)
        return PNG
    if magic.startswith(b"\xff\xd8\xff"):
        _check_jpeg(path, size)
        return JPEG
    raise _refuse("only PDF, JPEG and PNG files are accepted", "file_type")


def clean_name(name: str) -> str:
    """Return the file's display name without any folder part; ValidationFailed when nothing usable is left."""
    base = unicodedata.normalize("NFC", (name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if not base or base in {".", ".."} or any(unicodedata.category(c).startswith("C") for c in base):
        raise ValidationFailed([FieldProblem("name", "file_name")])
    if len(base) > 255:
        raise ValidationFailed([FieldProblem("name", "max_length", {"n": 255})])
    return base


# ----------------------------------------------------------------------------------------- stage


def _lock_hash(session: Session, sha256: str) -> None:
    """Serialise writers of one stored file until the transaction ends.

    Invariant: a file is renamed into place and its upload row inserted, or its last row deleted and
    the file unlinked, only while this lock is held, so purge never unlinks a file whose new upload is
    about to commit. PostgreSQL: a transaction-level advisory lock on the hash. SQLite: the write
    transaction's ``BEGIN IMMEDIATE`` (qmsflow/engine/db.py) takes the database's one write lock, but
    only when the transaction starts, at its first statement: ``session.connection()`` starts it here,
    before the rename, not at the later INSERT. So ``stage`` and ``purge_expired`` need a write session.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int(sha256[:15], 16)})
    else:
        session.connection()


def _fsync_dir(path: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def stage(
    session: Session, store: EvidenceStore, actor: Actor, name: str, content: BinaryIO, now: datetime
) -> EvidenceUpload:
    """Check and store one uploaded file and record it as staged by ``actor``; refusals leave nothing behind.

    Run it in a write transaction. ValidationFailed when the file is empty, too large, or not a PDF
    that parses, a JPEG or a PNG (see ``detect_type``).
    """
    display = clean_name(name)
    tmp_dir = store.directory / ".tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := content.read(_CHUNK):
                size += len(chunk)
                if size > store.max_bytes:
                    raise _refuse(f"larger than the {store.max_bytes} bytes allowed", "file_too_large", max_bytes=store.max_bytes)
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise _refuse("the file is empty", "file_empty")
        content_type = detect_type(tmp, size)
        sha = digest.hexdigest()
        _lock_hash(session, sha)
        final = store.path_of(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        # Renamed over any existing copy: same name, same bytes; afterwards the file surely exists.
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)
    upload = EvidenceUpload(
        uploader=actor.username, name=display, content_type=content_type, size=size, sha256=sha,
        staged_at=now, expires_at=now + store.staging, case_id=None, attached_at=None,
    )
    session.add(upload)
    session.flush()
    return upload


# ----------------------------------------------------------------------------------------- claim


def check_claim(
    session: Session, actor: Actor, unit_id: int, upload_ids: Sequence[int], now: datetime
) -> list[EvidenceUpload]:
    """Return the uploads ``actor`` may attach to a case of ``unit_id``, locked; raise and change nothing otherwise.

    NotFound when the unit is not visible to the actor, or an upload does not exist or is someone
    else's (a staged upload is visible to its uploader only); Conflict when one has expired or is
    already attached; ValidationFailed when an id is given twice.
    """
    ids = list(upload_ids)
    if len(set(ids)) != len(ids):
        raise ValidationFailed([FieldProblem("evidence", "given_twice")])
    if not ids:
        return []
    if decide(session, actor, "view", unit_id=unit_id, on=local_date(now)) is Decision.NOT_VISIBLE:
        raise NotFound("unit", unit_id)
    rows = {
        u.id: u
        for u in session.scalars(
            select(EvidenceUpload).where(EvidenceUpload.id.in_(ids)).order_by(EvidenceUpload.id).with_for_update()
        )
    }
    found = []
    for upload_id in ids:
        upload = rows.get(upload_id)
        if upload is None or upload.uploader != actor.username:
            raise NotFound("upload", upload_id)
        if upload.case_id is not None:
            raise Conflict(f"upload {upload_id} is already attached to a case", {"upload_id": upload_id})
        if now >= upload.expires_at:
            raise Conflict(f"upload {upload_id} expired at {upload.expires_at.isoformat()}; upload it again",
                           {"upload_id": upload_id})
        found.append(upload)
    return found


def attach(session: Session, case: Case, uploads: Sequence[EvidenceUpload], now: datetime) -> list[dict[str, Any]]:
    """Mark checked uploads as attached to ``case`` and return the ``_evidence`` list for its history row."""
    for upload in uploads:
        upload.case_id, upload.attached_at = case.id, now
    if uploads:
        session.flush()
    return [evidence_entry(u) for u in uploads]


def claim(session: Session, actor: Actor, case: Case, upload_ids: Sequence[int], now: datetime) -> list[dict[str, Any]]:
    """Attach ``actor``'s staged uploads to ``case`` (see ``check_claim``) and return the ``_evidence`` list."""
    return attach(session, case, check_claim(session, actor, case.unit_id, upload_ids, now), now)


def evidence_entry(upload: EvidenceUpload) -> dict[str, Any]:
    """Return what a history row records of one attached file."""
    return {
        "attachment_id": upload.id, "sha256": upload.sha256, "name": upload.name,
        "type": upload.content_type, "size": upload.size,
    }


# -------------------------------------------------------------------------------------- download


def get_attachment(session: Session, actor: Actor, attachment_id: int, now: datetime) -> EvidenceUpload:
    """Return an attached upload whose case the actor may see; NotFound otherwise (also for staged uploads)."""
    row = session.execute(
        select(EvidenceUpload, Case.unit_id).join(Case, Case.id == EvidenceUpload.case_id).where(EvidenceUpload.id == attachment_id)
    ).first()
    if row is None:
        raise NotFound("attachment", attachment_id)
    upload, unit_id = row
    if decide(session, actor, "view", unit_id=unit_id, on=local_date(now)) is Decision.NOT_VISIBLE:
        raise NotFound("attachment", attachment_id)
    return upload


def open_attachment(
    session: Session, store: EvidenceStore, actor: Actor, attachment_id: int, now: datetime
) -> tuple[EvidenceUpload, BinaryIO]:
    """Return an attachment the actor may see and its file opened for reading; the caller closes it.

    Conflict when the stored file is missing (``qmsflow audit verify`` then reports it too).
    """
    upload = get_attachment(session, actor, attachment_id, now)
    try:
        return upload, store.path_of(upload.sha256).open("rb")
    except FileNotFoundError:
        raise Conflict(f"the stored file of attachment {attachment_id} is missing", {"sha256": upload.sha256}) from None


# ----------------------------------------------------------------------------------------- purge


def purge_expired(session: Session, store: EvidenceStore, now: datetime, *, limit: int = 500) -> PurgeReport:
    """Delete up to ``limit`` expired staged uploads, and each file no remaining upload refers to.

    A file is unlinked inside the transaction, after its rows are deleted; if the transaction then
    rolls back, the restored rows are expired staged uploads that nothing can attach, and the next
    purge deletes them again (a missing file is no error here).
    """
    expired = list(
        session.scalars(
            select(EvidenceUpload)
            .where(EvidenceUpload.case_id.is_(None), EvidenceUpload.expires_at <= now)
            .order_by(EvidenceUpload.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    hashes = sorted({u.sha256 for u in expired})
    for upload in expired:
        session.delete(upload)
    session.flush()
    files = 0
    for sha in hashes:
        _lock_hash(session, sha)
        still_used = session.scalar(select(func.count()).select_from(EvidenceUpload).where(EvidenceUpload.sha256 == sha))
        if still_used:
            continue
        try:
            store.path_of(sha).unlink()
            files += 1
        except FileNotFoundError:
            pass
    return PurgeReport(uploads=len(expired), files=files)


_HASH = re.compile(r"^[0-9a-f]{64}$")


def purge_orphans(session: Session, store: EvidenceStore, now: datetime, *, limit: int = 500) -> int:
    """Unlink up to ``limit`` stored files that no upload row refers to and older than the staging time.

    It walks the whole store, so a scheduler runs it once per purge, apart from the batches of
    ``purge_expired``; run it in a fresh write session (on SQLite the walk then happens before the
    write lock is taken, at the first statement).

    ``stage`` renames a file into place before its row is inserted; when that transaction rolls back
    (a form refused after its files were staged) the row goes and the file stays. Such a file is
    removed under the same hash lock as ``purge_expired``'s (``_lock_hash``), after checking again that
    no row refers to it, so a new upload of the same bytes, which holds the lock from the rename to its
    commit, is never robbed of its file. The age check (the file's mtime; ``stage`` renames a fresh copy
    into place every time) only keeps the scan off files of requests still running.
    """
    if not store.directory.is_dir():
        return 0
    cutoff = (now - store.staging).timestamp()
    candidates: list[str] = []
    for folder in sorted(store.directory.iterdir()):
        if len(folder.name) != 2 or not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _HASH.match(path.name) and path.name.startswith(folder.name) and path.stat().st_mtime <= cutoff:
                candidates.append(path.name)
    removed = 0
    for start in range(0, len(candidates), 500):
        chunk = candidates[start:start + 500]
        used = set(session.scalars(select(EvidenceUpload.sha256).where(EvidenceUpload.sha256.in_(chunk))))
        for sha in chunk:
            if sha in used or removed >= limit:
                continue
            _lock_hash(session, sha)
            if session.scalar(select(func.count()).select_from(EvidenceUpload).where(EvidenceUpload.sha256 == sha)):
                continue
            try:
                store.path_of(sha).unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


# ----------------------------------------------------------------------------------------- audit


def _file_digest(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            digest = hashlib.sha256()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
            return digest.hexdigest()
    except FileNotFoundError:
        return None


def _recorded(session: Session, batch: int = 1000) -> Iterator[tuple[HistoryEntry, dict[str, Any]]]:
    """Yield each ``_evidence`` entry recorded in history with its row, in id order, a batch at a time."""
    last_id = 0
    while True:
        rows = list(session.scalars(select(HistoryEntry).where(HistoryEntry.id > last_id).order_by(HistoryEntry.id).limit(batch)))
        if not rows:
            return
        for row in rows:
            for entry in (row.data or {}).get(EVIDENCE_KEY) or []:
                yield row, entry
        last_id = rows[-1].id
        session.expunge_all()


def verify_files(session: Session, store: EvidenceStore) -> tuple[int, list[AuditFinding]]:
    """Check every file the history records: present, unaltered, and its upload row as recorded.

    The history row (HMAC-chained, qmsflow/engine/history.py) is the reference: an upload row whose
    hash, name, type, size or case differ from it was edited. Returns (files checked, findings).
    """
    findings: list[AuditFinding] = []
    digests: dict[str, str | None] = {}
    seen: set[int] = set()
    for row, entry in _recorded(session):
        attachment_id = entry.get("attachment_id")
        sha = str(entry.get("sha256"))
        upload = session.get(EvidenceUpload, attachment_id) if isinstance(attachment_id, int) else None
        if upload is None:
            findings.append(AuditFinding(row.case_id, row.seq, f"attachment {attachment_id} recorded here has no upload row (deleted)"))
        else:
            seen.add(upload.id)
            recorded = (sha, entry.get("name"), entry.get("type"), entry.get("size"), row.case_id)
            if (upload.sha256, upload.name, upload.content_type, upload.size, upload.case_id) != recorded:
                findings.append(AuditFinding(row.case_id, row.seq, f"attachment {attachment_id}'s upload row differs from the history (edited)"))
        if sha not in digests:
            digests[sha] = _file_digest(store.path_of(sha))
        if digests[sha] is None:
            findings.append(AuditFinding(row.case_id, row.seq, f"attachment {attachment_id}: stored file {sha} is missing"))
        elif digests[sha] != sha:
            findings.append(AuditFinding(row.case_id, row.seq, f"attachment {attachment_id}: stored file {sha} was altered"))
    attached = session.execute(
        select(EvidenceUpload.id, EvidenceUpload.case_id).where(EvidenceUpload.case_id.is_not(None)).order_by(EvidenceUpload.id)
    )
    for upload_id, case_id in attached:
        if upload_id not in seen:
            findings.append(AuditFinding(case_id, None, f"attachment {upload_id} is attached but no history row records it"))
    return len(digests), findings


__all__ = [
    "EVIDENCE_KEY",
    "EvidenceStore",
    "PurgeReport",
    "attach",
    "check_claim",
    "claim",
    "clean_name",
    "detect_type",
    "evidence_entry",
    "get_attachment",
    "open_attachment",
    "purge_expired",
    "purge_orphans",
    "stage",
    "verify_files",
]
