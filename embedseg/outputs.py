"""Where a step may write: the output policy of every `embedseg` command (docs/interfaces.md).

Users point these commands at their only copy of annotated images, so an output

- never is, contains or lies inside an input (symbolic links resolved), whatever the options;
- replaces an existing folder only when that folder carries the marker file of the same kind of
  output (:data:`KINDS`), i.e. was written by the same command; an empty folder is fine, any
  other folder or a regular file in the way needs ``--force``;
- is built in a staging folder next to it and swapped in only when the command succeeded, so a
  failed or interrupted run leaves the previous output exactly as it was.

Every refusal is an :class:`OutputError` (a :class:`~embedseg.io.UserError`): the command line
prints one line and exits 2, and nothing has been touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .io import UserError, write_json
from .layout import LAST_PT, TRAIN_JSON

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
# Most specific first: crops and baseline model folders hold a dataset.json as well.
KINDS = (CROPS, MODEL, BASELINE_MODEL, METHOD_MODEL, PREDICTIONS, TABLES, FIGURES, DATA)


class OutputError(UserError):
    """The output cannot be written without destroying something; nothing was touched."""


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
    """
    out = Path(out)
    check_not_input(out, inputs)
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
    (or with `force`). The file itself is then written with :func:`embedseg.io.atomic_write`."""
    out = Path(out)
    check_not_input(out, inputs)
    if out.is_dir():
        raise OutputError(f"--out {out} is a folder; name the file to write, e.g. --out {out / 'scores.csv'}")
    if out.exists() and not force and not ours(out):
        raise OutputError(
            f"--out {out} is an existing file that `{command}` did not write; choose another --out, "
            "or pass --force to replace it"
        )


@contextlib.contextmanager
def replacing(
    out: PathLike, kind: OutputKind, inputs: Mapping[str, PathLike | None], force: bool = False
) -> Iterator[Path]:
    """Yield an empty staging folder next to `out`; when the block succeeds it becomes `out`.

    The checks of :func:`check_output` come first. After the block, the kind's first marker is
    written as a small manifest unless the block wrote a marker itself; then the staging folder
    replaces `out` (the earlier output is deleted only after the swap). A block that raises, or
    writes nothing at all (a baseline that declined to run), leaves `out` as it was.
    """
    check_output(out, kind, inputs, force)
    target = Path(out).resolve()
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
