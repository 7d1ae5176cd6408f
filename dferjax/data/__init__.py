"""The data layer: media, faces, clip preparation, the record format, dataset directories, the input
pipeline and the synthetic demo set.

Host side (NumPy, OpenCV, dlib, grain). It never imports the models or the engine (an import-linter
contract in pyproject.toml): it is given numbers (sizes, counts), not a model's config.
"""
