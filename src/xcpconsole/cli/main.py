"""Entry point of the ``xcpconsole`` command.

Each command group lives in its own module with a ``register(app)`` function;
heavy imports happen inside the command bodies so ``xcpconsole --help`` is fast.
Library errors (:class:`~xcpconsole.errors.XcpConsoleError`) and what the system
refuses (a busy port, a missing directory: :class:`OSError`) are printed as one
line on stderr with a non-zero exit code, never as a traceback; Ctrl-C and
SIGTERM exit with 130 and 143.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

# NumPy's OpenBLAS starts a thread per core when it loads; xcpconsole does no linear
# algebra, and one thread saves ~30 ms of every command's start (measured).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer
from typer.core import TyperCommand

from ..errors import XcpConsoleError, redact
from .common import Interrupted, visible

app = typer.Typer(
    name="xcpconsole",
    help="VM consoles of XenServer / XCP-ng hosts: list, tunnel, proxy, screenshot, type, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wraps at any width, never cuts an option's name
    context_settings={"help_option_names": ["-h", "--help"]},
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
    **{action: "power_cmd" for action in (
        "start", "shutdown", "reboot", "suspend", "resume", "pause", "unpause")},
}

#: a metavar for options that name none, from their type (instead of ``<str>``)
_TYPE_METAVARS = {"int": "N", "float": "NUMBER", "Path": "PATH", "str": "TEXT"}
#: ... or from the option's name, for the names every command shares
_NAME_METAVARS = {"listen": "HOST:PORT", "web_listen": "HOST:PORT", "host": "URL",
                  "fingerprint": "SHA256", "profile": "NAME", "user": "NAME",
                  "state_dir": "DIR", "log_level": "LEVEL"}


def plain_help(text: str | None) -> str | None:
    """A docstring as help text: reST's ``code`` marks dropped."""
    return re.sub(r"``(.+?)``", r"\1", text) if text else text


class HelpCommand(TyperCommand):
    """Help with real metavars: ``VM`` and ``--listen HOST:PORT``, not ``{vm} <str>``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else "[" + name + "]")  # optional
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        param: Any
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                if not param.hidden:
                    args.append((_argument_name(param), plain_help(param.help) or ""))
                continue
            if param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = _metavar(param)
            record = param.get_help_record(ctx)
            if record is not None:
                opts.append((record[0], plain_help(record[1]) or ""))
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


def _metavar(param: Any) -> str:
    name = str(param.name or "")
    kind = param.bare_type() if hasattr(param, "bare_type") else "str"
    kind = re.sub(r"^list\[(.*)\]$", r"\1", kind)
    if name in _NAME_METAVARS:
        return _NAME_METAVARS[name]
    if kind in ("int", "float") and name.endswith(("timeout", "idle", "seconds")):
        return "SECONDS"
    return _TYPE_METAVARS.get(kind, kind.upper())


def _argument_name(param: Any) -> str:
    return str(param.metavar or param.name).upper()


def _register(argv: list[str]) -> None:
    wanted = COMMANDS.get(argv[0]) if argv else None
    modules = [wanted] if wanted else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        try:
            module = __import__(f"{__package__}.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            continue  # a command group not in this build
        module.register(app)
    import inspect

    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = HelpCommand
        info.help = plain_help(info.help or inspect.getdoc(info.callback))
        if info.help and not info.short_help:  # whole, wrapped: not cut at 45 characters
            info.short_help = " ".join(info.help.split("\n\n")[0].split())


def main() -> None:
    _register(sys.argv[1:])
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except XcpConsoleError as exc:
        print(f"xcpconsole: error: {visible(redact(str(exc)))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        print(f"xcpconsole: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("\nxcpconsole: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            print("xcpconsole: interrupted (Ctrl-C)", file=sys.stderr)
            sys.exit(130)
        print("xcpconsole: aborted", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        # what the system refused (a busy port, a missing directory), not a bug of ours
        where = f": {exc.filename}" if exc.filename else ""
        print(f"xcpconsole: error: {exc.strerror or exc}{where}", file=sys.stderr)
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
