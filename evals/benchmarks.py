"""The paper's six benchmarks, loaded into the common schema (:class:`awares_agent.evals.schema.EvalSample`).

Each :class:`Benchmark` mirrors the lmms-eval task behind the paper's numbers: the same Hub dataset, split,
columns, prompt suffix and metric (``lmms_eval/tasks/<task>/*.yaml`` and ``utils.py``):

=============  ==========================  ==========  =========================================  ==========
name           Hub dataset (config)        split       columns used                               metric
=============  ==========================  ==========  =========================================  ==========
chartqa        lmms-lab/ChartQA            test        question, answer, type, image              relaxed
docvqa         lmms-lab/DocVQA (DocVQA)    validation  questionId, question, answers,             anls
                                                       question_types, image
ocrbench       echo840/OCRBench            test        question, answer (list), question_type,    ocrbench
                                                       image
pope           lmms-lab/POPE               test        question_id, question, answer, category,   yes_no
                                                       image
realworldqa    lmms-lab/RealWorldQA        test        question (options included), answer,       choice
                                                       image
vstar          lmms-lab/vstar-bench        test        question_id, text (options included),      choice
                                                       label, category, image
=============  ==========================  ==========  =========================================  ==========

DocVQA's test split has no public answers, hence ``validation`` (lmms-eval's ``docvqa_val``). Rows without
an id column (ChartQA, OCRBench, RealWorldQA) take their row index as id; POPE's id is
``<category>-<question_id>`` because question ids repeat across its three categories.

Datasets are read with ``datasets.load_dataset`` and so from the local Hugging Face cache when they are
there. On a machine without network, download a copy elsewhere (``hf download --repo-type dataset <id>
--local-dir <dir>``) and pass ``local_path=<dir>``; a ``save_to_disk`` directory or a folder of parquet/arrow
files with the same columns works too. Set ``HF_HUB_OFFLINE=1`` to skip the Hub's network retries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from awares_agent.errors import ConfigError
from awares_agent.evals.dataset import (
    EvalDataError,
    LoadedSamples,
    RowConverter,
    convert_rows,
    dataset_image,
    dataset_rows,
    is_saved_dataset,
    load_samples,
    select_split,
)
from awares_agent.evals.metrics import parse_options
from awares_agent.evals.schema import EvalSample
from awares_agent.evals.synthetic import generate
from awares_agent.evals.synthetic.decision import generate_decision
from awares_agent.evals.synthetic.stripes import TINTED, generate_stripes

__all__ = ["BENCHMARKS", "Benchmark", "load_benchmark"]

logger = logging.getLogger(__name__)

#: lmms-eval's default ``post_prompt`` for ChartQA, DocVQA and POPE.
SHORT_ANSWER_PROMPT = "\nAnswer the question using a single word or phrase."
#: lmms-eval's ``post_prompt`` for V*.
LETTER_ANSWER_PROMPT = "\nAnswer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its data lives and how a row becomes an
    :class:`~awares_agent.evals.schema.EvalSample`.

    Attributes:
        name: the short name (``"chartqa"``...).
        hub_id: the Hugging Face dataset id.
        split: the evaluation split.
        metric: the standard metric (one of :data:`awares_agent.evals.schema.METRICS`).
        convert: turns a row (image undecoded) and its index into a sample.
        columns: the dataset columns ``convert`` reads; a local copy must have them.
        config: the dataset configuration (subset) name, if the dataset has several.
        task: the lmms-eval task this mirrors.
    """

    name: str
    hub_id: str
    split: str
    metric: str
    convert: RowConverter
    columns: tuple[str, ...]
    config: str | None = None
    task: str = ""


# --- row converters ------------------------------------------------------------------------------------


def _chartqa(row: Mapping[str, Any], index: int) -> EvalSample:
    return EvalSample(
        id=str(index),
        image=dataset_image(row["image"]),
        question=f"{row['question']}{SHORT_ANSWER_PROMPT}",
        answers=[row["answer"]],
        metric="relaxed",
        category=row.get("type"),  # human_test / augmented_test
    )


