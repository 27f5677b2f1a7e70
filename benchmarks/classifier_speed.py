"""Why the classifier trains with Keras' ``fit``: its steps against an XLA-compiled and a graph-mode epoch loop.

The VAE's loop (``pipeline/model/trainer.py``) runs an epoch as one ``tf.while_loop`` inside a
``jit_compile=True`` function; for the classifier's convolutions that is far slower on CPU, since XLA's CPU
convolutions do not go through oneDNN. Each variant trains the pipeline's own network (``build_classifier``)
for the same steps on random images in one process; printed: wall and CPU seconds, and each against ``fit``.

    uv run python benchmarks/classifier_speed.py [--steps 20] [--batch-size 128] [--variants "fit,graph loop"]
"""

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--variants", default="fit,graph loop,XLA loop",
                        help="comma-separated, fit first (XLA costs ~0.7 s of CPU a step)")
    args = parser.parse_args()
    from pipeline.sample_quality.classifier import build_classifier  # first: it loads TensorFlow quietly

    # isort: split
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.random((args.steps * args.batch_size, 784), dtype=np.float32)
    labels = rng.integers(0, 10, len(images)).astype(np.int32)
    order = np.arange(len(images), dtype=np.int32).reshape(args.steps, args.batch_size)

    def loop(model: keras.Model, optimizer: keras.optimizers.Optimizer):
        variables, x, y = model.trainable_variables, tf.constant(images), tf.constant(labels)

        def steps(batches: tf.Tensor) -> tf.Tensor:
            def step(index: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                with tf.GradientTape() as tape:
                    logits = model(tf.gather(x, batches[index]), training=True)
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                        tf.gather(y, batches[index]), logits))
                optimizer.apply(tape.gradient(loss, variables), variables)
                return index + 1, total + loss

            return tf.while_loop(lambda index, _: index < tf.shape(batches)[0], step,
                                 (tf.constant(0), tf.constant(0.0)))[1]
        return steps

    timings = {}
    for variant in args.variants.split(","):
        keras.utils.set_random_seed(0)
        model, optimizer = build_classifier(10), keras.optimizers.Adam(1e-3)
        cpu, wall = time.process_time(), time.perf_counter()
        if variant == "fit":
            model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.fit(images, labels, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
        else:
            optimizer.build(model.trainable_variables)
            compiled = tf.function(loop(model, optimizer), jit_compile=variant == "XLA loop")
            compiled(tf.constant(order)).numpy()
        timings[variant] = (time.perf_counter() - wall, time.process_time() - cpu)
    fit_wall, fit_cpu = timings["fit"]
    print(f"{args.steps} steps of {args.batch_size} images, compile included")
    print("| variant | wall s | CPU s | CPU / fit |\n|:--|--:|--:|--:|")
    for variant, (wall, cpu) in timings.items():
        print(f"| {variant} | {wall:.2f} | {cpu:.2f} | {cpu / fit_cpu:.1f} |")


if __name__ == "__main__":
    main()
