"""Take the registry lock of a model in a process of its own, as `sluice promote` does.

    python lock_holder.py <model> <folder> [--host NAME] [--lease S] [--renew S] [--timeout S]
    python lock_holder.py <model> <folder> --rounds N

The first form writes ``<folder>/held`` once it holds the lock and holds it until
``<folder>/release`` exists; before letting go it prints whether it still held the lock.
``--host`` pretends to run on another host (then only its lease tells others it is alive).
The second form takes the lock N times, each time adding 1 to ``<folder>/count`` inside a
critical section that fails (exit 2) if it finds another process inside. The store is the
project's (``DVC_ROOT``) or ``MLFLOW_TRACKING_URI``, with the login from the environment.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path


def hold(args: argparse.Namespace, folder: Path) -> None:
    """Hold the lock until told to let go; say whether it was still ours at the end."""
    from sluice.errors import SluiceError
    from sluice.tracking.lock import registry_lock

    with registry_lock(args.model, timeout_s=args.timeout) as lease:
        (folder / "held").write_text(str(os.getpid()))
        while not (folder / "release").exists():
            time.sleep(0.05)
        try:
            lease.ensure()
            print("still held")
        except SluiceError as exc:
            print(f"lost: {exc}")


def count(args: argparse.Namespace, folder: Path) -> None:
    """Add 1 to the counter ``rounds`` times, each time under the lock; exit 2 on an overlap."""
    from sluice.tracking.lock import registry_lock

    inside, counter = folder / "inside", folder / "count"
    for _ in range(args.rounds):
        with registry_lock(args.model, timeout_s=args.timeout):
            try:
                inside.open("x").close()
            except FileExistsError:
                sys.exit(2)
            value = int(counter.read_text()) if counter.exists() else 0
            time.sleep(0.02)
            counter.write_text(str(value + 1))
            inside.unlink()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--host")
    parser.add_argument("--lease", type=float)
    parser.add_argument("--renew", type=float)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=0)
    args = parser.parse_args()
    if args.host:
        socket.gethostname = lambda: args.host
    from sluice.errors import SluiceError
    from sluice.tracking import lock
    from sluice.tracking.store import server_refusals, use_store

    if args.lease:  # a short lease, and a margin in proportion
        lock.LEASE_S, lock.MARGIN_S = args.lease, args.lease / 3
    lock.RENEW_EVERY_S = args.renew or lock.RENEW_EVERY_S
    use_store()
    try:
        with server_refusals(f"taking the registry lock of {args.model}"):
            count(args, args.folder) if args.rounds else hold(args, args.folder)
    except SluiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
