"""The output policy of every command (embedseg/outputs.py), branch by branch, on real folders.

No torch and no subprocess: each test builds a few files in `tmp_path` and calls the policy's
functions directly. tests/test_safety.py checks the same promises through the commands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from embedseg import __version__
from embedseg.io import UserError
from embedseg.outputs import (
    CROPS,
    DATA,
    KINDS,
    MODEL,
    PREDICTIONS,
    OutputError,
    check_not_input,
    check_output,
    check_output_file,
    kind_of,
    replacing,
    swap_in,
)


def tree(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path → text) and every folder (→ "/")."""
    return {str(path.relative_to(root)): "/" if path.is_dir() else path.read_text() for path in sorted(root.rglob("*"))}


def make(folder: Path, **files: str) -> Path:
    """`folder` with the given files (name → text); an empty folder without any."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch) -> None:
    """Run in a folder of its own, so the current-folder rule does not meet the test's paths."""
    monkeypatch.chdir(make(tmp_path / "cwd"))


# --- kind_of ------------------------------------------------------------------------------------


def test_every_kind_is_recognised_by_each_of_its_markers(tmp_path) -> None:
    for kind in KINDS:
        for marker in kind.markers:
            assert kind_of(make(tmp_path / kind.name / marker, **{marker: "{}"})) == kind


def test_the_most_specific_kind_wins(tmp_path) -> None:
    """Crops and baseline model folders also hold a dataset.json: they are not prepared data."""
    assert kind_of(make(tmp_path / "crops", **{"dataset.json": "{}", "crops.json": "{}"})) == CROPS
    assert kind_of(make(tmp_path / "data", **{"dataset.json": "{}"})) == DATA


def test_a_killed_training_leaves_a_model_folder(tmp_path) -> None:
    """last.pt alone (Snakemake deleted train.json, the declared output) is still a model folder."""
    assert kind_of(make(tmp_path / "model", **{"last.pt": ""})) == MODEL


def test_foreign_empty_and_missing_folders_have_no_kind(tmp_path) -> None:
    assert kind_of(make(tmp_path / "thesis", **{"chapter1.txt": "years of work"})) is None
    assert kind_of(make(tmp_path / "empty")) is None
    assert kind_of(tmp_path / "missing") is None
    make(tmp_path / "fake" / "dataset.json")  # a folder named like a marker is no marker
    assert kind_of(tmp_path / "fake") is None


# --- check_not_input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, relation",
    [("source", "is"), (".", "contains"), ("source/prepared", "lies inside"), ("source/images/..", "is")],
)
def test_an_output_on_an_input_is_refused(tmp_path, out, relation) -> None:
    source = make(tmp_path / "source" / "images").parent
    with pytest.raises(OutputError, match=f"{relation} the input --source") as refusal:
        check_not_input(tmp_path / out, {"--source": source})
    assert "--force does not change that" in str(refusal.value)
    assert isinstance(refusal.value, UserError) and refusal.value.exit_code == 2


def test_symbolic_links_are_resolved_both_ways(tmp_path) -> None:
    source = make(tmp_path / "source")
    (tmp_path / "link").symlink_to(source)
    with pytest.raises(OutputError, match="is the input"):
        check_not_input(tmp_path / "link", {"--source": source})
    with pytest.raises(OutputError, match="lies inside the input"):
        check_not_input(source / "out", {"--source": tmp_path / "link"})


def test_neighbours_and_missing_inputs_are_fine(tmp_path) -> None:
    """`data2` is not inside `data` (a path prefix is not a parent); None means "no such input"."""
    data = make(tmp_path / "data")
    check_not_input(tmp_path / "data2", {"DATA_DIR": data, "--model": None})
    check_not_input(tmp_path / "out", {})


def test_every_input_is_checked_and_named(tmp_path) -> None:
    images, masks = make(tmp_path / "images"), make(tmp_path / "masks")
    with pytest.raises(OutputError, match=r"is the input --masks .*masks"):
        check_not_input(masks, {"--images": images, "--masks": masks})


# --- check_output -------------------------------------------------------------------------------


def test_a_missing_or_empty_folder_has_nothing_to_replace(tmp_path) -> None:
    assert check_output(tmp_path / "new" / "deeper", CROPS, {}) is False
    assert check_output(make(tmp_path / "empty"), CROPS, {}) is False
    assert not (tmp_path / "new" / "deeper").exists()  # a check creates no output (only its lock's folder)


