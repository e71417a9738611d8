"""The MLflow hook: where the tracking server is and how to log in, from an Airflow connection.

``ApportionMlflowHook`` is what the operators and steps use to reach MLflow, the way provider
operators use their hooks. The tracking URI is, in order: an explicit ``tracking_uri``,
``MLFLOW_TRACKING_URI``, or the Airflow connection ``mlflow_conn_id`` (default
``mlflow_default``, connection type ``apportion_mlflow``; any type with a host works):
``schema://host:port`` (schema defaulting to http) or an extra ``{"tracking_uri": ...}``.

The connection's login and password become ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` for the MLflow client in this process; they are never put into the
URI, so no credential reaches a log line, an XCom, a tag or a link.
"""

from __future__ import annotations

import logging
import os
from airflow.sdk import BaseHook

from apportion.operators.tracking import without_credentials

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "mlflow_default"
CONN_TYPE = "apportion_mlflow"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"


class TrackingNotConfigured(RuntimeError):
    """No tracking URI was given, set in ``MLFLOW_TRACKING_URI`` or found as a connection."""


class ApportionMlflowHook(BaseHook):
    """Connects to an MLflow tracking server named by an Airflow connection.

    :param mlflow_conn_id: the Airflow connection: host, port and schema (http/https) of the
        tracking server, or an extra ``tracking_uri``; login and password for a server with
        authentication.
    :param tracking_uri: an explicit URI, which wins over ``MLFLOW_TRACKING_URI`` and the connection.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Apportion MLflow"

    def __init__(self, mlflow_conn_id: str | None = DEFAULT_CONN_ID, tracking_uri: str | None = None) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self.tracking_uri = tracking_uri

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
        uri = str(uri) if uri else own
        if uri is None:
            raise TrackingNotConfigured(f"Airflow connection {conn.conn_id!r} has no host")
        if conn is not None and own in (None, without_credentials(uri)):
            _log_in(conn)
        return uri

    def get_conn(self):
        """A ``tracking.Tracker`` (MLflow client) for the tracking server."""
        from apportion.operators.tracking import Tracker

        return Tracker(self.get_tracking_uri())


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
    ``tracking_uri``; credentials in either are dropped (they travel as login and password)."""
    extra = getattr(conn, "extra_dejson", None) or {}
    if extra.get("tracking_uri"):
        return without_credentials(str(extra["tracking_uri"]))
    host = (conn.host or "").rstrip("/")
    if not host:
        raise TrackingNotConfigured(f"Airflow connection {conn.conn_id!r} has no host")
    if "://" in host:
        return without_credentials(host)
    scheme = conn.schema or ("https" if conn.conn_type == "https" else "http")
    return f"{scheme}://{host}:{conn.port}" if conn.port else f"{scheme}://{host}"


def resolve_tracking_uri(tracking_uri: str | None = None, conn_id: str | None = DEFAULT_CONN_ID) -> str:
    """The tracking URI ``ApportionMlflowHook(conn_id, tracking_uri)`` connects to."""
    return ApportionMlflowHook(conn_id, tracking_uri).get_tracking_uri()
