"""The AwaRes miniature: a tiny model that sees where, a task low resolution cannot answer, an honest teacher.

* The tiny builders' positional property: the quadrant of a black square is linearly readable from the
  pooled vision output of ``--model tiny`` before any training, and not from the builders without a usable
  absolute position.
* The ``stripes`` task's information property: a fine page's half-size view is the same (to 2 grey levels
  in 255) whichever way its lines run, while a coarse page's view shows it plainly.
* The pattern reader answers from the pixels it is sent: right on full images, "cannot tell" on the views of
  fine pages; ``awares collect label`` with it labels every page as the generator drew it.
* The pipeline through the public CLI on a handful of pages (label, SFT with w = 5, GRPO, eval, report); the
  benchmark (``benchmarks/bench_miniature.py``) runs the same commands at full size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from awares_agent.baselines.pattern_reader import CANNOT_TELL, PatternReader, line_orientation
from awares_agent.cli import main
from awares_agent.evals.benchmarks import load_benchmark
from awares_agent.evals.synthetic.stripes import (
    FINE_SOFT_EDGE,
    STRIPES_ANSWERS,
    STRIPES_QUESTION,
    TINTED,
    StripesSpec,
    generate_stripes,
    view_difference,
)
from awares_agent.images import ViewSpec, open_image
from awares_agent.testing import build_tiny_qwen3_vl, build_tiny_vlm
from awares_agent.testing.location import linear_probe, square_pages


def _load(path: Path) -> tuple[object, object]:
    from transformers import AutoModelForImageTextToText

    from awares_agent.backends.hf_processors import load_processor

    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    return model, load_processor(str(path), local_files_only=True)


@pytest.fixture(scope="module")
def probe_pages() -> tuple[list[tuple[Image.Image, int]], list[tuple[Image.Image, int]]]:
    return square_pages(160, seed=1), square_pages(80, seed=2)


def test_the_tiny_model_can_tell_where_before_any_training(tmp_path: Path, probe_pages: tuple) -> None:
    train, test = probe_pages
    located = linear_probe(*_load(build_tiny_qwen3_vl(tmp_path / "sin")), train, test)
    stock = linear_probe(*_load(build_tiny_qwen3_vl(tmp_path / "rand", positions="random")), train, test)
    qwen25 = linear_probe(*_load(build_tiny_vlm(tmp_path / "q25")), train, test)
    assert located >= 0.95, located
    # Without a usable absolute position the quadrant is near chance (0.25) on held-out pages.
    assert stock < 0.6 and qwen25 < 0.6, (stock, qwen25)


def test_the_sinusoidal_start_is_only_the_position_table(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    sin = load_file(build_tiny_qwen3_vl(tmp_path / "a") / "model.safetensors")
    rand = load_file(build_tiny_qwen3_vl(tmp_path / "b", positions="random") / "model.safetensors")
    differ = {k for k in sin if not torch.equal(sin[k], rand[k])}
    assert differ == {k for k in sin if k.endswith("visual.pos_embed.weight")} and len(differ) == 1
    with pytest.raises(ValueError, match="positions"):
        build_tiny_qwen3_vl(tmp_path / "c", positions="learned")  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [StripesSpec(), TINTED], ids=["plain", "tinted"])
def test_a_fine_pages_view_is_the_same_whichever_way_its_lines_run(spec: StripesSpec) -> None:
    for box in [(20, 30, 120, 130), (21, 31, 117, 127), (300, 40, 405, 145), (260, 300, 372, 412)]:
        for phase in (0, 1):
            assert view_difference(spec, box, 2, phase=phase, soft=FINE_SOFT_EDGE) <= 3
    # Hard-edged 1-px lines would leave a trace where they are cut; thick lines show plainly.
    assert view_difference(spec, (20, 30, 120, 130), 2) > 20
    assert view_difference(spec, (20, 30, 180, 190), 16) > 200


def test_stripes_pages_are_balanced_and_placed_in_one_quadrant() -> None:
    from awares_agent.tools.box_mapping import crops_covering
    from awares_agent.tools.crop_sets import PaperCropSet

    samples = generate_stripes(40, seed=5)
    assert [s.id for s in samples] == [s.id for s in generate_stripes(40, seed=5)]
    assert sum(s.needs_crop for s in samples) == 20
    assert sorted(s.answers[0] for s in samples) == sorted(STRIPES_ANSWERS * 20)
    assert {s.question for s in samples} == {STRIPES_QUESTION}
    for s in samples:
        regions = crops_covering(s.evidence, PaperCropSet(), 448, 448)
        assert (regions in (["0"], ["1"], ["2"], ["3"])) if s.needs_crop else s.category == "coarse"
    assert len(load_benchmark("stripes-tinted", limit=6, seed=1)) == 6


def test_the_pattern_reader_reads_only_what_the_pixels_show() -> None:
    for sample in generate_stripes(24, seed=7) + generate_stripes(12, seed=7, spec=TINTED):
        source = open_image(sample.image)
        assert line_orientation(sample.image)[0] == sample.answers[0]
        view = line_orientation(source.low_res(ViewSpec()))[0]
        assert view == (None if sample.needs_crop else sample.answers[0]), sample.id
    assert line_orientation(Image.new("RGB", (64, 64), "white")) == (None, 1.0)


def test_the_pattern_reader_is_an_agent_backend_that_answers_at_once() -> None:
    from awares_agent import AwaResAgent

    fine = next(s for s in generate_stripes(8, seed=3) if s.needs_crop)
    agent = AwaResAgent(PatternReader(), protocol="awares-text")
    result = agent.ask(fine.image, STRIPES_QUESTION)
    assert result.answer == CANNOT_TELL and result.trajectory.crops == []


def test_collect_label_with_the_pattern_reader_labels_every_page_as_drawn(tmp_path: Path) -> None:
    from awares_agent.engine import read_rows

    out = tmp_path / "label"
    code = main(["collect", "label", "--bench", "stripes", "--limit", "24", "--seed", "4", "--backend",
                 "pattern-reader", "--protocol", "awares-text", "--out", str(out)])  # fmt: skip
    assert code == 0
    truth = {s.id: s for s in generate_stripes(24, seed=4)}
    rows = list(read_rows(out))
    assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)
    assert all(r["needs_crop"] == truth[r["id"]].needs_crop for r in rows)
    from awares_agent.tools.box_mapping import crops_covering
    from awares_agent.tools.crop_sets import PaperCropSet

    for row in rows:
        if row["needs_crop"]:  # the one quadrant that holds the patch
            assert row["crops"] == crops_covering(truth[row["id"]].evidence, PaperCropSet(), 448, 448)
            assert row["crops"] in (["0"], ["1"], ["2"], ["3"])


@pytest.mark.slow
def test_the_miniature_pipeline_through_the_cli(tmp_path: Path) -> None:
    """Label, SFT (w = 5), GRPO, evaluate and report on a handful of pages: every step's output is there and
    means something (the SFT model learned the protocol and the decision; GRPO logged its reward parts)."""
    from awares_agent.evals.runner import read_results

    label = ["collect", "label", "--bench", "stripes", "--backend", "pattern-reader",
             "--protocol", "awares-text"]  # fmt: skip
    assert main([*label, "--limit", "160", "--seed", "11", "--out", str(tmp_path / "train")]) == 0
    sft, grpo = tmp_path / "sft", tmp_path / "grpo"
    assert main(["train", "sft", "--data", str(tmp_path / "train" / "export"), "--model", "tiny",
                 "--out", str(sft),
                 "--max_steps", "250", "--per_device_train_batch_size", "4", "--lr_scheduler_type", "cosine",
                 "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]) == 0  # fmt: skip
    assert main(["train", "grpo", "--data", str(tmp_path / "train" / "export"), "--model", str(sft),
                 "--out", str(grpo), "--max_steps", "2", "--num_generations", "4", "--similarity", "metric",
                 "--per_device_train_batch_size", "4", "--learning_rate", "1e-4", "--save_strategy", "no",
                 "--report_to", "none", "--disable_tqdm", "true"]) == 0  # fmt: skip
    state = json.loads((grpo / "trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "reward" in h]
    assert len(logged) == 2 and all("rewards/answer/mean" in h for h in logged)
    heldout = generate_stripes(16, seed=12)
    policies = "low-res,full-res,oracle,awares"
    for model, out in ((sft, tmp_path / "eval-sft"), (grpo, tmp_path / "eval-grpo")):
        assert main(["eval", "--bench", "stripes", "--limit", "16", "--seed", "12", "--model", str(model),
                     "--policy", policies, "--out", str(out)]) == 0  # fmt: skip
    from awares_agent.evals.decisions import score_decisions

    report = score_decisions(read_results(tmp_path / "eval-sft" / "awares"), heldout)
    assert report.well_formed == 1.0
    assert report.decision_accuracy is not None and report.decision_accuracy >= 0.75, report
    assert main(["report", str(tmp_path / "eval-sft"), str(tmp_path / "eval-grpo"), "--plot",
                 str(tmp_path / "plot.png")]) == 0  # fmt: skip
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_awares_eval_shows_the_view_cannot_answer_a_fine_page(tmp_path: Path) -> None:
    from awares_agent.evals.runner import Summary

    out = tmp_path / "eval"
    assert main(["eval", "--bench", "stripes", "--limit", "12", "--seed", "5", "--backend", "pattern-reader",
                 "--policy", "low-res,full-res,oracle", "--out", str(out)]) == 0  # fmt: skip
    summary = {p: Summary.model_validate_json((out / p / "summary.json").read_text()) for p in
               ("low-res", "full-res", "oracle")}  # fmt: skip
    assert summary["low-res"].by_category == {"coarse": 100.0, "fine": 0.0}
    assert summary["full-res"].accuracy == summary["oracle"].accuracy == 100.0
    assert summary["low-res"].rtr < summary["oracle"].rtr < summary["full-res"].rtr
