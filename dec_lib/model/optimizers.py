"""Adam and momentum SGD whose update of each weight is one TensorFlow kernel.

Keras's optimizers update a weight in several element-wise passes over it and its moments. On a
CPU without XLA each pass reads and writes the whole tensor, so Adam's update was a third of a
bfloat16 pretraining epoch (BENCHMARKS.md, "The roofline"). TensorFlow's training kernels
(``ResourceApplyAdam``, ``ResourceApplyKerasMomentum``) make one pass with the same arithmetic.

The optimizers keep Keras's variables, so checkpoints and ``optimizer.variables`` are unchanged.
Under a distribution strategy Keras hands ``update_step`` the replicas' variables; there, and
for options the kernels lack (AMSGrad, Nesterov), Keras's own update runs.
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["FusedAdam", "FusedSGD"]


class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` updating each weight with ``ResourceApplyAdam``.

    Both compute ``m += (g - m)(1 - b1)``, ``v += (g^2 - v)(1 - b2)`` and
    ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``.
    """

    def update_step(self, gradient, variable, learning_rate):
        """Update ``variable`` by ``gradient``; Keras calls it once per weight and step.

        Parameters
        ----------
        gradient : tf.Tensor
            The loss's gradient for ``variable``, in any float dtype.
        variable : keras.Variable
            The weight, updated in place.
        learning_rate : tf.Tensor
            This step's learning rate.
        """
        if self.amsgrad or tf.distribute.has_strategy():
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with momentum, updating each weight with one kernel.

    Both compute ``m = momentum m - lr g`` and ``w += m``. Without momentum the update is a
    single pass already, and Keras's runs.
    """

    def update_step(self, gradient, variable, learning_rate):
        """Update ``variable`` by ``gradient``, as ``FusedAdam.update_step`` does."""
        if self.momentum == 0 or self.nesterov or tf.distribute.has_strategy():
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=self.momentums[self._get_variable_index(variable)].handle,
            lr=tf.cast(learning_rate, dtype), grad=tf.cast(gradient, dtype),
            momentum=tf.cast(self.momentum, dtype))
