"""``python -m fuzz.one NAME [libFuzzer flags] [CORPUS_DIR]``: one target under atheris.

Our modules are imported under atheris's instrumentation, so the fuzzer is guided by
the coverage of our parsers (and h11's, expat's through the stdlib it is not)."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["xcpconsole", "h11"]):
    from fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv.pop(1)
    target = TARGETS[name]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
