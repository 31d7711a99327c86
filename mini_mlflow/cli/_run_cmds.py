"""``mini-mlflow run`` (any script or command as a tracked run) and ``mini-mlflow doctor`` (health check).

``run`` creates the run, hands it to the child through ``MINI_MLFLOW_*`` variables (so the child's
``start_run()``/``init()``/``get_or_create_ctx()`` attach to it), shows and keeps the child's output, and
decides the final status from how the child ended.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from typing import IO, Any

import click

from .._config import ATTACH_INPUTS, ATTACH_PARAMS, ATTACH_RUN_ID, ATTACH_SECRETS_FILES
from .._errors import InvalidInputError, MiniMlflowError
from ..store._layout import MAX_TAG_VALUE_LENGTH
from ..write._run import Run
from ._common import SafePath, root_of, root_option
from ._doctor import doctor

__all__ = ["doctor", "parse_param_value", "run"]

#: Secrets shorter than this are not masked in the child's output (masking "1" would mangle every line).
MIN_MASKED_SECRET = 3
MASK = b"****"
#: Ctrl-C presses after which a child that is still running is killed.
INTERRUPTS_BEFORE_KILL = 3


def parse_param_value(text: str) -> Any:
    """Type a ``-p`` value from its text: ``5`` → 5, ``0.1`` → 0.1, ``true`` → True, ``[1,2]`` → a list,
    ``{"a":1}`` → a dict, ``null`` → None; anything else (``hello``, ``1e-3x``, ``NaN``) stays a string."""

    def refuse(name: str) -> Any:
        raise ValueError(name)  # NaN/Infinity cannot be stored as a param: keep the text

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError:
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def _assignments(values: tuple[str, ...], option: str, typed: bool) -> dict[str, Any]:
    from ..store._layout import validate_key
    from ..store._operations import param_json

    out: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} must be KEY=VALUE", param_hint=option)
        try:
            validate_key(key, "key")
            value = parse_param_value(text) if typed else text
            if typed:
                param_json(key, value)  # refuse now what the run could not store
        except InvalidInputError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
        out[key] = value
    return out


class _Redactor:
    """Replaces secret values in a byte stream with ``****``, even when one is split across reads.

    Only a tail that could be the start of a secret is held back until the next read.
    """

    def __init__(self, secrets: list[str]) -> None:
        found = {s.encode("utf-8") for s in secrets if len(s) >= MIN_MASKED_SECRET}
        self.secrets = sorted(found, key=len, reverse=True)
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        if not self.secrets:
            return data
        buf = self.pending + data
        for secret in self.secrets:
            buf = buf.replace(secret, MASK)
        hold = 0
        for size in range(min(len(buf), len(self.secrets[0]) - 1), 0, -1):
            tail = buf[-size:]
            if any(s.startswith(tail) for s in self.secrets):
                hold = size
                break
        self.pending = buf[len(buf) - hold :] if hold else b""
        return buf[: len(buf) - hold]

    def close(self) -> bytes:
        rest, self.pending = self.pending, b""
        return rest


def _pump(fd: int, sink: IO[bytes], log: IO[bytes], redactor: _Redactor) -> None:
    """Copy the child's output to our own stream (live) and to the run's artifact file."""
    sink_ok = True
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        chunk = redactor.feed(data) if data else redactor.close()
        if chunk:
            try:
                log.write(chunk)
                log.flush()
            except (OSError, ValueError):  # closed after the child ended while a grandchild still writes
                pass
            if sink_ok:
                try:
                    sink.write(chunk)
                    sink.flush()
                except (OSError, ValueError):  # our own output closed (| head): keep the artifact going
                    sink_ok = False
        if not data:
            break
    os.close(fd)


def _git_info(folder: str) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git work tree holding ``folder``; ``(None, None)`` outside one."""
    git = shutil.which("git")
    if git is None:
        from ..store._operations import _git_commit

        return _git_commit(folder), None
    try:
        head = subprocess.run(
            [git, "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            [git, "-C", folder, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return head.stdout.strip() or None, dirty


def _source_name(script: str) -> str:
    """The script relative to the working folder when inside it, else its base name (as meta.yaml has it)."""
    full = os.path.abspath(script)
    rel = os.path.relpath(full)
    return rel if not rel.startswith("..") else os.path.basename(full)


def _masked(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_MASKED_SECRET:
            text = text.replace(secret, MASK.decode())
    return text


def _child_argv(command: tuple[str, ...]) -> list[str]:
    first = command[0]
    if first.endswith(".py"):
        if not os.path.isfile(first):
            raise click.BadParameter(f"script {first!r} does not exist", param_hint="COMMAND")
        return [sys.executable, first, *command[1:]]
    if shutil.which(first) is None:
        raise click.BadParameter(f"command {first!r} not found", param_hint="COMMAND")
    return list(command)


def _status_for(returncode: int, interrupted: bool, forwarded: bool) -> str:
    if interrupted or forwarded or returncode < 0 or returncode == 128 + signal.SIGINT:
        return "KILLED"
    return "FINISHED" if returncode == 0 else "FAILED"


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "-e",
    "--experiment",
    envvar="MINI_MLFLOW_EXPERIMENT_NAME",
    help="Experiment name (created if missing; also MINI_MLFLOW_EXPERIMENT_NAME). Default: experiment 0.",
)
@click.option("-n", "--name", help="Run name.")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="A param, typed from its text."
)
@click.option("-i", "--input", "inputs", multiple=True, metavar="KEY=PATH", help="An input for get_input().")
@click.option(
    "-s",
    "--secrets",
    "secrets_files",
    multiple=True,
    type=SafePath(exists=True, dir_okay=False),
    help="KEY=value file for get_secret(); its values are masked in the output and never stored.",
)
@root_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    experiment: str | None,
    name: str | None,
    params: tuple[str, ...],
    inputs: tuple[str, ...],
    secrets_files: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Run a Python script or any command as a tracked run.

    The child's start_run()/init()/get_or_create_ctx() attach to the run; its stdout and stderr are
    shown live and kept as artifacts/stdout.txt and artifacts/stderr.txt. Exit code 0 → FINISHED,
    another code → FAILED, Ctrl-C → KILLED; the command exits with the child's code.

    \b
    Example: mini-mlflow run -e mnist -p lr=0.01 -p layers=[64,32] -- train.py --epochs 3
    """
    from ..api._context import parse_secrets_file
    from ..store._experiments import ensure_experiment, get_or_create_experiment
    from ..store._operations import update_run_meta

    typed = _assignments(params, "-p/--param", typed=True)
    input_paths = _assignments(inputs, "-i/--input", typed=False)
    secret_values: list[str] = []
    for path in secrets_files:
        try:
            secret_values.extend(parse_secrets_file(path).values())
        except InvalidInputError as exc:
            raise click.BadParameter(str(exc), param_hint="-s/--secrets") from None
    argv = _child_argv(command)
    root = os.path.abspath(root_of(ctx))
    try:
        if experiment is not None:
            experiment_id = get_or_create_experiment(root, experiment)
        else:
            experiment_id = "0"
            ensure_experiment(root, experiment_id)
        tracked = Run(experiment_id=experiment_id, name=name, runs_dir=root)
    except MiniMlflowError as exc:
        raise click.ClickException(str(exc)) from None
    script_dir = os.path.dirname(os.path.abspath(argv[1])) if argv[0] == sys.executable else os.getcwd()
    commit, dirty = _git_info(script_dir)
    source = _source_name(argv[1]) if argv[0] == sys.executable else command[0]
    update_run_meta(tracked.run_dir, source={"name": source, "git_commit": commit})
    tags: dict[str, Any] = {
        "mini_mlflow.command": _masked(shlex.join(command), secret_values)[:MAX_TAG_VALUE_LENGTH],
        "mini_mlflow.cwd": os.getcwd(),
        "mini_mlflow.python": platform.python_version(),
        "mini_mlflow.host": socket.gethostname(),
    }
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["mini_mlflow.git.commit"] = commit
    if dirty is not None:
        tags["mini_mlflow.git.dirty"] = "true" if dirty else "false"
    tracked.set_tags(tags)
    if typed:
        tracked.log_params(typed)

    env = dict(os.environ)
    env.update(
        {
            ATTACH_RUN_ID: tracked.run_id,
            "MINI_MLFLOW_TRACKING_DIR": root,
            ATTACH_PARAMS: json.dumps(typed),
            ATTACH_INPUTS: json.dumps(input_paths),
            ATTACH_SECRETS_FILES: os.pathsep.join(os.path.abspath(p) for p in secrets_files),
            "PYTHONUNBUFFERED": "1",  # the child's output is shown live, not when a pipe buffer fills
        }
    )
    if tracked._settings.sync_url and not tracked._settings.offline:
        from ..write._online import child_env

        env.update(child_env(tracked))  # this process syncs the run: the child starts no second agent
    returncode = _supervise(tracked, argv, env, secret_values)
    sys.exit(returncode)


def _supervise(tracked: Run, argv: list[str], env: dict[str, str], secrets: list[str]) -> int:
    """Run the child to its end, then end the run with the status its ending deserves."""
    from ..store._operations import artifact_dest, open_in_run

    state = {"interrupted": 0, "forwarded": 0}
    rdir = tracked.run_dir
    logs = [open_in_run(rdir, artifact_dest(rdir, None, n)) for n in ("stdout.txt", "stderr.txt")]
    try:
        try:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            click.echo(f"mini-mlflow run: cannot start {argv[0]!r}: {exc.strerror or exc}", err=True)
            tracked.set_tag("mini_mlflow.exit_code", "127")
            tracked.end("FAILED")
            return 127

        def on_interrupt(signum: int, frame: Any) -> None:
            # Ctrl-C reaches the child through the terminal's process group; the parent only notes it
            # and keeps waiting, so the child can end its own run cleanly first. A child that ignores
            # three of them is stuck: it is killed so the command can return.
            state["interrupted"] += 1
            if state["interrupted"] >= INTERRUPTS_BEFORE_KILL:
                try:
                    proc.kill()
                except OSError:
                    pass

        def on_terminate(signum: int, frame: Any) -> None:
            state["forwarded"] += 1
            try:
                proc.send_signal(signum)
            except OSError:
                pass

        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, on_interrupt),
            signal.SIGTERM: signal.signal(signal.SIGTERM, on_terminate),
        }
        if hasattr(signal, "SIGHUP"):
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_terminate)
        pumps = []
        for pipe, sink, log in ((proc.stdout, sys.stdout, logs[0]), (proc.stderr, sys.stderr, logs[1])):
            assert pipe is not None
            fd = os.dup(pipe.fileno())
            pipe.close()
            stream = getattr(sink, "buffer", sink)
            thread = threading.Thread(
                target=_pump, args=(fd, stream, log, _Redactor(secrets)), name="mini-mlflow-run-output"
            )
            thread.daemon = True
            thread.start()
            pumps.append(thread)
        try:
            returncode = proc.wait()
            for thread in pumps:
                # A grandchild may keep the pipe open after the child exits; don't wait on it forever.
                thread.join(timeout=5)
            status = _status_for(returncode, state["interrupted"] > 0, state["forwarded"] > 0)
            try:
                tracked.set_tag("mini_mlflow.exit_code", str(returncode))
                tracked.end(status)
            except (MiniMlflowError, OSError) as exc:  # the child's exit code matters more: report, go on
                click.echo(f"mini-mlflow run: could not end run {tracked.run_id}: {exc}", err=True)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        for log in logs:
            log.close()
    code = returncode if returncode >= 0 else 128 - returncode
    click.echo(f"mini-mlflow run: run {tracked.run_id} {status} (exit code {code})", err=True)
    return code
