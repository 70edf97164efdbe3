"""Loading and saving evaluation data in the one schema, :class:`awares_agent.evals.schema.EvalSample`.

Custom data comes in one of two forms.

**A saved `datasets` dataset** (a ``save_to_disk`` directory, a ``Dataset`` or a ``DatasetDict``) whose
columns follow :func:`awares_agent.evals.schema.features`: ``id``, ``image``, ``question`` and ``answers``
are required;
``evidence``, ``needs_crop``, ``metric`` and ``category`` are optional; other columns are ignored;
``answers`` may be a string column. :func:`save_samples` writes this form, with the images stored in the
Arrow files.

**A JSONL file** (or a directory holding ``samples.jsonl`` or ``data.jsonl``), one JSON object per line::

    {"id": "inv-001", "image": "images/inv-001.png", "question": "What is the invoice number?",
     "answers": ["INV-2024-0042"], "evidence": [812, 40, 1190, 96], "needs_crop": true,
     "metric": "exact", "category": "receipt"}
    {"id": "inv-002", "image": "/data/scans/inv-002.jpg", "question": "Who issued it?",
     "answers": "ACME Corp"}

(each object on one line in the file). Fields:

* ``id`` (required): unique within the file; a number is turned into a string.
* ``image`` (required): a path relative to the JSONL file's directory, or absolute. Images are not opened at
  load time: a missing file is reported for that sample when it is run.
* ``question`` (required): the question, with any multiple-choice options written into it.
* ``answers`` (required): a list of accepted answers, or one answer as a string.
* ``evidence``: ``[x0, y0, x1, y1]``, the evidence's box in original-image pixels (``bbox`` in older files,
  still read).
* ``needs_crop``: whether answering needs more than the low-resolution view (``needs_hr`` in older files,
  still read).
* ``metric``: how answers are scored, one of :data:`awares_agent.evals.schema.METRICS` (default ``"exact"``).
* ``category``: a label for per-category results.

Each row is checked by :class:`~awares_agent.evals.schema.EvalSample` itself, the one place a sample is
validated. A row that cannot be used (a required field missing, an invalid evidence box or metric, a
duplicate id, a line that is not JSON) does not stop loading: it is returned as a :class:`SkippedRow` with
the reason. Loading fails only when the source as a whole is unusable:
:class:`~awares_agent.errors.ConfigError` for a missing path or an unknown format, :class:`EvalDataError` when
the data holds no usable row or lacks a required column.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError

from awares_agent.errors import AwaresError, ConfigError
from awares_agent.evals.schema import REQUIRED_FIELDS, EvalSample, features

__all__ = [
    "ACCEPTED_FORMATS",
    "EvalDataError",
    "LoadedSamples",
    "RowConverter",
    "SkippedRow",
    "convert_rows",
    "dataset_image",
    "dataset_rows",
    "is_saved_dataset",
    "load_samples",
    "sample_from_row",
    "save_samples",
    "select_split",
]

logger = logging.getLogger(__name__)

JSONL_NAMES = ("samples.jsonl", "data.jsonl")
ACCEPTED_FORMATS = (
    "a directory written by datasets' save_to_disk (Dataset or DatasetDict) with the columns of "
    "awares_agent.evals.schema.features()",
    "a .jsonl file with one sample per line",
    f"a directory holding {' or '.join(JSONL_NAMES)}",
)


class EvalDataError(AwaresError):
    """Evaluation data was found but cannot be used as a whole (no usable row, a required column missing).

    ``skipped`` lists the rows that were rejected, each with its reason.
    """

    def __init__(self, message: str, *, skipped: Sequence[SkippedRow] = ()) -> None:
        super().__init__(message)
        self.skipped = list(skipped)


@dataclass(frozen=True)
class SkippedRow:
    """A row of the source that was left out, and why.

    Attributes:
        row_index: 0-based position of the row in the source (for JSONL, the line number minus one).
        id: the row's id, if it had a readable one.
        reason: what is wrong with it.
    """

    row_index: int
    id: str | None
    reason: str


class LoadedSamples(list[EvalSample]):
    """What a loader returns: the usable samples, a list in source order, plus the rows it left out.

    Attributes:
        skipped: the rows that could not be used, each a :class:`SkippedRow` with its reason.
    """

    def __init__(self, samples: Iterable[EvalSample] = (), skipped: Iterable[SkippedRow] = ()) -> None:
        super().__init__(samples)
        self.skipped: list[SkippedRow] = list(skipped)


RowConverter = Callable[[Mapping[str, Any], int], EvalSample]
"""Turns one source row and its 0-based index into a sample; raises ``ValueError``/``KeyError`` to skip it."""


# --- rows -> samples ---------------------------------------------------------------------------------------


def dataset_image(value: Any, *, base_dir: Path | None = None) -> Any:
    """The sample image for an ``image`` value read from a `datasets` row or a JSONL object.

    Args:
        value: a PIL image; a dict ``{"bytes": ..., "path": ...}`` (an undecoded ``datasets.Image``); raw
            bytes; or a path string.
        base_dir: the directory that relative paths are relative to (the JSONL file's or dataset's).

    Returns:
        The PIL image or the encoded bytes as given, or the path (a string, made absolute against
        ``base_dir``). The file behind a path is not checked.

    Raises:
        ValueError: the value holds no image (``None``, an empty dict, an empty string, another type).
    """
    if isinstance(value, Image.Image | bytes):
        return value
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, str | os.PathLike) and str(value):
        path = Path(value).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return str(path)
    raise ValueError(f"no image (got {type(value).__name__})")


def _row_id(row: Mapping[str, Any]) -> str | None:
    value = row.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        return None
    return str(value)


def sample_from_row(row: Mapping[str, Any], index: int, *, base_dir: Path | None = None) -> EvalSample:
    """Turn one custom-data row (a JSONL object or a dataset row) into a sample, checked by
    :class:`~awares_agent.evals.schema.EvalSample`.

    Args:
        row: the row; keys as described in this module's docstring; extra keys are ignored.
        index: its 0-based position (unused; part of the :data:`RowConverter` signature).
        base_dir: the directory relative image paths are relative to.

    Returns:
        The sample.

    Raises:
        ValueError: the row is unusable; the message says why.
    """
    data = dict(row)
    if data.get("image") is not None:  # a missing image is the sample's to report, with the other fields
        data["image"] = dataset_image(data["image"], base_dir=base_dir)
    return EvalSample.model_validate(data)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        # A check of EvalSample names the field in its own words; pydantic's own errors get the field's name.
        return "; ".join(
            str(e["ctx"]["error"])
            if e["type"] == "value_error"
            else f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}"
            for e in exc.errors()
        )
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")


def convert_rows(
    rows: Iterable[tuple[int, Mapping[str, Any] | Exception]],
    convert: RowConverter,
    *,
    source: str,
    limit: int | None = None,
) -> LoadedSamples:
    """Convert rows to samples, skipping (with a reason) the rows that fail and rows with a repeated id.

    Args:
        rows: ``(row_index, row)`` pairs; a row may be an exception raised while reading it (it is skipped
            with that reason).
        convert: turns a row into a sample; ``ValueError``, ``KeyError`` and ``TypeError`` skip the row.
        source: names the source in messages (a path or a benchmark name).
        limit: stop after this many usable samples (``None``: all).

    Returns:
        The samples, with the skipped rows in ``.skipped``.

    Raises:
        ConfigError: ``limit`` is not a positive integer.
        EvalDataError: no row was usable.
    """
    _check_limit(limit)
    samples: list[EvalSample] = []
    skipped: list[SkippedRow] = []
    seen: set[str] = set()
    for index, row in rows:
        if limit is not None and len(samples) >= limit:
            break
        if isinstance(row, Exception):
            skipped.append(SkippedRow(index, None, _reason(row)))
            continue
        try:
            sample = convert(row, index)
        except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            skipped.append(SkippedRow(index, _row_id(row), _reason(exc)))
            continue
        if sample.id in seen:
            skipped.append(SkippedRow(index, sample.id, f"duplicate id {sample.id!r}"))
            continue
        seen.add(sample.id)
        samples.append(sample)
    if skipped:
        first = skipped[0]
        logger.warning(
            "%s: skipped %d row(s); first: row %d (id %s): %s",
            source,
            len(skipped),
            first.row_index,
            first.id,
            first.reason,
        )
    if not samples:
        detail = "".join(f"\n  row {s.row_index} (id {s.id}): {s.reason}" for s in skipped[:5])
        raise EvalDataError(
            f"{source}: no usable sample ({len(skipped)} row(s) skipped){detail}", skipped=skipped
        )
    return LoadedSamples(samples, skipped)


# --- sources -----------------------------------------------------------------------------------------------


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a directory written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``)."""
    return path.is_dir() and (
        (path / "dataset_dict.json").is_file()
        or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file())
    )


