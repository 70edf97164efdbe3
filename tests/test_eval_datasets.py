"""Tests for awares_agent.evals.dataset (custom data in the common schema) and awares_agent.evals.benchmarks
(the paper's six).

Every fixture is built here, in a temporary directory, with real `datasets` files and real (generated)
images: each benchmark's fixture has that benchmark's exact column names (as read by lmms-eval's task code)
and is loaded through ``local_path``, then scored end to end with the benchmark's metric. The Hub is the one
thing outside the project: it is either made unreachable for real (offline mode) or replaced by a fake
``datasets.load_dataset``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from datasets.exceptions import DatasetNotFoundError
from PIL import Image

from awares_agent.errors import ConfigError
from awares_agent.evals.benchmarks import BENCHMARKS, load_benchmark
from awares_agent.evals.dataset import EvalDataError, LoadedSamples, SkippedRow, load_samples, save_samples
from awares_agent.evals.metrics import score
from awares_agent.evals.schema import EvalSample

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def _image(index: int, size: tuple[int, int] = (48, 32)) -> Image.Image:
    """A small RGB image with a colour and a marker pixel unique to ``index``."""
    image = Image.new("RGB", size, COLORS[index % len(COLORS)])
    image.putpixel((index % size[0], 0), (255, 255, 255))
    return image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pixels(value: Any) -> bytes:
    """Decoded RGB pixels of an image value (PIL image, encoded bytes or a path)."""
    if isinstance(value, bytes):
        value = Image.open(io.BytesIO(value))
    elif not isinstance(value, Image.Image):
        value = Image.open(value)
    return value.convert("RGB").tobytes()


def _scores(samples: list[EvalSample], predictions: list[str | None]) -> list[float]:
    return [
        score(sample.metric, prediction, sample.answers, question=sample.question)
        for sample, prediction in zip(samples, predictions, strict=True)
    ]


# --- the six benchmarks, from local copies in their exact schemas -----------------------------------------

VSTAR_TEXT = (
    "What is the material of the glove?\n(A) rubber\n(B) cotton\n(C) kevlar\n(D) leather\n"
    "Answer with the option's letter from the given choices directly."
)
RWQA_QUESTION = (
    "In which direction is the front wheel of the car on the right side facing?\n\nA. Left\nB. Straight\n"
    "C. Right\n\nPlease answer directly with only the letter of the correct option and nothing else."
)


def _with_images(
    columns: dict[str, list[Any]], features: datasets.Features | None = None
) -> datasets.Dataset:
    rows = len(next(iter(columns.values())))
    data = {**columns, "image": [_image(i) for i in range(rows)]}
    if features is not None:
        features = datasets.Features({**features, "image": datasets.Image()})
    return datasets.Dataset.from_dict(data, features=features)


def _chartqa_copy(root: Path) -> Path:
    """A parquet folder as a Hub snapshot lays it out (split named by the file)."""
    dataset = _with_images(
        {
            "type": ["human_test", "augmented_test", "human_test"],
            "question": ["How many bars are there?", "What is the share of Brazil?", "Which country leads?"],
            "answer": ["12", "45", "Brazil"],
        }
    )
    folder = root / "chartqa" / "data"
    folder.mkdir(parents=True)
    dataset.to_parquet(str(folder / "test-00000-of-00001.parquet"))
    return root / "chartqa"


def _docvqa_copy(root: Path) -> Path:
    """A DatasetDict with DocVQA's two splits; the test split has no answers, as on the Hub."""
    columns = {
        "questionId": ["49153", "57349"],
        "question": ["What is the ‘actual’ value per 1000, during the year 1975?", "What is the date?"],
        "question_types": [["figure/diagram"], ["layout", "form"]],
        "docId": [14465, 8181],
        "ucsf_document_id": ["pybv0228", "jxyw0001"],
        "ucsf_document_page_no": ["81", "2"],
        "answers": [["0.28"], ["1/8/93", "January 8, 1993"]],
        "data_split": ["val", "val"],
    }
    validation = _with_images(columns)
    test = _with_images({key: value for key, value in columns.items() if key != "answers"})
    path = root / "docvqa"
    datasets.DatasetDict({"validation": validation, "test": test}).save_to_disk(str(path))
    return path


