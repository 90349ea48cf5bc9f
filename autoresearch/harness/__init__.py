"""The trust boundary: prepared data, loaders and evaluation.

Train scripts use only the public API of ``autoresearch.harness.torch`` or ``autoresearch.harness.mlx``.
This package imports neither torch nor mlx by itself.
"""
