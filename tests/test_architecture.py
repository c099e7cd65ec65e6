"""The package's layers (docs/architecture.md), read from the source with `ast`: nothing is imported.

- every module of embedseg/ sits on one floor and imports only from its own floor or below;
- the standard-library leaves import only the standard library and each other, so anything may
  import them (the Snakefile, the baseline environments, the command line before a step is chosen);
- no import cycle among embedseg modules;
- no module over 500 lines;
- what the workflow imports from embedseg is standard library all the way down; what every
  baseline environment imports before its runner (the method registry, methods.py and
  baselines/configs.py) is among the leaves.

Imports inside functions count as well: a lazy import is still a dependency. Which third-party
packages each environment must provide is tests/test_envs.py's job, not this file's.
"""

from __future__ import annotations

import ast
import re
import sys
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "embedseg"
MAX_LINES = 500

# Standard-library modules usable from every floor (names of files, methods, options, schedule).
LEAVES = (
    "embedseg",  # the package's __init__: only __version__
    "embedseg.layout",
    "embedseg.methods",
    "embedseg.options",
    "embedseg.workflow_args",
    "embedseg.schedule",
    "embedseg.baselines",  # its __init__, run when methods imports baselines.configs
    "embedseg.baselines.configs",
)

# Floors from the ground up: (name, module names and patterns). A name given exactly wins over a
# pattern (embedseg.data.prepare is a step, the rest of data/ is not), then the first pattern.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core: pure array maths", ("embedseg.core", "embedseg.core.*")),
    (
        "data: files, data sets, settings, output policy, run time",
        (
            "embedseg.io",
            "embedseg.outputs",
            "embedseg.dataset_settings",
            "embedseg.crop_dataset",
            "embedseg.runtime",
            "embedseg.zarr_io",
            "embedseg.data",
            "embedseg.data.*",
        ),
    ),
    ("models: networks and checkpoints", ("embedseg.models", "embedseg.models.*")),
    (
        "inference: running a network",
        ("embedseg.inference", "embedseg.inference.*", "embedseg.acceleration", "embedseg.optim", "embedseg.blocks"),
    ),
    (
        "steps: one library function and a thin run(args) each",
        (
            "embedseg.data.prepare",
            "embedseg.crops",
            "embedseg.train",
            "embedseg.predict",
            "embedseg.large",
            "embedseg.evaluate",
            "embedseg.command",
            "embedseg.baseline",
            "embedseg.baselines.*",
            "embedseg.examples",
            "embedseg.examples.*",
        ),
    ),
    # export.py is the step face of packaging/, so it sits beside what it calls
    (
        "report and packaging",
        ("embedseg.report", "embedseg.report.*", "embedseg.packaging", "embedseg.packaging.*", "embedseg.export"),
    ),
    # the napari plugin is the other face for people, beside the command line; nothing imports it
    (
        "command line, napari plugin",
        ("embedseg.cli", "embedseg.__main__", "embedseg.napari_plugin", "embedseg.napari_plugin.*"),
    ),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(embedseg modules, top-level outside names) that `module` imports anywhere in its file.

    `from a import b` counts as importing the module a.b when that is a module, else a itself.
    """
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: against this file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            submodules = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in MODULES]
            targets = submodules if len(submodules) == len(node.names) else [source, *submodules]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "embedseg":
                # `import embedseg.a.b` names the module a.b (or an attribute of a module)
                while target not in MODULES:
                    target = target.rpartition(".")[0]
                if target != module:
                    inside.add(target)
            elif target.split(".")[0] != "__future__":
                outside.add(target.split(".")[0])
    return frozenset(inside), frozenset(outside)


def floor(module: str) -> int | None:
    """Index in FLOORS of `module`'s floor; None for a leaf."""
    if module in LEAVES:
        return None
    for index, (_, patterns) in enumerate(FLOORS):
        if module in patterns:
            return index
    for index, (_, patterns) in enumerate(FLOORS):
        if any(fnmatchcase(module, pattern) for pattern in patterns):
            return index
    raise AssertionError(f"{module} sits on no floor: add it to FLOORS or LEAVES in {Path(__file__).name}")


