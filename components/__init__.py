"""The six KFP components, one module each; each is a thin wrapper around ``dec_lib.steps``."""

from components.dec_train import dec_train
from components.evaluate import evaluate
from components.ingest import ingest
from components.kmeans_init import kmeans_init
from components.pretrain import pretrain
from components.register import register

__all__ = ["dec_train", "evaluate", "ingest", "kmeans_init", "pretrain", "register"]
