"""What every command shares: rendering (text, or ``--json``), errors in the command's own
terms, and one exit-code rule:

- 0: done, every input was read;
- 1: error: the command started and stopped (one line on stderr, ``-v`` for the traceback),
  also for an option value that only the model can judge (an unknown checkpoint);
- 2: bad usage, found before any work: an unknown option, a missing argument, a value of the
  wrong type or range, an unreadable ``--ontology`` file, an output file's missing folder;
- 3: done, but some inputs could not be read (each is listed; the others are in the output).

Text output shows every control character of a file name or message as ``\\xNN``
(:func:`printable`), so a name cannot move the cursor, recolour or retitle the terminal;
``--json`` escapes them as JSON does.

A library error that carries its argument (:class:`~autodistill_metaclip.errors.ArgumentError`)
is shown with the flag that sets that argument: the flags have the library's argument names.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from autodistill_metaclip.errors import ArgumentError, ExplainedError, MetaCLIPWarning

PARTIAL = 3
"""Exit code: the command finished, but some inputs could not be read."""
_SPOKEN = {"ontology": "the classes (-c/--class, --ontology or --examples)"}
"""Library arguments that several flags set together."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 controls (ESC among them), DEL, C1 controls, and the lone surrogates that stand for
bytes of a file name that are not UTF-8."""


def command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--json`` and ``--verbose``; render the result ``(data, text, failed inputs)``;
    turn exceptions into one-line errors in this command's terms; apply the exit-code rule."""

    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
    @click.option("-v", "--verbose", is_flag=True, help="Show library logs and full tracebacks.")
    @functools.wraps(function)
    def wrapper(*args: Any, as_json: bool, verbose: bool, **kwargs: Any) -> None:
        logging.basicConfig(
            level=logging.INFO if verbose else logging.ERROR,
            format="%(levelname)s %(name)s: %(message)s",
        )
        with warnings.catch_warnings(record=True) as caught:  # ours shown; others with -v
            warnings.simplefilter("always", MetaCLIPWarning)
            try:
                data, text, failed = function(*args, **kwargs)
            except click.ClickException:
                raise
            except Exception as e:
                if verbose:
                    raise
                click.echo(f"error: {in_cli_terms(e)}", err=True)
                sys.exit(1)
            finally:
                for warning in caught:
                    if verbose or issubclass(warning.category, MetaCLIPWarning):
                        message = printable(" ".join(str(warning.message).split()))
                        click.echo(f"warning: {message}", err=True)
        click.echo(to_json(data) if as_json else printable(text, keep="\n"))
        if failed:
            sys.exit(PARTIAL)

    return wrapper


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """Send what a library prints (e.g. Ray's cluster messages, such as a node lost) to stderr,
    so stdout holds only the command's result."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def usage() -> Iterator[None]:
    """Checks before any work: an :class:`ArgumentError` inside is a usage error (exit 2)."""
    try:
        yield
    except ArgumentError as e:
        raise click.UsageError(in_cli_terms(e)) from None


def in_cli_terms(error: BaseException) -> str:
    """An error's message on one line, with flags for the arguments it names
    (an :class:`~autodistill_metaclip.errors.ExplainedError`)."""
    if isinstance(error, ExplainedError):
        context = click.get_current_context(silent=True)
        params = {p.name: p for p in context.command.params if p.name} if context else {}
        message = error.render(
            lambda names: ", ".join(_flag(params, n.strip()) for n in names.split(",")),
            lambda name, value: _set(params, name, value),
        )
    else:
        message = str(error)
    return printable(" ".join(message.split())) or type(error).__name__


def printable(text: str, *, keep: str = "") -> str:
    r"""``text`` safe to print on a terminal: each control character (C0 such as ESC, DEL, C1)
    shown as ``\xNN``, a byte that is not UTF-8 (a lone surrogate) as ``\xNN`` too; the
    characters in ``keep`` (e.g. the newlines between lines of output) are left as they are.

    Examples:
        >>> print(printable("\x1b[31mred.png"))
        \x1b[31mred.png
    """
    return _CONTROL.sub(lambda m: m[0] if m[0] in keep else _escaped(m[0]), text)


def _escaped(character: str) -> str:
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode gives it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def _flag(params: dict[str, click.Parameter], name: str) -> str:
    param = params.get(name)
    if param is None:
        return _SPOKEN.get(name, name)
    if isinstance(param, click.Argument):
        return param.human_readable_name
    return "/".join(param.opts)


def _set(params: dict[str, click.Parameter], name: str, value: Any) -> str:
    """How to give ``name`` the value ``value`` on this command line."""
    param = params.get(name)
    if param is None:
        return f"{_SPOKEN.get(name, name)} {value!r}"
    if isinstance(param, click.Argument):
        return f"{param.human_readable_name} {value!r}"
    if value is True or value is False:
        opts = param.opts if value else param.secondary_opts or param.opts
        return opts[-1]
    return f"{param.opts[-1]} {'VALUE' if value is ... else repr(value)}"


def to_json(data: Any) -> str:
    """Strict JSON: a float that is not finite (NaN, inf) is written as null."""

    def finite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        return value

    return json.dumps(finite(data), indent=2, default=_plain, allow_nan=False)


def _plain(value: Any) -> Any:
    """numpy numbers as Python numbers; anything else as its text."""
    if hasattr(value, "item"):
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    return str(value)


class OutputFile(click.Path):
    """A file to write, checked before any work: its folder exists, its suffix fits."""

    def __init__(self, *suffixes: str) -> None:
        super().__init__(dir_okay=False)
        self.suffixes = suffixes

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        if path.suffix.lower() not in self.suffixes:
            self.fail(f"expected a file name ending in {' or '.join(self.suffixes)}", param, ctx)
        if not path.absolute().parent.is_dir():
            self.fail(f"the folder {str(path.parent)!r} does not exist", param, ctx)
        return str(path)
