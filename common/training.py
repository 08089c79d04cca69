"""The training loop every tutorial uses, correct under every tf.distribute strategy.

    with strategy.scope():
        model = build_model(config)
        model.compile(optimizer=...)       # only the optimizer is used
    training.fit(model, strategy, train_batches, validation_batches, loss=..., metrics=...,
                 epochs=..., initial_epoch=..., steps_per_epoch=..., callbacks=[...])

It calls Keras callbacks as `model.fit` does (epoch begin/end, validation between
them, the progress bar, `model.stop_training`) and writes the same logs (`loss`,
each metric, `val_` of each). Why not `model.fit` itself, measured with
TensorFlow 2.21 and Keras 3.15:

- Under `MultiWorkerMirroredStrategy`, the multi-worker engine, `fit` fails in its
  first step ("Attempt to convert a value (PerReplica...) to a Tensor"; also
  keras-team/keras#20585). The steps here run through `strategy.run`, which is how
  TensorFlow's own guides train on several machines.
- Keras' optimizer clips the gradient (`global_clipnorm`) on each replica before
  the replicas' gradients are summed, so two GPUs clip a different gradient than
  one does. `apply_gradients` below gives every replica the whole batch's gradient
  first, as one device has it.

Batch sizes are global: each replica gets its share of every batch, and the loss
of a replica's examples is divided by the whole batch's number of examples, so
that the summed gradient is the gradient of the batch's mean loss.
"""

import math
import os

import numpy as np
import keras
import tensorflow as tf

from common import machine
from common.cli import RunFailure
from common.cli import UserInputError


class NonFiniteLoss(RunFailure):
    """Training diverged: the loss is no longer a finite number, or its perplexity
    is not. Raised before anything of the epoch is saved, so the run folder keeps
    the last good one."""

    def __init__(self, where, loss, epoch=None):
        self.where, self.loss = where, loss
        at = f"epoch {epoch}, {where}" if epoch else where
        what = (f"the training loss is {loss}" if not math.isfinite(loss) else
                f"the training loss is {loss:.4g}, its perplexity beyond a float's range")
        super().__init__(f"{at}: {what}, so training stopped; the run folder keeps the "
                         "last completed epoch; try a lower --learning_rate")


def check_global_batch(batch_size, strategy, flag="--batch_size"):
    """A global batch must split evenly among the replicas (one-line error otherwise)."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserInputError(
            f"{flag}: the global batch of {batch_size} does not divide among {replicas} "
            "replicas; use a batch size or a number of GPUs (--num_gpus) or workers that divides it")


def global_clipnorm(clip_norm):
    """The `global_clipnorm` to give a Keras optimizer built in `strategy.scope()`, so
    that `apply_gradients` clips the whole batch's gradient to `clip_norm`."""
    return clip_norm / tf.distribute.get_strategy().num_replicas_in_sync


def apply_gradients(optimizer, grads, variables):
    """One optimizer step from this replica's gradients (call inside `strategy.run`).

    Keras' optimizer clips each replica's gradient and then sums them. Here every
    replica first gets the replicas' mean gradient (the same on all), so Keras
    clips that mean at `global_clipnorm(clip_norm)` = clip_norm / replicas and
    sums the replicas' equal shares back into the whole batch's gradient, clipped
    to clip_norm as on one device. It also lets a LossScaleOptimizer decide "all
    finite" from the same numbers on every replica. The cost is a second
    all-reduce of the gradients on several devices; one device has none.
    """
    replica = tf.distribute.get_replica_context()
    if replica.num_replicas_in_sync > 1:
        grads = replica.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
    optimizer.apply(grads, variables)


def use_mixed_precision(enabled):
    """--mixed_precision: float16 maths on GPUs, bfloat16 on CPUs and TPUs.

    Variables, logits and losses stay float32 (each model's last layer says
    dtype="float32"). Under mixed_float16, `model.compile` wraps the optimizer in
    Keras' LossScaleOptimizer, which scales the loss so that small float16
    gradients do not flush to zero. On a CPU, bfloat16 pays only where the CPU
    has bfloat16 dot products (machine.bfloat16_dot_products) and oneDNN is on;
    elsewhere the flag is refused, in one line that says why.
    """
    if not enabled:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    if tf.config.list_logical_devices("GPU"):
        policy = "mixed_float16"
    else:
        if not tf.config.list_logical_devices("TPU"):
            check_cpu_bfloat16()
        policy = "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    print(f"Mixed precision: {policy}.", flush=True)
    return policy


def check_cpu_bfloat16():
    """Refuses --mixed_precision on a CPU where bfloat16 would be slower than float32."""
    if not machine.bfloat16_dot_products():
        raise UserInputError(
            f"--mixed_precision: this CPU ({machine.describe_cpu()}) has no bfloat16 dot "
            "products (AVX512_BF16 or AMX), so bfloat16 would train slower than float32; "
            "leave the flag off")
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false"):
        raise UserInputError(
            "--mixed_precision: TF_ENABLE_ONEDNN_OPTS=0 turns off oneDNN, whose bfloat16 "
            "products are what make bfloat16 pay on a CPU; unset it or leave the flag off")


# ----------------------------------------------------------------------------
# Steps


def is_one_cpu_replica(strategy):
    """True when `strategy` runs one replica and no GPU is visible: then XLA may
    compile a whole training step, fusing an RNN's many small per-step operations.

    Not on GPUs, where Keras' LSTM and GRU run cuDNN kernels that XLA cannot
    compile, and not with several replicas: there the step reads variables
    mirrored on other devices, which a compiled step cannot reach.
    """
    return strategy.num_replicas_in_sync == 1 and not tf.config.list_logical_devices("GPU")




