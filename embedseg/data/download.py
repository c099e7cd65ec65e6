"""Checksummed downloads (pooch) and safe unpacking of zip archives into the cache folder.

A download lands in ``CACHE/<data set>/<file name>`` and is unpacked next to it into
``CACHE/<data set>/<archive stem>/``; both are reused, so a second run downloads and unpacks
nothing. Unpacking goes to a temporary folder that is renamed into place, so an interrupted run
never leaves a half-unpacked tree that a later run would mistake for a complete one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..io import DataError

log = logging.getLogger(__name__)


def fetch(url: str, sha256: str | None, cache_dir: str | os.PathLike, retries: int = 3) -> Path:
    """Download `url` into `cache_dir` (once) and return the local file.

    With `sha256` the file is verified (also a cached copy: a mismatch triggers a new download);
    a file that does not match raises DataError and is deleted, nothing else is touched.
    Without it (hash unknown) the first download is trusted, and its sha256 is logged and
    recorded in ``<file>.sha256`` next to it, so later runs verify the cached copy against it.
    """
    import pooch

    cache_dir = Path(cache_dir)
    base_url, _, file_name = url.rpartition("/")
    if not file_name:
        raise DataError(f"{url}: URL does not end in a file name")
    local = cache_dir / file_name
    recorded = local.with_name(local.name + ".sha256")
    known = sha256 or (recorded.read_text().strip() if recorded.is_file() else None)
    registry = pooch.create(
        path=cache_dir, base_url=base_url + "/", registry={file_name: known}, retry_if_failed=retries
    )
    try:
        registry.fetch(file_name, progressbar=True)
    except ValueError as exc:  # pooch's hash mismatch
        # pooch discards a bad *new* download itself but keeps a bad file already in the cache.
        local.unlink(missing_ok=True)
        raise DataError(
            f"{local}: sha256 does not match {known} ({exc}); the file was removed, download it again"
        ) from exc
    except Exception as exc:  # requests' connection errors and HTTP status errors
        raise DataError(
            f"{url}: download failed ({exc}); check the URL and the network, or pass a local --source"
        ) from exc
    if known is None:
        digest = pooch.file_hash(str(local))
        recorded.write_text(digest + "\n")
        log.warning(
            "%s: no sha256 known, so this first download was NOT verified; its sha256 is %s "
            "(recorded in %s; pass it with --sha256 or add it to the registry)",
            local,
            digest,
            recorded.name,
        )
    return local


def unpack_zip(archive: str | os.PathLike, dest_root: str | os.PathLike, downloaded: bool = True) -> Path:
    """Unpack `archive` into ``dest_root/<archive stem>/`` once and return that folder.
    `downloaded`: the archive is our download (a bad one is fetched again), not the user's file.

    Members with absolute paths or ``..`` components are refused (DataError) before anything is
    written, so a malicious archive cannot write outside the destination.
    """
    archive = Path(archive)
    dest = Path(dest_root) / archive.stem
    if dest.is_dir():
        return dest
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                check_member_name(member, archive)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
            try:
                zf.extractall(tmp)
                os.replace(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except zipfile.BadZipFile as exc:
        fix = "delete it and download it again" if downloaded else "check the file given as --source"
        raise DataError(f"{archive}: not a valid zip file ({exc}); {fix}") from exc
    return dest


def check_member_name(member: str, archive: Path) -> None:
    """Refuse an archive member that would land outside the destination folder."""
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0].endswith(":")):
        raise DataError(f"{archive}: member {member!r} points outside the archive folder; refusing to unpack it")


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https", "ftp")