def test_an_earlier_output_of_the_same_kind_is_replaceable(tmp_path) -> None:
    crops = make(tmp_path / "crops", **{"crops.json": "{}", "dataset.json": "{}"})
    assert check_output(crops, CROPS, {}) is True
    assert check_output(crops, CROPS, {}, force=True) is True


def test_another_kind_of_output_needs_force(tmp_path) -> None:
    model = make(tmp_path / "model", **{"train.json": "{}"})
    with pytest.raises(OutputError, match="holds a model folder written by `embedseg train`, not a crops folder"):
        check_output(model, CROPS, {})
    assert check_output(model, CROPS, {}, force=True) is True


def test_a_folder_of_foreign_files_needs_force(tmp_path) -> None:
    thesis = make(tmp_path / "thesis", **{"chapter1.txt": "years of work"})
    with pytest.raises(OutputError, match="files that `embedseg` did not write.*--force"):
        check_output(thesis, PREDICTIONS, {})
    assert check_output(thesis, PREDICTIONS, {}, force=True) is True
    assert tree(thesis) == {"chapter1.txt": "years of work"}


def test_a_regular_file_needs_force(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="is an existing file.*--force"):
        check_output(tmp_path / "notes.txt", DATA, {})
    assert check_output(tmp_path / "notes.txt", DATA, {}, force=True) is True


def test_force_never_overrides_an_input(tmp_path) -> None:
    data = make(tmp_path / "data", **{"dataset.json": "{}"})
    with pytest.raises(OutputError, match="is the input DATA_DIR"):
        check_output(data, DATA, {"DATA_DIR": data}, force=True)


@pytest.mark.parametrize("out", [".", "..", "../.."])
def test_the_current_folder_and_its_parents_are_refused(tmp_path, out) -> None:
    os.chdir(make(tmp_path / "a" / "b" / "c"))
    for force in (False, True):
        with pytest.raises(OutputError, match="is the current folder or contains it; name a new folder for the crops"):
            check_output(out, CROPS, {}, force=force)


def test_a_folder_below_the_current_one_is_allowed(tmp_path) -> None:
    assert check_output("crops", CROPS, {}) is False


# --- check_output_file --------------------------------------------------------------------------


def never(path: Path) -> bool:
    return False


def test_a_file_output_may_be_new_ours_or_forced(tmp_path) -> None:
    scores = tmp_path / "scores.csv"
    check_output_file(scores, {}, never, "embedseg evaluate")
    scores.write_text("tau,ap\n")
    seen = []
    check_output_file(scores, {}, lambda path: seen.append(path) or True, "embedseg evaluate")
    assert seen == [scores]
    check_output_file(scores, {}, never, "embedseg evaluate", force=True)


def test_a_foreign_file_needs_force(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="existing file that `embedseg evaluate` did not write.*--force"):
        check_output_file(tmp_path / "notes.txt", {}, never, "embedseg evaluate")


def test_a_folder_is_no_file_output_even_with_force(tmp_path) -> None:
    folder = make(tmp_path / "scores")
    with pytest.raises(OutputError, match=r"is a folder; name the file to write, e.g. --out .*scores\.csv"):
        check_output_file(folder, {}, lambda path: True, "embedseg evaluate", force=True)


def test_a_file_output_inside_an_input_is_refused(tmp_path) -> None:
    masks = make(tmp_path / "masks")
    with pytest.raises(OutputError, match="lies inside the input GT_DIR"):
        check_output_file(masks / "scores.csv", {"GT_DIR": masks}, lambda path: True, "embedseg evaluate", force=True)


# --- replacing ----------------------------------------------------------------------------------


def test_a_successful_block_becomes_the_output_with_a_manifest(tmp_path) -> None:
    data = make(tmp_path / "data")
    out = tmp_path / "results" / "crops"  # the parent is created
    with replacing(out, CROPS, {"DATA_DIR": data, "--model": None}) as staging:
        assert staging.parent == out.parent and staging.name.startswith(".crops.") and staging.name.endswith(".staging")
        assert not any(staging.iterdir()) and not out.exists()
        (staging / "train").mkdir()
        (staging / "train" / "a.tif").write_text("crop")
    assert json.loads((out / "crops.json").read_text()) == {
        "kind": "crops folder",
        "command": "embedseg crops",
        "embedseg_version": __version__,
        "inputs": {"DATA_DIR": str(data.resolve())},
    }
    assert (out / "train" / "a.tif").read_text() == "crop"
    assert sorted(p.name for p in out.parent.iterdir()) == ["crops"]  # no staging folder left


