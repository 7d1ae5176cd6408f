"""dferjax: facial expression recognition in video clips and still images, in JAX/Flax.

The paper's model is Huang, Zhu, Li, Yang (2024); see README.md and docs/DESIGN.md. For inference from
Python::

    from dferjax import Predictor
    predictor = Predictor("runs/demo")          # a run directory (or a step directory), loaded once
    result = predictor.predict("clip.mp4")      # a video, frame folder, image, array, or a list of them
    print(result.label, result.scores)

``Predictor`` is imported on first use (``dferjax.predict``), so that ``import dferjax.data`` and the
offline tools never load JAX models.
"""

__version__ = "0.1.0"
__all__ = ["Predictor"]


def __getattr__(name: str):
    if name == "Predictor":
        from dferjax.predict import Predictor
        return Predictor
    raise AttributeError(f"module 'dferjax' has no attribute {name!r}")
