"""Lightning: a logger (and its callback, for resume); checkpoints hard-linked into the run."""

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from mini_mlflow.integrations.lightning import MiniMlflowLogger


class Model(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train_loss", out["loss"])
        return out


logger = MiniMlflowLogger(experiment="lightning-example")
trainer = Trainer(
    max_steps=20,
    logger=logger,
    callbacks=[logger.callback, ModelCheckpoint(every_n_train_steps=5, save_top_k=2, monitor="train_loss")],
    log_every_n_steps=1,
    enable_progress_bar=False,
    accelerator="cpu",
)
trainer.fit(Model())
print(f"run {logger.run_id}")
# After a crash: Trainer(logger=MiniMlflowLogger(...), callbacks=[...]).fit(model, ckpt_path="...ckpt")
# continues the same run.
