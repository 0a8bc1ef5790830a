from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate(dataset: Input[Dataset], model: Input[Model], autoencoder: Input[Model],
             run_key: str, tracking_uri: str, experiment: str, metrics: Output[Metrics],
             confusion: Output[ClassificationMetrics], report: Output[Artifact],
             report_html: Output[HTML], report_md: Output[Markdown], figures: Output[Artifact]):
    """Score the clustering (ACC/NMI/ARI where labels exist) and draw the run's report.

    ``report`` is the JSON that ``register`` reads; ``report_html`` (figures embedded) and
    ``report_md`` show in the run's page; ``figures`` is the folder of PNGs beside report.md.
    ``autoencoder`` is read only for its pretraining losses.
    """
    import shutil

    from dec_lib.steps import TrackingContext
    from dec_lib.steps import evaluate as run_evaluate

    evaluation = run_evaluate(dataset.path, model.path, report.path,
                              TrackingContext(run_key, tracking_uri, experiment),
                              autoencoder_path=autoencoder.path, figures_dir=figures.path,
                              data_unchanged=bool(model.metadata.get("data_unchanged")),
                              data_fingerprint=dataset.metadata.get("fingerprint", ""))
    for name, value in evaluation.metrics.items():
        metrics.log_metric(name, value)
    if evaluation.confusion is not None:
        confusion.log_confusion_matrix([str(label) for label in evaluation.labels],
                                       evaluation.confusion)
    shutil.copyfile(evaluation.report_files["report.html"], report_html.path)
    shutil.copyfile(evaluation.report_files["report.md"], report_md.path)
    figures.metadata["files"] = sorted(evaluation.report_files)