def replicated_step(strategy, replica_step, jit_compile=False):
    """`replica_step` run on every replica, as one tf.function:

        total, *rest = step(*args)

    `replica_step` returns a tuple; its first element is summed over the
    replicas, the others stay per replica (under several replicas, PerReplica
    values, such as PTB's LSTM state). jit_compile: compile each replica's step
    with XLA (valid where `is_one_cpu_replica`).
    """
    if jit_compile:
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def step(*args):
        total, *rest = strategy.run(replica_step, args=args)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None), *rest)
    return step


class _Steps:
    """The compiled training and evaluation steps of one model under one strategy."""

    def __init__(self, model, strategy, loss, metrics, jit_compile):
        self.model, self.strategy, self.loss, self.metrics = model, strategy, loss, metrics
        if not model.optimizer.built:
            # Now, in the strategy's scope: built lazily inside the first step, under
            # several replicas its variables fail ("You must feed a value for placeholder").
            with strategy.scope():
                model.optimizer.build(model.trainable_variables)
        jit_compile = jit_compile and is_one_cpu_replica(strategy)
        self._train = replicated_step(strategy, self._train_step, jit_compile)
        self._evaluate = replicated_step(strategy, self._evaluate_step, jit_compile)

    def _sums(self, labels, predictions, per_example_loss):
        """([loss, each metric, examples],), summed over this replica's examples."""
        sums = [tf.reduce_sum(per_example_loss)]
        sums += [tf.reduce_sum(tf.cast(metric(labels, predictions), tf.float32))
                 for metric in self.metrics.values()]
        sums.append(tf.cast(tf.shape(labels)[0], tf.float32))
        return (tf.stack(sums),)

    def _train_step(self, inputs, labels):
        replica = tf.distribute.get_replica_context()
        # Every replica divides by the whole batch, so the summed gradients are the
        # gradient of the batch's mean loss (the last batch can be smaller).
        batch_examples = replica.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.cast(tf.shape(labels)[0], tf.float32))
        optimizer = self.model.optimizer
        with tf.GradientTape() as tape:
            predictions = self.model(inputs, training=True)
            per_example_loss = tf.cast(self.loss(labels, predictions), tf.float32)
            loss = tf.reduce_sum(per_example_loss) / batch_examples
            scaled_loss = optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        variables = self.model.trainable_variables
        apply_gradients(optimizer, tape.gradient(scaled_loss, variables), variables)
        return self._sums(labels, predictions, per_example_loss)

    def _evaluate_step(self, inputs, labels):
        predictions = self.model(inputs, training=False)
        return self._sums(labels, predictions, self.loss(labels, predictions))

    @tf.function
    def train(self, iterator):
        inputs, labels = next(iterator)
        return self._train(inputs, labels)[0]

    def evaluate(self, inputs, labels):
        return self._evaluate(inputs, labels)[0]

    def logs(self, sums, prefix=""):
        sums = np.asarray(sums, dtype=np.float64)
        names = ["loss", *self.metrics]
        return {prefix + name: float(total / sums[-1]) for name, total in zip(names, sums)}


# ----------------------------------------------------------------------------
# The loops


def fit(model, strategy, train_batches, validation_batches, *, loss, metrics, epochs,
        initial_epoch=0, steps_per_epoch, callbacks=(), verbose=2, jit_compile=False):
    """Trains epochs initial_epoch .. epochs - 1, as `model.fit` would.

    train_batches: a dataset of global (inputs, labels) batches running over all
    those epochs, steps_per_epoch batches each. validation_batches: a dataset
    read whole after every epoch. loss(labels, predictions): the loss of each
    example. metrics: {name: function(labels, predictions) -> value per example}.
    jit_compile: compile the steps with XLA where that is valid
    (`is_one_cpu_replica`).
    """
    steps = _Steps(model, strategy, loss, metrics, jit_compile)
    callbacks = keras.callbacks.CallbackList(
        list(callbacks), add_history=False, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    iterator = iter(strategy.experimental_distribute_dataset(train_batches))
    model.stop_training = False
    callbacks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        sums = 0.0
        for step in range(steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            sums += steps.train(iterator)
            if not math.isfinite(float(sums[0])):  # diverged: stop before anything is saved
                raise NonFiniteLoss(f"epoch {epoch + 1}, batch {step + 1} of {steps_per_epoch}",
                                    float(sums[0]))
            callbacks.on_train_batch_end(step, steps.logs(sums) if verbose == 1 else None)
        logs = steps.logs(sums)
        callbacks.on_test_begin()
        logs.update(_evaluate(steps, validation_batches, prefix="val_"))
        callbacks.on_test_end()
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end()


def evaluate(model, strategy, batches, *, loss, metrics, jit_compile=False):
    """{"loss": mean loss per example, and each metric's mean} over `batches`."""
    return _evaluate(_Steps(model, strategy, loss, metrics, jit_compile), batches)


def _evaluate(steps, batches, prefix=""):
    sums = 0.0
    for inputs, labels in steps.strategy.experimental_distribute_dataset(batches):
        sums += steps.evaluate(inputs, labels)
    return steps.logs(sums, prefix)


def predict(model, inputs, batch_size):
    """The model's outputs for `inputs`, computed on this process's first device.

    Not distributed: test sets here take seconds, and under several workers
    each one gets the whole answer without any exchange.
    """
    @tf.function(reduce_retracing=True)
    def forward(batch):
        return model(batch, training=False)

    outputs = [forward(inputs[start:start + batch_size]).numpy()
               for start in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs).astype(np.float32)
