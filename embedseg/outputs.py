"""Where a step may write: the output policy of every `embedseg` command (docs/interfaces.md).

Users point these commands at their only copy of annotated images, so an output

- never is, contains or lies inside an input (symbolic links resolved), whatever the options;
- replaces an existing folder only when that folder carries the marker file of the same kind of
  output (:data:`KINDS`), i.e. was written by the same command; an empty folder is fine, any
  other folder or a regular file in the way needs ``--force``;
- is built in a staging folder next to it and swapped in only when the command succeeded, so a
  failed or interrupted run leaves the previous output exactly as it was;
- is written by one run at a time: the step holds a lock on it (:func:`output_lock`, a file
  ``.NAME.lock`` beside it), and a second run is refused with the first one's pid, host and
  start time;
- is first cleaned of what an earlier, killed run on it left (its staging and retired folders,
  temporary files), which the lock shows to be nobody's.

Every refusal is an :class:`OutputError` (a :class:`~embedseg.io.UserError`): the command line
prints one line and exits 2, and nothing has been touched. A failed write (full disk, read-only
folder) is one too, naming ``--out`` and the cause rather than the hidden staging folder.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .io import UserError, WriteError, concerns, is_write_error, write_json
from .layout import LAST_PT, TRAIN_JSON

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


@dataclass(frozen=True)
class OutputKind:
    """One kind of output folder; any of its `markers` inside a folder shows that kind."""

    name: str
    markers: tuple[str, ...]
    command: str


DATA = OutputKind("prepared data set", ("dataset.json",), "embedseg prepare")
CROPS = OutputKind("crops folder", ("crops.json",), "embedseg crops")
# train.json is rewritten when training (re)starts; last.pt alone is what a killed job leaves
# once Snakemake has deleted train.json, its declared output.
MODEL = OutputKind("model folder", (TRAIN_JSON, LAST_PT), "embedseg train")
BASELINE_MODEL = OutputKind("baseline model folder", ("baseline.json",), "embedseg baseline … train")
METHOD_MODEL = OutputKind("command method model folder", ("command.json",), "embedseg command train")
PREDICTIONS = OutputKind("predictions folder", ("predictions.json",), "embedseg predict")
# Tables and figures always write these files; the folders stay as the workflow declares them.
TABLES = OutputKind("tables folder", ("table1.csv",), "embedseg tables")
FIGURES = OutputKind("figures folder", ("ap_curves.png",), "embedseg figures")
GALLERY = OutputKind("gallery folder", ("index.html",), "embedseg gallery")
# Most specific first: crops and baseline model folders hold a dataset.json as well.
KINDS = (CROPS, MODEL, BASELINE_MODEL, METHOD_MODEL, PREDICTIONS, TABLES, FIGURES, GALLERY, DATA)


class OutputError(UserError):
    """The output cannot be written without destroying something; nothing was touched."""


# Locks this process holds: resolved output path -> [lock file descriptor, nesting depth, pid].
# flock locks belong to an open file, so a second open in this process would block itself.
_held: dict[Path, list[int]] = {}


def lock_file(target: Path) -> Path:
    """The lock file of the output `target` (a resolved path): ``.NAME.lock`` in its folder."""
    return target.parent / f".{target.name}.lock"


def holder_description(fd: int) -> str:
    """Who holds the lock open as `fd`, from what the holder wrote into the lock file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if "pid" not in info:
        return "another run (it is just starting)"
    return f"another run: pid {info['pid']} on {info['host']}, started {info['started']} ({info['command']})"


