"""Training: the orchestrator (`train`), the rows it learns from, fitting the network with
checkpoints and early stopping, distribution strategies and precision, and finishing the run."""

from fusionapp.training.train import train

__all__ = ["train"]
