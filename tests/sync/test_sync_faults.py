"""Fault tests: the agent killed mid-upload, the server killed and restarted, 500/429 answers, bad tokens.

After every fault a rerun must leave the server's histories equal to the local ones exactly: nothing
missing, nothing twice, one remote run per local run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mini_mlflow.sync import FAULT_ENV, Credentials, MlflowRestClient, SyncError, sync

from .sync_helpers import (
    ROOT,
    assert_run_equal,
    clean_env,
    make_run,
    remote_history,
    remote_run,
    self_signed_cert,
    wait_until,
)

pytestmark = pytest.mark.timeout(240)


def sync_cli(root: Path, url: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mini_mlflow", "--root", str(root), "sync", "--all", "--to", url, *extra],
        env=clean_env(PYTHONPATH=str(ROOT), **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def remote_points(client: Any, experiment: str, key: str) -> int:
    """Points of ``key`` in the (only) run of ``experiment`` on the server; 0 while there is none."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return len(client.get_metric_history(runs[0].info.run_id, key)) if runs else 0


def test_sigkill_mid_upload_then_rerun_is_exact(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "killed", "big", points=2_500, keys=("a", "b", "c"))
    agent = sync_cli(root, mlflow_server.url)
    try:
        wait_until(
            lambda: remote_points(mlflow_client, "killed", "a") or agent.poll() is not None,
            timeout=120,
            interval=0.2,
        )
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.returncode == -signal.SIGKILL, "the upload finished before it could be killed"
    assert remote_points(mlflow_client, "killed", "c") < 2_500  # killed mid-upload: "c" is sent last
    rerun = sync_cli(root, mlflow_server.url)
    _out, err = rerun.communicate(timeout=200)
    assert rerun.returncode == 0, err
    assert_run_equal(mlflow_client, root, "killed", run)


def test_killed_after_creating_the_remote_run_before_recording_it(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "created", "created", points=50)
    first = sync_cli(root, mlflow_server.url, env={FAULT_ENV: "after_create_run"})
    first.communicate(timeout=60)
    assert first.returncode == 70  # the hook fired: the remote run exists, its id is nowhere local
    cursor = next((Path(run.run_dir) / ".sync").glob("*.json"), None)
    assert cursor is None or json.loads(cursor.read_text())["remote_run_id"] is None
    exp = mlflow_client.get_experiment_by_name("created")
    assert len(mlflow_client.search_runs([exp.experiment_id])) == 1
    second = sync_cli(root, mlflow_server.url)
    _out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert len(mlflow_client.search_runs([exp.experiment_id])) == 1  # found by its tag, not created again
    assert_run_equal(mlflow_client, root, "created", run)


def test_killed_between_acknowledgement_and_cursor_save(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "acked", "acked", points=3500)
    first = sync_cli(root, mlflow_server.url, env={FAULT_ENV: "after_batch:2"})
    first.communicate(timeout=60)
    assert first.returncode == 70
    remote = remote_run(mlflow_client, "acked", run.run_id)
    assert len(remote_history(mlflow_client, remote.info.run_id, "loss")) == 2000  # sent, not recorded
    second = sync_cli(root, mlflow_server.url, "--json")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert json.loads(out)["points"] == 3500  # resent from the last recorded offset...
    assert_run_equal(mlflow_client, root, "acked", run)  # ...and stored once


def test_server_killed_mid_sync_and_restarted(tmp_path: Path, mlflow_server: Any, mlflow_client: Any) -> None:
    root = tmp_path / "mlruns"
    run = make_run(root, "restart", "restart", points=4_000, keys=("a", "b"))
    agent = sync_cli(root, mlflow_server.url, "--retries", "2", "--timeout", "5")
    try:
        wait_until(
            lambda: remote_points(mlflow_client, "restart", "a") or agent.poll() is not None,
            timeout=120,
            interval=0.2,
        )
        mlflow_server.kill()
        _out, err = agent.communicate(timeout=120)
        assert agent.returncode == 1
        assert "error:" in err and "127.0.0.1" in err
    finally:
        if agent.poll() is None:
            agent.kill()
        if mlflow_server.proc is None or not mlflow_server.healthy():
            mlflow_server.start()  # same port, same SQLite database (and the other tests' server again)
    rerun = sync_cli(root, mlflow_server.url)
    _out, err = rerun.communicate(timeout=200)
    assert rerun.returncode == 0, err
    assert_run_equal(mlflow_client, root, "restart", run)


def test_500_and_429_answers_are_retried_to_completion(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any, make_proxy: Any
) -> None:
    def fault(n: int, method: str, path: str) -> tuple[int, dict[str, str]] | None:
        if n % 3 == 0:
            return 500, {}
        if n % 5 == 1:
            return 429, {"Retry-After": "0.2"}
        if n % 7 == 0:
            return 503, {}
        return None

    proxy = make_proxy(fault=fault)
    root = tmp_path / "mlruns"
    runs = [make_run(root, "flaky", f"r{i}", points=1200, end=None) for i in range(2)]
    runs[0].log_params({"p": 1, "q": "x"})
    runs[0].log_text("payload", "a/b.txt")
    for run in runs:
        run.end()
    client = MlflowRestClient(proxy.url, backoff_base=0.01, backoff_max=0.05, max_retries=10)
    summary = sync(proxy.url, root, all_runs=True, client=client)
    assert summary.ok, summary.errors
    assert summary.retries >= 5 and proxy.injected >= 5
    for run in runs:
        assert_run_equal(mlflow_client, root, "flaky", run)
    remote = remote_run(mlflow_client, "flaky", runs[0].run_id)
    assert [a.path for a in mlflow_client.list_artifacts(remote.info.run_id, "a")] == ["a/b.txt"]


