"""Where images come from: a local folder, or any filesystem URI fsspec knows.

``label()``, :class:`~autodistill_metaclip.EmbeddingIndex` and Ray list and read files only
through this module, so ``label("s3://bucket/photos", ...)`` works on one machine exactly as on
a cluster. fsspec rather than pyarrow: it is installed with the package already (open_clip's
huggingface_hub needs it), so local, ``file://`` and ``memory://`` need nothing more; each remote
protocol needs only its own small package (``s3fs``, ``gcsfs``, ``adlfs``), and Ray Data and
pyarrow accept fsspec filesystems as they are.

Example:
    >>> files = list_images("photos/", [".jpg"], recursive=True)  # doctest: +SKIP
    >>> files[0].key, files[0].location  # doctest: +SKIP
    ('holiday/beach.jpg', 'photos/holiday/beach.jpg')
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from PIL import Image

from autodistill_metaclip.errors import ImageLoadError

IMAGE_FORMATS = (
    *("AVIF", "BMP", "DIB", "GIF", "ICO", "JPEG", "JPEG2000", "PCX", "PNG", "PPM", "QOI"),
    *("SGI", "TGA", "TIFF", "WEBP"),
)
"""The raster formats that Pillow decodes itself: the only ones listed or decoded. Never EPS
(Pillow runs Ghostscript for it) nor any plugin another package registered."""
MAX_FILE_BYTES = 512 * 1024 * 1024
"""Largest remote file read into memory (local files are decoded from disk)."""
_CHANGE_KEYS = ("mtime", "LastModified", "ETag", "created")  # what fsspec backends report
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceFile:
    """One listed file.

    Attributes:
        key: Its path relative to the listed folder, POSIX style (the manifest's ``image``).
        location: What to read: a local path, or a URI such as ``s3://bucket/photos/a.jpg``.
        stamp: Size and modification time; changes when the file does.
    """

    key: str
    location: str
    stamp: str


def is_uri(location: Any) -> bool:
    """A filesystem URI (``s3://``, ``gs://``, ``file://``, ``memory://``...), not http(s)."""
    return (
        isinstance(location, str)
        and bool(_URI.match(location))
        and not location.lower().startswith(("http://", "https://"))
    )


def is_folder(location: str | os.PathLike[str]) -> bool:
    """Whether a local path or a filesystem URI names a folder."""
    location = os.fspath(location)
    if not is_uri(location):
        return Path(location).is_dir()
    from fsspec.core import url_to_fs

    try:
        filesystem, path = url_to_fs(location)
        return bool(filesystem.isdir(path))
    except (ImportError, OSError, ValueError):
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
) -> list[SourceFile]:
    """Files under ``root`` whose suffix is one of ``extensions``, sorted by key.

    Args:
        root: A local folder or a filesystem URI.
        extensions: Suffixes such as ``".jpg"`` (case-insensitive, dot optional); ``None``
            means every suffix of :data:`IMAGE_FORMATS`.
        recursive: Also list subfolders (local symlinked folders are not followed).
        exclude: A local folder to skip entirely, e.g. an output folder inside ``root``.

    Every matching local name is listed, even a broken symlink or a directory called ``x.jpg``:
    the reader reports it as unreadable rather than it silently going missing.
    """
    wanted = normalise_extensions(extensions)
    location = os.fspath(root)
    local = local_path(location)  # file:// is listed as the local folder it is
    if local is None:
        return _list_remote(location, wanted, recursive)
    return _list_local(Path(local), wanted, recursive, exclude)


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
            raise ValueError(f"extension: expected a suffix such as '.jpg', but got {ext!r}")
        normalised.add("." + ext.strip().lstrip(".").lower())
    return frozenset(normalised)


def read_bytes(location: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The whole content of a file at a URI (or local path), at most ``limit`` bytes."""
    import fsspec

    try:
        with fsspec.open(location, "rb") as file:
            data = file.read(limit + 1)
    except ImportError as e:
        raise ImageLoadError(f"{location!r}: {e}") from None
    except (OSError, ValueError) as e:
        raise ImageLoadError(f"{location!r}: cannot read ({type(e).__name__}: {e})") from None
    if len(data) > limit:
        raise ImageLoadError(f"{location!r}: larger than {limit} bytes")
    return data


def copy_into(location: str, destination: IO[bytes]) -> None:
    """Copy a listed file's bytes into an open file."""
    if is_uri(location):
        destination.write(read_bytes(location))
        return
    with open(location, "rb") as source:
        shutil.copyfileobj(source, destination)


def _list_local(
    root: Path, wanted: frozenset[str], recursive: bool, exclude: str | os.PathLike[str] | None
) -> list[SourceFile]:
    if not root.is_dir():
        problem = "does not exist" if not root.exists() else "is not a folder"
        raise ValueError(f"input_folder: {str(root)!r} {problem}")
    skip = os.path.realpath(exclude) if exclude is not None else None

    def unreadable(error: OSError) -> None:
        logger.warning("skipping unreadable folder %r: %s", error.filename, error.strerror)

    found: list[SourceFile] = []
    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        subfolders[:] = [d for d in subfolders if os.path.realpath(os.path.join(folder, d)) != skip]
        for name in (*files, *subfolders):
            if os.path.splitext(name)[1].lower() in wanted:
                path = Path(folder, name)
                found.append(SourceFile(path.relative_to(root).as_posix(), str(path), _stamp(path)))
        if not recursive:
            break
    return sorted(found, key=lambda f: f.key)


def _stamp(path: Path) -> str:
    try:
        info = path.stat()
    except OSError:
        return "unreadable"
    return f"{info.st_size}:{info.st_mtime_ns}"


def _list_remote(uri: str, wanted: frozenset[str], recursive: bool) -> list[SourceFile]:
    from fsspec.core import url_to_fs

    try:
        filesystem, base = url_to_fs(uri)
        if not filesystem.isdir(base):
            raise ValueError(f"input_folder: {uri!r} is not a folder")
        listing = filesystem.find(base, maxdepth=None if recursive else 1, detail=True)
    except ImportError as e:
        raise ValueError(f"input_folder: {uri!r} needs a filesystem package: {e}") from e
    except OSError as e:
        raise ValueError(f"input_folder: cannot list {uri!r} ({type(e).__name__}: {e})") from e
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
