"""Entry point of the ``xcpconsole`` command.

Each command group lives in its own module with a ``register(app)`` function;
heavy imports happen inside the command bodies so ``xcpconsole --help`` is fast.
Library errors (:class:`~xcpconsole.errors.XcpConsoleError`) are printed as one
line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import os
import sys

# NumPy's OpenBLAS starts a thread per core when it loads; xcpconsole does no linear
# algebra, and one thread saves ~30 ms of every command's start (measured).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer

from ..errors import XcpConsoleError, redact

app = typer.Typer(
    name="xcpconsole",
    help="VM consoles of XenServer / XCP-ng hosts: list, tunnel, proxy, screenshot, type, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """VM consoles of XenServer / XCP-ng hosts: list, tunnel, proxy, screenshot, type, serve."""
    # A callback keeps this a command group even when only one command is registered.


#: command -> module defining it.  Typer builds the parameters of every registered
#: command at each start (through pydantic), so a run registers only the module of the
#: command it runs; ``--help`` and unknown commands register them all.
COMMANDS = {
    "sim": "sim_cmd", "demo": "demo_cmd", "serve": "web_cmd",
    "vms": "client_cmd", "consoles": "client_cmd", "proxy": "client_cmd",
    "attach": "client_cmd", "hosts": "pool_cmd",
    "info": "rfb_cmd", "screenshot": "rfb_cmd", "type": "rfb_cmd", "key": "rfb_cmd",
}


def _register(argv: list[str]) -> None:
    wanted = COMMANDS.get(argv[0]) if argv else None
    modules = [wanted] if wanted else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        module = __import__(f"{__package__}.{name}", fromlist=["register"])
        module.register(app)


def main() -> None:
    _register(sys.argv[1:])
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
