"""The on-disk format: paths and key rules, safe file primitives, meta.yaml and store operations."""