def _ocrbench_copy(root: Path) -> Path:
    """OCRBench as echo840/OCRBench stores it (``answer`` is a list of strings)."""
    features = datasets.Features(
        {
            "dataset": datasets.Value("string"),
            "question": datasets.Value("string"),
            "question_type": datasets.Value("string"),
            "answer": datasets.Sequence(datasets.Value("string")),
        }
    )
    dataset = _with_images(
        {
            "dataset": ["IIIT5K", "HME100k"],
            "question": ["what is written in the image? ", "Please write out the expression of the formula."],
            "question_type": ["Regular Text Recognition", "Handwritten Mathematical Expression Recognition"],
            "answer": [["CENTRE", "center"], ["x ^ { 2 }"]],
        },
        features,
    )
    path = root / "ocrbench"
    dataset.save_to_disk(str(path))
    return path


def _pope_copy(root: Path) -> Path:
    dataset = _with_images(
        {
            "id": ["0", "1", "2"],
            "question_id": ["1", "1", "2"],  # question ids restart in each category
            "question": [
                "Is there a snowboard in the image?",
                "Is there a dog in the image?",
                "Is there a car?",
            ],
            "answer": ["yes", "no", "no"],
            "image_source": ["COCO_val2014_000000310196", "COCO_val2014_000000310196", "COCO_val2014_1"],
            "category": ["adversarial", "popular", "popular"],
        }
    )
    path = root / "pope"
    dataset.save_to_disk(str(path))
    return path


def _realworldqa_copy(root: Path) -> Path:
    """One parquet file (its only split is then called "train" by `datasets`)."""
    dataset = _with_images(
        {
            "image_path": ["0.webp", "1.webp"],
            "question": [
                RWQA_QUESTION,
                "How many cars are parked? Please answer directly with a single number.",
            ],
            "answer": ["C", "3"],
        }
    )
    path = root / "realworldqa.parquet"
    dataset.to_parquet(str(path))
    return path


def _vstar_copy(root: Path) -> Path:
    dataset = _with_images(
        {
            "text": [VSTAR_TEXT, "Is the dog on the left or right side of the river?\n(A) left\n(B) right"],
            "label": ["A", "B"],
            "question_id": [0, 115],
            "category": ["direct_attributes", "relative_position"],
        }
    )
    path = root / "vstar"
    datasets.DatasetDict({"test": dataset}).save_to_disk(str(path))
    return path


# name -> (fixture, expected ids, answers, categories, predictions, scores of those predictions)
BENCHMARK_CASES: dict[str, tuple[Any, ...]] = {
    "chartqa": (
        _chartqa_copy,
        ["0", "1", "2"],
        [["12"], ["45"], ["Brazil"]],
        ["human_test", "augmented_test", "human_test"],
        ["12.5", "45%", "brazil."],
        [1.0, 1.0, 1.0],
    ),
    "docvqa": (
        _docvqa_copy,
        ["49153", "57349"],
        [["0.28"], ["1/8/93", "January 8, 1993"]],
        ["figure/diagram", "layout"],
        ["0.2", "January 8, 1993"],
        [0.75, 1.0],  # ANLS: "0.2" is one edit from "0.28" (1 - 1/4)
    ),
    "ocrbench": (
        _ocrbench_copy,
        ["0", "1"],
        [["CENTRE", "center"], ["x ^ { 2 }"]],
        ["Regular Text Recognition", "Handwritten Mathematical Expression Recognition"],
        ["The word is Centre.", "x^{2}"],
        [1.0, 0.0],  # the space-insensitive HME rule is not applied by score()
    ),
    "pope": (
        _pope_copy,
        ["adversarial-1", "popular-1", "popular-2"],
        [["yes"], ["no"], ["no"]],
        ["adversarial", "popular", "popular"],
        ["Yes, there is.", "Yes", "No."],
        [1.0, 0.0, 1.0],
    ),
    "realworldqa": (
        _realworldqa_copy,
        ["0", "1"],
        [["C"], ["3"]],
        [None, None],
        ["Right", "three"],
        [1.0, 1.0],
    ),
    "vstar": (
        _vstar_copy,
        ["0", "115"],
        [["A"], ["B"]],
        ["direct_attributes", "relative_position"],
        ["The answer is (A) rubber", "left"],
        [1.0, 0.0],
    ),
}


