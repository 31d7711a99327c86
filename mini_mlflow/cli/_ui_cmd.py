"""``mini-mlflow ui``: serve the local web page over a store until Ctrl-C."""

from __future__ import annotations

import errno
import os
import sys

import click

from ._common import exits_cleanly, fail, root_of, root_option

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command("ui")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=5000,
    show_default=True,
    help="Port to listen on (0: any free port; the ready line says which).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but a loopback address lets others read the store (no login).",
)
@click.option("--read-only", is_flag=True, help="Refuse every change to the store (delete, restore).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser.")
@root_option
@click.pass_context
@exits_cleanly
def ui_cmd(ctx: click.Context, port: int, host: str, read_only: bool, open_page: bool) -> None:
    """Browse the store in a web page: runs table, run pages, compare view, live charts."""
    root = root_of(ctx)
    if not os.path.isdir(root):
        fail(f"no store at {root}: log a run first, or point --root at a store")
    from ..ui import ready_line, serve

    if host not in LOOPBACK:
        click.echo(
            f"warning: binding {host}, not 127.0.0.1: anyone who can reach this address can read the "
            "store (the page has no login)",
            err=True,
        )
    try:
        server = serve(root, host, port, read_only)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} is in use: pick another with --port N (--port 0 takes any free port)")
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    line = ready_line(server, root)
    click.echo(line)
    sys.stdout.flush()
    if open_page:
        import webbrowser

        webbrowser.open(line.split()[3])
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
