"""The pipeline steps as plain functions over file paths.

A KFP component hands its artifact paths to one of these and copies the returned metadata onto
its output artifacts; everything else a step does (validation, training, MLflow logging, timing,
progress) is in this package, where it can be tested without Kubeflow.
"""

from dec_lib.steps.choosing import choose_member, plan_members
from dec_lib.steps.common import TrackingContext, user_errors_exit
from dec_lib.steps.dec_training import dec_train
from dec_lib.steps.evaluating import Evaluation, evaluate
from dec_lib.steps.ingesting import ingest
from dec_lib.steps.initialising import init_clusters, read_init, write_init
from dec_lib.steps.pretraining import pretrain
from dec_lib.steps.registering import register

__all__ = ["Evaluation", "TrackingContext", "choose_member", "dec_train", "evaluate", "ingest",
           "init_clusters", "plan_members", "pretrain", "read_init", "register",
           "user_errors_exit", "write_init"]
