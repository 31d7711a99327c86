"""Integrations: Lightning (``lightning.pytorch``; ``pytorch_lightning`` has its own module). A logger.

Usage::

    from mini_mlflow.integrations.lightning import MiniMlflowLogger

    logger = MiniMlflowLogger(experiment="mnist")
    trainer = Trainer(logger=logger, callbacks=[logger.callback])   # the callback: resume support
    trainer.fit(model)

What it does: hyperparameters flattened with ``/`` (long values kept whole as artifacts); metrics at
the trainer's own step; writes only on global rank zero, and ``name``/``version`` (which Lightning
reads on every rank) never open a run; ``finalize`` maps success/failure/Ctrl-C or SIGTERM to
FINISHED/FAILED/KILLED; checkpoints appear in the run's ``artifacts/checkpoints/`` as hard links (no
copy) and follow ``save_top_k`` deletions; ``trainer.fit(ckpt_path=...)`` continues the same run
(its id is in the checkpoint, kept by ``logger.callback``), and the points past the resumed step that
the interrupted attempt logged are superseded by the new ones.
"""

from __future__ import annotations

from lightning.pytorch import Callback
from lightning.pytorch.loggers.logger import Logger

from ._lightning_impl import LoggerImpl, StateImpl

__all__ = ["MiniMlflowLogger", "MiniMlflowState"]


class MiniMlflowState(StateImpl, Callback):
    """Keeps the logger's run id in checkpoints (``MiniMlflowLogger.callback``)."""


class MiniMlflowLogger(LoggerImpl, Logger):
    """A ``lightning.pytorch`` logger writing to a mini_mlflow run.

    Args:
        experiment: Experiment name or id; default the Default experiment (0).
        run_name: Name of the run.
        run_id: Continue this run; default a new id, chosen when the logger is made.
        runs_dir: Store root; default ``set_tracking_dir``/``MINI_MLFLOW_TRACKING_DIR``/``mlruns``.
        tags: Tags of the run.
        log_checkpoints: Hard-link the checkpoints Lightning keeps into ``artifacts/checkpoints/``.
        prefix: Prepended to every metric key as ``prefix/key``.
    """

    namespace = "lightning.pytorch"
    state_class = MiniMlflowState
