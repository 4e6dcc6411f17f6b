"""The Activations tab's backend: a dynamic TensorBoard plugin (see docs/http_api.md).

Reads only through `context.data_provider`, so it works with the Python multiplexer and the
Rust data server alike, and under `--path_prefix`. Nothing here imports TensorFlow.
"""

import base64
import concurrent.futures
import importlib
import json
import logging
import os
import threading
import time
import zipfile

import numpy as np
from tensorboard import errors
from tensorboard.backend import http_util
from tensorboard.data import grpc_provider
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_activations.format import metadata
from tb_activations.format import tokens as tokens_lib
from tb_activations.format import model_file
from tb_activations.plugin import answers
from tb_activations.plugin import caches
from tb_activations.plugin import queries
from tb_activations.plugin import reference_routes
from tb_activations.plugin import run_reader
from tb_activations.plugin import static_files
from tb_activations.plugin.queries import QueryError
from tb_activations.reading import epochs
from tb_activations.reading import reader
from tb_activations.rendering import grid_images
from tb_activations.rendering import overview

logger = logging.getLogger(__name__)

# read_blob_sequences treats its hint as a count, and a count of 0 returns nothing
# (tensorboard#5550), so "keep everything" is passed as a count no run will reach.
_ALL_STEPS = 2**31 - 1

# What the plugin keeps in memory (caches.BoundedCache): decoded statistics blobs (a logged
# step never changes, and a series reads every step of a layer), step -> datum maps per
# (run, tag) so a grid request needs one data-provider call, and whole-run answers (series,
# overview) per (run, tag, last step).
_STATISTICS_CACHE_BYTES = 256 << 20
_STEP_MAP_CACHE_BYTES = 64 << 20
_ANSWER_CACHE_BYTES = 64 << 20
# Blobs read at once (the sparsity chart's statistics, a window of frames): each read is a
# round trip to the Rust data server (~44 ms), so they overlap.
_BLOB_READERS = 32
# Reasons an epoch tag adds to its run's problems at most (one per bad record).
_EPOCH_PROBLEMS_SHOWN = 10
# Steps one /frames request may ask for.
FRAMES_MAX_STEPS = 32
# /runs answers from a listing of every tag at most this old, listing again in the background;
# it waits this long for a listing before answering a partial one (the overview tags only).
_RUNS_FRESH_S = 10.0
_RUNS_WAIT_S = 0.5
# Runs read from their own event files (run_reader) that stay loaded, by their files' size.
_OWN_READER_BYTES = 512 << 20

LIVE_FLAG = "activations_live"
_LIVE_OFF = "the live probe is switched off on this TensorBoard (--%s=false)" % LIVE_FLAG


