"""Transformers: a TrainerCallback; a tiny BERT built from a config (nothing downloaded)."""

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from mini_mlflow.integrations.transformers import MiniMlflowCallback


class Data(torch.utils.data.Dataset):
    def __init__(self, n=32):
        self.ids = torch.randint(1, 100, (n, 8), generator=torch.Generator().manual_seed(0))
        self.labels = self.ids[:, 0] % 2

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


config = BertConfig(
    vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
)
args = TrainingArguments(
    output_dir="bert-out",
    max_steps=6,
    logging_steps=1,
    save_steps=3,
    save_total_limit=1,
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
)
callback = MiniMlflowCallback(experiment="transformers-example")
Trainer(BertForSequenceClassification(config), args, train_dataset=Data(), callbacks=[callback]).train()
print(f"run {callback.run_id}")