def acquire_lock(out: PathLike) -> Path:
    """Lock the output `out` for this process (again, if it holds it already); returns the
    resolved path to pass to :func:`release_lock`. :class:`OutputError` if another run holds it.

    An exclusive ``flock`` on :func:`lock_file`: the system drops it when the process ends,
    even by ``kill -9``, so a lock file left behind without a holder blocks nobody. Taking the
    lock (not again) removes what killed runs on `out` left (:func:`clean_leftovers`).
    """
    target = Path(out).resolve()
    if target in _held:
        _held[target][1] += 1
        return target
    path = lock_file(target)
    with writing(out, target):
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = holder_description(fd)
                os.close(fd)
                raise OutputError(
                    f"--out {out} is being written by {holder}; wait until it ends, or choose another --out"
                ) from None
            try:
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder we waited for removed the file after we opened it: lock anew
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": command_line(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        _held[target] = [fd, 1, os.getpid()]
        clean_leftovers(target)
    return target


def command_line() -> str:
    """This process's command line as a user typed it (``embedseg STEP …`` for our commands)."""
    ours = Path(sys.argv[0]).name in ("embedseg", "__main__.py")
    return shlex.join(["embedseg", *sys.argv[1:]] if ours else [sys.executable, *sys.argv])


def release_lock(target: Path) -> None:
    """Undo one :func:`acquire_lock`; the last one removes the lock file and unlocks it."""
    if target not in _held:  # released early by release_all_locks
        return
    _held[target][1] -= 1
    if _held[target][1]:
        return
    fd, _, _ = _held.pop(target)
    # Removed while still locked, so a run waiting on this file re-opens the new one (see above).
    with contextlib.suppress(OSError):
        os.unlink(lock_file(target))
    os.close(fd)


@atexit.register
def release_all_locks() -> None:
    """Release every lock this process holds (those of :func:`check_output` last until this is
    called: at exit, or when :func:`embedseg.cli.main` has run a step)."""
    for target, held in list(_held.items()):
        if held[2] == os.getpid():  # a forked child must not remove its parent's lock file
            held[1] = 1
            release_lock(target)


@contextlib.contextmanager
def output_lock(out: PathLike) -> Iterator[Path]:
    """Hold the lock on the output `out` for the block (nested use in one process is fine);
    yields the resolved path. :class:`OutputError` names the other run if one holds it."""
    target = acquire_lock(out)
    try:
        yield target
    finally:
        release_lock(target)


@contextlib.contextmanager
def writing(out: PathLike, target: Path) -> Iterator[None]:
    """Turn a failed write on `target`, beside it (staging) or above it (its folders) into an
    :class:`OutputError` naming `out` as the user gave it and the cause."""
    try:
        yield
    except (OSError, WriteError) as exc:
        reason = exc.errno
        ours = (
            concerns(Path(os.path.abspath(exc.path)), target)
            if isinstance(exc, WriteError)
            else is_write_error(exc, target)
        )
        if not ours:
            raise
        hint = (
            "free some space (the new output is built beside the old one, so it needs room for both) or choose another --out"
            if reason in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            else "choose an --out in a folder you can write to"
        )
        raise OutputError(
            f"cannot write --out {out}: {os.strerror(reason).lower()}; {hint} (an earlier output there is unchanged)"
        ) from exc


# What this module and embedseg.io.atomic_write name their temporary files and folders
# (tempfile's random part is 8 characters of [a-z0-9_]).
RANDOM = r"[a-z0-9_]{8}"


