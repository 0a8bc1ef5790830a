"""Deep Embedded Clustering (Xie et al., 2016) as a plain Python + Keras library.

The library knows nothing of Kubeflow: the KFP components in ``components/`` are thin wrappers
around it, and a notebook can use it directly.
"""

from dec_lib.errors import ConfigError, DataError, DecError, NotFittedError, TrackingError
from dec_lib.version import installed_version

__version__ = installed_version()

__all__ = ["ConfigError", "DataError", "DecError", "NotFittedError", "TrackingError", "__version__"]
