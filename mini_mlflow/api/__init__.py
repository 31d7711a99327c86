"""The faces: the fluent functions, ``ExperimentTracker``, ``init/log/finish`` and the run context."""