def clean_leftovers(target: Path) -> None:
    """Remove what killed runs on the output `target` left: ``.NAME.XXXXXXXX.staging`` and
    ``.NAME.XXXXXXXX.old`` folders and ``.NAME.XXXXXXXX.SUFFIX`` files beside it, and the
    temporary files of :func:`~embedseg.io.atomic_write` inside a folder of ours.

    Call only while holding the lock on `target`: every run on it holds that lock, so nothing
    left over is in use. A retired folder still holding the only copy (a run killed between
    the two renames of :func:`swap_in`) is moved back instead.
    """
    if not target.parent.is_dir():
        return
    name = re.escape(target.name)
    beside = re.compile(rf"\.{name}\.{RANDOM}(\.staging|\.old|{re.escape(target.suffix)})")
    for entry in target.parent.iterdir():
        if not beside.fullmatch(entry.name) or entry.is_symlink():
            continue
        if entry.suffix == ".old" and entry.is_dir() and (entry / target.name).exists() and not target.exists():
            os.replace(entry / target.name, target)
            log.warning("%s: restored the earlier output that an interrupted run had moved aside", target)
        log.info("removing %s, left by an interrupted run", entry)
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if target.is_dir() and kind_of(target) is not None:
        inside = re.compile(rf"\.(?P<name>.+)\.{RANDOM}(?P<suffix>\.[^.]*)?")
        for entry in target.iterdir():
            match = inside.fullmatch(entry.name)
            if match and entry.is_file() and Path(match["name"]).suffix == (match["suffix"] or ""):
                log.info("removing %s, left by an interrupted run", entry)
                entry.unlink(missing_ok=True)


def kind_of(folder: PathLike) -> OutputKind | None:
    """The kind of output `folder` holds, by its marker files; None for anything else."""
    folder = Path(folder)
    return next((kind for kind in KINDS if any((folder / marker).is_file() for marker in kind.markers)), None)


def check_not_input(out: PathLike, inputs: Mapping[str, PathLike | None]) -> None:
    """Refuse an output that is, contains or lies inside one of `inputs` (name → path; None skipped)."""
    target = Path(out).resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if target == source:
            relation = "is"
        elif source.is_relative_to(target):
            relation = "contains"
        elif target.is_relative_to(source):
            relation = "lies inside"
        else:
            continue
        raise OutputError(
            f"--out {out} {relation} the input {name} {path}; writing there would destroy the input "
            "(--force does not change that). Choose an --out outside every input"
        )


def check_output(out: PathLike, kind: OutputKind, inputs: Mapping[str, PathLike | None], force: bool = False) -> bool:
    """Raise :class:`OutputError` unless the folder `out` may be written by a `kind` command.

    Returns True when `out` holds something to replace (an earlier output of the same kind, or
    anything at all with `force`), False when it is missing or empty.

    The lock on `out` (:func:`acquire_lock`) is taken first and held until the process ends, so
    a step that writes into `out` in place (training, resumed) is the only one doing so; what
    killed runs left there is removed with it (:func:`clean_leftovers`).
    """
    check_not_input(out, inputs)
    acquire_lock(out)
    return check_replaceable(Path(out), kind, force)


def check_replaceable(out: Path, kind: OutputKind, force: bool) -> bool:
    """The checks of :func:`check_output` after the input check and the lock."""
    target = out.resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise OutputError(f"--out {out} is the current folder or contains it; name a new folder for the {kind.name}")
    if not target.exists():
        return False
    if target.is_dir():
        if not any(target.iterdir()):
            return False
        found = kind_of(target)
        if found == kind or force:
            return True
        holds = f"a {found.name} written by `{found.command}`" if found else "files that `embedseg` did not write"
        raise OutputError(
            f"--out {out} holds {holds}, not a {kind.name}; choose another --out, or pass --force to replace "
            "the whole folder"
        )
    if force:
        return True
    raise OutputError(f"--out {out} is an existing file; choose another --out, or pass --force to replace it")


def check_output_file(
    out: PathLike,
    inputs: Mapping[str, PathLike | None],
    ours: Callable[[Path], bool],
    command: str,
    force: bool = False,
) -> None:
    """Raise :class:`OutputError` unless the single file `out` may be written by `command`:
    not an input, not a folder, and an existing file only if `ours(out)` says `command` wrote it
    (or with `force`). The file itself is then written with :func:`embedseg.io.atomic_write`;
    the lock on `out` is held until the process ends, as with :func:`check_output`."""
    out = Path(out)
    check_not_input(out, inputs)
    acquire_lock(out)
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder; name the file to write, e.g. --out {out / 'scores.csv'}")
    if out.exists() and not force and not ours(out):
        raise OutputError(
            f"--out {out} is an existing file that `{command}` did not write; choose another --out, "
            "or pass --force to replace it"
        )


