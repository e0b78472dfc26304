"""The MLflow adapter: where the store is, which experiment, and what every run is tagged with."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from sluice.errors import SluiceError, add_translator
from sluice.tracking.sqlite import sqlite_path, store_refused

log = logging.getLogger(__name__)

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"

# MLflow settings sluice changes unless the user set them: no usage telemetry (the pipeline makes
# no network calls of its own, and MLflow's would wait on a timeout offline), no per-file
# progress bars while MLflow re-reads a model it just logged (they drown the stage's output),
# and bounded retries: MLflow's own (7, doubling from 2 s) keep a stage whose tracking server
# died retrying each call for about four minutes; 3 from 1 s ride out a restart or a busy
# moment and fail in seconds.
WRITE_PERMISSIONS = ("EDIT", "MANAGE")  # basic-auth permissions that may create runs
_connected: dict[str, str] = {}  # the experiment :func:`connect` last returned

MLFLOW_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def project_root() -> Path:
    """The main repository: ``DVC_ROOT`` (also inside queued experiments' temp copies) or cwd."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def default_uri() -> str:
    """The SQLite store at the repository root."""
    # A generous SQLite busy timeout lets parallel queued experiments share the store.
    return f"sqlite:///{project_root() / STORE_FILE}?timeout=60"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def artifact_location() -> str | None:
    """Artifact root for new experiments of the default store (None: the server decides).

    ``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI itself, so the variable only
    counts as the user's choice when it names another store.
    """
    if tracking_uri() != default_uri():
        return None
    return (project_root() / ARTIFACT_DIR).as_uri()


def use_store() -> str:
    """Point MLflow (tracking and registry) at the store; fail fast if a server is down."""
    for name, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import mlflow

    uri = tracking_uri()
    check_reachable(uri)
    add_translator(_lost_server)
    add_translator(store_refused)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _open_sqlite_store(uri)
    return uri


def _open_sqlite_store(uri: str) -> None:
    """Create (or check) a SQLite store's tables while holding a lock on it.

    Parallel first runs (queued experiments) would otherwise all run MLflow's schema migrations
    on the same empty file and fail with "duplicate column" or "table already exists".
    """
    path = sqlite_path(uri)
    if path is None:
        return
    import mlflow

    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path.with_name(f"{path.name}-lock")):
        # Building the tracking store migrates the whole schema, registry tables included;
        # the registry store, built later, then finds every table in place.
        mlflow.MlflowClient()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, released when the block ends or the process dies."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# MLflow 3's UI opens an experiment by its kind: a model-training one on its runs (not on
# GenAI traces), so a sluice user lands where the training runs are.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def connect(experiment: str) -> str:
    """Use the store and return the id of ``experiment``, creating it on first use.

    On a tracking server, a user who may not write runs into the experiment (READ only) is
    stopped here, with one line, before a stage does any work. The id is remembered for
    :func:`run_tags` (the pipeline's parent run lives in the same experiment).
    """
    import mlflow

    uri = use_store()
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
        check_can_write(uri, experiment_id, experiment)
        if found.tags.get(EXPERIMENT_KIND_TAG) is None:  # made before sluice tagged it
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    else:
        try:
            experiment_id = client.create_experiment(
                experiment,
                artifact_location=artifact_location(),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
            )
        except mlflow.exceptions.MlflowException:  # a parallel run created it first
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    _connected["experiment_id"] = experiment_id
    return experiment_id


def connected_experiment() -> str | None:
    """The id of the experiment :func:`connect` last returned in this process (or None)."""
    return _connected.get("experiment_id")


def check_can_write(uri: str, experiment_id: str, experiment: str) -> None:
    """Raise a one-line error when the server's login may only read ``experiment``.

    Asks basic-auth's API about the user itself (the server's own modules pull in its web
    framework); a server without authentication answers 404: nothing to check."""
    from mlflow.utils.credentials import read_mlflow_creds

    user = read_mlflow_creds().username
    if urlparse(uri).scheme not in ("http", "https") or not user:
        return
    args = {"username": user, "resource_type": "experiment", "resource_id": experiment_id}
    found = _auth_get(uri, "/api/3.0/mlflow/users/permissions/get", args)
    permission = (found or {}).get("permission", "")
    if found is None or permission in WRITE_PERMISSIONS:
        return
    me = _auth_get(uri, "/api/2.0/mlflow/users/get", {"username": user}) or {}
    if me.get("user", {}).get("is_admin"):  # admins may write anywhere
        return
    action = f"writing runs in experiment '{experiment}' (it has {permission or 'none'})"
    raise SluiceError(_refusal(uri, 403, action))


