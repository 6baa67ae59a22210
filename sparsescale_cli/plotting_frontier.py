"""Figure of the compute-frontier experiment, drawn from its analysis summary alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plotting import log_axes, plt, save_figure


def plot_compute_frontier(summary, path: Path, title: str) -> None:
    """Draw the IsoFLOP curves with their optima, and N*(C), D*(C) against theory and the dense model."""
    curves = summary.curves
    figure, (left, right) = plt.subplots(1, 2, figsize=(12.4, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    for number, contour in enumerate(curves["isoflops"]):
        color = colors[number % len(colors)]
        n = np.array(contour["n_features"], dtype=float)
        left.plot(n, contour["loss"], "o", ms=3.5, color=color, label=f"C = {contour['budget']:.3g}")
        left.plot(n, contour["theory"], ":", color=color, lw=1.0)
        parabola = contour["parabola"]
        if parabola["interior"]:
            u = np.linspace(np.log(n.min()), np.log(n.max()), 80)
            fitted = parabola["log_loss_at_vertex"] + parabola["curvature"] * (u - parabola["log_vertex"]) ** 2
            keep = np.abs(u - parabola["log_vertex"]) <= 1.5
            left.plot(np.exp(u[keep]), np.exp(fitted[keep]), "-", color=color, lw=1.0)
            left.plot(np.exp(parabola["log_vertex"]), np.exp(parabola["log_loss_at_vertex"]), "*", ms=10,
                      color=color, markeredgecolor="k")
    left.plot([], [], ":", color="0.3", label="additive law (theory)")
    left.plot([], [], "*", color="0.3", label="parabola optimum")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("N (features), D = C/N")
    left.set_ylabel("population loss (best ridge)")
    left.set_title("IsoFLOP curves")
    left.legend(fontsize=7, ncol=2)
    left.grid(True, which="both", alpha=0.25)

    budgets = np.array(curves["budgets"], dtype=float)
    n_opt = np.array([np.nan if v is None else v for v in curves["n_opt"]], dtype=float)
    grid = np.array(curves["theory_budgets"], dtype=float)
    fit = curves["fit"]
    right.plot(budgets, n_opt, "o", color=colors[0], label="N* (simulation)")
    right.plot(budgets, budgets / n_opt, "s", color=colors[1], label="D* (simulation)")
    if np.isfinite(fit["slope"]):
        fitted = np.exp(fit["intercept"]) * grid ** fit["slope"]
        right.plot(grid, fitted, "-", color=colors[0], lw=1.0, label=f"fit N* ~ C^{fit['slope']:.3f}")
        right.plot(grid, grid / fitted, "-", color=colors[1], lw=1.0)
    theory_n = np.array(curves["theory_n_opt"], dtype=float)
    dense_n = np.array(curves["dense_n_opt"], dtype=float)
    right.plot(grid, theory_n, "--", color="0.2", lw=1.0, label="theory N*, D* (sparse)")
    right.plot(grid, grid / theory_n, "--", color="0.2", lw=1.0)
    right.plot(grid, dense_n, ":", color="0.5", lw=1.2, label="theory N* = D* (dense)")
    log_axes(right, "compute C = N D", "compute-optimal N*, D*", "frontier", legend_size=7)

    save_figure(figure, title, path)
