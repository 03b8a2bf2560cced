"""Entry point of the ``xcpconsole`` command.

Each command group lives in its own module with a ``register(app)`` function;
heavy imports happen inside the command bodies so ``xcpconsole --help`` is fast.
Library errors (:class:`~xcpconsole.errors.XcpConsoleError`) are printed as one
line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from ..errors import XcpConsoleError, redact

app = typer.Typer(
    name="xcpconsole",
    help="VM consoles of XenServer / XCP-ng hosts: list, tunnel, proxy, screenshot, type, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    from . import sim_cmd

    sim_cmd.register(app)
    for name in ("client_cmd", "rfb_cmd", "web_cmd", "demo_cmd"):
        try:
            module = __import__(f"{__package__}.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            continue
        module.register(app)


_register_all()


def main() -> None:
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except XcpConsoleError as exc:
        print(f"xcpconsole: error: {redact(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        # Usage errors of Typer's bundled click (its module is private, so duck-type them).
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise

if __name__ == "__main__":
    main()