def _docvqa(row: Mapping[str, Any], index: int) -> EvalSample:
    types = row.get("question_types") or []
    return EvalSample(
        id=str(row["questionId"]),
        image=dataset_image(row["image"]),
        question=f"{row['question']}{SHORT_ANSWER_PROMPT}",
        answers=list(row["answers"]),
        metric="anls",
        category=types[0] if types else None,
    )


def _ocrbench(row: Mapping[str, Any], index: int) -> EvalSample:
    return EvalSample(
        id=str(index),
        image=dataset_image(row["image"]),
        question=row["question"].strip(),
        answers=row["answer"],  # a list; a plain string is accepted too
        metric="ocrbench",
        category=row.get("question_type"),
    )


def _pope(row: Mapping[str, Any], index: int) -> EvalSample:
    category = row.get("category")
    question_id = str(row["question_id"])
    return EvalSample(
        id=f"{category}-{question_id}" if category else question_id,
        image=dataset_image(row["image"]),
        question=f"{row['question'].strip()}{SHORT_ANSWER_PROMPT}",
        answers=[row["answer"].strip().lower()],
        metric="yes_no",
        category=category,
    )


def _realworldqa(row: Mapping[str, Any], index: int) -> EvalSample:
    # The question already lists the options ("A. ...") and says how to answer; lmms-eval adds nothing.
    return EvalSample(
        id=str(index),
        image=dataset_image(row["image"]),
        question=row["question"].strip(),
        answers=[row["answer"].strip()],
        metric="choice",
    )


def vstar_prompt(text: str) -> str:
    """V*'s question in lmms-eval's layout: the question, then ``A. option`` lines, then the instruction.

    V*'s ``text`` reads ``"What is the material of the glove?\\n(A) rubber\\n(B) cotton\\n...\\nAnswer with
    the option's letter from the given choices directly."``; the instruction is kept once.
    """
    options = parse_options(text)
    if not options:
        stripped = text.strip()
        return stripped if LETTER_ANSWER_PROMPT.strip() in stripped else f"{stripped}{LETTER_ANSWER_PROMPT}"
    stem = text.split("(A)", 1)[0].strip()
    lines = [stem, *(f"{letter}. {option}" for letter, option in options.items())]
    return "\n".join(lines) + LETTER_ANSWER_PROMPT


def _vstar(row: Mapping[str, Any], index: int) -> EvalSample:
    return EvalSample(
        id=str(row["question_id"]),
        image=dataset_image(row["image"]),
        question=vstar_prompt(row["text"]),
        answers=[row["label"].strip()],
        metric="choice",
        category=row.get("category"),  # direct_attributes / relative_position
    )


#: The six benchmarks of the paper, by name.
BENCHMARKS: dict[str, Benchmark] = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark(
            name="chartqa",
            hub_id="lmms-lab/ChartQA",
            split="test",
            metric="relaxed",
            convert=_chartqa,
            columns=("question", "answer", "image"),
            task="chartqa",
        ),
        Benchmark(
            name="docvqa",
            hub_id="lmms-lab/DocVQA",
            config="DocVQA",
            split="validation",
            metric="anls",
            convert=_docvqa,
            columns=("questionId", "question", "answers", "image"),
            task="docvqa_val",
        ),
        Benchmark(
            name="ocrbench",
            hub_id="echo840/OCRBench",
            split="test",
            metric="ocrbench",
            convert=_ocrbench,
            columns=("question", "answer", "image"),
            task="ocrbench",
        ),
        Benchmark(
            name="pope",
            hub_id="lmms-lab/POPE",
            split="test",
            metric="yes_no",
            convert=_pope,
            columns=("question_id", "question", "answer", "image"),
            task="pope",
        ),
        Benchmark(
            name="realworldqa",
            hub_id="lmms-lab/RealWorldQA",
            split="test",
            metric="choice",
            convert=_realworldqa,
            columns=("question", "answer", "image"),
            task="realworldqa",
        ),
        Benchmark(
            name="vstar",
            hub_id="lmms-lab/vstar-bench",
            split="test",
            metric="choice",
            convert=_vstar,
            columns=("question_id", "text", "label", "image"),
            task="vstar_bench",
        ),
    )
}


