"""dferjax: dynamic facial expression recognition in JAX/Flax (Huang, Zhu, Li, Yang 2024)."""

__version__ = "0.1.0"
