"""The MLflow hook: where the tracking server is and how to log in, from an Airflow connection.

``ApportionMlflowHook`` is what the operators and steps use to reach MLflow, the way provider
operators use their hooks. The tracking URI is, in order: an explicit ``tracking_uri``,
``MLFLOW_TRACKING_URI``, or the Airflow connection ``mlflow_conn_id`` (default
``mlflow_default``, connection type ``apportion_mlflow``; any type with a host works):
``schema://host:port`` (schema defaulting to http) or an extra ``{"tracking_uri": ...}``.

The connection's login and password become ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` for the MLflow client in this process; a URI written with
``user:password@`` is split the same way. They are never kept in the URI, so no credential
reaches a log line, an XCom, a tag or a link.

The hook also bounds how long a step waits for the server (``attempts`` tries of at most
``timeout`` s each, for its reachability check and for every request of the client it makes):
an unreachable server fails a step in seconds, not after MLflow's minutes of retries.
``upload_from`` wraps a step's uploads so that every step fails with the same
``TrackingUnavailable`` line, naming the run folder that keeps its results.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from apportion.operators.tracking import TrackingUnavailable, check_reachable, without_credentials

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "mlflow_default"
CONN_TYPE = "apportion_mlflow"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
DEFAULT_ATTEMPTS = 3  # tries per request: rides out a server restart
DEFAULT_TIMEOUT = 8  # seconds per try (an int: MLflow reads MLFLOW_HTTP_REQUEST_TIMEOUT as one)
BACKOFF = 1  # seconds; the pauses between tries grow 1, 2, 4... (MLflow's backoff factor)


class TrackingNotConfigured(RuntimeError):
    """No tracking URI was given, set in ``MLFLOW_TRACKING_URI`` or found as a connection."""


class ApportionMlflowHook(BaseHook):
    """Connects to an MLflow tracking server named by an Airflow connection.

    :param mlflow_conn_id: the Airflow connection: host, port and schema (http/https) of the
        tracking server, or an extra ``tracking_uri``; login and password for a server with
        authentication.
    :param tracking_uri: an explicit URI, which wins over ``MLFLOW_TRACKING_URI`` and the connection.
    :param attempts: tries per request before a step fails (default 3).
    :param timeout: seconds each try may take (default 8, room for a busy server on a small
        machine). With the 1 s and 2 s pauses between tries, a server that never answers fails
        a step within ``attempts * timeout + 3`` seconds (27 s by default).
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Apportion MLflow"

    def __init__(self, mlflow_conn_id: str | None = DEFAULT_CONN_ID, tracking_uri: str | None = None, *,
                 attempts: int = DEFAULT_ATTEMPTS, timeout: int = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self.tracking_uri = tracking_uri
        self.attempts = _positive_int(attempts, "tracking_attempts")
        self.timeout = _positive_int(timeout, "tracking_timeout")

    @classmethod
    def get_ui_field_behaviour(cls) -> dict:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Scheme (http or https)", "login": "Username", "password": "Password"},
            "placeholders": {"host": "mlflow.internal", "port": "5000", "schema": "http",
                             "extra": '{"tracking_uri": "sqlite:////shared/mlflow.db"}'},
        }

    def _connection(self):
        """The Airflow connection, or ``None`` when it is not defined (or there is no Airflow)."""
        if not self.mlflow_conn_id:
            return None
        try:
            return self.get_connection(self.mlflow_conn_id)
        except Exception as exc:  # not defined: the caller reports what to set
            log.debug("no Airflow connection %r: %s", self.mlflow_conn_id, exc)
            return None

    def get_tracking_uri(self) -> str:
        """The tracking URI (without credentials). Logs in with the connection's login and
        password when the URI is the connection's (also when it arrives explicitly, e.g. from an
        upstream task's result) or the connection holds only credentials. Raises
        ``TrackingNotConfigured`` when there is no URI."""
        conn = self._connection()
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri and conn is None:
            raise TrackingNotConfigured(
                "no MLflow tracking URI: pass tracking_uri, set MLFLOW_TRACKING_URI, or define the Airflow "
                f"connection {self.mlflow_conn_id!r} (e.g. AIRFLOW_CONN_{str(self.mlflow_conn_id).upper()}="
                "'http://127.0.0.1:5000')"
            )
        own = _own_uri(conn) if conn is not None else None
        uri = _split_credentials(str(uri)) if uri else own
        if uri is None:
            raise TrackingNotConfigured(f"Airflow connection {conn.conn_id!r} has no host")
        if conn is not None and own in (None, uri):
            _log_in(conn)
        return uri

    def get_conn(self):
        """A ``tracking.Tracker`` (MLflow client) for the tracking server, once the server has
        answered; its requests are bounded by ``attempts`` and ``timeout``."""
        from apportion.operators.tracking import Tracker

        uri = self.get_tracking_uri()
        self._bound_client_requests()
        check_reachable(uri, attempts=self.attempts, backoff=BACKOFF, timeout=self.timeout,
                        credentials=_credentials())
        return Tracker(uri)

    @contextmanager
    def upload_from(self, folder: str | Path):
        """``get_conn()`` for a step whose results are in ``folder``: a server that does not answer,
        before or during the uploads, becomes one ``TrackingUnavailable`` naming the server and
        the folder (which a retry finds and uploads again)."""
        kept = f"results kept in {folder}, a retry uploads them"
        try:
            yield self.get_conn()
        except TrackingUnavailable as exc:
            raise TrackingUnavailable(f"{exc}; {kept}") from exc
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            uri = without_credentials(self.get_tracking_uri())
            raise TrackingUnavailable(f"MLflow tracking server {uri} stopped answering ({_first_line(exc)}); "
                                      f"{kept}") from exc

    def _bound_client_requests(self) -> None:
        """MLflow's client retries each request 7 times with growing pauses (minutes on a dead
        server); in this process it gets this hook's tries and timeout instead."""
        os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.attempts - 1),
                           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(BACKOFF),
                           "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
                           "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.timeout)})


