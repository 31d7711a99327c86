"""Figures, images, tables, datasets: MLflow's ``log_figure``, ``log_image``, ``log_table``, ``log_input``.

Each becomes an artifact of the active run (``log_input`` a record in the run's ``inputs/``). Images are
encoded as PNG here (zlib from the standard library): no imaging library is needed for a numpy array.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
import zlib
from typing import Any

from .._errors import InvalidInputError
from ._fluent import _active_or_start, _target


def log_figure(figure: Any, artifact_file: str, *, save_kwargs: dict[str, Any] | None = None) -> None:
    """Save a matplotlib or plotly figure as an artifact (format from the file name: .png, .svg, .html...)."""
    kind = type(figure).__module__.split(".")[0]
    buffer = io.BytesIO()
    if kind == "matplotlib":
        figure.savefig(buffer, format=artifact_file.rpartition(".")[2] or "png", **(save_kwargs or {}))
        data = buffer.getvalue()
    elif kind == "plotly":
        if artifact_file.endswith(".html"):
            data = figure.to_html(**(save_kwargs or {})).encode("utf-8")
        else:
            data = figure.to_image(format=artifact_file.rpartition(".")[2], **(save_kwargs or {}))
    else:
        raise InvalidInputError(
            f"log_figure takes a matplotlib or plotly figure, got {kind}.{type(figure).__name__}"
        )
    _active_or_start().write_artifact(artifact_file, data)


def _png(array: Any) -> bytes:
    """A PNG of an image array (H×W gray, H×W×1/3/4 channels; uint8, or floats in 0..1)."""
    import numpy as np

    image = np.asarray(array)
    if image.dtype.kind == "f":
        if np.isnan(image).any() or image.min() < 0 or image.max() > 1:
            raise InvalidInputError("log_image: a float image must hold values from 0 to 1")
        image = (image * 255).round().astype(np.uint8)
    elif image.dtype.kind in "iub":
        if image.min(initial=0) < 0 or image.max(initial=0) > 255:
            raise InvalidInputError("log_image: an integer image must hold values from 0 to 255")
        image = image.astype(np.uint8)
    else:
        raise InvalidInputError(f"log_image: unsupported array type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        color = 0  # grayscale
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        color = 2 if image.shape[2] == 3 else 6
    else:
        raise InvalidInputError(f"log_image: an image is H×W or H×W×(1, 3 or 4), got shape {image.shape}")
    height, width = image.shape[:2]
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def log_image(
    image: Any,
    artifact_file: str | None = None,
    key: str | None = None,
    step: int | None = None,
    timestamp: int | None = None,
    synchronous: bool | None = False,
) -> None:
    """Save an image (numpy array or PIL image) as a PNG artifact: at ``artifact_file``, or, with
    ``key``, as one image of a series: ``images/<key>/step_<step>_<timestamp>.png``."""
    if (artifact_file is None) == (key is None):
        raise InvalidInputError("log_image takes exactly one of artifact_file and key")
    if hasattr(image, "mode") and hasattr(image, "save"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        data = _png(image)
    if key is not None:
        from ..store._layout import validate_key

        validate_key(key, "image key")
        stamp = int(time.time() * 1000) if timestamp is None else int(timestamp)
        artifact_file = f"images/{key}/step_{step or 0}_{stamp}.png"
    run = _active_or_start()
    run.write_artifact(str(artifact_file), data)


def log_table(data: Any, artifact_file: str, run_id: str | None = None) -> None:
    """Save a table (a dict of equal-length columns, or a pandas DataFrame) as a JSON artifact in MLflow's
    layout (``{"columns": [...], "data": [[...], ...]}``), which ``load_table`` reads back."""
    if not artifact_file.endswith(".json"):
        raise InvalidInputError(f"log_table: artifact_file must end with .json, got {artifact_file!r}")
    if isinstance(data, dict):
        columns = [str(c) for c in data]
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise InvalidInputError(f"log_table: the columns have different lengths {sorted(lengths)}")
        rows = [list(row) for row in zip(*data.values(), strict=True)]
    elif hasattr(data, "to_json") and hasattr(data, "columns"):
        split = json.loads(data.to_json(orient="split", index=False))
        columns, rows = [str(c) for c in split["columns"]], split["data"]
    else:
        raise InvalidInputError(f"log_table takes a dict or a pandas DataFrame, got {type(data).__name__}")
    try:
        text = json.dumps({"columns": columns, "data": rows}, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"log_table: cannot store as JSON: {exc}") from None
    _target(run_id).write_artifact(artifact_file, text.encode("utf-8"))


_DATASET_FIELDS = ("name", "digest", "source_type", "source", "schema", "profile")


def _dataset_document(dataset: Any) -> dict[str, Any]:
    """MLflow's dataset fields from an ``mlflow.data`` dataset, our ``entities.Dataset`` or a dict."""
    if isinstance(dataset, dict):
        fields = dict(dataset)
    elif hasattr(dataset, "to_dict"):
        fields = dict(dataset.to_dict())
    else:
        fields = {k: getattr(dataset, k, None) for k in _DATASET_FIELDS}
    for key in ("source", "schema", "profile"):
        value = fields.get(key)
        if value is not None and not isinstance(value, str):
            fields[key] = json.dumps(value, default=str, sort_keys=True)
    if not fields.get("name"):
        raise InvalidInputError("log_input: the dataset needs a name")
    if not fields.get("digest"):
        fields["digest"] = hashlib.sha256(
            json.dumps(fields, sort_keys=True, default=str).encode()
        ).hexdigest()[:8]
    fields.setdefault("source_type", "unknown")
    fields.setdefault("source", "")
    return {k: fields.get(k) for k in _DATASET_FIELDS}


def log_input(
    dataset: Any = None, context: str | None = None, tags: dict[str, str] | None = None, model: Any = None
) -> None:
    """Record a dataset the active run used (its name, digest, source, schema), with a context such as
    ``"training"``; ``run.inputs.dataset_inputs`` reads it back. ``model`` inputs are not recorded."""
    if dataset is None:
        return
    from ..store._operations import write_input

    document = _dataset_document(dataset)
    all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    if context is not None:
        all_tags["mlflow.data.context"] = str(context)
    write_input(_active_or_start().run_dir, str(document["digest"]), {"dataset": document, "tags": all_tags})


def log_inputs(
    datasets: list[Any] | None = None,
    contexts: list[str | None] | None = None,
    tags_list: list[dict[str, str] | None] | None = None,
    models: list[Any] | None = None,
) -> None:
    """Several ``log_input`` calls at once (lists of the same length)."""
    datasets = datasets or []
    for i, dataset in enumerate(datasets):
        log_input(
            dataset,
            (contexts or [None] * len(datasets))[i],
            (tags_list or [None] * len(datasets))[i],
        )
