"""What every command shares: rendering (text, or ``--json``), errors in the command's own
terms, and one exit-code rule:

- 0: done, every input was read;
- 1: error: the command started and stopped (one line on stderr, ``-v`` for the traceback),
  also for an option value that only the model can judge (an unknown checkpoint);
- 2: bad usage, found before any work: an unknown option, a missing argument, a value of the
  wrong type or range, an unreadable ``--ontology`` file, an output file's missing folder;
- 3: done, but some inputs could not be read (each is listed; the others are in the output).

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
                        click.echo(f"warning: {' '.join(str(warning.message).split())}", err=True)
        click.echo(to_json(data) if as_json else text)
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
    return " ".join(message.split()) or type(error).__name__


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
