"""``mini_mlflow.exceptions.MlflowException``: where MLflow code looks for its error class
(``mlflow.exceptions``), so ``except mlflow.exceptions.MlflowException`` catches ours under the alias."""

from ._errors import MiniMlflowError as MlflowException

__all__ = ["MlflowException"]
