"""Downloads through the real code path (pooch over HTTP from a local server) and safe unpacking."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from embedseg.cli import main
from embedseg.data.download import fetch, unpack_zip
from embedseg.dataset_settings import DatasetSettings
from embedseg.io import DataError


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make_zip(path: Path, members: dict[str, np.ndarray | bytes]) -> str:
    """Write a zip of TIFF arrays (or raw bytes) and return its sha256."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            if isinstance(content, np.ndarray):
                tmp = path.with_suffix(".member.tif")
                tifffile.imwrite(tmp, content)
                content = tmp.read_bytes()
                tmp.unlink()
            zf.writestr(name, content)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_members(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    members = {}
    for i in range(n):
        labels = np.zeros((16, 16), np.uint16)
        labels[2:6, 2:6], labels[8:14, 9:15] = 1, 2 + i
        members[f"own/images/img{i}.tif"] = rng.integers(0, 255, (16, 16), dtype=np.uint8)
        members[f"own/masks/img{i}.tif"] = labels
    return members


def test_fetch_verifies_and_caches(server, tmp_path):
    www, url = server
    sha = make_zip(www / "data.zip", folder_members())
    cache = tmp_path / "cache"
    local = fetch(f"{url}/data.zip", sha, cache, retries=0)
    assert local == cache / "data.zip" and hashlib.sha256(local.read_bytes()).hexdigest() == sha
    fetch(f"{url}/data.zip", sha, cache, retries=0)
    assert CountingHandler.requests == ["/data.zip"]  # the second call downloads nothing


def test_tampered_download_is_removed(server, tmp_path):
    www, url = server
    sha = make_zip(www / "data.zip", folder_members())
    make_zip(www / "data.zip", folder_members(5))  # the server now has other bytes
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "other.zip").write_bytes(b"keep me")
    with pytest.raises(DataError, match="data.zip.*sha256"):
        fetch(f"{url}/data.zip", sha, cache, retries=0)
    assert not (cache / "data.zip").exists()
    assert sorted(p.name for p in cache.iterdir()) == ["other.zip"]


def test_tampered_cached_file_is_removed(server, tmp_path):
    www, url = server
    sha = make_zip(www / "data.zip", folder_members())
    cache = tmp_path / "cache"
    fetch(f"{url}/data.zip", sha, cache, retries=0)
    make_zip(www / "data.zip", folder_members(5))
    (cache / "data.zip").write_bytes(b"corrupted in the cache")
    with pytest.raises(DataError, match="sha256"):
        fetch(f"{url}/data.zip", sha, cache, retries=0)
    assert not (cache / "data.zip").exists()


def test_unknown_hash_is_recorded_on_first_use(server, tmp_path, caplog):
    www, url = server
    sha = make_zip(www / "data.zip", folder_members())
    cache = tmp_path / "cache"
    fetch(f"{url}/data.zip", None, cache, retries=0)
    assert sha in caplog.text and "NOT verified" in caplog.text
    assert (cache / "data.zip.sha256").read_text().strip() == sha
    (cache / "data.zip").write_bytes(b"changed after the first download")
    make_zip(www / "data.zip", folder_members(5))
    with pytest.raises(DataError, match="sha256"):  # later runs check against the recorded hash
        fetch(f"{url}/data.zip", None, cache, retries=0)
    assert not (cache / "data.zip").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_zip_with_escaping_member_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    make_zip(archive, {"fine.txt": b"x", member: b"evil"})
    with pytest.raises(DataError, match="outside"):
        unpack_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "bad").exists() and not (tmp_path / "evil.txt").exists()


def test_prepare_from_url_end_to_end(server, tmp_path):
    www, url = server
    sha = make_zip(www / "own-data.zip", folder_members(12))
    out, cache = tmp_path / "prepared", tmp_path / "cache"
    args = [
        "prepare",
        "folder",
        "--source",
        f"{url}/own-data.zip",
        "--sha256",
        sha,
        "--cache",
        str(cache),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert main(args) == 0
    assert CountingHandler.requests == ["/own-data.zip"]  # cached download and unpacked tree reused
    assert (cache / "folder" / "own-data" / "own" / "images").is_dir()
    settings = DatasetSettings.load(out)
    assert settings.normalization_factor == 255.0 and settings.min_object_size == 16 and not settings.one_hot
    names = {split: sorted(p.name for p in (out / split / "images").iterdir()) for split in ("train", "val", "test")}
    assert [len(names[split]) for split in ("train", "val", "test")] == [10, 1, 1]  # ⌊0.1·12⌋, ⌊0.15·11⌋
    for split, files in names.items():
        assert files == sorted(p.name for p in (out / split / "masks").iterdir())


def test_prepare_from_local_embedseg_zip_keeps_test_split(tmp_path):
    members = {}
    for split, names in (("train", [f"t{i}" for i in range(8)]), ("test", ["x0", "x1"])):
        for name in names:
            labels = np.zeros((16, 16), np.uint16)
            labels[4:12, 4:12] = 7
            members[f"dsb-2018/{split}/images/{name}.tif"] = np.full((16, 16), 50, np.uint8)
            members[f"dsb-2018/{split}/masks/{name}.tif"] = labels
    make_zip(tmp_path / "dsb-2018.zip", members)
    out = tmp_path / "out"
    assert main(["prepare", "dsb-2018", "--source", str(tmp_path / "dsb-2018.zip"), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "test" / "masks").iterdir()) == ["x0.tif", "x1.tif"]
    assert [len(list((out / s / "images").iterdir())) for s in ("train", "val")] == [7, 1]
    settings = DatasetSettings.load(out)
    assert (settings.normalization_factor, settings.crop_size, settings.extra["layout"]) == (255.0, 256, "embedseg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsb-2018.zip", "out"]  # scratch unpacking removed


def test_missing_file_on_the_server(server, tmp_path):
    _, url = server
    with pytest.raises(DataError, match="missing.zip.*download failed"):
        fetch(f"{url}/missing.zip", None, tmp_path / "cache", retries=0)
    assert not (tmp_path / "cache" / "missing.zip").exists()