class ActivationsPlugin(reference_routes.ReferenceRoutes, base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        hint = (context.sampling_hints or {}).get(self.plugin_name, 0)
        self._downsample = hint if hint > 0 else _ALL_STEPS
        self._static = static_files.static_files()
        self._warned = set()
        self._statistics_cache = caches.BoundedCache(_STATISTICS_CACHE_BYTES)
        self._answer_cache = caches.BoundedCache(_ANSWER_CACHE_BYTES)
        # Listing every tag costs ~100 ms on the Python loader with many steps, so lookups
        # use the last listing and list again only on a miss (a new run or layer).
        self._index = {}
        self._problems = {}  # experiment -> {run: ["tag: why it could not be read"]}
        self._step_maps = caches.BoundedCache(_STEP_MAP_CACHE_BYTES)
        self._index_lock = threading.Lock()
        # /runs: experiment -> (monotonic time, [run summary]) of the last listing of every
        # tag, and the listing under way (a thread) per experiment.
        self._run_summaries = {}
        self._listings = {}
        self._own_readers = caches.BoundedCache(_OWN_READER_BYTES)
        self._logdir = context.logdir
        flags = context.flags
        self._live_enabled = getattr(flags, LIVE_FLAG, "true") != "false"
        self._live_models = None  # live.LiveModels, made on the first live request
        self._live_lock = threading.Lock()

    def get_plugin_apps(self):
        return {
            "/index.js": self._serve_index,
            "/static/*": self._serve_static,
            "/runs": self._serve_runs,
            "/layers": self._serve_layers,
            "/frames": self._serve_frames,
            "/steps": self._serve_steps,
            "/grid": self._serve_grid,
            "/stats": self._serve_stats,
            "/stats_series": self._serve_stats_series,
            "/overview": self._serve_overview,
            "/probe": self._serve_probe,
            "/tokens": self._serve_tokens,
            "/live_info": self._serve_live_info,
            "/live": self._serve_live,
            **self.reference_apps(),
        }

    def is_active(self):
        return False  # the data provider listing a run with our plugin name is enough

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Activations")

    # Reading through the data provider.

    def _series(self, context, experiment, run=None):
        """{run: {tag: (content, BlobSequenceTimeSeries)}} of parseable activation tags, of
        every run or of `run` only, listed now (and remembered for _find)."""
        listing = self._data_provider.list_blob_sequences(
            context, experiment_id=experiment, plugin_name=self.plugin_name,
            run_tag_filter=None if run is None else provider.RunTagFilter(runs=[run]))
        result, problems = {}, {}
        for listed, tags in listing.items():
            result.setdefault(listed, {})
            for tag, series in tags.items():
                try:
                    content = metadata.parse_plugin_content(series.plugin_content)
                    if content["kind"] == metadata.KIND_EPOCH:
                        epochs.check_tag(tag)
                    if content["kind"] == metadata.KIND_TOKENS:
                        tokens_lib.check_tag(tag)
                except ValueError as error:
                    problems.setdefault(listed, []).append("%s: %s" % (tag, error))
                    if (listed, tag) not in self._warned:
                        self._warned.add((listed, tag))
                        logger.warning("skipping activations tag %r of run %r: %s",
                                       tag, listed, error)
                    continue
                result[listed][tag] = (content, series)
        with self._index_lock:
            if run is None:
                self._index[experiment], self._problems[experiment] = result, problems
            else:  # copies: other threads may be reading the previous dicts
                index = dict(self._index.get(experiment, {}))
                known = dict(self._problems.get(experiment, {}))
                index.pop(run, None)
                known.pop(run, None)
                index.update(result)
                known.update(problems)
                self._index[experiment], self._problems[experiment] = index, known
        return result

    def _run_series(self, request, run):
        """The run's tags from the last listing, listing the run again if it is not there."""
        with self._index_lock:
            tags = self._index.get(queries.experiment(request), {}).get(run)
        if tags is None:
            tags = self._series(queries.context(request), queries.experiment(request), run).get(run)
        return tags

    def _find(self, request, kind, key, value):
        """(run, tag, content) of the run's series of `kind` whose content[key] == value."""
        run = queries.arg(request, "run")
        tags = self._run_series(request, run)
        for fresh in (False, True):
            if fresh:
                tags = self._series(queries.context(request), queries.experiment(request),
                                    run).get(run)
            for tag, (content, _) in sorted((tags or {}).items()):
                if content["kind"] == kind and (value is None or content.get(key) == value):
                    return run, tag, content
        if tags is None:
            raise QueryError(404, "no activation data for run %r" % run)
        raise QueryError(404, "run %r has no %s %r" % (run, kind, value))

    def _reader(self, run):
        """The data provider that can read `run`'s blobs: TensorBoard's, or for a run the Rust
        data server cannot key, the run's own event files read by TensorBoard's Python
        loader (the multiplexer, for that run only)."""
        if not (isinstance(self._data_provider, grpc_provider.GrpcDataProvider)
                and run_reader.UNKEYABLE.search(run)):
            return self._data_provider
        if not self._logdir or "://" in self._logdir:
            raise QueryError(422, "the Rust data server cannot read run %r: a run name holding "
                                  "\" or \\ breaks its blob keys. Start TensorBoard with "
                                  "--load_fast=false to see this run." % run)
        reader = self._own_readers.get(run)
        if reader is None:
            root = os.path.realpath(self._logdir)
            path = os.path.realpath(os.path.join(root, run))
            if path != root and not path.startswith(root + os.sep):
                raise QueryError(404, "run %r is outside the logdir" % run)
            reader = self._own_readers.put(run, run_reader.RunReader(run, path, self._logdir),
                                           size=run_reader.directory_bytes(path))
        reader.reload()
        return reader.provider

    def _data(self, request, run, tag):
        """Every datum of one tag, by step; also refreshes the tag's step map."""
        return self._tags_data(request, run, [tag])[tag]

    def _tags_data(self, request, run, tags):
        """{tag: every datum, by step} of `tags`, read in one call (one round trip to the
        Rust data server); also refreshes their step maps."""
        read = self._reader(run).read_blob_sequences(
            queries.context(request), experiment_id=queries.experiment(request),
            plugin_name=self.plugin_name, downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags))
        result = {}
        for tag in tags:
            data = result[tag] = sorted(read.get(run, {}).get(tag, []),
                                        key=lambda datum: datum.step)
            self._step_maps.put((queries.experiment(request), run, tag),
                                {datum.step: datum for datum in data}, size=400 * len(data) + 200)
        return result

    def _datum(self, request, run, tag, step):
        # Steps are looked up in the tag's last read (which /steps, /stats_series and any
        # unseen step refresh), so a grid or stats request needs no listing call.
        steps = self._step_maps.get((queries.experiment(request), run, tag), {})
        if step not in steps:
            steps = {datum.step: datum for datum in self._data(request, run, tag)}
        if step not in steps:
            raise QueryError(404, "no step %d for %r in run %r" % (step, tag, run))
        return steps[step]

    def _blob(self, request, run, reference):
        """The bytes of one blob of `run`; QueryError if the event file holds something else
        there (a float tensor, a rank-2 one: the loaders fail on those in their own ways)."""
        try:
            blob = self._reader(run).read_blob(queries.context(request),
                                               blob_key=reference.blob_key)
        except (errors.PublicError, QueryError):
            raise
        except Exception as error:
            raise QueryError(404, "a value under the activations plugin could not be read as "
                                  "a blob: %s: %s" % (type(error).__name__, error)) from None
        if not isinstance(blob, bytes):
            raise QueryError(404, "a value under the activations plugin is a %s, not a blob "
                                  "of bytes" % type(blob).__name__)
        return blob

    def _statistics(self, request, run, tag, content, datum):
        """The decoded statistics blob of a step of the layer tag whose content is `content`."""
        if not datum.values:
            raise QueryError(404, "step %d of %r in run %r holds no values"
                             % (datum.step, tag, run))
        key = (datum.values[-1].blob_key, datum.wall_time)
        cached = self._statistics_cache.get(key)
        if cached is not None:
            return cached
        try:
            arrays = grid_images.decode_statistics(self._blob(request, run, datum.values[-1]),
                                                 content, reader.layer_layout(content))
        except ValueError as error:
            raise QueryError(404, "step %d of %r in run %r has no readable statistics: %s"
                             % (datum.step, tag, run, error)) from None
        return self._statistics_cache.put(key, arrays)

    def _layer(self, request):
        return self._find(request, metadata.KIND_LAYER, "layer", queries.arg(request, "layer"))

    # Routes.

    @wrappers.Request.application
    def _serve_index(self, request):
        return self._respond_static(request, "index.js")

    @wrappers.Request.application
    def _serve_static(self, request):
        return self._respond_static(request, request.path.rsplit("/static/", 1)[-1])

    def _respond_static(self, request, name):
        if name not in self._static:
            return http_util.Respond(request, {"error": "no such file"}, "application/json",
                                     code=404)
        content_type, body = self._static[name]
        return http_util.Respond(request, body, content_type)

    # Listing: runs first (small, bounded), then one run's layers.

    def _list_everything(self, context, experiment):
        """Lists every tag (slow on a big logdir: ~1.7 s at 1,000 runs x 200 layers) and keeps
        each run's summary for /runs."""
        try:
            listing = self._series(context, experiment)
            with self._index_lock:
                problems = self._problems.get(experiment, {})
            summaries = [answers.run_summary(run, tags, problems.get(run, []))
                         for run, tags in sorted(listing.items())]
            with self._index_lock:
                self._run_summaries[experiment] = (time.monotonic(), summaries)
        except Exception as error:  # a thread of ours: say why instead of dying silently
            logger.warning("listing the activation runs failed: %s: %s",
                           type(error).__name__, error)
        finally:
            with self._index_lock:
                self._listings.pop(experiment, None)

    def _runs_impl(self, context, experiment):
        """([summary] of every run with activation data, partial): from a listing of every tag
        at most _RUNS_FRESH_S old (older ones are answered while a new one is made); until the
        first is made, from the overview tags alone (partial: no layer or problem counts, no
        run logged before overviews were written)."""
        with self._index_lock:
            known = self._run_summaries.get(experiment)
            listing = self._listings.get(experiment)
            if listing is None and (known is None
                                    or time.monotonic() - known[0] > _RUNS_FRESH_S):
                listing = threading.Thread(target=self._list_everything,
                                           args=(context, experiment), daemon=True)
                self._listings[experiment] = listing
                listing.start()
        if known is None:
            listing.join(_RUNS_WAIT_S)
            with self._index_lock:
                known = self._run_summaries.get(experiment)
        if known is not None:
            return known[1], False
        overviews = self._data_provider.list_blob_sequences(
            context, experiment_id=experiment, plugin_name=self.plugin_name,
            run_tag_filter=provider.RunTagFilter(tags=[metadata.OVERVIEW_TAG]))
        return [{"run": run, "layers": None, "max_step": series.max_step,
                 "last_wall_time": series.max_wall_time, "problems": None}
                for run, tags in sorted(overviews.items())
                for series in tags.values()], True

    @queries.handler
    def _serve_runs(self, request):
        summaries, partial = self._runs_impl(queries.context(request), queries.experiment(request))
        offset = queries.int_arg(request, "offset", 0)
        page, more = answers.page(summaries, offset)
        return http_util.Respond(request, {"runs": page, "offset": offset, "more": more,
                                           "partial": partial}, "application/json")

    def _layers_impl(self, request, run=None, offset=0):
        """{"runs": [run entry]} of every run, or of `run` alone with its layers from
        `offset` on (as many as fit answers.ANSWER_MAX_BYTES; `more` says how many are left)."""
        experiment = queries.experiment(request)
        listing = self._series(queries.context(request), experiment, run)
        if run is not None and run not in listing:
            raise QueryError(404, "no activation data for run %r" % run)
        with self._index_lock:
            problems = dict(self._problems.get(experiment, {}))
        if run is not None:
            # Bad epoch records are known only once read: for the run asked for, not for
            # every run of a sweep at once.
            entry = answers.run_entry(run, listing[run],
                                      problems.get(run, []) + self._epoch_ends(request, run)[1])
            entry["layers"], entry["more"] = answers.page(entry["layers"], offset)
            return {"runs": [entry]}
        answer = {"runs": [answers.run_entry(name, tags, problems.get(name, []))
                           for name, tags in sorted(listing.items())]}
        size = len(json.dumps(answer))
        if size > answers.ANSWER_MAX_BYTES:
            raise QueryError(400, "every run's layers would be %.1f MiB of JSON, over this "
                                  "route's %d MiB: list the runs with ./runs, then ask for one "
                                  "run's layers with ./layers?run=<run>"
                             % (size / (1 << 20), answers.ANSWER_MAX_BYTES >> 20))
        return answer

    @queries.handler
    def _serve_layers(self, request):
        run = request.args.get("run")
        answer = self._layers_impl(request, run, queries.int_arg(request, "offset", 0))
        return http_util.Respond(request, answer, "application/json")

    def _frames_impl(self, request, run, tag, content, steps, samples):
        """A window of a layer's steps in one answer: per step its statistics and the grids of
        `samples` (None: every probe sample), every blob read in parallel; steps that would
        take the answer past answers.ANSWER_MAX_BYTES are listed in `left`."""
        data = [self._datum(request, run, tag, step) for step in steps]
        for datum in data:
            count = len(datum.values) - 1
            for sample in samples or ():
                if not 0 <= sample < count:
                    raise QueryError(404, "no probe sample %d at step %d (the layer has %d)"
                                     % (sample, datum.step, count))

        def read(task):
            datum, sample = task
            try:
                if sample is None:
                    return answers.statistics_answer(
                        self._statistics(request, run, tag, content, datum))
                return base64.b64encode(self._blob(request, run, datum.values[sample])).decode(
                    "ascii")
            except QueryError as error:  # one unreadable step does not hide the others
                return error

        wanted = [samples if samples else range(len(datum.values) - 1) for datum in data]
        tasks = [(datum, sample) for datum, chosen in zip(data, wanted)
                 for sample in [None, *chosen]]
        results = iter(self._read_all(read, tasks))
        frames, left, size = [], [], 0
        for datum, chosen in zip(data, wanted):
            stats, grids = next(results), [next(results) for _ in chosen]
            failed = [value for value in [stats, *grids] if isinstance(value, QueryError)]
            frame = {"step": datum.step, "wall_time": datum.wall_time}
            if failed:
                frame["error"] = str(failed[0])
            else:
                frame.update(samples=list(chosen), stats=stats, grids=grids)
            size += len(json.dumps(frame)) + 2
            if size > answers.ANSWER_MAX_BYTES - 4096:
                left.append(datum.step)
            else:
                frames.append(frame)
        return {"frames": frames, "left": left}

    @queries.handler
    def _serve_frames(self, request):
        run, tag, content = self._layer(request)
        steps = [queries.integer("steps", text)
                 for text in queries.arg(request, "steps").split(",")]
        if len(steps) > FRAMES_MAX_STEPS:
            raise QueryError(400, "at most %d steps per request, got %d"
                             % (FRAMES_MAX_STEPS, len(steps)))
        samples = [queries.integer("sample", text) for text in request.args.getlist("sample")]
        return http_util.Respond(request, self._frames_impl(request, run, tag, content, steps,
                                                                   samples),
                                 "application/json")

    def _epoch_ends(self, request, run, data=None):
        """([(step, epoch)] of the run's readable epoch records, [problem]): each record is
        one blob, read once per new record; a bad one is left out with its reason, and a run
        with more than epochs.MAX_RECORDS gets none (rather than wrong epochs). `data`: the
        epoch tag's data if it was read already."""
        tag = metadata.EPOCH_TAG
        content, series = (self._run_series(request, run) or {}).get(tag, ({}, None))
        if content.get("kind") != metadata.KIND_EPOCH:
            return [], []
        # While the listed tag ends where it did, the last answer stands without reading the
        # tag again (a round trip to the Rust data server on every /layers).
        listed = ("listed", queries.experiment(request), run, series.max_step, series.max_wall_time)
        known = self._answer_cache.get(listed) if data is None else None
        if known is not None:
            return known

        def read(datum):
            """(step, epoch) or the reason it is unreadable; each record is read once, so a
            new epoch costs one blob read, not one per record."""
            key = ("epoch record", queries.experiment(request), run, datum.step, datum.wall_time)
            found = self._answer_cache.get(key)
            if found is None:
                try:
                    found = datum.step, epochs.parse_record(
                        datum.values, lambda reference: self._blob(request, run, reference))
                except (QueryError, errors.PublicError, ValueError) as error:
                    found = "%s: step %d: %s" % (tag, datum.step, error)
                self._answer_cache.put(key, found)
            return found

        def build(data):
            if len(data) > epochs.MAX_RECORDS:
                return [], ["%s: %d epoch records, more than the %d read; epochs are not shown"
                            % (tag, len(data), epochs.MAX_RECORDS)]
            results = self._read_all(read, data)
            problems = [result for result in results if isinstance(result, str)]
            if len(problems) > _EPOCH_PROBLEMS_SHOWN:
                problems[_EPOCH_PROBLEMS_SHOWN:] = ["%s: %d more unreadable records"
                                                    % (tag, len(problems) - _EPOCH_PROBLEMS_SHOWN)]
            return [result for result in results if isinstance(result, tuple)], problems
        try:
            return self._answer_cache.put(listed, self._whole_run(request, run, tag, build, data))
        except (QueryError, errors.PublicError) as error:  # e.g. not on this loader (_reader)
            return [], ["%s: %s" % (tag, error)]

    @queries.handler
    def _serve_steps(self, request):
        run, tag, _ = self._layer(request)
        read = self._tags_data(request, run, [tag, metadata.EPOCH_TAG])
        data = read[tag]
        ends, _ = self._epoch_ends(request, run, read[metadata.EPOCH_TAG])
        steps = [{"step": datum.step, "wall_time": datum.wall_time} for datum in data]
        if ends:
            for entry, epoch in zip(steps, epochs.epochs_of([datum.step for datum in data], ends)):
                entry["epoch"] = epoch
        return http_util.Respond(request, {"steps": steps}, "application/json")

    @queries.handler
    def _serve_grid(self, request):
        run, tag, content = self._layer(request)
        step, sample = queries.int_arg(request, "step"), queries.int_arg(request, "sample", 0)
        datum = self._datum(request, run, tag, step)
        if not 0 <= sample < len(datum.values) - 1:
            raise QueryError(404, "no probe sample %d (the layer has %d)"
                             % (sample, len(datum.values) - 1))
        return http_util.Respond(request, self._blob(request, run, datum.values[sample]),
                                 "image/png")

    @queries.handler
    def _serve_stats(self, request):
        run, tag, content = self._layer(request)
        datum = self._datum(request, run, tag, queries.int_arg(request, "step"))
        body = dict(answers.statistics_answer(self._statistics(request, run, tag, content, datum)),
                    step=datum.step, wall_time=datum.wall_time)
        return http_util.Respond(request, body, "application/json")

    def _whole_run(self, request, run, tag, build, data=None):
        """build(data) over every step of a tag (`data`, or read now), cached until the tag
        gains a step."""
        data = self._data(request, run, tag) if data is None else data
        key = (queries.experiment(request), run, tag, data[-1].step if data else None, len(data))
        answer = self._answer_cache.get(key)
        if answer is None:
            answer = self._answer_cache.put(key, build(data))
        return answer

    def _read_all(self, function, data):
        """function(datum) for every datum, read in parallel (each read can be a round trip
        to the Rust data server)."""
        with concurrent.futures.ThreadPoolExecutor(_BLOB_READERS) as pool:
            return list(pool.map(function, data))

    def _stats_series_impl(self, request, run, tag, content):
        def read(datum):
            try:
                return self._statistics(request, run, tag, content, datum)
            except QueryError as error:  # one unreadable step does not hide the others
                logger.warning("%s", error)
                return None

        def build(data):
            statistics = self._read_all(read, data)
            return {"fields": list(overview.SUMMARY_FIELDS),
                    "steps": [dict(overview.layer_summary(arrays),
                                   step=datum.step)
                              for datum, arrays in zip(data, statistics) if arrays is not None]}
        return self._whole_run(request, run, tag, build)

    @queries.handler
    def _serve_stats_series(self, request):
        run, tag, content = self._layer(request)
        return http_util.Respond(request, self._stats_series_impl(request, run, tag, content),
                                 "application/json")

    def _overview_impl(self, request, run, tag, layers):
        """Every layer (in model order) summarised at every step, from one blob per step."""
        def read(datum):
            try:
                return overview.decode_overview(self._blob(request, run, datum.values[0]))
            except (QueryError, ValueError, IndexError) as error:
                logger.warning("step %d of run %r has no readable overview: %s",
                               datum.step, run, error)
                return {}

        def build(data):
            steps = self._read_all(read, data)
            answer_layers = []
            for content in layers:
                path = content["layer"]
                series = {field: [step.get(path, {}).get(field) for step in steps]
                          for field in overview.SUMMARY_FIELDS}
                heads = [step.get(path, {}).get("heads") for step in steps]
                if any(value is not None for value in heads):
                    series["heads"] = heads
                # An attention layer's (and its map's) dead units are its dead heads.
                owner = overview.heads_path(path)
                if owner is not None:
                    dead = [None if value is None else overview.dead_head_count(value)
                            for value in (step.get(owner, {}).get("heads") for step in steps)]
                    if any(count is not None for count in dead):
                        series["dead_heads"] = dead
                answer_layers.append(dict(series, **{key: content.get(key) for key in (
                    "layer", "layer_class", "order", "channels_total", "output_shape",
                    "source")}))
            return {"steps": [datum.step for datum in data],
                    "fields": list(overview.SUMMARY_FIELDS), "layers": answer_layers}
        return self._whole_run(request, run, tag, build)

    @queries.handler
    def _serve_overview(self, request):
        run, tags = self._listed_run(request)
        found = [tag for tag, (content, _) in tags.items()
                 if content["kind"] == metadata.KIND_OVERVIEW]
        if not found:
            raise QueryError(404, "run %r has no overview: it was logged before tb-activations "
                                  "wrote one per step" % run)
        layers = sorted((content for content, _ in tags.values()
                         if content["kind"] == metadata.KIND_LAYER), key=answers.model_order)
        return http_util.Respond(request, self._overview_impl(request, run, found[0], layers),
                                 "application/json")

    @queries.handler
    def _serve_probe(self, request):
        run, tag, content = self._find(request, metadata.KIND_PROBE, "input",
                                       request.args.get("input") or None)
        sample = queries.int_arg(request, "sample", 0)
        data = self._data(request, run, tag)
        if not data:
            raise QueryError(404, "run %r stored no probe input yet" % run)
        values = data[0].values
        if not 0 <= sample < len(values):
            raise QueryError(404, "no probe sample %d (the probe has %d)" % (sample, len(values)))
        return http_util.Respond(request, self._blob(request, run, values[sample]), "image/png")

    def _tokens_impl(self, request, run, tags):
        """{"tokens": a list of labels per probe sample, or None; "problem": why the stored
        labels could not be read, or None}: the run's token labels tag, read once (one blob,
        at most tokens.MAX_BLOB_BYTES) and checked; cached until the tag changes."""
        tag = metadata.TOKENS_TAG
        content, series = tags.get(tag, (None, None))
        if content is None or content["kind"] != metadata.KIND_TOKENS:
            return {"tokens": None, "problem": None}
        key = ("tokens", queries.experiment(request), run, series.max_step, series.max_wall_time)
        answer = self._answer_cache.get(key)
        if answer is not None:
            return answer
        try:
            data = self._data(request, run, tag)
            if not data:
                raise ValueError("the tag holds no value yet")
            values = data[0].values
            if len(values) != 1:
                raise ValueError("a token labels value holds %d blobs, expected 1" % len(values))
            labels = tokens_lib.decode([self._blob(request, run, values[0])], content)
            answer = {"tokens": labels, "problem": None}
        except (QueryError, errors.PublicError, ValueError) as error:
            answer = {"tokens": None, "problem": "%s: %s" % (tag, error)}
        return self._answer_cache.put(key, answer)

    @queries.handler
    def _serve_tokens(self, request):
        run, tags = self._listed_run(request)
        return http_util.Respond(request, self._tokens_impl(request, run, tags),
                                 "application/json")

    # The live probe (live.py): the run's saved model answers one input.

    def _listed_run(self, request):
        """(run name as the data provider lists it, its layer series) of the request's run."""
        run = queries.arg(request, "run")
        tags = self._run_series(request, run)
        if tags is None:
            raise QueryError(404, "no activation data for run %r" % run)
        return run, tags

    def _model_path(self, run):
        """run_dir/model.keras of a listed run, confined to the logdir; QueryError if the
        logdir is not a local folder or the path (or a symlink on it) leaves it."""
        if not self._logdir or "://" in self._logdir:
            raise QueryError(404, "the live probe needs a local --logdir (this TensorBoard has "
                                  "%r)" % (self._logdir or "none"))
        root = os.path.realpath(self._logdir)
        path = os.path.realpath(model_file.model_path(os.path.join(root, run)))
        if not path.startswith(root + os.sep):
            raise QueryError(403, "the model file of run %r is outside the logdir" % run)
        return path

    def _live(self):
        with self._live_lock:
            if self._live_models is None:
                self._live_models = importlib.import_module("tb_activations.keras.live").LiveModels()
            return self._live_models

    def _live_info_impl(self, run, tags):
        latest = max((series.max_step for content, series in tags.values()
                      if content["kind"] == metadata.KIND_LAYER), default=None)
        if not self._live_enabled:
            return answers.unavailable(_LIVE_OFF)
        try:
            path = self._model_path(run)
        except QueryError as error:
            return answers.unavailable(str(error))
        if not os.path.isfile(path):
            return answers.unavailable(
                "run %r has no %s: train with ActivationsCallback(..., save_model=True), or save "
                "the model there" % (run, model_file.MODEL_FILE))
        try:
            with zipfile.ZipFile(path) as archive:
                described = model_file.describe_record(model_file.read_record(archive))
        except (OSError, zipfile.BadZipFile, ValueError) as error:
            return answers.unavailable("%s of run %r cannot be read: %s"
                                       % (model_file.MODEL_FILE, run, error))
        if described is None:  # a model saved there by hand: only loading it tells its inputs
            live = importlib.import_module("tb_activations.keras.live")
            try:
                described = live.describe(self._live().get(path))
            except live.LiveError as error:
                return answers.unavailable(str(error))
        model = {"step": described.pop("step"), "saved_at": described.pop("saved_at"),
                 "latest_step": latest}
        return dict(described, available=True, reason=None, model=model)

    @queries.handler
    def _serve_live_info(self, request):
        run, tags = self._listed_run(request)
        return http_util.Respond(request, self._live_info_impl(run, tags), "application/json")

    @queries.handler
    def _serve_live(self, request):
        if not self._live_enabled:
            raise QueryError(403, _LIVE_OFF)
        run, tags = self._listed_run(request)
        body = queries.live_body(request)
        path = self._model_path(run)
        drawn = request.args.getlist("layer") or None
        started = time.perf_counter()
        live = importlib.import_module("tb_activations.keras.live")
        try:
            loaded, layers, outputs = self._live().answer(path, body, answers.run_options(tags),
                                                          drawn, answers.logged_layers(tags))
        except live.LiveError as error:
            raise QueryError(error.code, str(error)) from None
        described = live.describe(loaded)
        names = [output["name"] for output in described["outputs"]]
        if len(names) != len(outputs):
            names = ["output_%d" % i for i in range(len(outputs))]
        answer = {
            "layers": [answers.live_layer(content, png, reduced)
                       for content, png, reduced in layers],
            "outputs": [{"name": name, "shape": list(value.shape),
                         "values": answers.json_array(np.ravel(value))}
                        for name, value in zip(names, outputs)],
            "model": {key: described[key] for key in ("step", "saved_at")},
            "elapsed_ms": 1000 * (time.perf_counter() - started),
        }
        return http_util.Respond(request, answer, "application/json")
