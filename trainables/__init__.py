"""Data → indicators → windows → model → metrics, run as a Ray Tune trainable."""
