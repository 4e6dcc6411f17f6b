"""What export writes of a layer's reference steps (docs/export.md): reference.npz, a row per
reference step (top lists, zero fractions, class means, selectivity, preferred class, dead
flags), and at the layer's last reference step a montage PNG per kept unit (its top inputs
cropped to what it sees, exporting/montage.py), also shown in the HTML page.

Bounded: one row in memory (the npz is spooled), the last step of each layer, and the run's
reference thumbnails (at most 16 MiB, docs/format.md); montages only for the kept units of
the last reference step (max_channels of them, 64 by default).
"""

import io
import os

import numpy as np

from tb_activations.exporting import files as files_lib
from tb_activations.exporting import montage

REFERENCE_NAME = "reference.npz"
MONTAGE_FOLDER = "top-inputs"


def montage_name(unit, digits):
    return "unit-%0*d.png" % (digits, unit)


class LayerReference:
    """One layer's reference steps in an export: `add` each (a reading.reference
    UnitResponses), `close` with the run's reference inputs."""

    def __init__(self, context, layer_export):
        self.context = context
        self.layer = layer_export
        self.npz = None
        self.constants = {}  # reference.npz's arrays that are not per step, known at close
        self.last = None

    def add(self, responses):
        if "npz" in self.context.options.formats:
            if self.npz is None:
                self.npz = files_lib.NpzWriter(
                    self.context.temporaries, os.path.join(self.layer.folder, REFERENCE_NAME),
                    self.context.scratch, self.constants)
            row = {"steps": np.int64(responses.step), "units": responses.units,
                   "top_index": responses.top_index, "top_value": responses.top_value,
                   "top_position": responses.top_position,
                   "zero_fraction": responses.zero_fraction, "dead": responses.dead}
            if responses.class_count.size:
                row.update(class_mean=responses.class_mean, class_count=responses.class_count,
                           selectivity=responses.selectivity.astype(np.float32),
                           preferred=responses.preferred.astype(np.int32))
            self.npz.add(**row)
        self.last = responses

    def close(self, inputs):
        """Ends reference.npz and writes the montages of the last reference step; `inputs`:
        the run's reading.reader.ReferenceInputsStep, or None."""
        if self.npz is not None:
            if inputs is not None:
                self.constants["class_names"] = np.array(inputs.content["class_names"] or [],
                                                         dtype=str)
                if inputs.labels is not None:
                    self.constants["labels"] = inputs.labels
            self.npz.close()
            self.context.index_file(self.layer.row(format="npz"), REFERENCE_NAME,
                                    self.layer.folder)
        if (self.last is None or inputs is None or inputs.thumbnails is None
                or not {"png", "html"} & set(self.context.options.formats)):
            return []
        return self.montages(inputs)

    def montages(self, inputs):
        """Writes a montage per kept unit of the last reference step (png) and adds it to
        the page (html); [(unit, what it responds to)] for the page's manifest."""
        last, content = self.last, self.layer.content
        folder = os.path.join(self.layer.folder, MONTAGE_FOLDER)
        described = dict(inputs.content, labels=inputs.labels)
        names = inputs.content.get("class_names")
        digits = len(str(last.content["units_total"] - 1))
        shown = []
        for row, unit in enumerate(last.units.tolist()):
            text = montage.responds_text(bool(last.dead[row]), float(last.selectivity[row]),
                                         int(last.preferred[row]), names)
            figure = montage.draw_montage(
                inputs.thumbnails,
                {"top_index": last.top_index[row], "top_value": last.top_value[row],
                 "top_position": last.top_position[row]},
                described, last.content["receptive_field"],
                "%s · unit %d · step %d" % (content["layer"], unit, last.step),
                "%s · its top %d of %d reference inputs · run %s" % (
                    text, last.content["k"], last.content["inputs"], self.context.run))
            buffer = io.BytesIO()
            figure.save(buffer, "PNG")
            png = buffer.getvalue()
            if "png" in self.context.options.formats:
                os.makedirs(folder, exist_ok=True)
                name = montage_name(unit, digits)
                self.context.temporaries.write(os.path.join(folder, name), png)
                self.context.index_file(self.layer.row(format="montage", step=last.step),
                                        name, folder)
            if self.context.page is not None:
                self.context.page.add_montage(png, self.layer.run_index,
                                              self.layer.layer_index, unit)
            shown.append({"unit": unit, "text": text})
        return shown
