"""Where images come from: a local folder, or any filesystem URI fsspec knows.

``label()``, :class:`~autodistill_metaclip.EmbeddingIndex` and Ray list and read files only
through this module, so ``label("s3://bucket/photos", ...)`` works on one machine exactly as on
a cluster. fsspec rather than pyarrow: it is installed with the package already (open_clip's
huggingface_hub needs it), so local, ``file://`` and ``memory://`` need nothing more; each remote
protocol needs only its own small package (``s3fs``, ``gcsfs``, ``adlfs``), and Ray Data and
pyarrow accept fsspec filesystems as they are.

Every location is checked against the :class:`~autodistill_metaclip.inputs.policy.InputPolicy`
first. Every fsspec call (a read, a listing, a folder check) runs in a daemon thread under a
deadline (:data:`~autodistill_metaclip.inputs.urls.URL_TIMEOUT` for a file, :data:`LIST_TIMEOUT`
for a listing) and reads stop at a byte cap, whatever the protocol: a server that never answers
costs the caller its deadline, not a hang. A thread still blocked on such a server is left to
end when its socket does; at most :data:`MAX_STALLED` of them exist at once (a read that finds
none free waits within its own deadline), so hung servers cannot pile up threads or sockets.

Examples:
    >>> files = list_images("photos/", [".jpg"], recursive=True)  # doctest: +SKIP
    >>> files[0].key, files[0].location  # doctest: +SKIP
    ('holiday/beach.jpg', 'photos/holiday/beach.jpg')
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlparse
from urllib.request import url2pathname

from PIL import Image

from autodistill_metaclip.errors import ArgumentError, ImageLoadError
from autodistill_metaclip.inputs import urls
from autodistill_metaclip.inputs.files import UnreadableFile, read_capped
from autodistill_metaclip.inputs.policy import InputPolicy, in_force

IMAGE_FORMATS = (
    *("AVIF", "BMP", "DIB", "GIF", "ICO", "JPEG", "JPEG2000", "PCX", "PNG", "PPM", "QOI"),
    *("SGI", "TGA", "TIFF", "WEBP"),
)
"""The raster formats that Pillow decodes itself: the only ones listed or decoded. Never EPS
(Pillow runs Ghostscript for it) nor any plugin another package registered."""
MAX_FILE_BYTES = 512 * 1024 * 1024
"""Largest image file read (each input is read into memory once, then decoded and copied)."""
LIST_TIMEOUT = 120.0
"""Seconds for listing a remote folder (one file's read has ``urls.URL_TIMEOUT``)."""
MAX_STALLED = 32
"""Remote reads and listings that may be running at once, those given up on included."""
_CHUNK = 1 << 20
_CHANGE_KEYS = ("mtime", "LastModified", "ETag", "created")  # what fsspec backends report
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")
logger = logging.getLogger(__name__)
_SLOTS = threading.BoundedSemaphore(MAX_STALLED)
T = TypeVar("T")


class DeadlinePassed(TimeoutError):
    """A remote call did not finish within its deadline."""


@dataclass(frozen=True)
class SourceFile:
    """One listed file.

    Attributes:
        key: Its path relative to the listed folder, POSIX style (the manifest's ``image``).
        location: What to read: a local path, or a URI such as ``s3://bucket/photos/a.jpg``.
        stamp: Size and modification time; changes when the file does.
        within: For a local file, the real path of the listed folder: a link that leads out
            of it is not followed (``None``: links are followed anywhere).

    A file name that is not valid UTF-8 gets a key that is (see :func:`escape_key`).
    """

    key: str
    location: str
    stamp: str
    within: str | None = None


def escape_key(name: str) -> str:
    """Text for a file name that may hold bytes that are not UTF-8, losslessly.

    Python gives such bytes as lone surrogates (``os.fsdecode``); each becomes ``\\xNN`` and a
    backslash itself ``\\\\``, so names with neither (nearly all) are unchanged and
    :func:`unescape_key` gives the name back exactly.

    Examples:
        >>> escape_key(os.fsdecode(b"caf\\xe9.jpg"))
        'caf\\\\xe9.jpg'
    """
    if not any(c == "\\" or "\udc80" <= c <= "\udcff" for c in name):
        return name
    return "".join(
        "\\\\" if c == "\\" else f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c
        for c in name
    )


def unescape_key(key: str) -> str:
    """The file name (relative path) an escaped key stands for: ``os.fsencode`` gives its bytes."""
    return _ESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(0xDC00 + int(m[1][1:], 16)), key)


def is_uri(location: Any) -> bool:
    """A filesystem URI (``s3://``, ``gs://``, ``file://``, ``memory://``...), not http(s)."""
    return (
        isinstance(location, str)
        and bool(_URI.match(location))
        and not location.lower().startswith(("http://", "https://"))
    )


