"""``mini_mlflow.tracking.MlflowClient``: where MLflow code looks for it (``mlflow.tracking``)."""

from .api._client import MlflowClient

__all__ = ["MlflowClient"]
