"""The tab's routes for reference steps (docs/http_api.md): which inputs each unit responds to
most over a run's reference set, how class-selective it is, and the set's thumbnails.

A mixin of ActivationsPlugin: it reads through the plugin's own data-provider helpers
(_find, _data, _blob, _whole_run), so these routes work on both loaders and keep its caches.
"""

import logging

import numpy as np
from tensorboard.backend import http_util

from tb_activations.format import metadata
from tb_activations.format import reference
from tb_activations.plugin import answers
from tb_activations.plugin import queries
from tb_activations.plugin.queries import QueryError

logger = logging.getLogger(__name__)

# Content fields of a reference layer tag passed on as they are (validated on parse).
_LAYER_FIELDS = ("layer", "layer_class", "order", "units_total", "units_kept", "k", "inputs",
                 "classes", "map_shape", "receptive_field")


def reference_layers(tags):
    """[(tag, content)] of a run's reference layer tags, in model order."""
    found = [(tag, content) for tag, (content, _) in tags.items()
             if content["kind"] == metadata.KIND_REFERENCE]
    return sorted(found, key=lambda item: answers.model_order(item[1]))


def step_answer(content, arrays, step, wall_time):
    """The JSON of one reference step of a layer: its kept units, their top inputs (index,
    value, position), zero fraction and dead flag, and with labels their class means,
    selectivity (null where undefined) and preferred class."""
    answer = {key: content.get(key) for key in _LAYER_FIELDS}
    answer.update(step=step, wall_time=wall_time,
                  units=arrays["units"].tolist(),
                  top_index=arrays["top_index"].tolist(),
                  top_value=answers.json_array(answers.shortest(arrays["top_value"])),
                  top_position=arrays["top_position"].tolist(),
                  zero_fraction=answers.json_array(answers.shortest(arrays["zero_fraction"])),
                  dead=reference.dead_on_reference(arrays["zero_fraction"]).tolist(),
                  class_mean=None, class_count=None, selectivity=None, preferred=None)
    if "class_mean" in arrays:
        mean, count = arrays["class_mean"], arrays["class_count"]
        preferred = reference.preferred_class(mean, count)
        answer.update(class_mean=answers.json_array(answers.shortest(mean)),
                      class_count=count.tolist(),
                      selectivity=answers.json_array(answers.shortest(
                          reference.selectivity_index(mean, count))),
                      preferred=[None if value < 0 else int(value) for value in preferred])
    return answer


def step_summary(arrays):
    """(mean selectivity over the units where it is defined or None, fraction of kept units
    dead on the reference set) of one reference step of a layer."""
    dead = float(np.mean(reference.dead_on_reference(arrays["zero_fraction"])))
    if "class_mean" not in arrays:
        return None, dead
    selectivity = reference.selectivity_index(arrays["class_mean"], arrays["class_count"])
    defined = selectivity[np.isfinite(selectivity)]
    return (float(np.mean(defined)) if defined.size else None), dead