def test_the_registry_has_the_papers_six_benchmarks() -> None:
    assert set(BENCHMARKS) == {"chartqa", "docvqa", "ocrbench", "pope", "realworldqa", "vstar"}
    assert set(BENCHMARK_CASES) == set(BENCHMARKS)
    assert {name: (b.hub_id, b.split) for name, b in BENCHMARKS.items()} == {
        "chartqa": ("lmms-lab/ChartQA", "test"),
        "docvqa": ("lmms-lab/DocVQA", "validation"),
        "ocrbench": ("echo840/OCRBench", "test"),
        "pope": ("lmms-lab/POPE", "test"),
        "realworldqa": ("lmms-lab/RealWorldQA", "test"),
        "vstar": ("lmms-lab/vstar-bench", "test"),
    }


@pytest.mark.parametrize("name", sorted(BENCHMARK_CASES))
def test_benchmark_local_copy_loads_and_scores_end_to_end(name: str, tmp_path: Path) -> None:
    make_copy, ids, answers, categories, predictions, expected_scores = BENCHMARK_CASES[name]
    benchmark = BENCHMARKS[name]
    samples = load_benchmark(name, local_path=make_copy(tmp_path), cache_dir=tmp_path / "cache")

    assert samples.skipped == []
    assert [s.id for s in samples] == ids
    assert [s.answers for s in samples] == answers
    assert [s.category for s in samples] == categories
    assert {s.metric for s in samples} == {benchmark.metric}
    for index, sample in enumerate(samples):
        assert isinstance(sample.image, bytes)  # left encoded; the agent decodes it lazily
        assert _pixels(sample.image) == _pixels(_image(index))
    assert _scores(samples, predictions) == pytest.approx(expected_scores)