def _auth_get(uri: str, path: str, params: dict[str, str]) -> dict | None:
    """The JSON of a GET to the server's authentication API (None: no such API there)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri)
    response = http_request(
        creds, path, "GET", params=params, max_retries=0, timeout=30, raise_on_status=False
    )
    if response.status_code in (401, 403):
        raise SluiceError(_refusal(uri, response.status_code))
    return response.json() if response.status_code == 200 else None


def check_reachable(uri: str, timeout_s: float = 3.0) -> None:
    """Raise a one-line error if an HTTP tracking server is down or refuses the credentials.

    One authenticated request (the cheapest search), sent with the credentials MLflow itself
    would use (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``, ...), so a
    wrong password stops a stage before it trains instead of at its first log call.
    """
    if urlparse(uri).scheme not in ("http", "https"):
        return
    refused = _connection_refused(uri, timeout_s)
    if refused:
        raise SluiceError(
            f"MLflow tracking server {uri} is not reachable ({refused}); start it "
            "(make server) or unset MLFLOW_TRACKING_URI to use the local store"
        )
    status, body = _probe(uri, timeout_s)
    if status in (401, 403):
        raise SluiceError(_refusal(uri, status))
    if status != 200:
        raise SluiceError(
            f"MLflow tracking server {uri} answered HTTP {status} ({body[:120]!r}); check the "
            "server's log, or that MLFLOW_TRACKING_URI names an MLflow server"
        )


def _connection_refused(uri: str, timeout_s: float) -> str | None:
    """Why no connection to the server of ``uri`` opens (None: one opens)."""
    parsed = urlparse(uri)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return str(exc.strerror or exc)


def _lost_server(exc: BaseException) -> SluiceError | None:
    """An MLflow call that failed because the tracking server stopped answering while a stage
    used it: one line instead of MLflow's traceback (None when the server answers: another
    failure). The run it left RUNNING is ended FAILED by the next run of the stage."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = mlflow.get_tracking_uri()
    if not isinstance(exc, MlflowException) or urlparse(uri).scheme not in ("http", "https"):
        return None
    refused = _connection_refused(uri, 3.0)
    if refused is None:
        return None
    return SluiceError(
        f"MLflow tracking server {uri} stopped answering while this stage ran ({refused}); "
        "start it again (make server), then re-run the stage: its unfinished run is then "
        "marked FAILED"
    )


def _probe(uri: str, timeout_s: float) -> tuple[int, str]:
    """Status and body of an authenticated ``experiments/search`` (one result, no retries)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            params={"max_results": 1},
            max_retries=0,
            timeout=max(timeout_s, 10.0),
            raise_on_status=False,
        )
    except MlflowException as exc:  # connection dropped, timed out, TLS refused
        cause = exc.message.splitlines()[0].rsplit("(Caused by ", 1)[-1].rstrip(")")
        raise SluiceError(
            f"MLflow tracking server {uri} did not answer ({cause[:160]}); check that it is "
            "running (make server) and that MLFLOW_TRACKING_URI names it"
        ) from None
    return response.status_code, response.text.strip()


def _refusal(uri: str, status: int, action: str | None = None) -> str:
    """The one line for an HTTP 401 (who are you?) or 403 (not allowed) from the server."""
    from mlflow.utils.credentials import read_mlflow_creds

    user = read_mlflow_creds().username  # the environment, else ~/.mlflow/credentials
    if status == 401:
        who = f"the password of user '{user}'" if user else "requests without credentials"
        return (
            f"MLflow tracking server {uri} rejected {who} (HTTP 401); set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a valid login "
            "(`make server` prints the admin's)"
        )
    return (
        f"MLflow tracking server {uri} denied user '{user}' permission (HTTP 403)"
        f"{f' for {action}' if action else ''}; ask the server's admin for EDIT (or MANAGE) "
        "permission, or use a user who has it"
    )


@contextmanager
def server_refusals(action: str) -> Iterator[None]:
    """Turn a tracking server's refusal (HTTP 401/403) inside the block into one line.

    ``action`` says what was being done, e.g. "changing registered model 'x'".
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        status = exc.get_http_status_code()
        if status not in (401, 403):
            raise
        import mlflow

        raise SluiceError(_refusal(mlflow.get_tracking_uri(), status, action)) from None


def git_commit() -> str:
    """HEAD's commit of the repository the stage runs in ('' outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
