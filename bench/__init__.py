"""Benchmarks of the transcription pipeline; results go to docs/benchmarks.md.

Run each one from the repository root as ``python -m bench.<name> --help``.
Generated audio and raw results go to ``bench/out/`` (git-ignored).
"""
