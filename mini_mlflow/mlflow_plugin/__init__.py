"""The ``mini-mlflow:`` tracking-store plugin: real MLflow (its client, fluent API, autologging, server and
UI) reads and writes the native store. Loaded by MLflow through its entry points, never by
``import mini_mlflow``; it needs the ``mlflow`` extra."""
