"""Data-parallel stages: a stage with ``nproc`` > 1 re-runs itself under torchrun.

``dvc repro`` and ``python -m stages.train`` start one process, as always. When the section's
``nproc`` is above 1 and the process was not started by torchrun, that process becomes a
torchrun agent (torch's elastic launcher, what ``python -m torch.distributed.run`` runs): it
starts ``nproc`` copies of the same stage (``RANK``, ``WORLD_SIZE`` ... set), restarts them
all up to ``train.max_restarts`` times when one dies (they resume from the last checkpoint, in
the same MLflow run), and exits as they did.

One host (``train.rdzv_endpoint`` null): the rendezvous stores and gloo listen on 127.0.0.1
only, on ports the operating system picks (torch's own c10d stores would listen on every
interface: this module registers a rendezvous backend whose stores do not).

Several nodes: every node runs the stage with the same ``train.rdzv_endpoint`` and
``train.nnodes``; or runs ``torchrun`` itself (the stage then sees ``RANK`` and trains as one
of the ranks, whatever ``nproc`` says).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sluice.config import Params, TrainConfig
from sluice.errors import SluiceError, Terminated, report_errors
from sluice.io import read_json

log = logging.getLogger(__name__)

RUN_ID_TAG = "sluice.torchelastic_run_id"  # ties a restarted rank 0 to its run
LOOPBACK_RDZV = "sluice-loopback"  # c10d rendezvous with its stores on 127.0.0.1


def relaunch(section: str) -> Callable[[], bool]:
    """For ``run_stage(main, launch=relaunch("train"))``: a callable that runs the stage under
    torchrun when ``<section>.nproc`` > 1 (then returns True: the stage's work is done) and
    otherwise returns False at once (``main`` runs in this process)."""

    @report_errors
    def launch() -> bool:
        if "RANK" in os.environ:  # already one of torchrun's processes
            return False
        from sluice.tuned import load_tuned_params

        params = load_tuned_params()
        nproc = processes(params, section)
        if nproc == 1:
            return False
        _check_data_parallel(params, section, nproc)
        _run_workers(params.train, nproc, section)
        return True

    return launch


def processes(params: Params, section: str) -> int:
    """Data-parallel processes per node for ``section`` (finetune: its own or train's)."""
    if section == "finetune" and params.finetune.nproc > 0:
        return params.finetune.nproc
    return params.train.nproc


def _check_data_parallel(params: Params, section: str, nproc: int) -> None:
    """What cannot train in several processes, refused before any process starts."""
    import torch

    gpus = torch.cuda.device_count()
    on_gpus = params.train.device == "cuda" or (params.train.device == "auto" and gpus > 0)
    if on_gpus and nproc > gpus:  # one GPU per process
        raise SluiceError(
            f"{section} would run {nproc} processes on {gpus} CUDA GPU(s), one GPU each; "
            f"set {section}.nproc to at most {gpus}, or train.device: cpu"
        )
    if section != "finetune":
        return
    start = params.finetune.init_from
    if start.startswith("models:/"):  # every rank would read the registry
        raise SluiceError(
            f"finetune.init_from is a registry model ({start}) and fine-tuning has several "
            "processes; start from a folder (models/base, or download the version into one) "
            "or set finetune.nproc: 1"
        )
    spec_path = Path(start) / "model.json"
    if spec_path.exists() and int(read_json(spec_path).get("ensemble", {}).get("members", 1)) > 1:
        raise SluiceError(
            f"{start} is an ensemble, and ensemble members train in one process; "
            "set finetune.nproc: 1"
        )


def launch_config(cfg: TrainConfig, nproc: int, section: str):
    """torch's LaunchConfig for ``nproc`` processes per node: a c10d rendezvous on 127.0.0.1
    (a free port) for one host, or at ``cfg.rdzv_endpoint`` for ``cfg.nnodes`` nodes."""
    from torch.distributed.launcher.api import LaunchConfig

    here = cfg.rdzv_endpoint is None
    return LaunchConfig(
        min_nodes=cfg.nnodes,
        max_nodes=cfg.nnodes,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()) if here else f"sluice-{section}",
        role=section,
        rdzv_endpoint="127.0.0.1:0" if here else cfg.rdzv_endpoint,
        rdzv_backend=LOOPBACK_RDZV if here else "c10d",
        max_restarts=cfg.max_restarts,
        start_method="spawn",
        local_addr="127.0.0.1" if here else None,
        # When the stage is stopped (Ctrl-C, SIGTERM), processes still running this many seconds
        # after SIGTERM are killed (torch's default: 30).
        shutdown_timeout=10,
    )


def _run_workers(cfg: TrainConfig, nproc: int, section: str) -> None:
    """torchrun's agent in this process, running ``python -m stages.<section>`` ``nproc`` times."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    if cfg.rdzv_endpoint is None:  # gloo would bind the address the host name resolves to
        register_loopback_rendezvous()
        loopback = _loopback_interface()
        if loopback:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback)
    log.info("%s: %d data-parallel processes under torchrun", section, nproc)
    config = launch_config(cfg, nproc, section)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", f"stages.{section}")
    except SignalException as exc:  # the agent stopped its processes: exit as a stage does
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise Terminated(exc.sigval) from None
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        raise SluiceError(
            f"data-parallel {section} failed: rank {rank} exited with {failure.exitcode} after "
            f"{cfg.max_restarts} restart(s) (train.max_restarts); its messages are above. Fix "
            f"the cause, or set {section}.nproc: 1"
        ) from None


def _loopback_interface() -> str | None:
    """The loopback network interface's name (lo on Linux, lo0 on macOS)."""
    names = [name for _, name in socket.if_nameindex()]
    return next((n for n in names if n.startswith("lo")), None)


def register_loopback_rendezvous() -> None:
    """Make ``LOOPBACK_RDZV`` a rendezvous backend (torch's registry for custom backends)."""
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry

    rendezvous_handler_registry.register(LOOPBACK_RDZV, _loopback_handler)


def _loopback_handler(params):
    """torch's c10d rendezvous handler, its two TCP stores (the rendezvous's, and the one the
    processes share) served on 127.0.0.1 only."""
    from torch.distributed.elastic.rendezvous import dynamic_rendezvous
    from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import (
        C10dRendezvousBackend,
    )

    class LoopbackHandler(dynamic_rendezvous.DynamicRendezvousHandler):
        def _create_tcp_store_server(self, master_addr, master_port):
            return loopback_store()

        def get_backend(self) -> str:
            return LOOPBACK_RDZV

    store = loopback_store()
    backend = C10dRendezvousBackend(store, params.run_id)
    timeout = dynamic_rendezvous.RendezvousTimeout(join=timedelta(seconds=600))
    return LoopbackHandler.from_backend(
        params.run_id, store, backend, params.min_nodes, params.max_nodes, "127.0.0.1", timeout
    )


def loopback_store():
    """A TCP store server on 127.0.0.1 and a free port (a socket bound here, handed over)."""
    import torch.distributed as dist

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    store = dist.TCPStore(
        "127.0.0.1", port, is_master=True, master_listen_fd=sock.detach(), multi_tenant=True
    )
    return store


def restarted_run(experiment_id: str, role: str) -> str | None:
    """The MLflow run an earlier attempt of this torchrun job started for ``role`` (rank 0
    restarted after a process died), to go on in; None in a first attempt or outside torchrun."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    if not job or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
        return None
    import mlflow

    runs = mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{job}' and tags.`sluice.stage` = '{role}'",
        order_by=["attributes.start_time DESC"],  # a multi-node job's id may have run before
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def attempt_tags() -> dict[str, str]:
    """Tags that let a restarted rank 0 find its run (none outside torchrun)."""
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    return {RUN_ID_TAG: job} if job else {}
