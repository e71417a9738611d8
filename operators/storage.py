"""Files every worker can reach: the storage root and what moves through it.

A task works in its local run folder (``paths.run_folder``) and keeps what other tasks read in
the storage root, ``$APPORTION_STORAGE_URL`` (any URL ``ObjectStoragePath`` takes: ``s3://``,
``gs://``, ``file://``..., with an Airflow connection as ``s3://<conn_id>@bucket/prefix``),
else ``file://<output root>``. With that default the run folder *is* the stored folder and
nothing is copied. Layout: ``<root>/<dag_id>/<run_id>/<task_id>[.<map_index>]/<file>`` and
``<root>/published/<dag_id>/<file>``, every id through ``paths.path_component``.

XComs, Asset extras and MLflow tags carry the URIs (``str`` of the ``ObjectStoragePath``);
readers go through ``fetch``/``read_json``/``local_files``. Each file is written whole or not
at all: through ``core.atomic`` (temporary name, rename) on a local file system, as one object
PUT elsewhere (an object store never shows a partial object). A folder's completion marker
(``result.json``) is stored last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from apportion.operators.paths import default_output_root, path_component, task_component

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from apportion.operators.tracking import AirflowRef

STORAGE_URL_ENV = "APPORTION_STORAGE_URL"
LOCAL_PROTOCOLS = ("file", "local")
PUBLISHED = "published"


def storage_root(output_root: str | Path | None = None) -> ObjectStoragePath:
    """``$APPORTION_STORAGE_URL``, else ``file://`` of the output root (``output_root``, else
    ``paths.default_output_root()``)."""
    from airflow.sdk import ObjectStoragePath

    url = os.environ.get(STORAGE_URL_ENV)
    if url:
        return ObjectStoragePath(url.rstrip("/"))
    return ObjectStoragePath(file_uri(output_root or default_output_root()))


def file_uri(path: str | Path) -> str:
    """``file://`` and the absolute path, unquoted: ``ObjectStoragePath`` takes the rest of the
    URL as the path as written (``Path.as_uri()`` would turn a space into a literal ``%20``)."""
    return f"file://{Path(path).resolve()}"


def task_store(ref: AirflowRef, output_root: str | Path | None = None) -> ObjectStoragePath:
    """``<root>/<dag_id>/<run_id>/<task_id>[.<map_index>]``: where a task instance keeps its files."""
    return (storage_root(output_root) / path_component(ref.dag_id) / path_component(ref.run_id)
            / task_component(ref.task_id, ref.map_index))


def task_folders(ref: AirflowRef | None = None, *, context: Any = None,
                 output_root: str | Path | None = None) -> tuple[Path, ObjectStoragePath]:
    """(local run folder, stored folder) of ``ref``, else of the current or given task instance."""
    from apportion.operators.paths import current_context, run_folder

    if ref is None:
        from apportion.operators.tracking import AirflowRef

        ref = AirflowRef.from_context(current_context(context))
    return run_folder(ref, output_root=output_root), task_store(ref, output_root)


def published_store(dag_id: str, output_root: str | Path | None = None) -> ObjectStoragePath:
    """``<root>/published/<dag_id>``: where a DAG's latest verified plan and its front live."""
    return storage_root(output_root) / PUBLISHED / path_component(dag_id)


def as_path(target: Any) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URI (or a plain local path)."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(target, ObjectStoragePath):
        return target
    text = str(target)
    return ObjectStoragePath(text if "://" in text else file_uri(text))


def is_uri(value: Any) -> bool:
    """Whether ``value`` is a string naming a file by URL (``scheme://...``)."""
    return isinstance(value, str) and "://" in value


def local_path(target: ObjectStoragePath) -> Path | None:
    """The local file behind ``target`` when its file system is the local one, else ``None``."""
    return Path(target.path) if target.protocol in LOCAL_PROTOCOLS else None


def put_file(source: str | Path, target: Any) -> str:
    """Store the local file ``source`` at ``target`` whole or not at all; returns its URI. A no-op
    when ``target`` is ``source`` itself (the default storage root)."""
    from apportion.core.atomic import copy_file

    target = as_path(target)
    local = local_path(target)
    if local is not None:
        if local.resolve() != Path(source).resolve():
            copy_file(source, local)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(source).read_bytes())  # one object, whole (files here are a few MB)
    return str(target)


def write_bytes(target: Any, data: bytes) -> str:
    """Store ``data`` at ``target`` whole or not at all; returns its URI."""
    from apportion.core import atomic

    target = as_path(target)
    local = local_path(target)
    if local is not None:
        atomic.write_bytes(local, data)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return str(target)


def write_json(target: Any, data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Store ``data`` as standard JSON (as ``core.atomic.write_json`` writes it) at ``target``."""
    import json

    text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    return write_bytes(target, text.encode("utf-8"))


def read_json(source: Any) -> Any:
    """The JSON document stored at ``source`` (a URI, a local path or an ``ObjectStoragePath``)."""
    import json

    return json.loads(as_path(source).read_bytes())


def save_folder(folder: str | Path, target: Any, names: Iterable[str], *, last: str | None = None) -> str:
    """Store the files ``names`` of the local ``folder`` under ``target`` (those missing are
    skipped), then ``last`` (a completion marker), so a reader that finds ``last`` finds every
    file. Returns the folder's URI."""
    target, folder = as_path(target), Path(folder)
    for name in [*(n for n in names if n != last), *([last] if last else [])]:
        if (folder / name).is_file():
            put_file(folder / name, target / name)
    return str(target)


def local_files_in(folder: str | Path) -> list[str]:
    """The names of the files in a local ``folder``, temporary (dot) files left out."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def fetch(source: Any, into: str | Path) -> Path:
    """A local file with the content stored at ``source``: the file itself on a local file
    system, else a copy downloaded into the folder ``into`` under the same name."""
    source = as_path(source)
    local = local_path(source)
    if local is not None:
        return local
    return download(source, Path(into) / source.name)


def download(source: Any, target: str | Path) -> Path:
    """Copy the stored file ``source`` to the local ``target``, whole or not at all."""
    from apportion.core.atomic import write_bytes as write_local

    return write_local(target, as_path(source).read_bytes())


def is_folder(stored: Any, folder: str | Path) -> bool:
    """Whether the stored folder ``stored`` is the local ``folder`` itself (the default root)."""
    local = local_path(as_path(stored))
    return local is not None and local.resolve() == Path(folder).resolve()


def fetch_folder(source: Any, into: str | Path) -> None:
    """Copy the files of the stored folder ``source`` into the local folder ``into`` (nothing
    to do when they are the same folder)."""
    source = as_path(source)
    if is_folder(source, into):
        return
    for child in source.iterdir():
        if child.is_file():
            download(child, Path(into) / child.name)


@contextmanager
def local_files(folder_uri: Any, names: Iterable[str]) -> Iterator[Path]:
    """A local folder holding the files ``names`` of the stored folder ``folder_uri``: the
    folder itself on a local file system, else a temporary copy (those missing left out),
    removed afterwards."""
    folder = as_path(folder_uri)
    local = local_path(folder)
    if local is not None:
        yield local
        return
    scratch = Path(tempfile.mkdtemp(prefix="apportion-fetch-"))
    try:
        for name in names:
            if (folder / name).exists():
                fetch(folder / name, scratch)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
