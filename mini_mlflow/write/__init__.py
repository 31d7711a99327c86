"""The write path: active runs, a run's lifecycle, value checks, the buffer and the writer thread."""