def test_benchmark_prompts_follow_lmms_eval(tmp_path: Path) -> None:
    chartqa = load_benchmark("chartqa", local_path=_chartqa_copy(tmp_path), cache_dir=tmp_path / "c")
    assert (
        chartqa[0].question == "How many bars are there?\nAnswer the question using a single word or phrase."
    )
    pope = load_benchmark("pope", local_path=_pope_copy(tmp_path))
    assert pope[0].question.endswith("in the image?\nAnswer the question using a single word or phrase.")
    ocr = load_benchmark("ocrbench", local_path=_ocrbench_copy(tmp_path))
    assert ocr[0].question == "what is written in the image?"  # stripped, nothing added
    rwqa = load_benchmark("realworldqa", local_path=_realworldqa_copy(tmp_path), cache_dir=tmp_path / "c")
    assert rwqa[0].question == RWQA_QUESTION  # options and instruction are already in the question
    vstar = load_benchmark("vstar", local_path=_vstar_copy(tmp_path))
    assert vstar[0].question == (
        "What is the material of the glove?\nA. rubber\nB. cotton\nC. kevlar\nD. leather\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert vstar[0].question.count("Answer with the option's letter") == 1


def test_benchmark_limit_and_split_of_a_local_copy(tmp_path: Path) -> None:
    path = _docvqa_copy(tmp_path)
    samples = load_benchmark("docvqa", local_path=path, limit=1)
    assert [s.id for s in samples] == ["49153"]
    with pytest.raises(ConfigError, match=r"no split 'train'; its splits are: validation, test"):
        load_benchmark("docvqa", local_path=path, split="train")


def test_benchmark_local_copy_as_a_hub_snapshot_with_configs(tmp_path: Path) -> None:
    """The layout `hf download --repo-type dataset lmms-lab/DocVQA --local-dir <dir>` produces."""
    saved = datasets.load_from_disk(str(_docvqa_copy(tmp_path)))
    snapshot = tmp_path / "snapshot"
    for config in ("DocVQA", "InfographicVQA"):
        (snapshot / config).mkdir(parents=True)
        for split in ("validation", "test"):
            saved[split].to_parquet(str(snapshot / config / f"{split}-00000-of-00001.parquet"))
    configs = "".join(
        f"- config_name: {config}\n  data_files:\n"
        + "".join(f"  - split: {split}\n    path: {config}/{split}-*\n" for split in ("validation", "test"))
        for config in ("DocVQA", "InfographicVQA")
    )
    (snapshot / "README.md").write_text(f"---\nconfigs:\n{configs}---\n", encoding="utf-8")

    samples = load_benchmark("docvqa", local_path=snapshot, cache_dir=tmp_path / "cache")
    assert [s.id for s in samples] == ["49153", "57349"]
    assert samples[1].answers == ["1/8/93", "January 8, 1993"]


def test_benchmark_local_copy_without_the_benchmarks_columns(tmp_path: Path) -> None:
    path = tmp_path / "docvqa-test"
    _with_images({"questionId": ["1"], "question": ["What?"]}).save_to_disk(str(path))
    with pytest.raises(EvalDataError, match=r"missing column\(s\) answers that docvqa needs"):
        load_benchmark("docvqa", local_path=path)


def test_benchmark_local_copy_missing_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local copy of 'pope' not found"):
        load_benchmark("pope", local_path=tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match=r"single file must be \.parquet or \.arrow"):
        load_benchmark("pope", local_path=tmp_path / "notes.txt")


def test_benchmark_by_hub_id_and_local_path_only_for_known_names(tmp_path: Path) -> None:
    samples = load_benchmark("lmms-lab/vstar-bench", local_path=_vstar_copy(tmp_path))
    assert samples[0].metric == "choice"
    with pytest.raises(ConfigError, match="local_path is for the named benchmarks"):
        load_benchmark(str(tmp_path / "custom.jsonl"), local_path=tmp_path)


def test_benchmark_from_the_hub_uses_id_config_and_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = datasets.load_from_disk(str(_docvqa_copy(tmp_path)))["validation"]
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(path: str, name: str | None = None, *, split: str, cache_dir: Any = None) -> Any:
        calls.append((path, name, split))
        return copy

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    samples = load_benchmark("docvqa")
    assert calls == [("lmms-lab/DocVQA", "DocVQA", "validation")]
    assert [s.id for s in samples] == ["49153", "57349"]


@pytest.mark.parametrize("name", ["mmmu", "lmms-lab/MMMU"])
def test_unknown_benchmark_lists_the_known_names(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_benchmark(name)
    message = str(raised.value)
    assert f"unknown benchmark {name!r}" in message
    for known in BENCHMARKS:
        assert known in message
    assert "path to custom data" in message


@pytest.mark.parametrize(
    "hub_error",
    [
        ConnectionError("Couldn't reach 'lmms-lab/ChartQA' on the Hub (LocalEntryNotFoundError)"),
        DatasetNotFoundError("Dataset 'lmms-lab/ChartQA' doesn't exist on the Hub or cannot be accessed."),
    ],
)
def test_benchmark_not_cached_says_how_to_get_it(
    hub_error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise hub_error

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(ConfigError) as raised:
        load_benchmark("chartqa")
    message = str(raised.value)
    assert "lmms-lab/ChartQA" in message
    assert "hf download --repo-type dataset lmms-lab/ChartQA" in message
    assert "local_path" in message
    assert raised.value.__cause__ is hub_error


def test_benchmark_not_cached_with_the_hub_really_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `datasets` itself raises with HF_HUB_OFFLINE=1 and an empty cache (no network is touched).
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"lmms-lab/POPE .*not in the local Hugging Face cache") as raised:
        load_benchmark("pope", cache_dir=tmp_path / "empty-cache")
    assert isinstance(raised.value.__cause__, ConnectionError)


def test_benchmark_unknown_split_on_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_split(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("Unknown split \"dev\". Should be one of ['test'].")

    monkeypatch.setattr(datasets, "load_dataset", no_such_split)
    with pytest.raises(ConfigError, match=r"'vstar' \(lmms-lab/vstar-bench\): Unknown split"):
        load_benchmark("vstar", split="dev")


def test_synthetic_is_generated_deterministically() -> None:
    first = load_benchmark("synthetic", limit=2, seed=3)
    again = load_benchmark("synthetic", limit=2, seed=3)
    assert len(first) == 2
    assert [(s.id, s.question, s.answers) for s in first] == [(s.id, s.question, s.answers) for s in again]


# --- custom data: JSONL ------------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def jsonl_data(tmp_path: Path) -> Path:
    """A JSONL file beside an ``images/`` folder: good rows, a blank line and one bad row of each kind."""
    images = tmp_path / "images"
    images.mkdir()
    _image(0).save(images / "a.png")
    _image(1).save(images / "b.png")
    good = {"image": "images/a.png", "question": "What is the invoice number?", "answers": ["x"]}
    return _write_jsonl(
        tmp_path / "samples.jsonl",
        [
            {
                "id": "a",
                "image": "images/a.png",
                "question": "What is the invoice number?",
                "answers": "INVOICE 2024",  # a string answer
                "bbox": [1, 2, 30, 40],
                "needs_hr": True,
                "metric": "exact",
                "category": "receipt",
                "source": "ignored extra field",
            },
            {"id": 2, "image": str(images / "b.png"), "question": "Total?", "answers": ["12", "12.00"]},
            "",
            "{not json",
            {"id": "c", "image": "images/a.png", "answers": ["z"]},
            {**good, "id": "d", "bbox": [30, 2, 1, 40]},
            {**good, "id": "e", "metric": "bleu"},
            {**good, "id": "a"},
            {**good, "id": "f", "image": "images/missing.png", "needs_hr": False},
            [1, 2],
            {**good, "id": "g", "answers": []},
            {**good, "id": "h", "bbox": [1, 2, 3]},
        ],
    )


def test_jsonl_loads_good_rows_and_skips_bad_ones_with_reasons(jsonl_data: Path) -> None:
    samples = load_samples(jsonl_data)
    skipped = samples.skipped
    folder = jsonl_data.parent.resolve()

    assert [s.id for s in samples] == ["a", "2", "f"]
    first = samples[0]
    assert first.image == str(folder / "images" / "a.png")  # relative to the JSONL file, made absolute
    assert first.answers == ["INVOICE 2024"]
    assert first.evidence == (1.0, 2.0, 30.0, 40.0)
    assert (first.needs_crop, first.metric, first.category) == (True, "exact", "receipt")
    assert samples[1].image == str(folder / "images" / "b.png")
    assert (samples[1].evidence, samples[1].needs_crop, samples[1].category) == (None, None, None)
    assert samples[2].image == str(folder / "images" / "missing.png")  # files are not checked at load time

    reasons = {(row.row_index, row.id): row.reason for row in skipped}
    assert list(reasons) == [
        (3, None),
        (4, "c"),
        (5, "d"),
        (6, "e"),
        (7, "a"),
        (9, None),
        (10, "g"),
        (11, "h"),
    ]
    assert "line 4 is not valid JSON" in reasons[(3, None)]
    assert "missing required field(s): question" in reasons[(4, "c")]
    assert "bbox must satisfy 0 <= x0 < x1" in reasons[(5, "d")]
    assert "unknown metric 'bleu'" in reasons[(6, "e")]
    assert "duplicate id 'a'" in reasons[(7, "a")]
    assert "not a JSON object" in reasons[(9, None)]
    assert "answers is empty" in reasons[(10, "g")]
    assert "bbox must be [x0, y0, x1, y1]" in reasons[(11, "h")]
    assert all(isinstance(row, SkippedRow) for row in skipped)

    # The loaded sample scores end to end: the OCR reader's glued answer matches.
    assert score(first.metric, "INVOICE2024", first.answers) == 1.0
    with Image.open(first.image) as image:
        assert image.convert("RGB").tobytes() == _pixels(_image(0))


def test_jsonl_directory_limit_and_benchmark_entry_point(jsonl_data: Path) -> None:
    by_dir = load_samples(jsonl_data.parent)  # a directory holding samples.jsonl
    assert isinstance(by_dir, LoadedSamples) and isinstance(by_dir, list)
    assert [s.id for s in by_dir] == ["a", "2", "f"]
    assert len(by_dir.skipped) == 8
    assert [s.id for s in load_samples(jsonl_data, limit=2)] == ["a", "2"]
    assert [s.id for s in load_benchmark(str(jsonl_data))] == ["a", "2", "f"]


def test_jsonl_with_no_usable_row(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"id": "x"}, "oops"])
    with pytest.raises(EvalDataError, match="no usable sample") as raised:
        load_samples(path)
    assert [row.row_index for row in raised.value.skipped] == [0, 1]


def test_missing_or_unknown_sources_name_the_path_and_the_formats(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_samples(tmp_path / "nowhere.jsonl")
    assert str(tmp_path / "nowhere.jsonl") in str(raised.value)
    assert "save_to_disk" in str(raised.value) and ".jsonl" in str(raised.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not evaluation data in a known format"):
        load_samples(tmp_path / "empty")
    with pytest.raises(ConfigError, match="limit must be a positive integer"):
        load_samples(tmp_path / "empty", limit=0)


# --- custom data: saved datasets ---------------------------------------------------------------------------


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    jpeg = tmp_path / "photo.jpg"
    _image(2, size=(40, 40)).save(jpeg, format="JPEG")
    originals = [
        EvalSample(id="pil", image=_image(0), question="Q1?", answers=["a"], evidence=(1.5, 2, 30, 20.25)),
        EvalSample(
            id="bytes",
            image=_png(_image(1)),
            question="Q2?",
            answers=["b", "B"],
            needs_crop=True,
            metric="anls",
        ),
        EvalSample(
            id="path", image=str(jpeg), question="Q3?", answers=["c"], needs_crop=False, category="photo"
        ),
    ]
    path = save_samples(originals, tmp_path / "saved")
    samples = load_samples(path)

    assert samples.skipped == []
    assert [s.id for s in samples] == ["pil", "bytes", "path"]
    for loaded, original in zip(samples, originals, strict=True):
        assert _pixels(loaded.image) == _pixels(original.image)
        assert loaded.model_dump(exclude={"image"}) == original.model_dump(exclude={"image"})
    assert samples[0].evidence == (1.5, 2.0, 30.0, 20.25)
    assert samples[1].evidence is None and samples[2].evidence is None
    assert samples[0].needs_crop is None and samples[0].category is None


def test_save_samples_rejects_bad_input(tmp_path: Path) -> None:
    sample = EvalSample(id="x", image=_image(0), question="Q?", answers=["a"])
    with pytest.raises(ConfigError, match="at least one sample"):
        save_samples([], tmp_path / "none")
    with pytest.raises(ConfigError, match="repeated: x"):
        save_samples([sample, sample], tmp_path / "dup")
    missing = EvalSample(id="m", image=str(tmp_path / "missing.png"), question="Q?", answers=["a"])
    with pytest.raises(ConfigError, match=r"sample 'm': cannot read image file .*missing\.png"):
        save_samples([missing], tmp_path / "missing")


def test_saved_dataset_with_minimal_and_extra_columns(tmp_path: Path) -> None:
    dataset = datasets.Dataset.from_dict(
        {
            "id": ["1", "2"],
            "image": [_image(0), _image(1)],
            "question": ["Q1?", "Q2?"],
            "answers": ["one", "two"],  # a string column
            "notes": ["ignored", "ignored"],
        }
    )
    dataset.save_to_disk(str(tmp_path / "minimal"))
    samples = load_samples(tmp_path / "minimal")
    assert [(s.id, s.answers, s.metric, s.evidence, s.needs_crop) for s in samples] == [
        ("1", ["one"], "exact", None, None),
        ("2", ["two"], "exact", None, None),
    ]


def test_saved_dataset_with_image_paths_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "by-path"
    columns = {"id": ["1"], "image": ["images/x.png"], "question": ["Q?"], "answers": [["a"]]}
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    samples = load_samples(path)
    assert samples[0].image == str(path / "images" / "x.png")


def test_saved_dataset_missing_a_required_column(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"id": ["1"], "question": ["Q?"], "answers": [["a"]]}).save_to_disk(
        str(tmp_path / "no-image")
    )
    with pytest.raises(EvalDataError, match=r"missing required column\(s\) image"):
        load_samples(tmp_path / "no-image")


def test_saved_dataset_dict_split_selection(tmp_path: Path) -> None:
    def split(prefix: str) -> list[EvalSample]:
        return [
            EvalSample(id=f"{prefix}{i}", image=_image(i), question="Q?", answers=["a"]) for i in range(2)
        ]

    save_samples(split("train-"), tmp_path / "train")
    save_samples(split("test-"), tmp_path / "test")
    both = datasets.DatasetDict(
        {name: datasets.load_from_disk(str(tmp_path / name)) for name in ("train", "test")}
    )
    both.save_to_disk(str(tmp_path / "both"))

    assert [s.id for s in load_samples(tmp_path / "both")] == ["test-0", "test-1"]  # default "test"
    assert [s.id for s in load_samples(tmp_path / "both", split="train")] == ["train-0", "train-1"]
    with pytest.raises(ConfigError, match=r"no split 'dev'; its splits are: train, test"):
        load_samples(tmp_path / "both", split="dev")
    datasets.DatasetDict({"a": both["train"], "b": both["test"]}).save_to_disk(str(tmp_path / "ab"))
    with pytest.raises(ConfigError, match=r"several splits \(a, b\) and no 'test'"):
        load_samples(tmp_path / "ab")
