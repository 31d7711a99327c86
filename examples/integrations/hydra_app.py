"""Hydra: `python hydra_app.py -m lr=0.01,0.1` makes a parent run and a child run per job."""

import hydra
from omegaconf import DictConfig

from mini_mlflow.integrations.hydra import current_run


@hydra.main(version_base=None, config_path="hydra_conf", config_name="config")
def train(cfg: DictConfig) -> float:
    run = current_run()  # this job's run; the composed config is already its params
    loss = 1.0
    for step in range(cfg.steps):
        loss *= 1 - cfg.lr
        run.log_metric("loss", loss, step=step)
    return loss  # logged as the metric return_value


if __name__ == "__main__":
    train()
