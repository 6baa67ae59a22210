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
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("N (features)")
        axis.set_ylabel("population loss")
        axis.set_title(f"loss against N (bars: {n_curves[0]['band']})")
        axis.legend(fontsize=8)
        axis.grid(True, which="both", alpha=0.25)

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
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("D (training inputs)")
        axis.set_ylabel("population loss")
        axis.set_title(f"loss against D (bars: {d_part['curves'][0]['band']})")
        axis.legend(fontsize=8)
        axis.grid(True, which="both", alpha=0.25)

    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    plt.close(figure)


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
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("N (features)")
        axis.set_ylabel("population loss")
        axis.set_title(f"loss against N (bars: {n_curves[0]['linear']['band']})")
        axis.legend(fontsize=7)
        axis.grid(True, which="both", alpha=0.25)

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
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("D (training inputs)")
        axis.set_ylabel("population loss")
        axis.set_title(f"loss against D (bars: {d_curves[0]['linear']['band']})")
        axis.legend(fontsize=7)
        axis.grid(True, which="both", alpha=0.25)

    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150)
    plt.close(figure)
