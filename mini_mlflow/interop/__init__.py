"""Interoperation with MLflow's own FileStore: ``export --format mlflow`` and ``import --format mlflow``."""

from __future__ import annotations

from ._export import ExportReport, export_mlflow
from ._import import ImportReport, import_mlflow

__all__ = ["ExportReport", "ImportReport", "export_mlflow", "import_mlflow"]
