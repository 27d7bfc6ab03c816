"""The packaging files hang together: the .desktop entry, the icons, the PyInstaller spec and pyproject."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
RESOURCE_ICONS = ROOT / "detr_studio" / "resources" / "icons"
MAIN_CATEGORIES = {"AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics", "Network",
                   "Office", "Science", "Settings", "System", "Utility"}  # fmt: skip


def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_icons():
    return _load_script(PACKAGING / "make_icons.py", "make_icons")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def spec_calls() -> dict[str, SimpleNamespace]:
    """Run the PyInstaller spec with stand-ins for PyInstaller's classes that record their arguments."""
    calls: dict[str, SimpleNamespace] = {}

    def recorder(kind: str):
        def record(*args, **kwargs):
            calls[kind] = SimpleNamespace(
                args=args, kwargs=kwargs, pure=[], scripts=[], binaries=[], datas=[]
            )
            return calls[kind]

        return record

    namespace = {kind: recorder(kind) for kind in ("Analysis", "PYZ", "EXE", "COLLECT")}
    namespace["SPECPATH"] = str(PACKAGING)
    spec = PACKAGING / "detr-studio.spec"
    exec(compile(spec.read_text(encoding="utf-8"), str(spec), "exec"), namespace)
    return calls


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string((PACKAGING / "detr-studio.desktop").read_text(encoding="utf-8"))
    assert parser.sections() == ["Desktop Entry"]
    return parser["Desktop Entry"]


def test_the_desktop_entry_starts_the_installed_command_with_our_icon(pyproject, make_icons):
    entry = _desktop_entry()
    assert entry["Type"] == "Application" and entry["Name"] == "DETR Studio"
    assert entry["Exec"].split()[0] in pyproject["project"]["scripts"]
    assert entry["Icon"] == make_icons.NAME
    assert entry["Terminal"] == "false"
    categories = entry["Categories"]
    assert categories.endswith(";") and MAIN_CATEGORIES & set(categories.split(";"))
    assert all(value.strip() == value and value for value in entry.values())


def test_every_icon_size_is_committed_in_packaging_and_in_the_package_resources(make_icons):
    for folder in (PACKAGING / "icons", RESOURCE_ICONS):
        for size in make_icons.SIZES:
            with Image.open(folder / f"{make_icons.NAME}-{size}.png") as image:
                assert image.size == (size, size) and image.mode == "RGBA"
        svg = ET.parse(folder / f"{make_icons.NAME}.svg").getroot()
        assert svg.tag.endswith("svg") and svg.get("viewBox") == "0 0 256 256"
    for path in (PACKAGING / "icons").iterdir():
        assert (RESOURCE_ICONS / path.name).read_bytes() == path.read_bytes()


def test_the_committed_icons_are_what_make_icons_draws(make_icons, tmp_path):
    make_icons.write((tmp_path,))
    for size in make_icons.SIZES:
        drawn = np.asarray(Image.open(tmp_path / f"{make_icons.NAME}-{size}.png"), dtype=np.int16)
        kept = np.asarray(Image.open(RESOURCE_ICONS / f"{make_icons.NAME}-{size}.png"), dtype=np.int16)
        assert np.abs(drawn - kept).max() <= 8, size
    assert (tmp_path / f"{make_icons.NAME}.svg").read_text() == (
        RESOURCE_ICONS / "detr-studio.svg"
    ).read_text()


def test_the_spec_builds_one_folder_from_files_that_exist(spec_calls):
    analysis = spec_calls["Analysis"]
    script = Path(analysis.args[0][0])
    assert script.is_file() and "detr_studio.cli import main" in script.read_text()
    sources = {Path(src): dest for src, dest in analysis.kwargs["datas"]}
    assert sources == {ROOT / "detr_studio" / "resources": "detr_studio/resources"}
    libraries = [Path(src) for src, dest in analysis.kwargs["binaries"] if dest == "torchvision"]
    assert all(lib.is_file() for lib in libraries)
    assert any(lib.name.startswith("_C") for lib in libraries)  # torchvision's nms, loaded by path
    for module in analysis.kwargs["hiddenimports"]:
        assert importlib.util.find_spec(module) is not None, module
    exe = spec_calls["EXE"]
    assert exe.kwargs["exclude_binaries"] and Path(exe.kwargs["icon"]).is_file()
    assert spec_calls["COLLECT"].kwargs["name"] == exe.kwargs["name"] == "detr-studio"


def _imported_modules() -> set[str]:
    """Every module that a file of the package imports by absolute name."""
    found: set[str] = set()
    for path in (ROOT / "detr_studio").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_spec_leaves_out_nothing_the_package_imports(spec_calls):
    excluded = spec_calls["Analysis"].kwargs["excludes"]
    used = _imported_modules()
    assert {"torch", "PySide6.QtWidgets"} <= used  # the scan sees the package's imports
    clashes = [(ex, mod) for ex in excluded for mod in used if mod == ex or mod.startswith(ex + ".")]
    assert clashes == []


def test_pyproject_has_the_packaging_extra_and_ships_the_resources(pyproject):
    extras = pyproject["project"]["optional-dependencies"]
    assert any(req.lower().startswith("pyinstaller") for req in extras["packaging"])
    assert pyproject["project"]["scripts"]["detr-studio"] == "detr_studio.cli:main"
    patterns = pyproject["tool"]["setuptools"]["package-data"]["detr_studio"]
    assert "resources/**/*" in patterns


def test_make_package_builds_with_the_spec_and_starts_the_result():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = makefile.split("\npackage:", 1)[1].split("\n\n", 1)[0]
    assert "packaging/detr-studio.spec" in target and "--distpath dist" in target
    assert "dist/detr-studio/detr-studio --smoke-test" in target
