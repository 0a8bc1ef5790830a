"""The names the pipeline, its steps and the CLI share: steps, default model and experiment.

Spelled here once; the DAG's tasks, the steps' MLflow bookkeeping, the CLI's defaults and the
benchmarks read them from here. The KFP components carry the step names as their function
names, which ``tests/test_style.py`` checks against ``STEPS``.
"""

INGEST = "ingest"
PRETRAIN = "pretrain"
INIT_CLUSTERS = "init_clusters"
DEC_TRAIN = "dec_train"
EVALUATE = "evaluate"
REGISTER = "register"

PLAN_MEMBERS = "plan_members"
CHOOSE_MEMBER = "choose_member"

STEPS = (INGEST, PRETRAIN, INIT_CLUSTERS, DEC_TRAIN, EVALUATE, REGISTER)
"""The pipeline's steps in the order they run."""
MEMBER_STEPS = (PLAN_MEMBERS, CHOOSE_MEMBER)
"""The steps a pipeline of several members (``members`` > 1) adds: the first before its
members' pretraining, the second after their self-training, before evaluation."""
ALL_STEPS = (INGEST, PLAN_MEMBERS, PRETRAIN, INIT_CLUSTERS, DEC_TRAIN, CHOOSE_MEMBER, EVALUATE,
             REGISTER)
"""Every step in the order it runs, with or without members."""
LAST_STEP = STEPS[-1]
"""The step that ends the pipeline's MLflow run FINISHED."""

DEFAULT_MODEL_NAME = "dec-mnist"
"""The registered model's name unless ``--model-name`` says otherwise."""
DEFAULT_EXPERIMENT = "dec"
"""The MLflow experiment (and KFP experiment) unless ``--experiment`` says otherwise."""
