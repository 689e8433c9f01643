"""Inference: backends (vLLM, transformers) behind one small interface, AIRV sampling
(augment, infer, reverse, vote), candidate scoring under augmentations, and the
per-task result files that make a run resumable.

Importing this package imports neither torch nor vLLM; the backends do, when built.
"""