class ReferenceRoutes:
    """/reference_tags, /reference, /reference_summary, /reference_inputs, /reference_page."""

    def reference_apps(self):
        return {
            "/reference_tags": self._serve_reference_tags,
            "/reference": self._serve_reference,
            "/reference_summary": self._serve_reference_summary,
            "/reference_inputs": self._serve_reference_inputs,
            "/reference_page": self._serve_reference_page,
        }

    def _reference_arrays(self, request, run, tag, content, datum):
        """The decoded blob of one reference step (cached as statistics blobs are)."""
        if len(datum.values) != 1:
            raise QueryError(404, "step %d of %r in run %r holds %d values, expected 1"
                             % (datum.step, tag, run, len(datum.values)))
        key = ("reference", datum.values[0].blob_key, datum.wall_time)
        cached = self._statistics_cache.get(key)
        if cached is not None:
            return cached
        try:
            arrays = reference.decode_reference(self._blob(request, run, datum.values[0]),
                                                content)
        except ValueError as error:
            raise QueryError(404, "step %d of %r in run %r is not a readable reference step: %s"
                             % (datum.step, tag, run, error)) from None
        return self._statistics_cache.put(key, arrays)

    @queries.handler
    def _serve_reference_tags(self, request):
        run, tags = self._listed_run(request)
        layers = reference_layers(tags)
        read = self._tags_data(request, run, [tag for tag, _ in layers]) if layers else {}
        entries = [dict({key: content.get(key) for key in _LAYER_FIELDS}, tag=tag,
                        steps=[datum.step for datum in read[tag]])
                   for tag, content in layers]
        inputs = tags.get(metadata.REFERENCE_INPUTS_TAG, ({}, None))[0]
        has_inputs = inputs.get("kind") == metadata.KIND_REFERENCE_INPUTS
        return http_util.Respond(request, {"run": run, "layers": entries,
                                           "inputs": has_inputs}, "application/json")

    def _reference_layer(self, request):
        """(run, tag, content) of the request's reference layer: `layer=` a layer path, or
        `tag=` a tag as /reference_tags lists it."""
        tag = request.args.get("tag")
        if tag:
            run, tags = self._listed_run(request)
            content = tags.get(tag, ({}, None))[0]
            if content.get("kind") != metadata.KIND_REFERENCE:
                raise QueryError(404, "run %r has no reference tag %r" % (run, tag))
            return run, tag, content
        return self._find(request, metadata.KIND_REFERENCE, "layer", queries.arg(request, "layer"))

    @queries.handler
    def _serve_reference(self, request):
        run, tag, content = self._reference_layer(request)
        datum = self._datum(request, run, tag, queries.int_arg(request, "step"))
        arrays = self._reference_arrays(request, run, tag, content, datum)
        return http_util.Respond(request, step_answer(content, arrays, datum.step,
                                                      datum.wall_time), "application/json")

    @queries.handler
    def _serve_reference_summary(self, request):
        run, tags = self._listed_run(request)
        layers = []
        for tag, content in reference_layers(tags):
            def build(data, tag=tag, content=content):
                summaries = []
                for datum in data:
                    try:
                        summaries.append((datum.step, step_summary(
                            self._reference_arrays(request, run, tag, content, datum))))
                    except QueryError as error:  # one unreadable step does not hide the others
                        summaries.append((datum.step, (None, None)))
                        logger.warning("%s", error)
                return summaries
            summaries = self._whole_run(request, run, tag, build)
            layers.append(dict({key: content.get(key) for key in (
                "layer", "layer_class", "order", "units_kept", "units_total", "classes")},
                steps=[step for step, _ in summaries],
                mean_selectivity=[value for _, (value, _) in summaries],
                dead_fraction=[dead for _, (_, dead) in summaries]))
        steps = sorted({step for layer in layers for step in layer["steps"]})
        return http_util.Respond(request, {"run": run, "steps": steps, "layers": layers},
                                 "application/json")

    def _reference_inputs(self, request):
        """(run, content, the one datum) of the run's reference inputs tag."""
        run, tags = self._listed_run(request)
        content = tags.get(metadata.REFERENCE_INPUTS_TAG, ({}, None))[0]
        if content.get("kind") != metadata.KIND_REFERENCE_INPUTS:
            raise QueryError(404, "run %r stored no reference inputs" % run)
        data = self._data(request, run, metadata.REFERENCE_INPUTS_TAG)
        if not data:
            raise QueryError(404, "run %r stored no reference inputs yet" % run)
        return run, content, data[0]

    @queries.handler
    def _serve_reference_inputs(self, request):
        run, content, datum = self._reference_inputs(request)
        key = ("reference inputs", queries.experiment(request), run, datum.step, datum.wall_time)
        answer = self._answer_cache.get(key)
        if answer is None:
            labels = None
            if len(datum.values) > content["pages"]:
                try:
                    labels = reference.decode_labels(self._blob(request, run, datum.values[-1]),
                                                     content)
                except ValueError as error:
                    raise QueryError(404, "the reference labels of run %r cannot be read: %s"
                                     % (run, error)) from None
            answer = self._answer_cache.put(key, dict(
                {key: value for key, value in content.items() if key not in ("version", "kind")},
                step=datum.step, labels=None if labels is None else labels.tolist()))
        return http_util.Respond(request, answer, "application/json")

    @queries.handler
    def _serve_reference_page(self, request):
        run, content, datum = self._reference_inputs(request)
        page = queries.int_arg(request, "page")
        if not 0 <= page < min(content["pages"], len(datum.values)):
            raise QueryError(404, "no reference page %d (run %r has %d)"
                             % (page, run, content["pages"]))
        return http_util.Respond(request, self._blob(request, run, datum.values[page]),
                                 "image/png")
