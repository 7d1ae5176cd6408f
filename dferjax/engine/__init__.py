"""The engine: what training, evaluation, prediction, the figures and the benchmarks share.

Below the applications (``train``, ``evaluate``, ``predict``, ``plots``, ``summary``), above the
models and the data layer (import-linter contracts in pyproject.toml):

- ``mesh``: devices, the data-parallel mesh, replicated state, global batches;
- ``steps``: optimiser and schedule, the initial model and state, jitted train and eval steps;
- ``inputs``: the configured model's inputs as the data layer's ExampleSpec, the shards of a config;
- ``evaluation``: the evaluation loop and a checkpoint's outputs on a split;
- ``checkpoints``: the run-directory layout, orbax checkpoints, loading a trained model.
"""
