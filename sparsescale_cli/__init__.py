"""sparsescale: scaling laws of random-feature regression on sparse inputs."""

__version__ = "0.1.0"
