from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(dataset: Input[Dataset], model: Input[Model], run_key: str, tracking_uri: str,
             experiment: str, metrics: Output[Metrics], confusion: Output[ClassificationMetrics],
             report: Output[Artifact]):
    """Score the clustering: ACC/NMI/ARI where labels exist, label-free figures always."""
    from dec_lib.steps import TrackingContext
    from dec_lib.steps import evaluate as run_evaluate

    evaluation = run_evaluate(dataset.path, model.path, report.path,
                              TrackingContext(run_key, tracking_uri, experiment))
    for name, value in evaluation.metrics.items():
        metrics.log_metric(name, value)
    if evaluation.confusion is not None:
        confusion.log_confusion_matrix([str(label) for label in evaluation.labels],
                                       evaluation.confusion)
