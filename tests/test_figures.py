"""Tests of fairprune_lite.experiments.figures on synthetic results: every kind draws at the
column width with readable text, legends outside the axes, the constrained metric with its
tolerance, intervals clipped to the metric's range and bars from zero."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from fairprune_lite import experiments as ex  # noqa: E402
from fairprune_lite.experiments import figures as F  # noqa: E402

METHODS = [("random", "Random"), ("omp", "OMP"), ("imp", "Lottery"), ("fp", "F&P"), ("pf", "P&F"),
           ("postproc", "OMP+TO"), ("bip", "BiP"), ("bifp", "BiFP")]


def fake(method, label, sp, seed, *, constraint="accuracy_gap", tau=0.02, budget=1.0, acc=0.9, gap=0.05,
         eo=0.1, iterations=100):
    rng = np.random.default_rng(abs(hash((label, sp, seed, budget))) % 2**32)

    def split(a, g, e):
        return {"accuracy": float(np.clip(a + rng.normal(0, 0.01), 0, 1)), "majority_baseline": 0.6,
                "accuracy_gap": float(np.clip(g + rng.normal(0, 0.01), 0, 1)),
                "equalized_odds_difference": float(np.clip(e + rng.normal(0, 0.02), 0, 1)),
                "demographic_parity_difference": 0.1}

    return {"run_id": f"{label}_{sp}_{seed}_{budget}", "label": label, "method": method, "dataset": "toy",
            "target": None, "model": "mlp", "sparsity_target": sp, "seed": seed, "tau": tau, "budget": budget,
            "constraint": constraint, "profile": "smoke",
            "provenance": {"git_commit": "abcdef1234567", "git_dirty": False, "date": "2026-11-27T10:00:00",
                           "device_name": "cpu", "version": "0.1.0"},
            "test": split(acc, gap, eo), "val": split(acc, gap, eo),
            "dense": {"test": {"accuracy": 0.95, "accuracy_gap": 0.03, "equalized_odds_difference": 0.07}},
            "cost": {"iterations": iterations * budget}}


def sweep_like(constraint="accuracy_gap", tau=0.02, seeds=3):
    return [fake(m, lab, sp, s, constraint=constraint, tau=tau, acc=0.93 - 0.1 * sp * (lab == "Random"),
                 gap=0.02 + 0.05 * sp * (lab != "BiFP"), eo=0.04 + 0.1 * sp * (lab != "BiFP"))
            for m, lab in METHODS for sp in (0.5, 0.8, 0.9) for s in range(seeds)]


def texts(fig):
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def overlaps(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def check_readable(fig):
    """Column width, no text under 9 px on a phone (what the inline image shows, scaled to
    ``book.PHONE_COLUMN_PX``), legends clear of every axes."""
    from fairprune_lite import book

    assert fig.get_figwidth() == pytest.approx(F.COLUMN_WIDTH_IN)
    px = book.min_text_px(fig)
    drawn = texts(fig)
    smallest_pt = min(t.get_fontsize() for t in drawn)
    small = [(t.get_text(), t.get_fontsize()) for t in drawn if t.get_fontsize() * px / smallest_pt < 9]
    assert px >= 9, small
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in fig.axes:
            assert not overlaps(box, ax.get_window_extent(renderer)), (leg.get_title().get_text(), ax.get_title())
    # figure-level texts (caption, shared axis label, title) clear of each other; titles and tick
    # labels of the panels clear of each other
    fig_texts = [t for t in fig.texts if t.get_visible() and t.get_text().strip()]  # suptitle, supxlabel too
    boxes = [(t.get_text()[:30], t.get_window_extent(renderer)) for t in fig_texts]
    boxes += [(ax.get_title()[:30], ax.title.get_window_extent(renderer)) for ax in fig.axes if ax.get_title()]
    for i, (name_a, a) in enumerate(boxes):
        for name_b, b in boxes[i + 1:]:
            assert not overlaps(a, b), (name_a, name_b)
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        if len(labels) < 2:
            continue
        names = [t.get_text() for t in labels]
        angle = np.deg2rad(labels[0].get_rotation() % 180)
        if angle == 0:  # level labels: their boxes apart
            boxes_x = [t.get_window_extent(renderer) for t in labels]
            assert not any(overlaps(a, b) for i, a in enumerate(boxes_x) for b in boxes_x[i + 1:]), names
        else:  # slanted labels are parallel lines: their distance is the anchors' spacing times sin(angle)
            xs = np.sort([t.get_window_extent(renderer).x1 for t in labels])
            height = labels[0].get_fontsize() * fig.dpi / 72
            assert np.diff(xs).min() * np.sin(angle) >= height, names


@pytest.mark.parametrize("kind", ["sparsity", "tradeoff", "cost", "ablation"])
def test_every_kind_draws_readable_and_saves(kind, tmp_path):
    results = sweep_like()
    if kind == "tradeoff":
        results = [r for r in results if r["sparsity_target"] == 0.9] + [
            fake("bifp", "BiFP", 0.9, s, tau=0.05) for s in range(3)]
    if kind == "cost":
        results = [fake("bifp", "BiFP", 0.9, s, budget=b, gap=0.05 / b) for s in range(3) for b in (0.5, 1, 2)]
    fig = ex.figure(kind, results, out=tmp_path, name=f"f_{kind}", title="a title")
    caption = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "profile smoke" in caption and "commit abcdef1234" in caption and "n = 3 seeds" in caption
    assert "95% t-interval" in caption
    check_readable(fig)
    plt.close(fig)
    assert (tmp_path / f"f_{kind}.png").stat().st_size > 1000
    assert (tmp_path / f"f_{kind}.svg").read_text().lstrip().startswith("<?xml")


def test_sparsity_kind_is_small_multiples_with_the_reference_in_every_row():
    results = sweep_like()
    rows = F.method_groups(results)
    assert rows == [("fairness-blind pruning", ["Random", "Lottery"]),
                    ("fairness-aware baselines", ["F&P", "P&F", "OMP+TO"]), ("bi-level", ["BiP", "BiFP"])]
    fig = ex.figure("sparsity", results)
    axes = np.array(fig.axes).reshape(len(rows), 2)
    for row in axes:
        for ax in row:  # OMP's band and line (grey squares) are in every panel
            assert any(line.get_color() == F.REFERENCE and line.get_marker() == "s" for line in ax.get_lines())
    # each row's legend names exactly that row's methods
    for (family, labels), row in zip(rows, axes, strict=True):
        leg = row[-1].get_legend()
        assert leg.get_title().get_text() == family
        assert [t.get_text() for t in leg.get_texts()] == labels
    plt.close(fig)
    grouped = F.method_groups(results, {"groups": [["BiFP", "OMP+TO"]]})
    assert grouped == [("", ["BiFP", "OMP+TO"])]
    with pytest.raises(ValueError, match="groups name labels without results: nope"):
        F.method_groups(results, {"groups": [["nope"]]})
    with pytest.raises(ValueError, match="reference 'x' is not a label"):
        F.method_groups(results, {"reference": "x"})


def plotted_means(ax, color):
    """y values of the (first) line drawn in ``color`` with circle markers."""
    for line in ax.get_lines():
        if line.get_color() == color and line.get_marker() == "o":
            return np.asarray(line.get_ydata(), dtype=float)
    raise AssertionError(f"no line of colour {color}")


def test_sparsity_kind_plots_the_constrained_metric_with_tau():
    results = sweep_like(constraint="equalized_odds", tau=0.05)
    fig = ex.figure("sparsity", results)
    rows = F.method_groups(results)
    colors = F._colors([lab for _, g in rows for lab in g])
    axes = np.array(fig.axes).reshape(len(rows), 2)
    assert "EO diff." in axes[0][1].get_title() and "accuracy" in axes[0][0].get_title()
    check_readable(fig)  # column titles clear of each other (a long metric name ran into its neighbour)
    bifp_row = next(i for i, (_, g) in enumerate(rows) if "BiFP" in g)
    want = [np.mean([r["test"]["equalized_odds_difference"] for r in results
                     if r["label"] == "BiFP" and r["sparsity_target"] == sp]) for sp in (0.5, 0.8, 0.9)]
    np.testing.assert_allclose(plotted_means(axes[bifp_row][1], colors["BiFP"]), want)
    # tau drawn in every metric panel, the majority-class baseline in every accuracy panel
    for acc_ax, met_ax in axes:
        assert any(np.allclose(line.get_ydata(), 0.05) for line in met_ax.get_lines())
        assert any(np.allclose(line.get_ydata(), 0.6) for line in acc_ax.get_lines())
        assert met_ax.get_ylim()[0] == 0.0
    plt.close(fig)
    with pytest.raises(ValueError, match="mix constraints"):
        F.constrained_metric(results + sweep_like())


def test_intervals_are_clipped_to_the_metric_range():
    # one seed at 0 and two at 1: a t-interval far beyond [0, 1] before clipping
    results = [fake("omp", "OMP", 0.9, s, acc=a, gap=g) for s, (a, g) in enumerate([(1.0, 0.0), (0.2, 0.9), (1.0, 0.0)])]
    m, lo, hi = F._mean_spread([r["test"]["accuracy"] for r in results], "ci")
    assert lo == 0.0 and hi == 1.0 and 0 < m < 1
    fig = ex.figure("ablation", results)
    for ax in fig.axes:
        for coll in ax.collections:  # the error bars' segments
            for seg in getattr(coll, "get_segments", lambda: [])():
                assert np.all(seg[:, 1] >= -1e-12) and np.all(seg[:, 1] <= 1 + 1e-12)
    plt.close(fig)


def test_ablation_bars_start_at_zero_on_an_uncut_axis():
    results = [fake("bifp", lab, 0.9, s, acc=0.95, gap=g) for lab, g in (("BiFP", 0.01), ("w/o m", 0.08))
               for s in range(3)]
    fig = ex.figure("ablation", results)
    acc_ax, gap_ax = fig.axes
    assert acc_ax.get_ylim() == (0.0, 1.0)
    assert gap_ax.get_ylim()[0] == 0.0
    for ax in (acc_ax, gap_ax):
        assert all(p.get_y() == 0.0 for p in ax.patches)  # bars from zero
    assert any(np.allclose(line.get_ydata(), 0.6) for line in acc_ax.get_lines())  # majority baseline
    np.testing.assert_allclose(sorted(p.get_height() for p in gap_ax.patches),
                               sorted(np.mean([r["test"]["accuracy_gap"] for r in results if r["label"] == lab])
                                      for lab in ("BiFP", "w/o m")))
    plt.close(fig)


def test_unknown_kind_and_spread_are_refused():
    with pytest.raises(ValueError, match="figure kind"):
        ex.figure("pie", sweep_like())
    with pytest.raises(ValueError, match="spread must be one of"):
        ex.figure("sparsity", sweep_like(), spread="iqr")
    with pytest.raises(ValueError, match="no results"):
        ex.figure("sparsity", [])
