"""The conda environment files the workflow's rules use: valid, pinned, and complete.

Complete means: every third-party module imported by the code an environment runs (its entry
modules and every package module they import, walked through the AST, imports inside functions
included) is provided by one of its conda or pip packages, unless listed in UNREACHED with the
reason the environment never executes that import.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from embedseg import methods

REPO = Path(__file__).resolve().parents[1]

PACKAGE = REPO / "embedseg"
ENVS = REPO / "workflow" / "envs"

# Entry modules each environment runs (environments and runners from the method registry);
# their in-package imports are followed.
BASELINE_COMMON = [
    "embedseg/__main__.py",
    "embedseg/cli.py",
    "embedseg/baseline.py",
    "embedseg/baselines/common.py",
]
RUNNERS = {method.env: [] for method in methods.BASELINES.values()}
for method in methods.BASELINES.values():
    RUNNERS[method.env].append(method.runner.replace(".", "/") + ".py")
# The main environment runs every step (prepare … figures) and its own baselines' runners.
OTHER_RUNNERS = {runner for env, runners in RUNNERS.items() if env != methods.EMBEDSEG_ENV for runner in runners}
ENTRY_POINTS: dict[str, list[str]] = {
    f"{methods.EMBEDSEG_ENV}.yaml": [
        str(path.relative_to(REPO))
        for path in sorted(PACKAGE.rglob("*.py"))
        if str(path.relative_to(REPO)) not in OTHER_RUNNERS
    ],
    **{
        f"{env}.yaml": [*BASELINE_COMMON, *sorted(set(runners))]
        for env, runners in RUNNERS.items()
        if env != methods.EMBEDSEG_ENV
    },
}

# Imports the walk finds that an environment never executes, with the reason.
NAPARI_ONLY = "embedseg/napari_plugin/ (extra `napari`) runs inside napari, never in a workflow job"
UNREACHED: dict[str, dict[str, str]] = {
    "embedseg.yaml": {"napari": NAPARI_ONLY, "magicgui": NAPARI_ONLY},
    "stardist.yaml": {
        "torch": "imported inside functions of embedseg.runtime and embedseg.train that StarDist does not call"
    },
}

# import name -> package names (conda or pip) that provide it, where they differ
PROVIDERS: dict[str, set[str]] = {
    "skimage": {"scikit-image"},
    "yaml": {"pyyaml"},
    "torch": {"pytorch", "torch", "pytorch-cpu", "pytorch-gpu"},
    "torchvision": {"torchvision"},
    "sklearn": {"scikit-learn"},
    "PIL": {"pillow"},
    "cv2": {"opencv", "opencv-python", "opencv-python-headless", "py-opencv"},
    "tensorflow": {"tensorflow", "tensorflow-cpu", "tensorflow-gpu"},
    "matplotlib": {"matplotlib", "matplotlib-base"},
    "seaborn": {"seaborn", "seaborn-base"},
    "bioimageio": {"bioimageio.core", "bioimageio.spec"},
    "micro_sam": {"micro-sam"},
    "instanseg": {"instanseg-torch"},
}

SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<version>.*)$")


def package_name(spec: str) -> str:
    """`numpy=2.*` / `tifffile>=2023` / `cellpose==3.1.1.3` → normalised package name."""
    name = SPEC.match(spec.split("::")[-1].strip())["name"]
    return name.lower().replace("_", "-")


def env_packages(env: dict) -> dict[str, str]:
    """name → full spec over the conda dependencies and the nested pip list."""
    specs = {}
    for dep in env["dependencies"]:
        for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
            specs[package_name(spec)] = spec
    return specs


def module_path(module: str) -> Path | None:
    """File of an `embedseg…` module (package → its __init__.py), None if it does not exist."""
    path = REPO.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(top-level third-party names, in-package module names) imported anywhere in `path`,
    including inside functions (steps import heavy libraries lazily)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    external, internal = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            # `from . import x` / `from .models import erfnet` may name submodules
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "embedseg":
                if module_path(name):
                    internal.add(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return external, internal


def third_party_imports(entry_points: list[str]) -> dict[str, str]:
    """Third-party import name → first file that imports it, over the entry points' closure."""
    seen: set[Path] = set()
    todo = [REPO / entry for entry in entry_points]
    found: dict[str, str] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        external, internal = imports(path)
        for name in external:
            found.setdefault(name, str(path.relative_to(REPO)))
        for module in internal:
            parents = module.split(".")
            # importing embedseg.a.b runs embedseg/__init__.py and embedseg/a/__init__.py too
            todo.extend(filter(None, (module_path(".".join(parents[:i])) for i in range(1, len(parents) + 1))))
    return found


