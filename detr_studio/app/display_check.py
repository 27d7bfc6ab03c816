"""Can the window open here? Checks, without starting Qt, that Qt's platform plugin finds its system libraries.

On a fresh Linux desktop Qt's X11 plugin (``libqxcb.so``) often lacks a few small system libraries
(``libxcb-cursor0``, ``libxcb-icccm4``, ``libxcb-keysyms1`` …); Qt then aborts with a message that does not say
what to install. `check_display` asks the dynamic linker (``ldd``) which libraries of the plugin are missing and
turns them into the one install command for this distribution. ``make run`` and ``detr-studio`` (before it
opens the window) call it. Nothing here imports Qt.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# soname -> package, per distribution family (Debian/Ubuntu, Fedora/RHEL, Arch, openSUSE).
_PACKAGES: dict[str, tuple[str, str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor", "libxcb-cursor0"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm", "libxcb-icccm4"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms", "libxcb-keysyms1"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image", "libxcb-image0"),
    "libxcb-render-util.so.0": (
        "libxcb-render-util0",
        "xcb-util-renderutil",
        "xcb-util-renderutil",
        "libxcb-render-util0",
    ),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util", "libxcb-util1"),
    "libxkbcommon-x11.so.0": (
        "libxkbcommon-x11-0",
        "libxkbcommon-x11",
        "libxkbcommon-x11",
        "libxkbcommon-x11-0",
    ),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon", "libxkbcommon0"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11", "libX11-xcb1"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd", "libEGL1"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd", "libGL1"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd", "libOpenGL0"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig", "libfontconfig1"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2", "libfreetype6"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus", "libdbus-1-3"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libglib-2_0-0"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb", "libxcb1"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb", "libxcb-randr0"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb", "libxcb-shape0"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb", "libxcb-xkb1"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb", "libxcb-xfixes0"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb", "libxcb-sync1"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb", "libxcb-shm0"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb", "libxcb-render0"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb", "libxcb", "libxcb-xinerama0"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb", "libxcb", "libxcb-glx0"),
}

_INSTALLERS = ("sudo apt install", "sudo dnf install", "sudo pacman -S", "sudo zypper install")
_FAMILIES = {
    "debian": 0,
    "ubuntu": 0,
    "fedora": 1,
    "rhel": 1,
    "centos": 1,
    "arch": 2,
    "suse": 3,
    "opensuse": 3,
}
_HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb", "minimalegl"}


@dataclass(frozen=True)
class DisplayCheck:
    """The outcome: ``ok``, or a message that says what is missing and the command that installs it."""

    ok: bool
    message: str = ""
    missing: tuple[str, ...] = ()


def distribution_family(os_release: str) -> int:
    """0 Debian/Ubuntu, 1 Fedora/RHEL, 2 Arch, 3 openSUSE (from /etc/os-release text; Debian when unknown)."""
    fields = dict(re.findall(r'^(ID|ID_LIKE)="?([^"\n]*)"?$', os_release, flags=re.MULTILINE))
    for word in (fields.get("ID", "") + " " + fields.get("ID_LIKE", "")).split():
        for name, family in _FAMILIES.items():
            if word.startswith(name):
                return family
    return 0


def missing_libraries(ldd_output: str) -> list[str]:
    """The sonames ``ldd`` reports as "not found", each once, in order."""
    seen: list[str] = []
    for match in re.finditer(r"^\s*(\S+)\s+=>\s+not found", ldd_output, flags=re.MULTILINE):
        if match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


def install_command(sonames: list[str], family: int) -> str:
    """The package manager line that installs the packages holding ``sonames``."""
    packages = []
    for so in sonames:
        known = _PACKAGES.get(so)
        name = known[family] if known else f"<the package holding {so}>"
        if name not in packages:
            packages.append(name)
    return f"{_INSTALLERS[family]} {' '.join(packages)}"


def xcb_plugin() -> Path | None:
    """Path of PySide6's X11 platform plugin, when PySide6 is installed."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def check_display(environ: dict[str, str] | None = None) -> DisplayCheck:
    """Whether the window can start here; on Linux, the libraries Qt's X11 plugin lacks and how to install them."""
    env = os.environ if environ is None else environ
    if platform.system() != "Linux" or env.get("QT_QPA_PLATFORM", "").split(":")[0] in _HEADLESS_PLATFORMS:
        return DisplayCheck(True)
    plugin, ldd = xcb_plugin(), shutil.which("ldd")
    if plugin is not None and ldd is not None:
        try:
            out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        missing = missing_libraries(out)
        if missing:
            try:
                family = distribution_family(Path("/etc/os-release").read_text(encoding="utf-8"))
            except OSError:
                family = 0
            return DisplayCheck(
                False,
                "The window cannot start: Qt's X11 platform plugin needs system libraries this machine lacks"
                f" ({', '.join(missing)}). Install them with:\n    {install_command(missing, family)}",
                tuple(missing),
            )
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return DisplayCheck(
            False,
            "The window cannot start: there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set). On a"
            " server, use the commands (detr-studio predict|train|eval|export), or QT_QPA_PLATFORM=offscreen.",
        )
    return DisplayCheck(True)
