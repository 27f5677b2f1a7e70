"""The JAX training loop: one ``jax.jit`` call per epoch, a ``jax.lax.scan`` of steps over the batch indices.

JAX arrays are immutable, so the loop uses Keras 3's stateless API (keras-io, "Writing a training loop
from scratch in JAX"): the trainable and non-trainable values (the Sampling layer's seed state among the
latter) and the optimizer's values go in as arrays; the shared forward pass and loss
(``VaeTrainer._losses``) run inside a ``keras.StatelessScope`` mapping the Keras variables to them, as
``Layer.stateless_call`` does; ``jax.value_and_grad`` differentiates the loss and
``optimizer.stateless_apply`` returns the updated values. Between epochs they are written back into the
Keras variables, so checkpoints, evaluation and ``vae.save`` work as on TensorFlow.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import keras
import numpy as np

from pipeline.core.metrics import LOSS_NAMES
from pipeline.model.compiled import compiled
from pipeline.model.trainer import TrainConfig, VaeTrainer

State = tuple[list[jax.Array], list[jax.Array], list[jax.Array]]
"""(trainable, non-trainable, optimizer) variable values, in the order of the Keras variable lists."""


class JaxTrainer(VaeTrainer):
    """``VaeTrainer`` on JAX: the full batches and the partial last batch of an epoch in one compiled call."""

    def __init__(self, config: TrainConfig, vae: keras.Model | None = None) -> None:
        super().__init__(config, vae)
        self._epoch = compiled(self._epoch_eager)
        self._eval = compiled(self._eval_eager)

    def _variables(self) -> tuple[Sequence[keras.Variable], Sequence[keras.Variable], Sequence[keras.Variable]]:
        return self.vae.trainable_variables, self.vae.non_trainable_variables, self.optimizer.variables

    def _state(self) -> State:
        trainable, non_trainable, optimizer = self._variables()
        return ([variable.value for variable in trainable], [variable.value for variable in non_trainable],
                [variable.value for variable in optimizer])

    def _store(self, state: State) -> None:
        for variables, values in zip(self._variables(), state, strict=True):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def _stateless_losses(self, trainable: list[jax.Array], non_trainable: list[jax.Array], optimizer: list[jax.Array],
                          images: jax.Array, labels: jax.Array | None,
                          step: bool = True) -> tuple[jax.Array, tuple[jax.Array, list[jax.Array]]]:
        """``loss`` and, as auxiliary data, the four ``LOSS_NAMES`` terms (4,) and the new non-trainable values.

        The optimizer's values are mapped too, so a training ``step`` reads its β from this step's
        ``optimizer.iterations``, as the TensorFlow loop does; evaluation uses ``train.beta``."""
        variables = self._variables()
        mapping = [(variable, value) for group, values in zip(variables, (trainable, non_trainable, optimizer),
                                                              strict=True)
                   for variable, value in zip(group, values, strict=True)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            terms = self._losses(images, labels, self._step_beta() if step else None)
        non_trainable = [scope.get_current_value(variable) for variable in variables[1]]
        return terms[0], (jnp.stack(terms), non_trainable)

    def _epoch_eager(self, state: State, images: jax.Array, full: jax.Array | None, tail: jax.Array | None,
                     labels: jax.Array | None) -> tuple[State, jax.Array]:
        """Steps over the rows of ``full`` (scanned), then over ``tail``; the new state and the summed terms."""
        gradient = jax.value_and_grad(self._stateless_losses, has_aux=True)

        def step(state: State, order: jax.Array) -> tuple[State, jax.Array]:
            trainable, non_trainable, optimizer = state
            batch_labels = None if labels is None else jnp.take(labels, order, axis=0)
            (_, (terms, non_trainable)), grads = gradient(trainable, non_trainable, optimizer,
                                                          jnp.take(images, order, axis=0), batch_labels)
            trainable, optimizer = self.optimizer.stateless_apply(optimizer, grads, trainable)
            return (trainable, non_trainable, optimizer), terms

        totals = jnp.zeros(len(LOSS_NAMES))
        if full is not None:
            state, terms = jax.lax.scan(step, state, full)
            totals += jnp.sum(terms, axis=0) * full.shape[1]
        if tail is not None:
            state, terms = step(state, tail)
            totals += terms * tail.shape[0]
        return state, totals

    def _epoch_totals(self, images: jax.Array, full: np.ndarray | None, tail: np.ndarray | None,
                      labels: jax.Array | None) -> np.ndarray:
        full_rows, tail_row = (None if rows is None else jnp.asarray(rows) for rows in (full, tail))
        state, totals = self._epoch(self._state(), images, full_rows, tail_row, labels)
        self._store(state)
        return np.asarray(totals, dtype=np.float64)

    def _eval_eager(self, state: State, images: jax.Array,
                    labels: jax.Array | None) -> tuple[jax.Array, list[jax.Array]]:
        _, (terms, non_trainable) = self._stateless_losses(*state, images, labels, step=False)
        return terms, non_trainable

    def _eval_batch(self, images: jax.Array, labels: jax.Array | None) -> np.ndarray:
        terms, non_trainable = self._eval(self._state(), images, labels)
        for variable, value in zip(self.vae.non_trainable_variables, non_trainable, strict=True):
            variable.assign(value)
        return np.asarray(terms, dtype=np.float64)
