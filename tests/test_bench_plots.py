"""The suite's plots, drawn from the stored bench/results/suite.json: every series in a
legend, legends under their axes (off the data), trial numbers as integer ticks, the
machine caption on every figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import plots

SUITE = Path(__file__).resolve().parent.parent / "bench" / "results" / "suite.json"


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    drawn: dict[str, Any] = {}
    save = plots._save

    def keep(fig: Any, path: Path) -> Path:
        fig.canvas.draw()
        drawn[path.stem] = (fig, fig.canvas.get_renderer())  # before _save closes the figure
        return save(fig, path)

    plots._save = keep  # type: ignore[assignment]
    try:
        paths = plots.write_plots(json.loads(SUITE.read_text()), tmp_path_factory.mktemp("plots"))
    finally:
        plots._save = save  # type: ignore[assignment]
    assert all(p.stat().st_size > 10_000 for p in paths)
    return drawn


def test_every_legend_is_under_its_axes_and_names_every_series(figures: dict[str, Any]) -> None:
    for name, (fig, renderer) in figures.items():
        axes = [a for a in fig.axes if a.get_legend() is not None]
        assert axes, f"{name} has no legend"
        for axis in axes:
            legend = axis.get_legend()
            assert legend.get_window_extent(renderer).y1 < axis.get_window_extent(renderer).y0, name
            twins = [a for a in fig.axes if a is not axis and a.bbox.bounds == axis.bbox.bounds]
            series = [line.get_label() for a in [axis, *twins] for line in a.get_lines()
                      if not line.get_label().startswith("_")]
            shown = [text.get_text() for text in legend.get_texts()]
            assert set(series) <= set(shown), (name, series, shown)
        assert " cores (" in fig.get_supxlabel(), name


def test_trial_numbers_are_integer_ticks(figures: dict[str, Any]) -> None:
    views = figures["consensus"][0].axes[1]
    assert [t.get_text() for t in views.get_xticklabels()] == ["1", "2", "3"]


def test_every_load_case_is_in_the_latency_distribution(figures: dict[str, Any]) -> None:
    report = json.loads(SUITE.read_text())
    lines = {line.get_label() for line in figures["latency_cdf"][0].axes[0].get_lines()}
    for name in report["load"]:
        assert plots._label(name).replace("\n", " ") in lines