# --- loading ----------------------------------------------------------------------------------------------


def _download_hint(benchmark: Benchmark) -> str:
    return (
        "To get it, on a machine with network access run\n"
        f"  hf download --repo-type dataset {benchmark.hub_id} --local-dir <dir>\n"
        "(older huggingface_hub: huggingface-cli download ...) and pass that directory as local_path; or run "
        "load_benchmark once with network access to fill the Hugging Face cache. On a machine without "
        "network, set HF_HUB_OFFLINE=1 to skip the Hub's retries."
    )


def _from_hub(benchmark: Benchmark, split: str, cache_dir: str | None) -> Any:
    import datasets

    try:
        return datasets.load_dataset(benchmark.hub_id, benchmark.config, split=split, cache_dir=cache_dir)
    except OSError as exc:  # ConnectionError, DatasetNotFoundError, FileNotFoundError, HTTP errors
        config = f", config {benchmark.config}" if benchmark.config else ""
        raise ConfigError(
            f"benchmark {benchmark.name!r} needs the dataset {benchmark.hub_id} (split {split}{config}), "
            "which is not in the local Hugging Face cache and could not be fetched "
            f"({type(exc).__name__}: {exc}).\n" + _download_hint(benchmark)
        ) from exc
    except ValueError as exc:  # an unknown split or config
        raise ConfigError(f"benchmark {benchmark.name!r} ({benchmark.hub_id}): {exc}") from exc


def _from_local_copy(benchmark: Benchmark, path: Path, split: str | None, cache_dir: str | None) -> Any:
    """Read a local copy: a save_to_disk directory, a Hub snapshot or parquet/arrow folder, or one file."""
    import datasets
    from datasets.exceptions import DatasetsError

    if not path.exists():
        raise ConfigError(f"local copy of {benchmark.name!r} not found: {path}")
    source = f"local copy of {benchmark.name!r} at {path}"
    try:
        if is_saved_dataset(path):
            return select_split(
                datasets.load_from_disk(str(path)), split, source=source, default=benchmark.split
            )
        if path.is_file():
            builder = {".parquet": "parquet", ".arrow": "arrow"}.get(path.suffix.lower())
            if builder is None:
                raise ConfigError(f"{source}: a single file must be .parquet or .arrow")
            return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir)
        configs = datasets.get_dataset_config_names(str(path))
        config = benchmark.config if benchmark.config in configs else None
        builder = datasets.load_dataset_builder(str(path), config, cache_dir=cache_dir)
        splits = list(builder.config.data_files or {})
        if split is None:
            split = benchmark.split if benchmark.split in splits or len(splits) != 1 else splits[0]
        if split not in splits:
            raise ConfigError(
                f"{source} has no split {split!r}; its splits are: {', '.join(splits) or 'none'}"
            )
        return datasets.load_dataset(str(path), config, split=split, cache_dir=cache_dir)
    except (OSError, ValueError, DatasetsError) as exc:
        raise ConfigError(
            f"cannot read the {source} ({type(exc).__name__}: {exc}). Give a directory written by "
            "save_to_disk, a folder of parquet or arrow files (such as a Hub snapshot of "
            f"{benchmark.hub_id}), or one such file."
        ) from exc


def _load_synthetic(limit: int | None, seed: int) -> LoadedSamples:
    # Generated on the fly (deterministic by seed); --limit is how many samples to generate.
    return LoadedSamples(generate(limit or SYNTHETIC_DEFAULT_SIZE, seed=seed))


#: Samples generated for ``--bench synthetic`` without ``--limit``.
SYNTHETIC_DEFAULT_SIZE = 100


def _looks_like_path(text: str) -> bool:
    """An existing path, or one that can only be meant as a path (``./x``, ``~/x``, ``/x``, ``x.jsonl``)."""
    return os.path.exists(text) or text.startswith((".", "~", os.sep)) or text.lower().endswith(".jsonl")


