"""Figures of the experiments, drawn from the analysis summary alone.

Matplotlib runs with the Agg backend, so figures are written on machines
without a display (cluster nodes, CI).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(figure, title: str, path: Path) -> None:
    """Title, lay out and write a figure as a 150-dpi PNG, then free it."""
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    plt.close(figure)


def log_axes(axis, xlabel: str, ylabel: str, title: str, legend_size: float = 8) -> None:
    """Put ``axis`` on log-log scales with labels, a legend and a light grid."""
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=legend_size)
    axis.grid(True, which="both", alpha=0.25)


def _band(curve: dict, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = np.minimum(np.array(curve["low"], dtype=float), center)
    high = np.maximum(np.array(curve["high"], dtype=float), center)
    return low, high


def plot_double_descent(summary, path: Path, title: str) -> None:
    """Draw loss against N (one curve per D) and loss against D (one curve per N), with theory."""
    curves = summary.curves
    n_curves = curves.get("n_sweep", [])
    d_part = curves.get("d_sweep")
    panels = int(bool(n_curves)) + int(bool(d_part))
    figure, axes = plt.subplots(1, max(panels, 1), figsize=(6.2 * max(panels, 1), 4.6), squeeze=False)
    axes = list(axes[0])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    if n_curves:
        axis = axes.pop(0)
        for number, curve in enumerate(n_curves):
            color = colors[number % len(colors)]
            n = np.array(curve["n_features"], dtype=float)
            finite = np.isfinite(n)
            center = np.array(curve["center"], dtype=float)
            low, high = _band(curve, center)
            axis.errorbar(n[finite], center[finite], yerr=[center[finite] - low[finite], high[finite] - center[finite]],
                          fmt="o", ms=3.5, color=color, capsize=2, label=f"D = {curve['n_samples']:g}")
            axis.plot(n[finite], np.array(curve["below"], dtype=float)[finite], ":", color=color, lw=1.2)
            axis.plot(n[finite], np.array(curve["above"], dtype=float)[finite], ":", color=color, lw=1.2)
            axis.axvline(curve["rank"], color=color, lw=0.8, alpha=0.6)
            if number == 0:
                axis.plot(n[finite], np.array(curve["de"], dtype=float)[finite], "--", color="0.3", lw=1.2,
                          label=r"$L_{DE}(N)$, $D=\infty$")
        axis.plot([], [], ":", color="0.3", label="heuristic (conjecture)")
        axis.plot([], [], "-", color="0.3", lw=0.8, label="rank(X)")
        log_axes(axis, "N (features)", "population loss", f"loss against N (bars: {n_curves[0]['band']})")

    if d_part:
        axis = axes.pop(0)
        for number, curve in enumerate(d_part["curves"]):
            color = colors[(number + 3) % len(colors)]
            d = np.array(curve["n_samples"], dtype=float)
            center = np.array(curve["center"], dtype=float)
            low, high = _band(curve, center)
            label = f"N = {curve['n_features']}"
            axis.errorbar(d, center, yerr=[center - low, high - center], fmt="s", ms=3.5, color=color, capsize=2,
                          label=label)
        grid = np.array(d_part["theory_n_samples"], dtype=float)
        axis.plot(grid, d_part["unseen_mass"], "-", color="0.2", lw=1.2, label=r"$U(D)+\sigma^2$ (exact sum)")
        asymptote = np.array(d_part["unseen_mass_asymptote"], dtype=float)
        if np.isfinite(asymptote).any():
            axis.plot(grid, asymptote, "--", color="0.5", lw=1.0, label="asymptote")
        log_axes(axis, "D (training inputs)", "population loss", f"loss against D (bars: {d_part['curves'][0]['band']})")

    save_figure(figure, title, path)


def plot_gd_stability(summary, path: Path, title: str) -> None:
    """Draw P(unstable) against D (log-log, with the spike-model theory) and learning curves of stable runs."""
    curves = summary.curves
    figure, (left, right) = plt.subplots(1, 2, figsize=(12.4, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    for number, series in enumerate(curves.get("points", [])):
        color = colors[number % len(colors)]
        d = np.array(series["n_samples"], dtype=float)
        p = np.array(series["p_unstable"], dtype=float)
        low, high = np.array(series["low"], dtype=float), np.array(series["high"], dtype=float)
        shown = p > 0
        label = f"N = {series['n_features']}, eta = {series['eta']:g}"
        left.errorbar(d[shown], p[shown], yerr=[p[shown] - low[shown], high[shown] - p[shown]], fmt="o", ms=4,
                      color=color, capsize=2, label=label)
        if (~shown).any():
            left.plot(d[~shown], high[~shown], "v", color=color, ms=5, alpha=0.7)
        left.plot(d, series["spike_bulk"], "-", color=color, lw=1.2)
        left.plot(d, series["spike"], ":", color=color, lw=1.2)
        asymptote = np.array(series["asymptote"], dtype=float)
        if np.isfinite(asymptote).any():
            left.plot(series["theory_n_samples"], asymptote, "--", color=color, lw=0.8, alpha=0.6)
    left.plot([], [], "-", color="0.3", label="spike + bulk sum (conjecture)")
    left.plot([], [], ":", color="0.3", label="spike sum (conjecture)")
    left.plot([], [], "--", color="0.3", lw=0.8, label="spike power law (asymptote)")
    left.plot([], [], "v", color="0.3", label="upper 95% bound, no unstable draw")
    log_axes(left, "D (training inputs)", "P(unstable)", "P(unstable) against D (bars: Wilson 95%)", legend_size=7)

    learning = [c for c in curves.get("learning", []) if c.get("median")]
    steps = np.array(curves.get("steps", []), dtype=float)
    if learning and steps.size:
        first_n = learning[0]["n_features"]
        largest_eta = max(c["eta"] for c in learning if c["n_features"] == first_n)
        chosen = [c for c in learning if c["n_features"] == first_n and c["eta"] == largest_eta]
        shown_steps = np.maximum(steps, 0.5)
        for number, curve in enumerate(chosen):
            color = colors[(number + 3) % len(colors)]
            right.plot(shown_steps, curve["median"], "-", color=color, lw=1.3,
                       label=f"D = {curve['n_samples']} ({curve['stable_runs']} stable runs)")
            right.fill_between(shown_steps, curve["q25"], curve["q75"], color=color, alpha=0.2)
            right.axhline(curve["min_norm_median"], color=color, lw=0.8, ls="--")
        right.plot([], [], "--", color="0.3", lw=0.8, label="min-norm solution (median)")
        right.set_title(f"stable runs, N = {first_n}, eta = {largest_eta:g}\n(median and quartiles)", fontsize=10)
        right.legend(fontsize=7)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("step t (step 0 drawn at 0.5)")
    right.set_ylabel("population loss")
    right.grid(True, which="both", alpha=0.25)

    save_figure(figure, title, path)


def plot_nonlinear(summary, path: Path, title: str, activation: str) -> None:
    """Draw loss against N (at the largest D of each dataset) and against D, linear beside nonlinear.

    Filled markers are the linear student, open markers the nonlinear one; one color per dataset.
    """
    n_curves = summary.curves.get("n_sweep", [])
    d_curves = summary.curves.get("d_sweep", [])
    panels = int(bool(n_curves)) + int(bool(d_curves))
    figure, axes = plt.subplots(1, max(panels, 1), figsize=(6.4 * max(panels, 1), 4.8), squeeze=False)
    axes = list(axes[0])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    datasets = list(dict.fromkeys(c["dataset"] for c in n_curves + d_curves))
    color_of = {label: colors[number % len(colors)] for number, label in enumerate(datasets)}

    def draw(axis, x, part, color, marker, filled, label):
        center = np.array(part["center"], dtype=float)
        low, high = _band(part, center)
        axis.errorbar(x, center, yerr=[center - low, high - center], fmt=marker + "-", ms=4, lw=0.8, capsize=2,
                      color=color, mfc=color if filled else "white", label=label)

    if n_curves:
        axis = axes.pop(0)
        largest = {}
        for curve in n_curves:
            if curve["n_samples"] >= largest.get(curve["dataset"], {"n_samples": -1})["n_samples"]:
                largest[curve["dataset"]] = curve
        for label, curve in largest.items():
            color = color_of[label]
            n = np.array(curve["n_features"], dtype=float)
            finite = np.isfinite(n)
            for student, marker, filled in (("linear", "o", True), ("student", "s", False)):
                part = {key: np.array(value, dtype=float)[finite] for key, value in curve[student].items()
                        if key != "band"}
                name = "linear" if student == "linear" else activation
                draw(axis, n[finite], part, color, marker, filled, f"{label}, {name}, D={curve['n_samples']}")
            axis.plot(n[finite], np.array(curve["de"], dtype=float)[finite], "--", color=color, lw=0.9)
            axis.axvline(curve["rank_data"], color=color, lw=0.8, ls=":")
            axis.axvline(curve["feature_rank_predicted"], color=color, lw=0.8, ls="-.")
        axis.plot([], [], "--", color="0.3", label=r"$L_{DE}(N)$, $D=\infty$ (linear)")
        axis.plot([], [], ":", color="0.3", label="rank(X)")
        axis.plot([], [], "-.", color="0.3", label=r"predicted feature rank $r_\phi$")
        log_axes(axis, "N (features)", "population loss", f"loss against N (bars: {n_curves[0]['linear']['band']})",
                 legend_size=7)

    if d_curves:
        axis = axes.pop(0)
        for curve in d_curves:
            color = color_of[curve["dataset"]]
            d = np.array(curve["n_samples"], dtype=float)
            for student, marker, filled in (("linear", "o", True), ("student", "s", False)):
                name = "linear" if student == "linear" else activation
                draw(axis, d, curve[student], color, marker, filled,
                     f"{curve['dataset']}, {name}, N={curve['n_features']}")
        for theory_curve in summary.curves.get("unseen_mass", []):
            axis.plot(theory_curve["n_samples"], theory_curve["unseen_mass"], "-", lw=1.0, alpha=0.7,
                      color=color_of.get(theory_curve["dataset"], "0.3"))
        axis.plot([], [], "-", color="0.3", label=r"$U(D)+\sigma^2$ (exact sum)")
        log_axes(axis, "D (training inputs)", "population loss",
                 f"loss against D (bars: {d_curves[0]['linear']['band']})", legend_size=7)

    save_figure(figure, title, path)
