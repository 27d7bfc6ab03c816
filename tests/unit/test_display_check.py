"""Before the window starts: which system libraries Qt's X11 plugin lacks, and the command that installs them."""

from __future__ import annotations

import subprocess

import pytest

from detr_studio import cli
from detr_studio.app import display_check
from detr_studio.app.display_check import (
    DisplayCheck,
    distribution_family,
    install_command,
    missing_libraries,
)

LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f1)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)
"""


def test_missing_libraries_are_read_from_ldd_once_each():
    assert missing_libraries(LDD) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


@pytest.mark.parametrize(
    ("os_release", "command"),
    [
        ('ID=debian\nVERSION_ID="12"\n', "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"),
        ("ID=ubuntu\nID_LIKE=debian\n", "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"),
        ('ID="fedora"\n', "sudo dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms"),
        ("ID=manjaro\nID_LIKE=arch\n", "sudo pacman -S xcb-util-cursor xcb-util-wm xcb-util-keysyms"),
        ('ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n', "sudo zypper install libxcb-cursor0"),
    ],
)
def test_the_install_command_fits_the_distribution(os_release, command):
    line = install_command(missing_libraries(LDD), distribution_family(os_release))
    assert line.startswith(command)


def test_an_unknown_library_is_named_rather_than_guessed():
    assert install_command(["libweird.so.3"], 0) == "sudo apt install <the package holding libweird.so.3>"


def test_check_display_reports_missing_libraries_with_the_command(monkeypatch, tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    monkeypatch.setattr(display_check.platform, "system", lambda: "Linux")
    monkeypatch.setattr(display_check, "xcb_plugin", lambda: plugin)
    monkeypatch.setattr(
        display_check.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=LDD, stderr=""),
    )
    result = display_check.check_display({"DISPLAY": ":0"})
    assert not result.ok
    assert result.missing == ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1")
    assert "libxcb-cursor0" in result.message or "xcb-util-cursor" in result.message


def test_no_display_is_said_plainly(monkeypatch):
    monkeypatch.setattr(display_check.platform, "system", lambda: "Linux")
    monkeypatch.setattr(display_check, "xcb_plugin", lambda: None)
    result = display_check.check_display({})
    assert not result.ok
    assert "no display" in result.message


def test_offscreen_needs_no_check():
    assert display_check.check_display({"QT_QPA_PLATFORM": "offscreen"}).ok


def test_the_bare_command_stops_with_the_message_instead_of_a_qt_abort(monkeypatch, capsys):
    monkeypatch.setattr(display_check, "check_display", lambda: DisplayCheck(False, "install libxcb-cursor0"))
    assert cli.main(["--check-display"]) == 1
    assert "install libxcb-cursor0" in capsys.readouterr().err
    assert cli._open_window(cli.build_parser()) == 1
