"""Fixtures for the sync tests: one real ``mlflow server`` for the session (127.0.0.1, free port, SQLite
backend, artifact proxying; /health polled at start, killed at the end) and fault-injecting proxies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .sync_helpers import FaultProxy, MlflowServer


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow tracking server for the sync tests (start-up takes seconds; tests use their own
    experiment names, so they do not see each other's runs)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def mlflow_client(mlflow_server: MlflowServer) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=mlflow_server.url)


@pytest.fixture
def make_proxy(mlflow_server: MlflowServer) -> Iterator[Callable[..., FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(**kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(mlflow_server.url, **kwargs)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
