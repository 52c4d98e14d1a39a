"""A Griffe extension for the docs build: the package's docstrings use Sphinx roles
(``:class:`~autodistill_metaclip.MetaCLIP```) and ``::`` literal blocks; mkdocstrings renders
Markdown. Each role becomes a link to the object's page where the docs render it, else code
(autorefs' optional references never warn), and ``text::`` becomes ``text:`` before its
indented block. Loaded by ``mkdocs.yml``; the package itself is not changed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|mod|attr|exc|obj):`(~?)([^`]+)`")
LITERAL = re.compile(r"::$", re.MULTILINE)


class SphinxRoles(griffe.Extension):
    """Rewrite the docstrings of a package once it is loaded, resolving names within it."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                text = ROLE.sub(lambda m, o=obj: _reference(m, o), obj.docstring.value)
                obj.docstring.value = LITERAL.sub(":", text)


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias and member.parent is obj:
            yield from _walk(member)  # type: ignore[arg-type]


def _reference(match: re.Match[str], obj: griffe.Object) -> str:
    short, target = match[1] == "~", match[2].strip()
    title = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(target, obj)
    code = f"<code>{html.escape(title)}</code>"
    if path is None:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The canonical path of ``target`` as seen from ``obj``: itself, its parents, its
    package; ``None`` if it is not an object of the package (a standard library name)."""
    name = target.removesuffix("()")
    scope: griffe.Object | None = obj
    scopes = []
    while scope is not None:
        scopes.append(scope)
        scope = scope.parent
    for scope in scopes:
        relative = name
        if name.startswith(f"{scope.path}."):
            relative = name[len(scope.path) + 1 :]
        elif name == scope.path:
            return scope.path
        try:
            found = scope[relative]
            return found.final_target.path if found.is_alias else found.path
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
    return None