def load_benchmark(
    name_or_path: str | os.PathLike[str],
    *,
    split: str | None = None,
    limit: int | None = None,
    local_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> LoadedSamples:
    """Load a benchmark by name, or custom data by path, as samples in the common schema.

    Args:
        name_or_path: a name from :data:`BENCHMARKS` (or its Hub id), ``"synthetic"``, ``"crop-decision"``
            (:mod:`awares_agent.evals.synthetic.decision`), ``"stripes"`` / ``"stripes-tinted"``
            (:mod:`awares_agent.evals.synthetic.stripes`), or a path to custom
            data (anything :func:`awares_agent.evals.dataset.load_samples` reads). A known name wins over a
            directory of
            the same name; write ``./chartqa`` for the directory.
        split: the split to load (default: the benchmark's evaluation split; for a local copy with a single
            split, that one).
        limit: load at most this many usable samples, from the start (``None``: all).
        local_path: for a named benchmark, read this local copy instead of the Hub: a ``save_to_disk``
            directory, a folder of parquet/arrow files (a Hub snapshot), or one such file, with the
            benchmark's columns.
        cache_dir: the `datasets` cache to use (default: the Hugging Face default).
        seed: seeds the synthetic benchmark's generator (which makes ``limit`` samples); unused otherwise.

    Returns:
        The samples (a list), each with the benchmark's prompt suffix in ``question`` and its standard
        ``metric``; ``.skipped`` lists the rows left out and why.

    Raises:
        ConfigError: an unknown name; a benchmark neither cached nor reachable (the message says how to get
            it); an unreadable local copy or unknown split.
        EvalDataError: the data lacks the benchmark's columns or has no usable row.
    """
    key = os.fspath(name_or_path)
    benchmark = BENCHMARKS.get(key.lower()) or next(
        (b for b in BENCHMARKS.values() if b.hub_id.lower() == key.lower()), None
    )
    if benchmark is None:
        if local_path is not None:
            raise ConfigError(
                f"local_path is for the named benchmarks ({', '.join(BENCHMARKS)}), not {key!r}"
            )
        if key.lower() == "synthetic":
            return _load_synthetic(limit, seed)
        if key.lower() == "crop-decision":  # the same question on every page: only the pixels decide
            return LoadedSamples(generate_decision(limit or SYNTHETIC_DEFAULT_SIZE, seed=seed))
        if key.lower() == "stripes":  # 1-px lines the half-size view averages to grey
            return LoadedSamples(generate_stripes(limit or SYNTHETIC_DEFAULT_SIZE, seed=seed))
        if key.lower() == "stripes-tinted":  # the same task in another look
            return LoadedSamples(generate_stripes(limit or SYNTHETIC_DEFAULT_SIZE, seed=seed, spec=TINTED))
        if _looks_like_path(key):
            return load_samples(key, split=split, limit=limit)
        raise ConfigError(
            f"unknown benchmark {key!r} (and no file or directory of that name); the known benchmarks are "
            f"{', '.join(BENCHMARKS)} (and 'synthetic', 'crop-decision', 'stripes', 'stripes-tinted')."
            " A path to custom data (a saved dataset directory or a JSONL file) is accepted too."
        )
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    if local_path is not None:
        where = Path(local_path).expanduser()
        dataset = _from_local_copy(benchmark, where, split, cache)
        source = f"{benchmark.name} ({where})"
    else:
        dataset = _from_hub(benchmark, split or benchmark.split, cache)
        source = f"{benchmark.name} ({benchmark.hub_id})"
    missing = [column for column in benchmark.columns if column not in dataset.column_names]
    if missing:
        raise EvalDataError(
            f"{source}: missing column(s) {', '.join(missing)} that {benchmark.name} needs; it has "
            f"{', '.join(dataset.column_names)}"
        )
    logger.info("loading %s: %d rows", source, len(dataset))
    return convert_rows(dataset_rows(dataset), benchmark.convert, source=source, limit=limit)
