"""Reading ``awares collect`` exports for training, as they are, with clear errors for what cannot train.

:func:`load_training_data` takes what ``awares collect`` writes:

* an export folder (``RUN/export``, holding ``dataset/`` and ``trajectories.jsonl``), or a collection run
  folder (its ``export/`` is used);
* the ``dataset/`` folder itself (``datasets.load_from_disk``);
* a ``trajectories.jsonl`` (images as files beside it, by relative path).

Both tool-call protocols and both kinds of trajectory (direct and tool) are read. Every row is checked
before any training starts: its conversation has an assistant turn and ends on an answer, its image parts
match its images, every image decodes, and all rows share one protocol and crop set (a model is trained on
one). Rows whose conversation holds a malformed crop call (on-policy rollouts with a correction) are left out
and counted: training on them would teach the malformed call.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from awares_agent.backends.hf_chat import TOOLS_HEADER
from awares_agent.config import AgentConfig
from awares_agent.errors import AwaresError, ConfigError
from awares_agent.tools.crop_sets import crop_set as make_crop_set
from awares_agent.tools.prompts import PRESETS, system_prompt_for
from awares_agent.tools.protocols import ToolProtocol, make_protocol
from awares_agent.training.turns import assistant_turn_kinds, message_text

__all__ = ["TrainingData", "TrainingDataError", "load_training_data", "policy_samples"]

logger = logging.getLogger(__name__)

DATASET = "dataset"
JSONL = "trajectories.jsonl"
EXPORT = "export"


class TrainingDataError(AwaresError):
    """Trajectories that cannot be trained on; the message names the rows and what to do."""


@dataclass
class TrainingData:
    """Checked training rows and what they hold.

    Attributes:
        dataset: the rows (a ``datasets.Dataset`` in TRL's conversational vision format).
        protocol: their tool-call protocol (``"json"`` or ``"awares-text"``).
        crop_set: their crop set.
        system_prompt: the system prompt the trajectories were made with (the tools block excluded).
        source: the path read.
        labels: rows per label (``direct`` / ``tool``).
        skipped: rows left out, by reason.
    """

    dataset: Any
    protocol: str
    crop_set: str
    system_prompt: str | None
    source: str
    labels: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dataset)

    def agent_config(self) -> AgentConfig:
        """How a model trained on these rows must be run: their protocol, crop set and system prompt.

        The prompt is recorded as its preset's name where it is one (``awares``, ``released``...), else as
        the text itself. A json-protocol export renders the tools block on every turn, so the model is run
        with the tool kept on every turn (``keep_tools``) and sees prompts as it was trained on them.
        """
        base = {"protocol": self.protocol, "crop_set": self.crop_set, "keep_tools": self.protocol == "json"}
        protocol = make_protocol(self.protocol, make_crop_set(self.crop_set))
        for preset in PRESETS:
            if preset == "auto":
                continue
            try:
                text = system_prompt_for(protocol, preset=preset)
            except ConfigError:  # a released prompt written for another protocol or crop set
                continue
            if text == self.system_prompt:
                return AgentConfig(**base, system_prompt_preset=preset)
        if self.system_prompt:
            return AgentConfig(**base, system_prompt=self.system_prompt)
        return AgentConfig(**base)

    def describe(self) -> str:
        """One line: how many rows of which kind, and what was left out."""
        kinds = ", ".join(f"{n} {label}" for label, n in sorted(self.labels.items()))
        text = f"{len(self)} rows ({kinds}; protocol {self.protocol}, crop set {self.crop_set})"
        text += f" from {self.source}"
        if self.skipped:
            text += "; left out: " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text


def _resolve(path: Path) -> Path:
    """The dataset folder or JSONL file that ``path`` stands for."""
    if not path.exists():
        raise TrainingDataError(
            f"training data {str(path)!r} does not exist; pass an `awares collect` export"
        )
    if path.is_file():
        return path
    for candidate in (path, path / DATASET, path / EXPORT / DATASET):
        if (candidate / "dataset_info.json").is_file() or (candidate / "state.json").is_file():
            return candidate
    for candidate in (path / JSONL, path / EXPORT / JSONL):
        if candidate.is_file():
            return candidate
    raise TrainingDataError(
        f"{str(path)!r} holds no training data: expected an `awares collect` export (a folder with "
        f"{DATASET}/ or {JSONL}), a run folder with {EXPORT}/, or a JSONL file. Run `awares collect export "
        "RUN` to write one"
    )


def _from_jsonl(path: Path) -> Any:
    """The JSONL export as a dataset with the export's features, image paths checked first."""
    from datasets import Dataset

    from awares_agent.collect.export import features

    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TrainingDataError(f"{path}:{number}: not a JSON object")
            images = []
            for ref in [*(row.get("images") or []), *([row["original"]] if row.get("original") else [])]:
                file = (path.parent / ref) if not Path(ref).is_absolute() else Path(ref)
                if not file.is_file():
                    raise TrainingDataError(
                        f"{path}:{number} (row {row.get('id')!r}): image {ref!r} is missing; the images "
                        "folder must stay beside the JSONL"
                    )
                images.append(str(file))
            originals = images[len(row.get("images") or []) :]
            row["images"] = images[: len(row.get("images") or [])]
            row["original"] = originals[0] if originals else None
            if isinstance(row.get("trajectory"), dict):
                row["trajectory"] = json.dumps(row["trajectory"])
            rows.append({name: row.get(name) for name in features()})
    if not rows:
        raise TrainingDataError(f"{path} has no rows")
    try:
        return Dataset.from_list(rows, features=features())
    except (TypeError, ValueError) as exc:
        raise TrainingDataError(f"{path}: rows do not match the export's schema ({exc})") from None


def _row_protocol(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The protocol and crop set a row's trajectory records (``None`` where it records none)."""
    raw = row.get("trajectory")
    if not raw:
        return None, None
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return None, None
    return data.get("protocol"), data.get("crop_set")


def _guess_protocol(messages: Iterable[Mapping[str, Any]]) -> str:
    """A row's protocol from its messages, where no trajectory says (the released one writes GET_CROPS)."""
    text = " ".join(message_text(m) for m in messages if m.get("role") == "assistant")
    return "awares-text" if "GET_CROPS" in text.upper() else "json"


def _system_prompt(messages: list[Mapping[str, Any]]) -> str | None:
    if not messages or messages[0].get("role") != "system":
        return None
    return message_text(messages[0]).split(TOOLS_HEADER, 1)[0]


def _check_images(rows: Any) -> None:
    """Every image of ``rows`` (``id`` and undecoded ``images``) decodes; the pixels are not kept."""
    import io

    from PIL import Image as PILImage

    for index, row in enumerate(rows):
        for number, image in enumerate(row["images"], 1):
            try:
                source = io.BytesIO(image["bytes"]) if image.get("bytes") else image.get("path")
                if source is None:
                    raise ValueError("no bytes and no path")
                with PILImage.open(source) as img:
                    img.verify()
            except Exception as exc:  # PIL raises many kinds for a corrupt file
                raise TrainingDataError(
                    f"row {row.get('id', index)!r}: image {number} cannot be decoded "
                    f"({type(exc).__name__}: {exc}); re-export the collection or drop the row"
                ) from None


def load_training_data(path: str | Path, *, check_images: bool = True) -> TrainingData:
    """Read and check an ``awares collect`` export for training.

    Args:
        path: an export folder, a collection run folder, a ``dataset`` folder or a JSONL file.
        check_images: decode every image once before training (a corrupt one fails here, not mid-run).

    Returns:
        The checked rows, their protocol and crop set.

    Raises:
        TrainingDataError: nothing readable at ``path``; a row without an assistant turn, not ending on an
            answer, or whose image parts do not match its images; rows of more than one protocol or crop
            set; an image that does not decode; no trainable row at all.
    """
    from datasets import load_from_disk

    source = _resolve(Path(path).expanduser())
    if source.is_file():
        dataset = _from_jsonl(source)
    else:
        try:
            dataset = load_from_disk(str(source))
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"cannot read {source} as a datasets folder: {exc}") from None
        if hasattr(dataset, "keys"):  # a DatasetDict: the training split
            if "train" not in dataset:
                raise TrainingDataError(f"{source} is a DatasetDict without a 'train' split: {list(dataset)}")
            dataset = dataset["train"]
    missing = [c for c in ("messages", "images") if c not in dataset.column_names]
    if missing:
        raise TrainingDataError(
            f"{source}: no {' or '.join(missing)} column; is it an `awares collect` export?"
        )

    columns = [c for c in ("id", "messages", "trajectory", "label") if c in dataset.column_names]
    # Read without decoding images: here only the texts, the image count and (below) the encoded bytes count.
    texts = dataset.select_columns(columns)
    encoded = dataset.cast_column("images", _undecoded()).select_columns(
        [c for c in ("id", "images") if c in dataset.column_names]
    )
    parsers: dict[tuple[str, str], ToolProtocol] = {}
    protocols: Counter[tuple[str, str]] = Counter()
    labels: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    keep: list[int] = []
    problems: list[str] = []
    system_prompt: str | None = None
    for index, (row, images) in enumerate(zip(texts, encoded, strict=True)):
        row_id = row.get("id", index)
        messages = row["messages"] or []
        protocol, regions = _row_protocol(row)
        protocol = protocol or _guess_protocol(messages)
        regions = regions or "paper"
        parts = sum(p.get("type") == "image" for m in messages for p in (m.get("content") or []))
        if parts != len(images["images"] or []):
            problems.append(f"row {row_id!r}: {parts} image parts but {len(images['images'] or [])} images")
            continue
        if (protocol, regions) not in parsers:
            parsers[(protocol, regions)] = make_protocol(protocol, make_crop_set(regions))
        kinds = assistant_turn_kinds(messages, parsers[(protocol, regions)])
        if not kinds:
            problems.append(f"row {row_id!r}: no assistant turn (nothing to learn)")
            continue
        if kinds[-1] != "answer":
            problems.append(f"row {row_id!r}: the conversation ends on a {kinds[-1]} turn, not an answer")
            continue
        if "invalid" in kinds:
            skipped["with a malformed crop call"] += 1
            continue
        protocols[(protocol, regions)] += 1
        labels["tool" if "call" in kinds else "direct"] += 1
        system_prompt = system_prompt or _system_prompt(messages)
        keep.append(index)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TrainingDataError(
            f"{source}: {len(problems)} row(s) cannot train: " + "; ".join(problems[:5]) + more
        )
    if len(protocols) > 1:
        found = ", ".join(f"{p}/{c}: {n} rows" for (p, c), n in protocols.most_common())
        raise TrainingDataError(
            f"{source} mixes tool-call protocols or crop sets ({found}); a model is trained on one: export "
            "one collection per protocol (awares collect label --protocol ...)"
        )
    if not keep:
        raise TrainingDataError(f"{source}: no trainable row ({dict(skipped) or 'empty'})")
    if skipped:
        logger.warning("left out of training: %s", dict(skipped))
    if len(keep) < len(dataset):
        dataset, encoded = dataset.select(keep), encoded.select(keep)
    if check_images:
        _check_images(encoded)
    (protocol, regions), _ = protocols.most_common(1)[0]
    return TrainingData(
        dataset=dataset,
        protocol=protocol,
        crop_set=regions,
        system_prompt=system_prompt,
        source=str(source),
        labels=dict(labels),
        skipped=dict(skipped),
    )


def _undecoded() -> Any:
    from datasets import Image, List

    return List(Image(decode=False))


def policy_samples(path: str | Path, *, limit: int | None = None) -> list[Any]:
    """Held-out export rows as evaluation samples: the original image, the question and the labels.

    Each row's ``needs_crop`` becomes the sample's ``needs_hr`` and its ``evidence`` box the ``bbox``, so
    :func:`~awares_agent.evals.decisions.score_decisions` can score a policy's decisions and regions. The
    label (``direct`` / ``tool``) is the sample's category.

    Args:
        path: an export as :func:`load_training_data` reads it.
        limit: the first N rows only.

    Raises:
        TrainingDataError: as :func:`load_training_data`, or rows without their original image (exports
            written before the original was kept: run ``awares collect export RUN`` again).
    """
    from awares_agent.evals.schema import EvalSample

    data = load_training_data(path, check_images=False)
    dataset = data.dataset
    if "original" not in dataset.column_names:
        raise TrainingDataError(
            f"{data.source} has no original images; re-export it (awares collect export RUN)"
        )
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    samples = []
    for row in dataset:
        if row["original"] is None:
            raise TrainingDataError(f"row {row['id']!r} has no original image; re-export the collection")
        evidence = row.get("evidence")
        samples.append(
            EvalSample(
                id=str(row["id"]),
                image=row["original"],
                question=row["question"],
                answers=row["answers"],
                metric=row.get("metric") or "exact",
                needs_hr=row.get("needs_crop"),
                bbox=tuple(evidence) if evidence else None,
                category=row.get("label"),
            )
        )
    return samples