def test_wrong_token_is_a_clear_error_and_no_secret_leaks(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any, make_proxy: Any
) -> None:
    secret = "s3cret-T0KEN-9f8e7d"
    proxy = make_proxy(token=secret)
    root = tmp_path / "mlruns"
    run = make_run(root, "authed", "authed", points=20)
    wrong = "wr0ng-T0KEN-1a2b3c"
    bad = sync_cli(root, proxy.url, env={"MLFLOW_TRACKING_TOKEN": wrong})
    out, err = bad.communicate(timeout=60)
    assert bad.returncode == 1
    assert "401" in err and "MLFLOW_TRACKING_TOKEN" in err
    assert wrong not in out + err
    good = sync_cli(root, proxy.url, env={"MLFLOW_TRACKING_TOKEN": secret})
    out2, err2 = good.communicate(timeout=60)
    assert good.returncode == 0, err2
    assert_run_equal(mlflow_client, root, "authed", run)
    assert f"Bearer {secret}" in proxy.auth_headers
    assert secret not in out2 + err2
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and wrong.encode() not in data, path
    assert secret not in repr(Credentials(token=secret))


def test_no_credentials_follow_a_redirect_to_another_host(tmp_path: Path, make_proxy: Any) -> None:
    elsewhere = make_proxy(fault=lambda n, m, p: (500, {}))
    target = elsewhere.url.replace("127.0.0.1", "localhost")
    redirecting = make_proxy(fault=lambda n, m, p: (307, {"Location": target + p}))
    root = tmp_path / "mlruns"
    make_run(root, "redir", "redir", points=2)
    client = MlflowRestClient(redirecting.url, Credentials(token="tok-123"), max_retries=0)
    summary = sync(redirecting.url, root, all_runs=True, client=client)
    assert not summary.ok
    assert "refusing to send credentials" in " ".join(summary.errors)
    assert elsewhere.count == 0


def test_bad_url_is_refused() -> None:
    with pytest.raises(SyncError, match="invalid server URL"):
        MlflowRestClient("ftp://example.org")


def test_unreachable_server_exit_1_without_traceback(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    make_run(root, "nowhere", "nowhere", points=2)
    from .sync_helpers import free_port

    proc = sync_cli(root, f"http://127.0.0.1:{free_port()}", "--retries", "1")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Connect" in err and "Traceback" not in err
    assert os.path.isdir(root)


def test_basic_auth_from_mlflow_variables(tmp_path: Path, mlflow_client: Any, make_proxy: Any) -> None:
    import base64

    proxy = make_proxy()
    root = tmp_path / "mlruns"
    run = make_run(root, "basic", "basic", points=3)
    env = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pa55-w0rd-xyz"}
    proc = sync_cli(root, proxy.url, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert set(proxy.auth_headers) == {"Basic " + base64.b64encode(b"alice:pa55-w0rd-xyz").decode()}
    assert "pa55-w0rd-xyz" not in out + err
    assert_run_equal(mlflow_client, root, "basic", run)


def test_tls_verification_ca_bundle_and_insecure_mode(
    tmp_path: Path, mlflow_client: Any, make_proxy: Any
) -> None:
    proxy = make_proxy(tls=self_signed_cert(tmp_path))
    assert proxy.url.startswith("https://")
    root = tmp_path / "mlruns"
    run = make_run(root, "tls", "tls", points=3)
    refused = sync_cli(root, proxy.url, "--retries", "0")
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in err
    trusted = sync_cli(root, proxy.url, env={"MLFLOW_TRACKING_SERVER_CERT_PATH": str(tmp_path / "cert.pem")})
    _, err = trusted.communicate(timeout=60)
    assert trusted.returncode == 0, err
    assert_run_equal(mlflow_client, root, "tls", run)
    second = make_run(root, "tls", "second", points=4)  # new work, sent without verifying the certificate
    insecure = sync_cli(root, proxy.url, "--json", env={"MLFLOW_TRACKING_INSECURE_TLS": "true"})
    out, err = insecure.communicate(timeout=60)
    assert insecure.returncode == 0, err
    assert json.loads(out)["points"] == 4
    assert_run_equal(mlflow_client, root, "tls", second)


def test_a_planted_sync_folder_link_is_refused_before_any_file_is_made(
    tmp_path: Path, mlflow_server: Any, mlflow_client: Any
) -> None:
    """A run's .sync/ planted as a symlink: no lock file or cursor appears behind it; the run is an error
    naming the link, the other run is synced, and once the link is gone the run syncs exactly."""
    root = tmp_path / "mlruns"
    planted = make_run(root, "planted-sync", "planted", points=5)
    fine = make_run(root, "planted-sync", "fine", points=5)
    outside = tmp_path / "outside"
    outside.mkdir()
    (Path(planted.run_dir) / ".sync").symlink_to(outside, target_is_directory=True)
    with MlflowRestClient(mlflow_server.url) as client:
        summary = sync(mlflow_server.url, root, all_runs=True, client=client)
    assert list(outside.iterdir()) == []
    errors = {report.run_id: report.errors for report in summary.runs}
    assert errors[fine.run_id] == []
    assert any("symbolic link" in e for e in errors[planted.run_id]), errors
    assert_run_equal(mlflow_client, root, "planted-sync", fine)
    (Path(planted.run_dir) / ".sync").unlink()
    with MlflowRestClient(mlflow_server.url) as client:
        assert sync(mlflow_server.url, root, all_runs=True, client=client).ok
    assert_run_equal(mlflow_client, root, "planted-sync", planted)