def _positive_int(value, field: str) -> int:
    from apportion.core.errors import SpecError

    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise SpecError(field, f"must be a whole number from 1 to 100, got {value!r}")
    return value


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def is_connection_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) says the server could not be reached."""
    import requests

    while exc is not None:
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                            TimeoutError)):
            return True
        if "Max retries exceeded" in str(exc) or "Connection refused" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _split_credentials(uri: str) -> str:
    """``uri`` without its ``user:password@``, which becomes the client's credentials."""
    parts = urlsplit(uri)
    if "@" in parts.netloc and parts.scheme in ("http", "https"):
        if parts.username:
            os.environ[USERNAME_ENV] = unquote(parts.username)
        if parts.password:
            os.environ[PASSWORD_ENV] = unquote(parts.password)
            mask_secret(unquote(parts.password))  # Airflow's task log shows it as ***
    return without_credentials(uri)


def _credentials() -> tuple[str, str] | None:
    """The client's username and password (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``), if set."""
    user = os.environ.get(USERNAME_ENV)
    return (user, os.environ.get(PASSWORD_ENV, "")) if user else None


def _own_uri(conn) -> str | None:
    """The connection's tracking URI, or ``None`` when it names no server (credentials only)."""
    try:
        return connection_uri(conn)
    except TrackingNotConfigured:
        return None


def _log_in(conn) -> None:
    """The connection's login and password, for the MLflow client of this process."""
    if conn.login:
        os.environ[USERNAME_ENV] = conn.login
    if conn.password:
        os.environ[PASSWORD_ENV] = conn.password


def connection_uri(conn) -> str:
    """``schema://host:port`` from an Airflow connection (schema defaults to http), or its extra
    ``tracking_uri``; credentials in either are split off for the client (the connection's own
    login and password, if any, are then set over them)."""
    extra = getattr(conn, "extra_dejson", None) or {}
    if extra.get("tracking_uri"):
        return _split_credentials(str(extra["tracking_uri"]))
    host = (conn.host or "").rstrip("/")
    if not host:
        raise TrackingNotConfigured(f"Airflow connection {conn.conn_id!r} has no host")
    if "://" in host:
        return _split_credentials(host)
    scheme = conn.schema or ("https" if conn.conn_type == "https" else "http")
    return f"{scheme}://{host}:{conn.port}" if conn.port else f"{scheme}://{host}"


def resolve_tracking_uri(tracking_uri: str | None = None, conn_id: str | None = DEFAULT_CONN_ID) -> str:
    """The tracking URI ``ApportionMlflowHook(conn_id, tracking_uri)`` connects to."""
    return ApportionMlflowHook(conn_id, tracking_uri).get_tracking_uri()
