"""A stand-in for `conda` that answers exactly what Snakemake 9 asks of it, so that `--use-conda`
runs (and dry runs, which already call `conda info`) can be tested on a machine without conda.

Snakemake (snakemake/deployment/conda.py) runs, through the shell:
  `type conda`, `conda --version` (>= 24.7.1), `conda config --get channel_priority --json`,
  `conda info --json` (it reads `conda_prefix` and `platform`),
  `conda env create --quiet --no-default-packages --file ENV.yaml --prefix DIR` (or, with a
  `<env>.<platform>.pin.txt` beside the YAML, `conda create … --file ENV.pin.txt --prefix DIR --yes`)
  followed by `conda clean -y --tarballs`,
and wraps every job as `source <conda_prefix>/bin/activate 'DIR'; <command>`, having removed
PYTHONPATH from the job's environment itself (shell.py, `conda_block_conflicting_envvars`).

The stub creates each environment as a venv whose packages are this test interpreter's
site-packages, added by a `.pth` line. Python processes `.pth` files only in site directories,
not in folders a `.pth` line adds, so the editable install of this checkout (itself a `.pth`
file there) is not seen: like a real env built from the YAML, the env has the third-party
packages but not `embedseg`. Each call is appended to `calls.log` beside the stub.
"""

from __future__ import annotations

import os
import stat
import sys
import sysconfig
from pathlib import Path

CONDA_VERSION = "24.11.3"
PLATFORM = "linux-64"

STUB = '''#!{python}
"""conda stub written by tests/conda_stub.py (see there)."""
import json, subprocess, sys, sysconfig
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
BASE = HERE / "base"
args = sys.argv[1:]
with open(HERE / "calls.log", "a") as log:
    log.write(" ".join(args) + "\\n")


def option(name):
    return args[args.index(name) + 1].strip('"')


if args == ["--version"]:
    print("conda {version}")
elif args[:2] == ["config", "--get"]:
    print(json.dumps({{"get": {{"channel_priority": "strict"}}, "rc_path": None}}))
elif args[:2] == ["info", "--json"]:
    print(json.dumps({{"conda_prefix": str(BASE), "platform": "{platform}", "conda_version": "{version}"}}))
elif args[:2] == ["env", "create"] or args[:1] == ["create"]:
    spec, prefix = Path(option("--file")), Path(option("--prefix"))
    if spec.suffix == ".yaml":
        env = yaml.safe_load(spec.read_text())
        assert isinstance(env.get("dependencies"), list), f"{{spec}}: no dependencies list"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(prefix / "bin" / "python"), "-c", purelib],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_conda_stub_packages.pth").write_text("{packages}\\n")
elif args[:1] == ["clean"]:
    pass  # `--conda-cleanup-pkgs` (default: tarballs) after each creation: no package cache here
else:
    sys.exit(f"conda stub: unsupported call: conda {{' '.join(args)}}")
'''

# conda's activate script, as far as a job sees it: the environment's bin/ comes first on PATH.
ACTIVATE = """# activate script of the conda stub (tests/conda_stub.py)
CONDA_PREFIX="$1"
export CONDA_PREFIX
PATH="$1/bin:$PATH"
export PATH
"""


def install_conda_stub(folder: Path) -> dict[str, str]:
    """Write the stub into `folder`; return this process's environment with the stub first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    conda = folder / "conda"
    packages = sysconfig.get_paths()["purelib"]
    conda.write_text(STUB.format(python=sys.executable, version=CONDA_VERSION, platform=PLATFORM, packages=packages))
    conda.chmod(conda.stat().st_mode | stat.S_IXUSR)
    activate = folder / "base" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(ACTIVATE)
    return os.environ | {"PATH": os.pathsep.join([str(folder), os.environ["PATH"]])}


def conda_calls(folder: Path) -> list[str]:
    """The stub's calls so far, one string of arguments each."""
    log = folder / "calls.log"
    return log.read_text().splitlines() if log.exists() else []
