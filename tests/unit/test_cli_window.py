"""``detr-studio`` without a command opens the window, ``detr-studio PATH`` opens PATH in it, and ``--help``
says both."""

from __future__ import annotations

import pytest

from detr_studio import cli
from detr_studio.app import main as app_main


def test_help_says_the_bare_command_opens_the_window(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "detr-studio [PATH] (opens the window)" in text
    assert "Without a command, opens the window" in text and "COCO JSON file" in text


def test_a_path_is_told_apart_from_the_commands():
    names = cli.command_names(cli.build_parser())
    assert {"predict", "train", "eval", "export", "demo", "zoo"} <= set(names)
    assert cli.split_window_path(["photos"], names) == ("photos", [])
    assert cli.split_window_path(["--smoke-test", "a.json"], names) == ("a.json", ["--smoke-test"])
    assert cli.split_window_path(["train", "--data", "x.json"], names) == (
        None,
        ["train", "--data", "x.json"],
    )
    assert cli.split_window_path([], names) == (None, [])


def test_detr_studio_path_opens_the_path_in_the_window(monkeypatch, tmp_path):
    opened: list[list[str]] = []
    monkeypatch.setattr(cli, "_check_display", lambda quiet: 0)
    monkeypatch.setattr(app_main, "run_app", lambda argv, smoke_test=False: opened.append(list(argv)) or 0)
    assert cli.main([str(tmp_path)]) == 0
    assert cli.main([]) == 0
    assert [argv[1:] for argv in opened] == [[str(tmp_path)], []]


def test_a_path_that_is_not_there_is_refused_before_the_window_opens(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(app_main, "run_app", lambda argv, smoke_test=False: pytest.fail("the window opened"))
    assert cli.main([str(tmp_path / "nothing.json")]) == 2
    assert "nothing.json: no such file or folder" in capsys.readouterr().err
