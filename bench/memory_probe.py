"""Run one linear trial in a fresh process, for a measurement of its peak memory.

Usage: ``python -m bench.memory_probe D N M [--alpha A --s S --seed SEED]``,
with M a number or ``inf``; ``N = 0`` imports the libraries and stops, which
gives the interpreter's own footprint. Prints one JSON object with the
trial's size and the process's peak resident memory (VmHWM) in bytes.
"""

from __future__ import annotations

import argparse
import json
import math


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_samples", type=int, help="D, the number of training inputs")
    parser.add_argument("n_features", type=int, help="N, the number of random features; 0 stops after the imports")
    parser.add_argument("n_coordinates", type=float, help="M, the number of latent coordinates, or inf")
    parser.add_argument("--alpha", type=float, default=1.0, help="spectral exponent alpha")
    parser.add_argument("--s", type=float, default=1.5, help="sparsity exponent s")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data draw")
    arguments = parser.parse_args()

    import numpy as np
    from threadpoolctl import threadpool_limits

    from bench.measure import peak_rss_bytes

    from sparsescale_cli.model.laws import DataLaw, Teacher
    from sparsescale_cli.model.linear import (
        INVERSE_N,
        LinearProblem,
        draw_training_set,
        feature_scale,
        seen_feature_columns,
    )

    if arguments.n_features == 0:
        print(json.dumps({"peak_rss_bytes": peak_rss_bytes()}))
        return

    law = DataLaw(alpha=arguments.alpha, s=arguments.s, c=1.0, M=arguments.n_coordinates)
    teacher = Teacher()
    with threadpool_limits(limits=1, user_api="blas"):
        training = draw_training_set(law, teacher, arguments.n_samples, np.random.default_rng(arguments.seed), 1)
        problem = LinearProblem(law, teacher, training)
        scale = feature_scale(arguments.n_features, INVERSE_N)
        columns = seen_feature_columns(2, training.batch.coords, arguments.n_features)
        fit = problem.fit_features(scale * columns, 0.0, scale)
    print(json.dumps({
        "n_coordinates": "inf" if math.isinf(law.M) else law.M,
        "n_seen": training.batch.n_seen,
        "nnz": training.batch.matrix.nnz,
        "rank": problem.data_rank,
        "loss": fit.loss,
        "peak_rss_bytes": peak_rss_bytes(),
    }))


if __name__ == "__main__":
    main()
