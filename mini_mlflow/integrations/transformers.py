"""Integrations: Hugging Face Transformers. A ``TrainerCallback`` (``report_to`` takes no new names).

Usage::

    from mini_mlflow.integrations.transformers import MiniMlflowCallback

    trainer = Trainer(model, args, train_dataset=data, callbacks=[MiniMlflowCallback(experiment="bert")])

``TrainingArguments`` and the model's config become params (flattened with ``/``, with
``num_parameters``); ``loss``, ``learning_rate``, ``grad_norm``, ``eval_*`` ... are logged at
``state.global_step``, by the world's process zero only; the checkpoints the Trainer keeps
(``save_total_limit``) appear in ``artifacts/checkpoints/`` as hard links and leave with them; the run
id is part of the Trainer's saved state, so ``trainer.train(resume_from_checkpoint=...)`` continues
the same run, the steps it logs again superseding the interrupted attempt's. A training that raised
(the Trainer calls no train end then) leaves the run open for the next ``train()``; at exit it ends
FAILED, even when the program caught the error (a failing program ends it by its own status).
"""

from __future__ import annotations

import os
from typing import Any

from transformers.trainer_callback import ExportableState, TrainerCallback

from ..write._run import Run, new_run_id
from ._left_open import unwatch, watch
from ._mirror import mirror_folders
from ._resume import record_resume
from ._runs import open_run
from ._safety import guarded
from ._values import as_number, flatten, log_params, safe_key

__all__ = ["MiniMlflowCallback"]

#: Folder of the run's artifacts where the kept checkpoints appear.
CHECKPOINTS = "checkpoints"


class MiniMlflowCallback(TrainerCallback, ExportableState):  # type: ignore[misc]
    """Logs a Transformers ``Trainer`` to a mini_mlflow run.

    Args:
        experiment: Experiment name or id; default the Default experiment (0).
        run_name: Name of the run; default ``TrainingArguments.run_name``.
        runs_dir: Store root; default ``set_tracking_dir``/``MINI_MLFLOW_TRACKING_DIR``/``mlruns``.
        log_checkpoints: Hard-link the checkpoints the Trainer keeps into the run.
        run_id: Continue this run; default a new one (or the one a resumed checkpoint names).
    """

    def __init__(
        self,
        experiment: str | int | None = None,
        run_name: str | None = None,
        runs_dir: str | None = None,
        log_checkpoints: bool = True,
        run_id: str | None = None,
    ) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.runs_dir = os.path.abspath(runs_dir) if runs_dir is not None else None
        self.log_checkpoints = log_checkpoints
        #: The run's id (chosen now; restored from the Trainer's state on resume).
        self.run_id = run_id or new_run_id()
        self._run_id_given = run_id is not None
        #: The open run (world process zero, between train begin and end).
        self.run: Run | None = None
        self._resuming = False
        self._keys: dict[str, str] = {}

    def state(self) -> dict[str, Any]:
        """What the Trainer keeps in ``trainer_state.json`` and gives back on resume."""
        return {
            "args": {
                "experiment": self.experiment,
                "run_name": self.run_name,
                "runs_dir": self.runs_dir,
                "log_checkpoints": self.log_checkpoints,
                "run_id": self.run_id,
            },
            "attributes": {},
        }

    def _open(self, args: Any) -> Run:
        run = self.run
        if run is None or run.status != "RUNNING":
            run = self.run = open_run(
                experiment=self.experiment,
                run_name=self.run_name or getattr(args, "run_name", None),
                run_id=self.run_id,
                runs_dir=self.runs_dir,
                tags={"mini_mlflow.framework": "transformers"},
            )
        return run

    @guarded("transformers", "starting the run")
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._adopt_saved_run(state)
        run = self._open(args)
        # The Trainer calls no on_train_end when training raises: at exit the run ends FAILED then,
        # even if the program caught the error (unless a later train() ends it first).
        watch(run, "transformers")
        params: dict[str, Any] = {}
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            params.update(flatten(config.to_dict()))
        params.update(flatten(args.to_dict()))
        if model is not None and hasattr(model, "parameters"):
            params["num_parameters"] = sum(p.numel() for p in model.parameters())
        log_params(run, params, "transformers")

    def _adopt_saved_run(self, state: Any) -> None:
        """On a resumed training, continue the run named in the checkpoint's ``trainer_state.json``.

        The Trainer gives callbacks their saved state back only with
        ``restore_callback_states_from_checkpoint=True``; the loaded ``state`` has it either way.
        """
        if state.global_step <= 0:
            return  # a fresh training
        self._resuming = True
        if self._run_id_given or self.run is not None:
            return
        saved = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        run_id = ((saved or {}).get("args") or {}).get("run_id")
        if isinstance(run_id, str) and run_id:
            self.run_id = run_id

    @guarded("transformers", "logging metrics")
    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        # Outside train() (``trainer.evaluate()`` after training, or before it) no train end will
        # come to end the run: it is opened for these logs and put back as it was.
        previous = self.run
        closed = previous is None or previous.status != "RUNNING"
        status = previous.status if previous is not None and closed else "FINISHED"
        run = self._open(args)
        step = state.global_step
        metrics = {}
        keys = self._keys
        for key, value in logs.items():
            number = as_number(value)
            if number is not None:
                name = keys.get(key)
                if name is None:
                    name = keys[key] = safe_key(key)
                metrics[name] = number
        if self._resuming:
            self._resuming = False
            record_resume(run, step - 1)
        run.log_metrics(metrics, step=step)
        if closed:
            run.end(status)

    @guarded("transformers", "linking checkpoints into the run")
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.log_checkpoints:
            self._mirror(args)

    def _mirror(self, args: Any) -> None:
        output = args.output_dir
        folders = {}
        if output and os.path.isdir(output):
            for name in os.listdir(output):
                path = os.path.join(output, name)
                if name.startswith("checkpoint-") and os.path.isdir(path):
                    folders[name] = path
        mirror_folders(self._open(args), folders, CHECKPOINTS, "transformers")

    @guarded("transformers", "ending the run")
    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        run = self.run
        if not state.is_world_process_zero or run is None or run.status != "RUNNING":
            return
        if self.log_checkpoints:
            self._mirror(args)  # the Trainer may delete checkpoints after the last save
        run.end("FINISHED")
        unwatch(run)