def _jsonl_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix.lower() == ".jsonl":
        return path
    if path.is_dir():
        for name in JSONL_NAMES:
            if (path / name).is_file():
                return path / name
    return None


def _unknown_format(path: Path, problem: str) -> ConfigError:
    formats = "".join(f"\n  - {fmt}" for fmt in ACCEPTED_FORMATS)
    return ConfigError(f"{problem}: {path}\nEvaluation data must be one of:{formats}")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | Exception]]:
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield index, ValueError(f"line {index + 1} is not valid JSON: {exc.msg}")
                continue
            if not isinstance(row, dict):
                yield index, ValueError(f"line {index + 1} is not a JSON object")
                continue
            yield index, row


def select_split(dataset: Any, split: str | None, *, source: str, default: str = "test") -> Any:
    """Pick one split of a ``DatasetDict`` (a plain ``Dataset`` is returned as it is).

    Args:
        dataset: a ``datasets.Dataset`` or ``datasets.DatasetDict``.
        split: the split asked for; ``None`` takes ``default`` if present, else the only split.
        source: names the data in messages.
        default: the split used when none is asked for.

    Returns:
        The ``datasets.Dataset`` of that split.

    Raises:
        ConfigError: the split does not exist, or none was asked for and there is no single obvious one.
    """
    from datasets import DatasetDict

    if not isinstance(dataset, DatasetDict):
        return dataset
    names = list(dataset)
    if split is None:
        if default in dataset:
            split = default
        elif len(names) == 1:
            split = names[0]
        else:
            raise ConfigError(
                f"{source} has several splits ({', '.join(names)}) and no '{default}'; pick one"
            )
    if split not in dataset:
        raise ConfigError(f"{source} has no split {split!r}; its splits are: {', '.join(names) or 'none'}")
    return dataset[split]


