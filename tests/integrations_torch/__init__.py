"""The torch tier of the integration tests (Lightning, Transformers, Keras on torch): run in their own
environment by `make test-torch` (CI: .ci/run); skipped where torch is not installed."""
