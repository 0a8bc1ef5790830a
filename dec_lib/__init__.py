"""Deep Embedded Clustering (Xie et al., 2016) as a plain Python + Keras library.

The library knows nothing of Kubeflow: the KFP components in ``components/`` are thin wrappers
around it, and a notebook can use it directly::

    from dec_lib import DEC, preset
    labels = DEC(preset("quick")).fit_predict(images)

``import dec_lib`` does not start TensorFlow: ``DEC`` is imported on first use.
"""

from typing import TYPE_CHECKING, Any

from dec_lib.config import RunConfig, preset
from dec_lib.errors import ConfigError, DataError, DecError, NotFittedError, TrackingError
from dec_lib.version import installed_version

if TYPE_CHECKING:
    from dec_lib.core.estimator import DEC

__version__ = installed_version()

__all__ = ["DEC", "ConfigError", "DataError", "DecError", "NotFittedError", "RunConfig",
           "TrackingError", "__version__", "preset"]


def __getattr__(name: str) -> Any:
    """``dec_lib.DEC``, imported (with TensorFlow) only when first asked for."""
    if name == "DEC":
        from dec_lib.core.estimator import DEC

        return DEC
    raise AttributeError(f"module 'dec_lib' has no attribute {name!r}")