def is_folder(location: str | os.PathLike[str], policy: InputPolicy | None = None) -> bool:
    """Whether a local path or a filesystem URI names a folder (``False`` for one the policy,
    by default the one in force, refuses, or that does not answer in time)."""
    location = os.fspath(location)
    if in_force(policy).refusal(location) is not None:
        return False
    if not is_uri(location):
        return Path(location).is_dir()

    def check(deadline: float) -> bool:
        from fsspec.core import url_to_fs

        filesystem, path = url_to_fs(location)
        return bool(filesystem.isdir(path))

    try:
        return bounded(check, urls.URL_TIMEOUT)
    except Exception:
        return False


def local_path(location: str | os.PathLike[str]) -> str | None:
    """The local path of a plain path or a ``file://`` URI; ``None`` for other URIs."""
    location = os.fspath(location)
    if not is_uri(location):
        return location
    parsed = urlparse(location)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return url2pathname(parsed.path)
    return None


def join(root: str | os.PathLike[str], key: str) -> str:
    """The location of ``key`` under a listed folder or URI."""
    root = os.fspath(root)
    return f"{root.rstrip('/')}/{key}" if is_uri(root) else str(Path(root) / key)


def list_images(
    root: str | os.PathLike[str],
    extensions: Iterable[str] | None,
    *,
    recursive: bool = False,
    exclude: str | os.PathLike[str] | None = None,
    follow_links: bool = False,
    policy: InputPolicy | None = None,
) -> list[SourceFile]:
    """Files under ``root`` whose suffix is one of ``extensions``, sorted by key.

    Args:
        root: A local folder or a filesystem URI.
        extensions: Suffixes such as ``".jpg"`` (case-insensitive, dot optional); ``None``
            means every suffix of :data:`IMAGE_FORMATS`.
        recursive: Also list subfolders (local symlinked folders are not followed).
        exclude: A local folder to skip entirely, e.g. an output folder inside ``root``.
        follow_links: Read local symbolic links wherever they lead. By default a link is
            read only if it leads to a file inside ``root`` (checked when the file is opened,
            so a link swapped during a run cannot smuggle in another file); one leading out
            is reported as unreadable.
        policy: What ``root`` may be; default: the policy in force.

    Every matching local name is listed, even a broken symlink or a directory called ``x.jpg``:
    the reader reports it as unreadable rather than it silently going missing.
    """
    wanted = normalise_extensions(extensions)
    location = os.fspath(root)
    why = in_force(policy).refusal(location)
    if why is not None:
        raise ArgumentError("input_folder", f"{urls.redact(location)!r}: {why}")
    local = local_path(location)  # file:// is listed as the local folder it is
    if local is None:
        return _list_remote(location, wanted, recursive)
    return _list_local(Path(local), wanted, recursive, exclude, follow_links)


def normalise_extensions(extensions: Iterable[str] | None) -> frozenset[str]:
    """Lower-case suffixes with a dot; ``None`` means every suffix of :data:`IMAGE_FORMATS`."""
    if extensions is None:
        registered = Image.registered_extensions().items()
        return frozenset(ext for ext, kind in registered if kind in IMAGE_FORMATS)
    if isinstance(extensions, str):
        extensions = [extensions]
    normalised = set()
    for ext in extensions:
        if not isinstance(ext, str) or not ext.strip(". "):
            raise ArgumentError("extension", f"expected a suffix such as '.jpg', but got {ext!r}")
        normalised.add("." + ext.strip().lstrip(".").lower())
    return frozenset(normalised)


def read(file: SourceFile, limit: int = MAX_FILE_BYTES, policy: InputPolicy | None = None) -> bytes:
    """A listed file's whole content (local links checked against ``file.within``), if the
    policy (default: the one in force) allows its location."""
    why = in_force(policy).refusal(file.location)
    if why is not None:
        raise ImageLoadError(f"{urls.redact(file.location)!r}: {why}")
    local = local_path(file.location)
    if local is None:
        return read_bytes(file.location, limit, policy)
    return read_local(local, within=file.within, limit=limit)


