"""One process of a distributed-training test, run by tests/test_distributed.py.

    python tests/distributed_worker.py mirrored <logdir>
        `fit` under MirroredStrategy over two logical CPU devices, with ActivationsCallback
        unchanged, once with update_freq="epoch" (run `epoch`) and once with update_freq=2
        (run `batch`).

    python tests/distributed_worker.py multiworker <logdir>
        One worker of a MultiWorkerMirroredStrategy job (cluster and task from TF_CONFIG):
        a custom training loop that calls log_activations every LOG_EVERY steps. The chief
        writes to <logdir>; a non-chief writes to <logdir>/workertemp_<id> (as Keras's own
        callbacks do) and deletes it at the end.

Each prints one line `RESULT <json>` on stdout for the test to check.
"""

import contextlib
import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SEED = 1234
SAMPLES = 64
GLOBAL_BATCH = 16
EPOCHS = 3
BATCH_FREQ = 2
STEPS = 6
LOG_EVERY = 2
CLASSES = 3


def data():
    """The same inputs and labels in every process."""
    rng = np.random.RandomState(SEED)
    x = rng.normal(size=(SAMPLES, 8, 8, 1)).astype(np.float32)
    y = rng.randint(0, CLASSES, size=(SAMPLES,)).astype(np.int32)
    return x, y


def build_model(keras):
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(8, activation="relu", name="hidden")(h)
    outputs = keras.layers.Dense(CLASSES, name="logits")(h)
    return keras.Model(inputs, outputs, name="net")


def checksum(variables):
    return float(sum(np.sum(np.asarray(v.numpy(), np.float64)) for v in variables))


def report(result):
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def mirrored(logdir):
    # Two logical CPUs: must happen before anything initialises TensorFlow's devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import tb_activations as tba

    x, y = data()
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])
    runs = {}
    for run, update_freq in (("epoch", "epoch"), ("batch", BATCH_FREQ)):
        keras.utils.set_random_seed(SEED)
        with strategy.scope():
            model = build_model(keras)
            model.compile(optimizer=keras.optimizers.SGD(0.05),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        callback = tba.ActivationsCallback(os.path.join(logdir, run), probe=x[:2],
                                           update_freq=update_freq)
        model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[callback])
        runs[run] = {
            "iterations": int(model.optimizer.iterations.numpy()),
            "variables_distributed": all(
                isinstance(getattr(v, "value", v), tf.distribute.DistributedValues)
                for v in model.weights),
            "layers": list(tba.get_activations(model, x[:2])),
        }
    report({"replicas": strategy.num_replicas_in_sync,
            "devices": list(strategy.extended.worker_devices),
            "steps_per_epoch": SAMPLES // GLOBAL_BATCH, "epochs": EPOCHS,
            "batch_freq": BATCH_FREQ, "runs": runs})


def multiworker(logdir):
    # The strategy first, before any other TensorFlow op.
    communication = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=communication)

    import keras
    import tb_activations as tba
    from tb_activations.keras import distribute
    from tb_activations.keras import log
    from tensorflow.python.distribute import multi_worker_util

    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    tf_is_chief = bool(strategy.extended.should_checkpoint)
    chief_checks = {
        "tf_should_checkpoint": tf_is_chief,
        "tf_multi_worker_util": bool(multi_worker_util.is_chief(
            resolver.cluster_spec(), task_type, task_id)),
        "package_outside_scope": distribute.is_chief(),
    }
    with strategy.scope():
        chief_checks["package_in_scope"] = distribute.is_chief()

    # Count the forward passes log_activations makes (it calls log.capture for each).
    captures = []
    real_capture = log.capture

    def counting_capture(*args, **kwargs):
        captures.append(len(captures))
        return real_capture(*args, **kwargs)

    log.capture = counting_capture

    keras.utils.set_random_seed(SEED)
    x, y = data()
    probe = x[:2]

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(GLOBAL_BATCH)
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.repeat().batch(batch, drop_remainder=True)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))

    with strategy.scope():
        model = build_model(keras)
        optimizer = keras.optimizers.SGD(0.05)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    @tf.function
    def train_step(iterator):
        def replica_step(inputs, labels):
            with tf.GradientTape() as tape:
                logits = model(inputs, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(labels, logits),
                                                  global_batch_size=GLOBAL_BATCH)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        inputs, labels = next(iterator)
        per_replica = strategy.run(replica_step, args=(inputs, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    # Where Keras's own callbacks would write: the chief in logdir, others in a temp dir.
    writer_dir = logdir if tf_is_chief else os.path.join(logdir, "workertemp_%d" % task_id)
    writer = tf.summary.create_file_writer(writer_dir)
    logs, losses = [], []
    with writer.as_default():
        for step in range(STEPS + 1):
            if step % LOG_EVERY == 0:
                global_step = int(optimizer.iterations.numpy())
                # Alternate calling it outside and inside the strategy's scope.
                in_scope = (step // LOG_EVERY) % 2 == 1
                with strategy.scope() if in_scope else contextlib.nullcontext():
                    logged = tba.log_activations(model, probe, step=global_step)
                logs.append({"step": global_step, "returned": logged, "in_scope": in_scope})
            if step < STEPS:
                losses.append(float(train_step(iterator).numpy()))
    writer.close()

    temp = None
    if writer_dir != logdir:
        temp = {"files": sorted(os.listdir(writer_dir)),
                "records": sum(1 for _ in tba.read_activations(writer_dir))}
        shutil.rmtree(writer_dir)

    report({"task_type": task_type, "task_id": task_id, "is_chief": chief_checks,
            "replicas": strategy.num_replicas_in_sync, "writer_dir": writer_dir,
            "logs": logs, "captures": captures,
            "probe_traced": "_tb_activations_probes" in model.__dict__,
            "iterations": int(optimizer.iterations.numpy()), "losses": losses,
            "checksum": checksum(model.trainable_weights),
            "temp": temp})


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    {"mirrored": mirrored, "multiworker": multiworker}[mode](target)
