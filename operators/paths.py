"""Where each step's files go: the task instance's run folder and the published plan.

Run folders (a task's local working folder) are
``<output root>/<dag_id>/<run_id>/<task_id>[.<map_index>]``; the output root is
``$APPORTION_OUTPUT_ROOT``, else ``$AIRFLOW_HOME/apportion``. What other tasks read is stored
in the same layout under the storage root (``operators.storage``), by default the output root
itself; a DAG publishes its latest verified plan (and its front) under
``<storage root>/published/<dag_id>/``.

Every id that names a file or folder goes through ``path_component`` (here, and nowhere else):
Airflow may be configured to allow ids with ``..``, ``/``, NUL or hundreds of characters, and
none of them may steer a folder outside its root or onto another id's folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from apportion.operators.tracking import AirflowRef

OUTPUT_ROOT_ENV = "APPORTION_OUTPUT_ROOT"
PLAN_FILE = "plan.json"
FRONT_FILE = "front.json"  # the front's plans, published beside plan.json for the next run

# Longest name kept as written (bytes): room for ".<map index>" under the usual 255-byte limit.
MAX_NAME_BYTES = 200
_KEPT_PUNCTUATION = "._-="
# An ISO timestamp (Airflow's run ids end in one) as plain names write it: ``:`` and ``+`` as ``_``.
_WRITTEN_TIMESTAMP = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2})_([0-9]{2})_([0-9]{2}(?:\.[0-9]+)?)"
                                r"([_-])([0-9]{2})_([0-9]{2})(?:_([0-9]{2}(?:\.[0-9]+)?)(?![0-9A-Za-z]))?")
# What ``task_component`` appends for a mapped task instance.
_MAP_INDEX_SUFFIX = re.compile(r".*\.-?[0-9]+")


def _plain(name: str) -> str:
    """Letters, digits and ``._-=`` kept, anything else ``_`` (how folders were always named)."""
    return "".join(c if c.isalnum() or c in _KEPT_PUNCTUATION else "_" for c in name)


def _read_back(plain: str) -> str:
    """The id a plain name stands for, when the only characters it replaced were a timestamp's."""
    def timestamp(m: re.Match) -> str:
        offset_seconds = f":{m[7]}" if m[7] else ""
        return f"{m[1]}:{m[2]}:{m[3]}{'+' if m[4] == '_' else '-'}{m[5]}:{m[6]}{offset_seconds}"

    return _WRITTEN_TIMESTAMP.sub(timestamp, plain)


def _hashed(name: str) -> str:
    """``<start of the plain name>~<16 hex digits of the id's SHA-256>``: ``~`` never occurs in a
    plain name, so a hashed name never equals one (nor starts with a dot, hiding it)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{_plain(name)[:40].lstrip('.')}~{digest}"


def path_component(name: Any) -> str:
    """One safe, distinct file or folder name for an id (dag id, run id, experiment...).

    Ids of letters, digits and ``._-=``, and Airflow's run ids (``manual__2026-01-01T00:00:00+00:00``
    -> ``manual__2026-01-01T00_00_00_00_00``), keep the name they always had. Any other id (``.``,
    ``..``, empty, with ``/``, NUL or other characters, longer than ``MAX_NAME_BYTES``, or one whose
    plain name would read back as another id) gets its plain start plus a hash of the whole id, so
    no two ids share a folder and none leaves its parent.
    """
    name = str(name)
    plain = _plain(name)
    if plain not in ("", ".", "..") and _read_back(plain) == name and len(plain.encode()) <= MAX_NAME_BYTES:
        return plain
    return _hashed(name)


def task_component(task_id: Any, map_index: int = -1) -> str:
    """A task instance's folder name: ``path_component(task_id)``, plus ``.<map_index>`` when
    mapped. An unmapped task whose name ends like a map index (task ``g.1`` versus task ``g``
    mapped at 1) gets the hashed name instead."""
    name = path_component(task_id)
    if map_index != -1:
        return f"{name}.{int(map_index)}"
    return _hashed(str(task_id)) if _MAP_INDEX_SUFFIX.fullmatch(name) else name


def run_folder_path(ref: AirflowRef, root: str | Path) -> Path:
    """``root/<dag_id>/<run_id>/<task_id>[.<map_index>]``, each part a ``path_component``."""
    return Path(root) / path_component(ref.dag_id) / path_component(ref.run_id) / task_component(
        ref.task_id, ref.map_index)


def default_output_root() -> Path:
    """``$APPORTION_OUTPUT_ROOT``, else ``$AIRFLOW_HOME/apportion`` (``~/airflow/apportion``)."""
    explicit = os.environ.get(OUTPUT_ROOT_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "apportion"


def current_context(context: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """``context``, or the running task's context when none is given."""
    if context is not None:
        return context
    from airflow.sdk import get_current_context

    return get_current_context()


def run_folder(ref: AirflowRef | None = None, *, context: Mapping[str, Any] | None = None,
               output_root: str | Path | None = None) -> Path:
    """The run folder of ``ref`` (else of the current or given task instance), created if missing."""
    if ref is None:
        from apportion.operators.tracking import AirflowRef

        ref = AirflowRef.from_context(current_context(context))
    folder = run_folder_path(ref, output_root or default_output_root())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def task_folder(context: Mapping[str, Any] | None = None, output_root: str | Path | None = None) -> Path:
    """The run folder of the current (or given) task instance, created if missing."""
    return run_folder(context=context, output_root=output_root)


def published_plan_uri(dag_id: str, output_root: str | Path | None = None) -> str:
    """The stable URI the latest verified plan of ``dag_id`` is published to, in the storage
    root (``operators.storage``): ``<root>/published/<dag_id>/plan.json``."""
    from apportion.operators.storage import published_store

    return str(published_store(dag_id, output_root) / PLAN_FILE)


def published_front_uri(dag_id: str, output_root: str | Path | None = None) -> str:
    """Where ``publish_plan`` puts the front of the plan it publishes: beside plan.json."""
    from apportion.operators.storage import published_store

    return str(published_store(dag_id, output_root) / FRONT_FILE)


def plan_asset_uri(dag_id: str, output_root: str | Path | None = None) -> str:
    """The URI an ``Asset`` on the published plan names: ``published_plan_uri``."""
    return published_plan_uri(dag_id, output_root)