@contextlib.contextmanager
def replacing(
    out: PathLike,
    kind: OutputKind,
    inputs: Mapping[str, PathLike | None],
    force: bool = False,
    record: Mapping[str, object] | None = None,
) -> Iterator[Path]:
    """Yield an empty staging folder next to `out`; when the block succeeds it becomes `out`.

    The checks of :func:`check_output` come first, under the lock on `out`, which is held
    until the block and the swap are done. After the block, the kind's first marker is
    written as a small manifest (with the facts in `record`, e.g. the options that made the
    output) unless the block wrote a marker itself; then the staging folder
    replaces `out` (the earlier output is deleted only after the swap). A block that raises, or
    writes nothing at all (a baseline that declined to run), leaves `out` as it was; a block
    that cannot write (full disk) raises an :class:`OutputError` naming `out`.
    """
    check_not_input(out, inputs)
    with output_lock(out) as target, writing(out, target):
        check_replaceable(Path(out), kind, force)
        yield from staged(target, kind, inputs, record)


def staged(
    target: Path, kind: OutputKind, inputs: Mapping[str, PathLike | None], record: Mapping[str, object] | None = None
) -> Iterator[Path]:
    """The staging part of :func:`replacing` (a generator body, run under its lock)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
    try:
        # mkdtemp creates 0700; give the result the mode a plain mkdir would (shared clusters).
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        yield staging
        if not any(staging.iterdir()):
            return
        if not any((staging / marker).is_file() for marker in kind.markers):
            write_json(
                staging / kind.markers[0],
                {
                    "kind": kind.name,
                    "command": kind.command,
                    "embedseg_version": __version__,
                    "inputs": {name: str(Path(path).resolve()) for name, path in inputs.items() if path is not None},
                    **(record or {}),
                },
            )
        swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def swap_in(staging: Path, target: Path) -> None:
    """Rename `staging` onto `target`; an existing `target` (folder or file) is moved aside
    first and deleted once the new one is in place, or moved back if the rename fails."""
    if not target.exists() and not target.is_symlink():
        os.replace(staging, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    try:
        os.replace(target, retired / target.name)
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(retired / target.name, target)
            raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


# The locked file inside a scratch folder: a folder whose lock nobody holds is a killed run's.
SCRATCH_LOCK = ".embedseg.lock"


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder ``PREFIX<8 characters>`` in the system's temporary folder, removed
    after the block, like :class:`tempfile.TemporaryDirectory`; but one that a killed run left
    (``kill -9`` skips the removal) is removed by the next call with the same `prefix`.

    The folder's :data:`SCRATCH_LOCK` is locked for the block; it is created under another
    name and renamed once locked, so a cleaner never sees it unlocked while its run lives.
    """
    parent = Path(tempfile.gettempdir())
    clean_scratch(parent, prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(folder / f"{SCRATCH_LOCK}.new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(folder / f"{SCRATCH_LOCK}.new", folder / SCRATCH_LOCK)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def clean_scratch(parent: Path, prefix: str) -> None:
    """Remove the :func:`scratch_folder` folders ``PREFIX<8 characters>`` in `parent` whose lock
    no live process holds; folders without a lock file (not ours, or just being made) are kept."""
    pattern = re.compile(rf"{re.escape(prefix)}{RANDOM}")
    for folder in parent.iterdir():
        if not pattern.fullmatch(folder.name) or folder.is_symlink() or not (folder / SCRATCH_LOCK).is_file():
            continue
        try:
            fd = os.open(folder / SCRATCH_LOCK, os.O_RDWR)
        except OSError:
            continue  # another user's folder, or removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            log.info("removing %s, left by an interrupted run", folder)
            shutil.rmtree(folder, ignore_errors=True)
        except BlockingIOError:
            pass  # a live run's
        finally:
            os.close(fd)