def dataset_rows(dataset: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Iterate a ``datasets.Dataset`` as ``(index, row)`` with its ``image`` column left undecoded (bytes)."""
    from datasets import Image as ImageFeature

    if isinstance(dataset.features.get("image"), ImageFeature):
        dataset = dataset.cast_column("image", ImageFeature(decode=False))
    return enumerate(dataset)


def load_samples(
    source: str | os.PathLike[str], *, split: str | None = None, limit: int | None = None
) -> LoadedSamples:
    """Load custom evaluation data in the common schema (see this module's docstring for the formats).

    Args:
        source: a ``save_to_disk`` dataset directory, a ``.jsonl`` file, or a directory holding
            ``samples.jsonl`` or ``data.jsonl``.
        split: for a ``DatasetDict``: the split to load (default ``"test"`` if present, else the only one).
            Ignored for a single ``Dataset`` and for JSONL.
        limit: load at most this many usable samples, from the start (``None``: all).

    Returns:
        The usable samples in source order (a list), with the rows left out and why in ``.skipped``.
        Dataset images come back as encoded bytes (or PIL images), JSONL images as absolute path strings.

    Raises:
        ConfigError: the path does not exist or is in no accepted format; an unknown split; a bad ``limit``.
        EvalDataError: the data lacks a required column or has no usable row.
    """
    _check_limit(limit)
    path = Path(source).expanduser()
    if not path.exists():
        raise _unknown_format(path, "evaluation data not found")
    if is_saved_dataset(path):
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except (OSError, ValueError) as exc:
            raise _unknown_format(path, f"cannot read the saved dataset ({exc})") from exc
        dataset = select_split(loaded, split, source=str(path))
        missing = [column for column in REQUIRED_FIELDS if column not in dataset.column_names]
        if missing:
            raise EvalDataError(
                f"{path}: missing required column(s) {', '.join(missing)}; it has "
                f"{', '.join(dataset.column_names)} (see awares_agent.evals.schema.features())"
            )
        image_feature = dataset.features["image"]
        base_dir = path if not isinstance(image_feature, datasets.Image) else None

        def convert(row: Mapping[str, Any], index: int) -> EvalSample:
            return sample_from_row(row, index, base_dir=base_dir)

        return convert_rows(dataset_rows(dataset), convert, source=str(path), limit=limit)
    jsonl = _jsonl_file(path)
    if jsonl is None:
        raise _unknown_format(path, "not evaluation data in a known format")
    base_dir = jsonl.parent.resolve()

    def convert_jsonl(row: Mapping[str, Any], index: int) -> EvalSample:
        return sample_from_row(row, index, base_dir=base_dir)

    return convert_rows(_jsonl_rows(jsonl), convert_jsonl, source=str(jsonl), limit=limit)


# --- saving ------------------------------------------------------------------------------------------------


def _encoded_image(sample: EvalSample) -> Any:
    image = sample.image
    if isinstance(image, Image.Image):
        return image  # datasets encodes it (PNG, or the image's own format)
    if isinstance(image, bytes):
        return {"bytes": image, "path": None}
    if isinstance(image, Mapping) and (image.get("bytes") or image.get("path")):
        if image.get("bytes"):
            return {"bytes": image["bytes"], "path": image.get("path")}
        image = image["path"]
    if isinstance(image, str | os.PathLike):
        path = Path(image).expanduser()
        try:
            return {"bytes": path.read_bytes(), "path": path.name}
        except OSError as exc:
            raise ConfigError(f"sample {sample.id!r}: cannot read image file {path}: {exc.strerror}") from exc
    raise ConfigError(
        f"sample {sample.id!r}: cannot store an image of type {type(image).__name__}; "
        "give a PIL image, encoded bytes or a file path"
    )


def save_samples(samples: Sequence[EvalSample], path: str | os.PathLike[str]) -> Path:
    """Write samples as a `datasets` dataset (``save_to_disk``) with
    :func:`awares_agent.evals.schema.features`.

    Images are stored inside the Arrow files: PIL images are encoded by ``datasets``, bytes are kept as
    they are, and image files given by path are read in. :func:`load_samples` reads the result back.

    Args:
        samples: the samples to write (at least one; ids must be unique).
        path: the directory to write (created; an existing dataset there is replaced).

    Returns:
        The directory written.

    Raises:
        ConfigError: no samples, a repeated id, or an image that cannot be read or stored.
    """
    import datasets

    if not samples:
        raise ConfigError("save_samples needs at least one sample")
    ids = [sample.id for sample in samples]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"sample ids must be unique; repeated: {', '.join(repeated[:10])}")
    columns: dict[str, list[Any]] = {
        "id": ids,
        "image": [_encoded_image(sample) for sample in samples],
        "question": [sample.question for sample in samples],
        "answers": [list(sample.answers) for sample in samples],
        "evidence": [list(sample.evidence) if sample.evidence is not None else None for sample in samples],
        "needs_crop": [sample.needs_crop for sample in samples],
        "metric": [sample.metric for sample in samples],
        "category": [sample.category for sample in samples],
    }
    target = Path(path).expanduser()
    datasets.Dataset.from_dict(columns, features=features()).save_to_disk(str(target))
    return target