def read_bytes(
    location: str, limit: int = MAX_FILE_BYTES, policy: InputPolicy | None = None
) -> bytes:
    """The whole content of a file at a URI, if the policy (default: the one in force) allows
    it: at most ``limit`` and ``urls.MAX_URL_BYTES`` bytes, within ``urls.URL_TIMEOUT``.

    Raises:
        ImageLoadError: Refused, unreadable, too large or too slow; the message says which.
    """
    shown = repr(urls.redact(location))
    why = in_force(policy).refusal(location)
    if why is not None:
        raise ImageLoadError(f"{shown}: {why}")
    limit = min(limit, urls.MAX_URL_BYTES)
    timeout = urls.URL_TIMEOUT

    def fetch(deadline: float) -> bytes:
        import fsspec

        data = bytearray()
        with fsspec.open(location, "rb") as file:
            while len(data) <= limit:
                chunk = file.read(min(_CHUNK, limit + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
                if time.monotonic() >= deadline:
                    raise DeadlinePassed()  # stop reading for a caller that has gone
        return bytes(data)

    try:
        data = bounded(fetch, timeout)
    except DeadlinePassed as e:
        raise ImageLoadError(f"{shown}: not complete within {timeout:g}s{_why(e)}") from None
    except ImportError as e:
        raise ImageLoadError(f"{shown}: {e}") from None
    except Exception as e:  # each fsspec backend raises its own kinds
        raise ImageLoadError(f"{shown}: cannot read ({type(e).__name__}: {e})") from None
    if len(data) > limit:
        raise ImageLoadError(f"{shown}: larger than {limit} bytes")
    return data


def bounded(work: Callable[[float], T], seconds: float) -> T:
    """``work(deadline)`` run in a daemon thread: its result (or its exception) if it ends
    within ``seconds``.

    A thread blocked on a server that never answers cannot be stopped; it is left to end with
    its socket, holding one of :data:`MAX_STALLED` slots until then.

    Raises:
        DeadlinePassed: ``work`` did not end in time, or no slot came free in time.
    """
    deadline = time.monotonic() + seconds
    if not _SLOTS.acquire(timeout=seconds):
        raise DeadlinePassed(f"{MAX_STALLED} earlier remote reads are still waiting on servers")
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, work(deadline)))
        except BaseException as e:
            outcome.append((False, e))
        finally:
            _SLOTS.release()

    thread = threading.Thread(target=run, name="metaclip-remote", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise DeadlinePassed()
    finished, value = outcome[0]
    if not finished:
        raise value
    return value


def _why(error: Exception) -> str:
    return f" ({error})" if str(error) else ""


def read_local(path: str, *, within: str | None = None, limit: int = MAX_FILE_BYTES) -> bytes:
    """A local regular file's content, read once through one open descriptor (the capped
    reader of :mod:`autodistill_metaclip.inputs.files`, ``within`` included).

    Raises:
        ImageLoadError: Naming the path and the problem.
    """
    try:
        data = read_capped(path, limit, within=within)
    except UnreadableFile as e:
        raise ImageLoadError(f"{path!r}: {e.problem}") from None
    if not data:
        raise ImageLoadError(f"{path!r}: the file is empty (0 bytes)")
    return data


def _list_local(
    root: Path,
    wanted: frozenset[str],
    recursive: bool,
    exclude: str | os.PathLike[str] | None,
    follow_links: bool,
) -> list[SourceFile]:
    if not root.is_dir():
        problem = "does not exist" if not root.exists() else "is not a folder"
        raise ArgumentError("input_folder", f"{str(root)!r} {problem}")
    skip = os.path.realpath(exclude) if exclude is not None else None
    within = None if follow_links else os.path.realpath(root)

    def unreadable(error: OSError) -> None:
        logger.warning("skipping unreadable folder %r: %s", error.filename, error.strerror)

    found: list[SourceFile] = []
    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        subfolders[:] = [d for d in subfolders if os.path.realpath(os.path.join(folder, d)) != skip]
        relative = os.path.relpath(folder, root)  # strings, not Paths: a million files in seconds
        prefix = "" if relative == os.curdir else relative.replace(os.sep, "/") + "/"
        for name in (*files, *subfolders):
            if os.path.splitext(name)[1].lower() in wanted:
                path = os.path.join(folder, name)
                found.append(SourceFile(escape_key(prefix + name), path, _stamp(path), within))
        if not recursive:
            break
    return sorted(found, key=lambda f: f.key)


def _stamp(path: str) -> str:
    try:
        return stamp(os.stat(path))
    except OSError:
        return "unreadable"


def stamp(info: os.stat_result) -> str:
    """A local file's :attr:`SourceFile.stamp`: its size and modification time."""
    return f"{info.st_size}:{info.st_mtime_ns}"


def _list_remote(uri: str, wanted: frozenset[str], recursive: bool) -> list[SourceFile]:
    def find(deadline: float) -> tuple[str, dict[str, Any]]:
        from fsspec.core import url_to_fs

        filesystem, base = url_to_fs(uri)
        if not filesystem.isdir(base):
            raise ArgumentError("input_folder", f"{uri!r} is not a folder")
        return base, filesystem.find(base, maxdepth=None if recursive else 1, detail=True)

    try:
        base, listing = bounded(find, LIST_TIMEOUT)
    except ArgumentError:
        raise
    except DeadlinePassed as e:
        raise ArgumentError(
            "input_folder", f"cannot list {uri!r} (not complete within {LIST_TIMEOUT:g}s{_why(e)})"
        ) from None
    except ImportError as e:
        raise ArgumentError("input_folder", f"{uri!r} needs a filesystem package: {e}") from e
    except Exception as e:  # each fsspec backend raises its own kinds
        raise ArgumentError("input_folder", f"cannot list {uri!r} ({type(e).__name__}: {e})") from e
    prefix = base.rstrip("/") + "/"
    found = []
    for path, info in listing.items():
        if PurePosixPath(path).suffix.lower() not in wanted:
            continue
        changed = next((info[k] for k in _CHANGE_KEYS if k in info), "")
        found.append(
            SourceFile(
                path.removeprefix(prefix),
                join(uri, path.removeprefix(prefix)),
                f"{info.get('size')}:{changed}",
            )
        )
    return sorted(found, key=lambda f: f.key)