def load_env(name: str) -> dict:
    path = ENVS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: the workflow's rules use it")
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_env_file_is_valid_and_pinned(name: str) -> None:
    env = load_env(name)
    assert set(env) <= {"name", "channels", "dependencies"}, f"{name}: unexpected keys {set(env)}"
    # conda-forge only: `nodefaults` keeps Anaconda's channels out, whatever the user's .condarc says
    assert env["channels"] == ["conda-forge", "nodefaults"], f"{name}: {env['channels']}"
    conda_specs = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    assert any(package_name(spec) == "python" for spec in conda_specs), f"{name}: pin python"
    unpinned = [
        spec
        for package, spec in env_packages(env).items()
        if package != "pip" and not SPEC.match(spec)["version"].strip()  # pip only installs
    ]
    assert not unpinned, f"{name}: give every package at least a major version: {unpinned}"
    pip_lists = [dep for dep in env["dependencies"] if isinstance(dep, dict)]
    assert all(set(dep) == {"pip"} for dep in pip_lists), f"{name}: only a `pip:` list may nest"
    if pip_lists:
        assert "pip" in {package_name(spec) for spec in conda_specs}, f"{name}: a pip list needs `pip` itself"


# The framework each env's GPU jobs run on; a solver on a GPU-less login node picks its CPU build
# unless the spec asks for the CUDA one.
GPU_FRAMEWORKS = {
    "embedseg.yaml": "pytorch",
    "maskrcnn.yaml": "pytorch",
    "cellpose.yaml": "pytorch",
    "stardist.yaml": "tensorflow",
}


@pytest.mark.parametrize("name", sorted(GPU_FRAMEWORKS))
def test_gpu_env_pins_the_cuda_build(name: str) -> None:
    specs = env_packages(load_env(name))
    framework = specs[GPU_FRAMEWORKS[name]]
    assert re.fullmatch(rf"{GPU_FRAMEWORKS[name]}=\d+\.\d+\.\d+=cuda\*", framework), f"{name}: {framework}"
    assert re.fullmatch(r"cuda-version=\d+\.\d+", specs.get("cuda-version", "")), f"{name}: pin cuda-version"
    if "torchvision" in specs:
        assert specs["torchvision"].endswith("=cuda*"), f"{name}: torchvision must match pytorch's CUDA build"


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_env_provides_every_third_party_import(name: str) -> None:
    entry_points = [entry for entry in ENTRY_POINTS[name] if (REPO / entry).is_file()]
    if len(entry_points) < len(ENTRY_POINTS[name]):
        pytest.fail(f"{name}: code it serves is missing: {sorted(set(ENTRY_POINTS[name]) - set(entry_points))}")
    packages = set(env_packages(load_env(name)))
    missing = {
        module: source
        for module, source in third_party_imports(entry_points).items()
        if not ({module.lower()} | PROVIDERS.get(module, set())) & packages and module not in UNREACHED.get(name, {})
    }
    assert not missing, (
        f"workflow/envs/{name} lacks packages for these imports (module: first file importing it): {missing}"
    )


def test_import_walk_sees_lazy_and_relative_imports() -> None:
    """The walker must find imports inside functions and follow `from ..x import y`."""
    assert {"numpy", "torch"} <= set(third_party_imports(["embedseg/runtime.py"]))  # torch: in functions
    external, internal = imports(REPO / "embedseg/dataset_settings.py")
    assert "embedseg.io" in internal and "numpy" in external
