"""The gallery page (embedseg/report/gallery.py) in headless Chromium: its rows, its images and its
sorting, read from the DOM Chromium dumps; a screenshot kept in the test's tmp folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

# Appended to a copy of the page: after load, report the rows, the images that failed and the
# order before and after a click on a method's sort header in the DOM Chromium dumps.
PROBE = """<script>
window.addEventListener("load", () => {
  const order = () => [...document.querySelectorAll("tr.row")].map(r => r.dataset.image);
  const before = order();
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const headers = document.querySelectorAll("th.sort");
  headers[1].click();
  const by_score = order();
  headers[0].click(); headers[0].click();  // by image name: ascending, then descending
  const pre = document.createElement("pre"); pre.id = "probe";
  pre.textContent = JSON.stringify({rows: before.length, images: document.images.length, broken, before, by_score, by_name: order()});
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def check_in_chromium(gallery: Path, n_rows: int, n_methods: int, tmp_path: Path, scores_differ: bool) -> None:
    """`gallery`'s index.html shows `n_rows` rows of 2 + `n_methods` images, none broken; the
    image header's second click reverses the rows and, where the first method's scores differ
    between images, a click on its header changes their order; tmp_path/gallery.png its screenshot."""
    probe = gallery / "probe.html"
    probe.write_text((gallery / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    flags = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    try:
        dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    found = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)[1].replace("&quot;", '"'))
    assert found["rows"] == n_rows
    assert found["images"] == n_rows * (2 + n_methods) and found["broken"] == 0
    assert found["by_name"] == sorted(found["before"], reverse=True) != found["before"]
    assert not scores_differ or found["by_score"] != found["before"]
    shot = tmp_path / "gallery.png"
    page = (gallery / "index.html").as_uri()
    subprocess.run([*flags, "--window-size=1200,800", f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 0