def test_a_marker_written_by_the_block_is_kept(tmp_path) -> None:
    with replacing(tmp_path / "model", MODEL, {}) as staging:
        (staging / "last.pt").write_text("weights")  # any of the kind's markers counts
    assert tree(tmp_path / "model") == {"last.pt": "weights"}


def test_an_earlier_output_is_replaced_whole(tmp_path) -> None:
    out = make(tmp_path / "pred", **{"predictions.json": "{}", "old.tif": "old"})
    with replacing(out, PREDICTIONS, {}) as staging:
        (staging / "new.tif").write_text("new")
        assert (out / "old.tif").read_text() == "old"  # untouched until the block succeeded
    assert sorted(tree(out)) == ["new.tif", "predictions.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "pred"]  # no `.old` folder left


def test_forcing_replaces_a_foreign_file(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with replacing(tmp_path / "notes.txt", DATA, {}, force=True) as staging:
        (staging / "dataset.json").write_text("{}")
    assert tree(tmp_path / "notes.txt") == {"dataset.json": "{}"}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failing_block_leaves_the_earlier_output_exactly_as_it_was(tmp_path, error) -> None:
    out = make(tmp_path / "pred", **{"predictions.json": "{}", "old.tif": "old"})
    before = tree(tmp_path)
    with pytest.raises(error), replacing(out, PREDICTIONS, {}) as staging:
        (staging / "new.tif").write_text("half written")
        raise error
    assert tree(tmp_path) == before


def test_a_block_that_writes_nothing_changes_nothing(tmp_path) -> None:
    """A baseline that declined to run: the earlier output stays, a missing one stays missing."""
    out = make(tmp_path / "pred", **{"predictions.json": "{}"})
    before = tree(tmp_path)
    with replacing(out, PREDICTIONS, {}):
        pass
    with replacing(tmp_path / "new", PREDICTIONS, {}):
        pass
    assert tree(tmp_path) == before


def test_a_refusal_comes_before_the_block_and_touches_nothing(tmp_path) -> None:
    thesis = make(tmp_path / "thesis", **{"chapter1.txt": "years of work"})
    before = tree(tmp_path)
    ran = []
    with pytest.raises(OutputError), replacing(thesis, CROPS, {}):
        ran.append(True)
    assert not ran and tree(tmp_path) == before


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750), (0o002, 0o775)])
def test_the_output_gets_the_mode_of_a_plain_mkdir(tmp_path, umask, mode) -> None:
    """mkdtemp makes 0700 folders; on a shared cluster the group must still read the results."""
    previous = os.umask(umask)
    try:
        with replacing(tmp_path / "crops", CROPS, {}) as staging:
            (staging / "a.tif").write_text("crop")
    finally:
        os.umask(previous)
    assert (tmp_path / "crops").stat().st_mode & 0o777 == mode


# --- swap_in ------------------------------------------------------------------------------------


def staged(tmp_path: Path, text: str = "new") -> Path:
    return make(tmp_path / ".staging", **{"a.txt": text})


def test_swap_into_a_missing_target(tmp_path) -> None:
    swap_in(staged(tmp_path), tmp_path / "out")
    assert tree(tmp_path / "out") == {"a.txt": "new"} and not (tmp_path / ".staging").exists()


@pytest.mark.parametrize("existing", ["folder", "file", "dangling link"])
def test_swap_over_an_existing_target_deletes_it_afterwards(tmp_path, existing) -> None:
    target = tmp_path / "out"
    if existing == "folder":
        make(target, **{"old.txt": "old"})
    elif existing == "file":
        target.write_text("old")
    else:
        target.symlink_to(tmp_path / "nowhere")
    swap_in(staged(tmp_path), target)
    assert not target.is_symlink() and tree(target) == {"a.txt": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "out"]


def test_a_failed_rename_puts_the_old_target_back(tmp_path) -> None:
    target = make(tmp_path / "out", **{"old.txt": "old"})
    with pytest.raises(FileNotFoundError):
        swap_in(tmp_path / "vanished-staging", target)
    assert tree(target) == {"old.txt": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "out"]
