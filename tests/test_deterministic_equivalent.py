"""The D = inf deterministic equivalent L_DE(N) against simulation at large D."""

import numpy as np
import pytest

from sparsescale_cli.model import theory
from sparsescale_cli.model.laws import DataLaw, Teacher
from sparsescale_cli.model.linear import LinearProblem, draw_training_set, feature_scale, seen_feature_columns


@pytest.mark.slow
def test_simulated_loss_within_three_percent_of_deterministic_equivalent():
    # alpha = 1, s = 2, D = 1e6: rank(X) is about 1770, so N = 64 and 128 are far below the peak.
    law, teacher = DataLaw(alpha=1.0, s=2.0), Teacher()
    n_features = [64, 128]
    losses = []
    # 12 draws: the standard error of the mean ratio is about 0.6%, against a 3% tolerance and a
    # finite-D excess of 1-2% (30 draws of the shipped config gave 1.011 and 1.022).
    for replicate in range(12):
        training = draw_training_set(law, teacher, 1_000_000, np.random.default_rng(replicate), teacher_seed=replicate)
        problem = LinearProblem(law, teacher, training)
        columns = seen_feature_columns(100 + replicate, training.batch.coords, max(n_features))
        row = []
        for n in n_features:
            scale = feature_scale(n, "inverse_n")
            row.append(problem.fit_features(scale * columns[:n], 0.0, scale).expected_loss)
        losses.append(row)
    ratio = np.mean(losses, axis=0) / [theory.deterministic_equivalent(law, teacher, n)[1] for n in n_features]
    for n, value in zip(n_features, ratio):
        assert abs(value - 1) < 0.03, f"N = {n}: simulation / L_DE = {value:.4f}"
