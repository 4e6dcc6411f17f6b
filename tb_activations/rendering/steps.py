"""The render stage: a logged step as [(tag, SummaryMetadata, [bytes per value])].

Works on any framework's capture (an object with `records` (hashable, each with `path`,
`layer_class`, `order`, `layout`), `options` and `reduce()`, the latter giving reduced layer
outputs as numpy), in numpy only, so the paths without TensorFlow render with it too;
`writing` writes what it returns.
"""

import dataclasses
import functools
import json
import threading
import warnings

from tb_activations.format import layout as layout_lib
from tb_activations.format import metadata
from tb_activations.rendering import grid_images
from tb_activations.rendering import overview


def render_options(**options):
    """RenderOptions from keyword arguments, naming any that do not exist."""
    known = {field for field in layout_lib.RenderOptions.__dataclass_fields__}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError("unknown option(s) %s; the options are %s"
                        % (", ".join(unknown), ", ".join(sorted(known))))
    return layout_lib.RenderOptions(**options)


def layer_content(record, samples, options):
    """Plugin content of a layer tag: its tiling, and the caps that shaped it."""
    content = record.layout.to_content()
    content.update(kind=metadata.KIND_LAYER, layer=record.path, layer_class=record.layer_class,
                   order=record.order, samples=samples, caps=dataclasses.asdict(options))
    return content


@functools.lru_cache(maxsize=4096)
def layer_metadata(record, samples, options):
    """SummaryMetadata of a layer tag (shared: not to be changed): the same at every step of
    a probe, and building it anew was ~2 ms of a MobileNetV2 step."""
    return metadata.create_summary_metadata(layer_content(record, samples, options))


def render_layers(captured, statistics=True, only=None):
    """[(plugin content, [PNG per sample] + [statistics blob])] for every layer of a capture
    (or those whose paths are in `only`): what a logged step stores, and what the live probe
    answers (which sends the statistics as JSON, so asks for no blob)."""
    records = [record for record in captured.records if only is None or record.path in only]
    return [(layer_content(record, _samples(captured, record), captured.options), values)
            for record, values in zip(records, _render_values(captured, records, statistics))]


def _samples(captured, record):
    return captured.reduce()[record.path]["tiles"].shape[0]


# A step renders its layers on two threads from this many probe samples: each layer then
# deflates that many grid PNGs, which lets go of the GIL. With fewer, quantizing and the
# statistics (numpy's small steps, which hold it) dominate and the threads wait for each other:
# Keras MobileNetV2, probe 1, a whole log_dir= step on one thread took 12% less wall and 17%
# less CPU than on two; torchvision's, probe 4, 4% more wall and 6% less CPU.
TWO_THREAD_SAMPLES = 4


def _render_values(captured, records, statistics):
    """grid_images.render_layer of each record's reduced output (on two threads for probes of
    TWO_THREAD_SAMPLES samples or more)."""
    reduced = captured.reduce()

    def render(record):
        return grid_images.render_layer(reduced[record.path], record.layout, statistics)

    if max((_samples(captured, record) for record in records), default=0) < TWO_THREAD_SAMPLES:
        return [render(record) for record in records]
    return map_on_two_threads(render, records)


def map_on_two_threads(function, items):
    """[function(item) for item in items], every second item on a helper thread: quantizing
    (numpy's loops) and deflating (zlib) let go of the GIL, so a step's layers render on two
    cores. In the calling thread alone where no thread can be started (at interpreter exit).
    The first error raised is raised here, once both threads are done."""
    items = list(items)
    results = [None] * len(items)
    errors = []

    def run(indices):
        for index in indices:
            results[index] = function(items[index])

    def helper():
        try:
            run(range(1, len(items), 2))
        except BaseException as error:  # re-raised on the calling thread
            errors.append(error)

    thread = threading.Thread(target=helper, name="tb-activations-render", daemon=True)
    try:
        thread.start()
    except RuntimeError:
        run(range(len(items)))
        return results
    try:
        run(range(0, len(items), 2))
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return results


def render_capture(captured):
    """[(tag, SummaryMetadata, [bytes])] for every layer of a capture, then the step's
    overview (every layer summarised in one blob); raises before any write if anything
    fails, so a failed log writes nothing for that step."""
    records = list(captured.records)
    rendered = [(metadata.layer_tag(record.path),
                 layer_metadata(record, _samples(captured, record), captured.options), values)
                for record, values in zip(records, _render_values(captured, records, True))]
    summaries = {path: overview.layer_summary(reduced)
                 for path, reduced in captured.reduce().items()}
    for path, numbers in getattr(captured, "head_numbers", {}).items():
        if path in summaries:
            summaries[path]["heads"] = overview.head_summary(**numbers)
    blob = overview.encode_overview(summaries)
    if len(blob) > overview.MAX_OVERVIEW_BYTES:  # readers refuse it: the heads give way
        warnings.warn("tb-activations leaves the per-head numbers out of this step's overview: "
                      "with them it would pass %d bytes" % overview.MAX_OVERVIEW_BYTES,
                      stacklevel=2)
        for summary in summaries.values():
            summary.pop("heads", None)
        blob = overview.encode_overview(summaries)
    rendered.append((metadata.OVERVIEW_TAG, metadata.create_summary_metadata(
        {"kind": metadata.KIND_OVERVIEW}), [blob]))
    return rendered


def render_probe(arrays, input_names, max_image=layout_lib.RenderOptions().max_image):
    """[(tag, SummaryMetadata, [PNG per sample])] for each image-like probe input, its
    pictures no larger than `max_image` a side. `arrays`: one array, a list of them, or a
    dict of them (taken in key order), named by `input_names` in that order."""
    rendered = []
    for name, array in zip(input_names, _in_order(arrays)):
        if not grid_images.is_image_like(array.shape[1:]):
            continue
        content = {"kind": metadata.KIND_PROBE, "input": name,
                   "shape": [None] + list(array.shape[1:]), "samples": int(array.shape[0])}
        pictures = [grid_images.encode_png(grid_images.probe_picture(sample, max_image))
                    for sample in array]
        rendered.append((metadata.probe_tag(name), metadata.create_summary_metadata(content),
                         pictures))
    return rendered


def _in_order(arrays):
    if isinstance(arrays, dict):
        return [arrays[key] for key in sorted(arrays)]
    if isinstance(arrays, (list, tuple)):
        return list(arrays)
    return [arrays]


def render_epoch_end(epoch):
    """[(tag, SummaryMetadata, [JSON])]: Keras epoch `epoch` (0-based, the step Keras's
    TensorBoard callback logs its epoch scalars at) ended at the step this is written at."""
    return [(metadata.EPOCH_TAG, metadata.create_summary_metadata({"kind": metadata.KIND_EPOCH}),
             [json.dumps({"epoch": int(epoch)}).encode("utf-8")])]
