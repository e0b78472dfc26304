"""The registry lock of a registered model: one holder at a time, kept in the model's own tags.

A process that wants the lock writes a claim, the tag ``sluice.lock.<token>`` on the registered
model: JSON naming its host, pid, user, since when it asks, until when its lease runs, and a
ticket. Tickets follow Lamport's bakery algorithm: draw one above every ticket in sight (marked
``choosing`` meanwhile), then wait until no live claim is still choosing or holds a smaller
ticket. Each process writes and deletes only its own tag, and a store writes one tag atomically,
so no compare-and-set is needed (SQLite, PostgreSQL and a tracking server alike).

Permission: writing a registered model's tags needs EDIT on it, so on a tracking server with basic
auth a user who may only read the model cannot claim its lock, and so cannot block anyone.

Lease: a claim lasts LEASE_S (60 s) and a thread renews it every RENEW_EVERY_S (10 s) for as long
as the claim exists, waiting included, so a live holder is never evicted however long its
promotion takes. A claim is dead when its lease has run out, or, on this host, when its process is
gone (:func:`sluice.tracking.claims.is_dead`); whoever sees a dead claim deletes it at once. The
holder stops trusting its own lease MARGIN_S (20 s) before the end (:meth:`Lease.ensure`, called
before each write), so hosts that share a store need clocks that agree within that (NTP does).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace

from sluice.errors import SluiceError
from sluice.tracking.claims import LIVE, Claim, is_dead, new_claim, now_iso, parse_claim

log = logging.getLogger(__name__)

CLAIM_PREFIX = "sluice.lock."
LEASE_S = 60.0
RENEW_EVERY_S = 10.0
MARGIN_S = 20.0


def mlflow_cause(exc: Exception) -> str:
    """A short, one-line account of an MLflow failure."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "error_code", "")
    line = text.strip().splitlines()[0] if text.strip() else text
    return f"{code}: {line[:200]}" if code else line[:200]


def is_refusal(exc: Exception) -> bool:
    """A tracking server's 401/403: left to the CLI, which says which login lacks what."""
    status = getattr(exc, "get_http_status_code", lambda: 0)()
    return status in (401, 403)


@contextmanager
def registry_lock(name: str, timeout_s: float = 120.0) -> Iterator[Lease]:
    """Hold the registry lock of registered model ``name`` for the block; yield its lease."""
    import mlflow
    from mlflow.exceptions import MlflowException

    lease = Lease(mlflow.MlflowClient(), name)
    try:
        _acquire(lease, time.monotonic() + timeout_s)
    except MlflowException as exc:
        lease.release()
        if is_refusal(exc):
            raise
        raise SluiceError(
            f"could not take the registry lock of {name} ({mlflow_cause(exc)}); nothing was "
            "changed, try again"
        ) from None
    except BaseException:
        lease.release()
        raise
    try:
        yield lease
    finally:
        lease.release()


class Lease:
    """This process's claim on the lock of one model: written, renewed and released here."""

    def __init__(self, client, name: str) -> None:
        self.client, self.name = client, name
        self.key = f"{CLAIM_PREFIX}{uuid.uuid4().hex[:16]}"
        self.claim: Claim | None = None
        self.lost = ""
        self._write_lock = threading.Lock()  # the renewal thread and this one write one tag
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return self.key.removeprefix(CLAIM_PREFIX)

    def write(self, **changes) -> None:
        """Write this claim with ``changes`` and a lease running LEASE_S from now."""
        with self._write_lock:
            base = self.claim or new_claim(self.token)
            claim = replace(base, **changes, expires=time.time() + LEASE_S)
            self.client.set_registered_model_tag(self.name, self.key, json.dumps(asdict(claim)))
            self.claim = claim
            LIVE.add(self.token)

    def start_renewing(self) -> None:
        """Renew the lease every RENEW_EVERY_S in a daemon thread until release."""
        import mlflow

        renewer = mlflow.MlflowClient()
        self._thread = threading.Thread(target=self._renew_loop, args=(renewer,), daemon=True)
        self._thread.start()

    def _renew_loop(self, client) -> None:
        from mlflow.exceptions import MlflowException

        while not self._stop.wait(RENEW_EVERY_S):
            try:
                if self.key not in client.get_registered_model(self.name).tags:
                    self.lost = "another process took the claim for dead and deleted it"
                    return
                with self._write_lock:
                    if self._stop.is_set():
                        return
                    claim = replace(self.claim, expires=time.time() + LEASE_S)
                    client.set_registered_model_tag(self.name, self.key, json.dumps(asdict(claim)))
                    self.claim = claim
            except MlflowException as exc:  # retried next period; ensure() reports a lapse
                log.debug("could not renew the registry lock of %s: %s", self.name, exc)

    def ensure(self) -> None:
        """Raise SluiceError unless this process still surely holds the lock (before a write)."""
        left = (self.claim.expires if self.claim else 0.0) - time.time()
        if self.lost or left < MARGIN_S:
            why = self.lost or f"its lease could not be renewed ({left:.0f} s left)"
            raise SluiceError(
                f"lost the registry lock of {self.name}: {why}; nothing was changed, try again"
            )

    def release(self) -> None:
        """Stop renewing and delete this process's own claim (best effort: else it lapses)."""
        from mlflow.exceptions import MlflowException

        self._stop.set()
        with self._write_lock:
            LIVE.discard(self.token)
            if self.claim is None:
                return
            try:
                self.client.delete_registered_model_tag(self.name, self.key)
            except MlflowException as exc:
                log.warning(
                    "could not release the registry lock of %s (%s); it lapses within %.0f s",
                    self.name,
                    mlflow_cause(exc),
                    LEASE_S,
                )
            self.claim = None


