"""The model registry for the ``mini-mlflow:`` scheme: empty, and every change refused clearly.

MLflow resolves a registry store from the tracking URI when none is set, and its UI lists registered
models on every page: without this, ``mlflow server --backend-store-uri mini-mlflow:...`` fails at start
and the UI shows error banners. Model versions, aliases and prompts are not part of the native store;
use ``--registry-store-uri sqlite:///registry.db`` for a real registry beside it.
"""

from __future__ import annotations

from typing import Any, NoReturn

from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry.abstract_store import AbstractStore

from ._entities import not_supported


class MiniMlflowRegistryStore(AbstractStore):
    """Lists nothing; refuses every write with "not supported by the mini-mlflow store"."""

    def __init__(self, store_uri: str | None = None, tracking_uri: str | None = None) -> None:
        super().__init__(store_uri, tracking_uri)  # type: ignore[no-untyped-call]

    @staticmethod
    def _refuse(*_: Any, **__: Any) -> NoReturn:
        raise not_supported("The model registry (use --registry-store-uri for one)")

    def search_registered_models(self, *args: Any, **kwargs: Any) -> PagedList[Any]:
        return PagedList([], None)

    def search_model_versions(self, *args: Any, **kwargs: Any) -> PagedList[Any]:
        return PagedList([], None)

    def search_prompts(self, *args: Any, **kwargs: Any) -> PagedList[Any]:
        return PagedList([], None)

    create_registered_model = _refuse
    update_registered_model = _refuse
    rename_registered_model = _refuse
    delete_registered_model = _refuse
    get_registered_model = _refuse
    get_latest_versions = _refuse
    set_registered_model_tag = _refuse
    delete_registered_model_tag = _refuse
    create_model_version = _refuse
    update_model_version = _refuse
    transition_model_version_stage = _refuse
    delete_model_version = _refuse
    get_model_version = _refuse
    get_model_version_download_uri = _refuse
    set_model_version_tag = _refuse
    delete_model_version_tag = _refuse
    set_registered_model_alias = _refuse
    delete_registered_model_alias = _refuse
    get_model_version_by_alias = _refuse
