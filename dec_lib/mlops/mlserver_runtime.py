"""The MLServer runtime of the KServe serving image: mlserver-mlflow's, with 4xx for bad input.

MLServer answers 400 only for its own error type; anything else a model raises becomes a 500.
mlserver-mlflow lets both a request it cannot decode (a shape that does not match the data) and
the model's refusal of the images (wrong size, range, dtype: an ``MlflowException`` with
``INVALID_PARAMETER_VALUE``) through as 500s, so a client could not tell its mistake from a
broken server. This runtime turns those two, and only those, into a 400 with the reason.

Imported only in the serving image (``docker/Dockerfile.serving``), where MLServer is
installed: ``MLSERVER_MODEL_IMPLEMENTATION=dec_lib.mlops.mlserver_runtime.DECRuntime``.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver_mlflow import MLflowRuntime
from mlserver_mlflow.codecs import TensorDictCodec

__all__ = ["DECRuntime"]


class DECRuntime(MLflowRuntime):
    """``mlserver_mlflow.MLflowRuntime`` whose client mistakes are 400s that say what is wrong."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """The model's answer to ``payload``, or a 400 for a request that is the client's fault.

        Raises
        ------
        mlserver.errors.InferenceError
            (a 400) for a request that cannot be decoded, or images the model refuses; any
            other error passes through as MLServer's 500.
        """
        try:
            decoded = self.decode_request(payload)
        except (ValueError, TypeError, KeyError) as error:
            raise InferenceError(f"malformed request: {error}") from error
        params = None
        if payload.parameters and payload.parameters.model_extra:
            params = payload.parameters.model_extra
        try:
            output = self._model.predict(decoded, params=params)
        except MlflowException as error:
            if error.error_code != "INVALID_PARAMETER_VALUE":
                raise
            raise InferenceError(error.message) from error
        return self.encode_response(output, default_codec=TensorDictCodec)