def _acquire(lease: Lease, deadline: float) -> None:
    """The bakery: draw a ticket, then wait for every smaller ticket (or dead claim) to go."""
    _draw_ticket(lease)
    lease.start_renewing()
    delay = 0.05
    while True:
        claims = _read_claims(lease.client, lease.name)
        if lease.key not in claims:  # taken for dead: draw again, behind everyone
            _draw_ticket(lease)
            continue
        ahead = _claims_ahead(lease, claims)
        if not ahead:
            lease.write(held=True, since=now_iso())
            return
        if time.monotonic() > deadline:
            raise SluiceError(_busy_message(lease.name, ahead))
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def _draw_ticket(lease: Lease) -> None:
    """Say ``choosing``, read every live ticket, take one above them all."""
    lease.write(choosing=True, ticket=0, held=False, since=now_iso())
    claims = _read_claims(lease.client, lease.name)
    tickets = [c.ticket for k, c in claims.items() if k != lease.key and c is not None]
    lease.write(choosing=False, ticket=1 + max(tickets, default=0))


def _claims_ahead(lease: Lease, claims: dict[str, Claim | None]) -> list[Claim]:
    """Live claims this one must wait for, first in line first (dead ones are deleted)."""
    mine, now, ahead = lease.claim, time.time(), []
    for key, claim in claims.items():
        if key == lease.key:
            continue
        if claim is None or is_dead(claim, now):
            _break(lease, key, claim)
        elif claim.choosing or (claim.ticket, claim.token) < (mine.ticket, mine.token):
            ahead.append(claim)
    return sorted(ahead, key=lambda c: (not c.held, c.choosing, c.ticket))


def _read_claims(client, name: str) -> dict[str, Claim | None]:
    """Every claim on the lock of ``name`` (None for a tag that is not a claim)."""
    tags = client.get_registered_model(name).tags or {}
    return {k: parse_claim(v) for k, v in tags.items() if k.startswith(CLAIM_PREFIX)}


def _break(lease: Lease, key: str, claim: Claim | None) -> None:
    """Delete a dead claim (a tag write: EDIT on the model is enough, whoever wrote it)."""
    from mlflow.exceptions import MlflowException

    who = claim.describe() if claim else f"unreadable tag {key}"
    log.warning("deleting a dead process's claim on the registry lock of %s (%s)", lease.name, who)
    try:
        lease.client.delete_registered_model_tag(lease.name, key)
    except MlflowException as exc:
        if is_refusal(exc):
            raise
        log.debug("could not delete dead claim %s: %s", key, exc)


def _busy_message(name: str, ahead: list[Claim]) -> str:
    more = f"; {len(ahead) - 1} more before this one" if len(ahead) > 1 else ""
    return (
        f"the registry lock of {name} is held by {ahead[0].describe()}{more}; try again when it "
        f"is done (a holder that dies loses the lock at once on its own host, else within "
        f"{LEASE_S:.0f} s)"
    )