def closure(modules: list[str]) -> set[str]:
    """`modules` and every embedseg module they import, directly or not, with the package
    __init__ files that importing them runs."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imports(module)[0])
    return seen


def test_every_module_sits_on_a_floor() -> None:
    for module in MODULES:
        floor(module)


@pytest.mark.parametrize("module", [m for m in MODULES if m not in LEAVES])
def test_no_import_from_a_higher_floor(module: str) -> None:
    here = floor(module)
    upward = {
        target: FLOORS[there][0]
        for target in imports(module)[0]
        if (there := floor(target)) is not None and there > here
    }
    assert not upward, f"{module} (floor {FLOORS[here][0]!r}) imports from higher floors: {upward}"


@pytest.mark.parametrize("module", [m for m in LEAVES if m in MODULES])
def test_leaves_import_only_the_standard_library_and_each_other(module: str) -> None:
    inside, outside = imports(module)
    assert inside <= set(LEAVES), f"{module} imports non-leaf modules {sorted(inside - set(LEAVES))}"
    assert outside <= sys.stdlib_module_names, f"{module} imports {sorted(outside - sys.stdlib_module_names)}"


def test_no_import_cycle() -> None:
    """Tarjan's strongly connected components of the import graph: each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(imports(module)[0]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", list(MODULES))
def test_module_at_most_500_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(REPO)} has {lines} lines (at most {MAX_LINES})"


WORKFLOW_IMPORT = re.compile(
    r"^\s*(?:from\s+(embedseg(?:\.\w+)*)\s+import\s+([\w\s,()]+)|import\s+(embedseg(?:\.\w+)*))", re.M
)


def workflow_imports() -> set[str]:
    """embedseg modules that the Snakefile and its rule files import."""
    found = set()
    for path in [REPO / "workflow" / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]:
        for source, names, plain in WORKFLOW_IMPORT.findall(path.read_text()):
            if plain:
                found.add(plain)
                continue
            for name in re.split(r"[\s,()]+", names.strip()):
                if name:
                    found.add(f"{source}.{name}" if f"{source}.{name}" in MODULES else source)
    return found


def test_the_workflow_imports_only_standard_library_modules() -> None:
    """Snakemake runs in an environment without the library's dependencies (or with others)."""
    used = workflow_imports()
    assert {"embedseg.layout", "embedseg.methods"} <= used  # the parse found the imports
    heavy = {
        module: sorted(outside - sys.stdlib_module_names)
        for module in closure(sorted(used))
        if (outside := imports(module)[1]) - sys.stdlib_module_names
    }
    assert not heavy, f"the workflow's imports reach modules with third-party imports: {heavy}"


def test_the_import_reader_sees_relative_lazy_and_submodule_imports() -> None:
    """The reader itself: a test above that reads nothing would pass for the wrong reason."""
    inside, outside = imports("embedseg.runtime")
    assert "embedseg.io" in inside and "torch" in outside  # torch is imported inside functions
    assert "embedseg.core.dihedral" in imports("embedseg.inference")[0]  # from .core import dihedral
    assert "embedseg.core" not in imports("embedseg.export")[0]
    assert "embedseg" in imports("embedseg.outputs")[0]  # from . import __version__
    assert closure(["embedseg.baselines.configs"]) == {
        "embedseg",
        "embedseg.baselines",
        "embedseg.baselines.configs",
        "embedseg.options",
        "embedseg.schedule",
    }


GUI_PACKAGES = {"napari", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy"}


def test_only_the_napari_plugin_imports_napari_or_qt() -> None:
    """The extra `napari` is optional: the library and the command line run without it, and
    nothing outside the plugin imports the plugin (napari loads it through its manifest)."""
    plugin = [m for m in MODULES if m.startswith("embedseg.napari_plugin")]
    assert "embedseg.napari_plugin.widget" in plugin and "napari" in imports("embedseg.napari_plugin.widget")[1]
    gui = {m: sorted(imports(m)[1] & GUI_PACKAGES) for m in MODULES if m not in plugin and imports(m)[1] & GUI_PACKAGES}
    assert not gui, f"modules outside embedseg/napari_plugin import GUI packages: {gui}"
    users = {m for m in MODULES if m not in plugin and imports(m)[0] & set(plugin)}
    assert not users, f"{sorted(users)} import the napari plugin"
