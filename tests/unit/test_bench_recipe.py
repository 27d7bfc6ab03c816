"""The from-scratch benchmark's recipe: the ``detr-studio train`` line README shows is the run it measures."""

from __future__ import annotations

import shlex
from dataclasses import asdict, replace
from pathlib import Path

from detr_studio.cli import build_parser
from detr_studio.commands.train import config_from_args
from tests.benchmarks.bench_training import QUICK_RECIPE, RECIPE


def test_the_recipes_command_line_trains_the_recipes_config() -> None:
    other_layers = replace(RECIPE, model=RECIPE.model.replace(enc_layers=1, dec_layers=5, nheads=4))
    for recipe in (RECIPE, QUICK_RECIPE, other_layers):
        line = recipe.train_command("shapes", "runs/shapes")
        args = build_parser().parse_args(shlex.split(line)[1:])
        from_line = asdict(config_from_args(args))
        expected = asdict(recipe.train_config(Path("shapes"), Path("runs/shapes")))
        differ = {k: (from_line[k], expected[k]) for k in expected if from_line[k] != expected[k]}
        assert not differ, differ
