"""The KFP components, one module each; each is a thin wrapper around ``dec_lib.steps``."""

from components.choose_member import choose_member
from components.dec_train import dec_train
from components.evaluate import evaluate
from components.ingest import ingest
from components.init_clusters import init_clusters
from components.plan_members import plan_members
from components.pretrain import pretrain
from components.register import register

__all__ = ["choose_member", "dec_train", "evaluate", "ingest", "init_clusters", "plan_members",
           "pretrain", "register"]
