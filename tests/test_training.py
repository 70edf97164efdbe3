"""Cold-start SFT: data checks, the collator's weights on real exports, the weighted loss, the CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from training_data import collect_export, page

from awares_agent.backends.hf_processors import load_processor
from awares_agent.cli import main
from awares_agent.config import CHECKPOINT_FILE, AgentConfig
from awares_agent.errors import ConfigError
from awares_agent.evals.decisions import evidence_coverage, score_decisions
from awares_agent.evals.runner import SampleResult
from awares_agent.training.collator import WeightedVisionCollator
from awares_agent.training.config import AwaresSFTConfig
from awares_agent.training.data import TrainingDataError, load_training_data, policy_samples
from awares_agent.training.sft import AwaresSFTTrainer, training_chat_template
from awares_agent.training.turns import IGNORE_INDEX, token_weights, trained_runs
from awares_agent.trajectory import Trajectory

PROTOCOLS = ("json", "awares-text")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real export of each protocol (4 direct and 4 tool trajectories each)."""
    root = tmp_path_factory.mktemp("exports")
    return {p: Path(collect_export(root / p, protocol=p).dataset).parent for p in PROTOCOLS}


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir: Path) -> Any:
    return load_processor(str(tiny_vlm_dir), local_files_only=True)


def _rows(export: Path) -> list[dict[str, Any]]:
    return [dict(row) for row in load_training_data(export).dataset]


def _text(message: dict[str, Any]) -> str:
    return "".join(p["text"] or "" for p in message["content"] if p["type"] == "text")


# --- turns and weights ------------------------------------------------------------------------------------


def test_trained_runs_and_weights_follow_the_assistant_spans() -> None:
    x = IGNORE_INDEX
    labels = [x, 5, 6, x, x, 7, x, 8, 9]
    assert trained_runs(labels) == [(1, 3), (5, 6), (7, 9)]
    weights = token_weights(labels, ["answer", "call", "answer"], call_weight=5.0)
    assert weights == [0, 1, 1, 0, 0, 5, 0, 1, 1]
    with pytest.raises(ConfigError, match="generation"):
        token_weights(labels, ["call", "answer"], call_weight=5.0)  # more spans than turns
    with pytest.raises(ConfigError, match="generation"):
        token_weights(labels, ["call", "answer", "call", "answer"], call_weight=5.0)
    # Cut at max_length, the last turns may be missing.
    cut = token_weights(labels, ["answer", "call", "answer", "answer"], call_weight=2.0, truncated=True)
    assert cut[5] == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collator_weighs_exactly_the_crop_call_tokens(
    exports: dict[str, Path], processor: Any, protocol: str
) -> None:
    rows = _rows(exports[protocol])
    collator = WeightedVisionCollator(processor=processor, tool_call_weight=5.0, protocol=protocol)
    expected = [[_text(m) for m in row["messages"] if m["role"] == "assistant"] for row in rows]
    labels_of = [row["label"] for row in rows]
    batch = collator(rows)
    tokenizer = processor.tokenizer
    assert set(labels_of) == {"direct", "tool"}
    for ids, labels, weights, said, label in zip(
        batch["input_ids"], batch["labels"], batch["loss_weights"], expected, labels_of, strict=True
    ):
        assert torch.equal(weights > 0, labels != IGNORE_INDEX)  # weights exactly on the trained tokens

        def decoded(mask: torch.Tensor, ids: torch.Tensor = ids) -> str:
            return tokenizer.decode(ids[mask], skip_special_tokens=False)

        if label == "tool":
            call, answer = said
            assert ("<tool_call>" in call) == (protocol == "json") != ("GET_CROPS" in call)
            assert decoded(weights == 5) == call + "<|im_end|>"
            assert decoded(weights == 1) == answer + "<|im_end|>"
        else:
            (answer,) = said
            assert not (weights == 5).any()
            assert decoded(weights == 1) == answer + "<|im_end|>"


# --- the loss ---------------------------------------------------------------------------------------------


def _trainer(tiny_vlm_dir: Path, export: Path, processor: Any, tmp_path: Path, weight: float) -> Any:
    from transformers import AutoModelForImageTextToText

    data = load_training_data(export)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    args = AwaresSFTConfig(
        output_dir=str(tmp_path / f"w{weight}"),
        tool_call_weight=weight,
        max_steps=1,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        activation_checkpointing=False,
    )
    trainer = AwaresSFTTrainer(
        model, args, train_dataset=data.dataset, processing_class=processor, protocol=data.protocol
    )
    return trainer, data


def test_the_vision_encoder_can_be_frozen_its_projector_not(tiny_vlm_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from awares_agent.training.sft import freeze_vision_tower

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    frozen = freeze_vision_tower(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert frozen > 0 and not any("visual.blocks" in n or "patch_embed" in n for n in trainable)
    assert any("visual.merger" in n for n in trainable) and any("language_model" in n for n in trainable)
    with pytest.raises(ConfigError, match="no vision encoder"):
        freeze_vision_tower(torch.nn.Linear(2, 2))


def test_weighted_loss_is_the_hand_computed_one_and_trls_at_weight_one(
    tiny_vlm_dir: Path, exports: dict[str, Path], processor: Any, tmp_path: Path
) -> None:
    from trl import SFTConfig, SFTTrainer

    trainer, data = _trainer(tiny_vlm_dir, exports["awares-text"], processor, tmp_path, 5.0)
    rows = [dict(r) for r in data.dataset.select(range(4))]
    batch = trainer.data_collator([dict(r) for r in rows])
    model = trainer.model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "loss_weights")}).logits
    # By hand: next-token NLL on trained positions, times the weight, over the number of trained tokens.
    labels, weights = batch["labels"][:, 1:], batch["loss_weights"][:, 1:]
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    mask = labels != IGNORE_INDEX
    nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    assert (weights == 5).any() and (weights == 1).any()
    hand = (nll * weights).sum() / mask.sum()
    assert torch.allclose(ours, hand, rtol=1e-4), (ours, hand)
    assert not torch.allclose(ours, nll.sum() / mask.sum(), rtol=1e-3)  # the weight changed it

    # With w = 1 it is TRL's own loss on the same batch.
    plain, _ = _trainer(tiny_vlm_dir, exports["awares-text"], processor, tmp_path, 1.0)
    trl_trainer = SFTTrainer(
        model=plain.model,
        args=SFTConfig(
            output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, max_length=None, bf16=False
        ),
        train_dataset=data.dataset,
        processing_class=processor,
    )
    batch1 = plain.data_collator([dict(r) for r in rows])
    with torch.no_grad():
        ours1 = plain.compute_loss(plain.model.eval(), dict(batch1))
        theirs = trl_trainer.compute_loss(
            plain.model, {k: v for k, v in batch1.items() if k != "loss_weights"}
        )
    assert torch.allclose(ours1, theirs, rtol=1e-5), (ours1, theirs)


# --- data checks ------------------------------------------------------------------------------------------


def test_both_protocols_and_all_export_forms_are_read(exports: dict[str, Path]) -> None:
    for protocol, export in exports.items():
        for form in (export, export / "dataset", export / "trajectories.jsonl", export.parent):
            data = load_training_data(form)
            assert data.protocol == protocol and data.crop_set == "paper"
            assert data.labels == {"direct": 4, "tool": 4} and len(data) == 8
        # What the trained model will be run with: the rows' protocol and their (preset) system prompt.
        agent = data.agent_config()
        assert (agent.protocol, agent.system_prompt_preset, agent.system_prompt) == (protocol, "awares", None)
    samples = policy_samples(exports["json"], limit=3)
    assert len(samples) == 3 and samples[0].image.size == (448, 336)
    assert [s.needs_crop for s in samples] == [False, True, False] and samples[1].evidence is not None


def _jsonl_lines(export: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (export / "trajectories.jsonl").read_text().splitlines()]
    for line in lines:  # absolute paths, so the lines can be written anywhere
        line["images"] = [str(export / p) for p in line["images"]]
        line["original"] = str(export / line["original"])
    return lines


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_what_cannot_train_is_a_clear_error(exports: dict[str, Path], tmp_path: Path) -> None:
    json_lines, text_lines = _jsonl_lines(exports["json"]), _jsonl_lines(exports["awares-text"])
    with pytest.raises(TrainingDataError, match="mixes tool-call protocols"):
        load_training_data(_write(tmp_path / "mixed.jsonl", json_lines[:3] + text_lines[:3]))
    silent = [dict(line) for line in json_lines[:2]]
    silent[1]["messages"] = [m for m in silent[1]["messages"] if m["role"] != "assistant"]
    with pytest.raises(TrainingDataError, match=r"row 's01': no assistant turn"):
        load_training_data(_write(tmp_path / "silent.jsonl", silent))
    lost = [dict(line) for line in json_lines[:2]]
    lost[1]["images"] = [*lost[1]["images"][:-1], str(tmp_path / "gone.png")]
    with pytest.raises(TrainingDataError, match=r"gone\.png' is missing"):
        load_training_data(_write(tmp_path / "lost.jsonl", lost))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    broken = [dict(line) for line in json_lines[:2]]
    broken[0]["images"] = [str(corrupt)]
    with pytest.raises(TrainingDataError, match=r"row 's00': image 1 cannot be decoded"):
        load_training_data(_write(tmp_path / "broken.jsonl", broken))
    extra = [dict(line) for line in json_lines[:1]]
    extra[0]["images"] = extra[0]["images"] * 2
    with pytest.raises(TrainingDataError, match="1 image parts but 2 images"):
        load_training_data(_write(tmp_path / "extra.jsonl", extra))
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_training_data(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingDataError, match="holds no training data"):
        load_training_data(tmp_path / "empty")


def test_rows_with_a_malformed_call_are_left_out(exports: dict[str, Path], tmp_path: Path) -> None:
    lines = _jsonl_lines(exports["awares-text"])
    bad = next(line for line in lines if line["label"] == "tool")
    call = next(m for m in bad["messages"] if m["role"] == "assistant")
    call["content"] = [{"type": "text", "text": "GET_CROPS: [oops"}]
    data = load_training_data(_write(tmp_path / "some-bad.jsonl", lines))
    assert len(data) == 7 and data.skipped == {"with a malformed crop call": 1}


# --- chat templates of real checkpoints -------------------------------------------------------------------


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_training_template_renders_exported_rows_as_the_checkpoints_own(
    exports: dict[str, Path], processor: Any, family: str, protocol: str
) -> None:
    import copy

    import trl

    # The stock templates of Qwen2.5-VL-*-Instruct and Qwen3-VL-*-Instruct, as TRL ships them to recognise
    # them (it swaps in its training version only on an exact match).
    stock = (Path(trl.__file__).parent / "chat_templates" / f"{family}.jinja").read_text()
    real = copy.copy(processor)
    real.chat_template = stock
    training = training_chat_template(real)
    assert training is not None and training != stock and "generation" in training
    for row in _rows(exports[protocol]):
        messages = row["messages"]
        ours = real.apply_chat_template(messages, chat_template=training, tokenize=False)
        assert ours == real.apply_chat_template(messages, tokenize=False)
        collator = WeightedVisionCollator(processor=real, chat_template=training, protocol=protocol)
        batch = collator([dict(row)])
        trained = processor.tokenizer.decode(batch["input_ids"][0][batch["labels"][0] != IGNORE_INDEX])
        said = [_text(m) for m in messages if m["role"] == "assistant"]
        assert trained.replace("<|im_end|>\n", "<|im_end|>") == "".join(s + "<|im_end|>" for s in said)


def test_a_template_without_markers_that_trl_does_not_know_is_a_clear_error(
    processor: Any, tmp_path: Path
) -> None:
    import copy

    plain = copy.copy(processor)
    plain.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    with pytest.raises(ConfigError, match="chat_template_path"):
        training_chat_template(plain)
    (tmp_path / "t.jinja").write_text(plain.chat_template)
    with pytest.raises(ConfigError, match=r"no \{% generation %\} markers"):
        training_chat_template(plain, path=str(tmp_path / "t.jinja"))


# --- policy scoring ---------------------------------------------------------------------------------------


def test_decisions_and_regions_are_scored_against_the_labels(exports: dict[str, Path]) -> None:
    samples = policy_samples(exports["json"])
    data = load_training_data(exports["json"])
    trajectories = {r["id"]: Trajectory.model_validate(r["trajectory"]) for r in data.dataset}

    def result(sample_id: str, trajectory: Trajectory) -> SampleResult:
        return SampleResult(
            id=sample_id, policy="awares", status="ok", question="q", answers=["a"], metric="exact",
            score=1.0, rtr=trajectory.cost.rtr, crops=[c.region_id for c in trajectory.crops],
            trajectory=trajectory,
        )  # fmt: skip

    perfect = score_decisions({i: result(i, t) for i, t in trajectories.items()}, samples)
    assert perfect.decision_accuracy == perfect.region_accuracy == perfect.well_formed == 1.0
    assert perfect.confusion == {"needed/cropped": 4, "needed/direct": 0, "not-needed/cropped": 0,
                                 "not-needed/direct": 4}  # fmt: skip
    # Always answering directly: half the decisions right, no region found.
    direct = trajectories["s00"]
    lazy = score_decisions({i: result(i, direct) for i in trajectories}, samples)
    assert lazy.decision_accuracy == 0.5 and lazy.needed_recall == 0.0 and lazy.region_recall == 0.0
    # The wrong quadrant covers none of the evidence.
    tool = trajectories["s01"]
    assert evidence_coverage(tool, samples[1].evidence or ()) == 1.0
    assert evidence_coverage(tool, samples[3].evidence or ()) == 0.0


def test_a_checkpoint_records_how_its_agent_runs(tmp_path: Path) -> None:
    from awares_agent.cli import _parser
    from awares_agent.cli_options import agent_config

    (tmp_path / CHECKPOINT_FILE).write_text(json.dumps({"protocol": "awares-text", "crop_set": "grid-2x2"}))
    assert AgentConfig.from_checkpoint(tmp_path).protocol == "awares-text"
    args = _parser().parse_args(["ask", "x.png", "q", "--model", str(tmp_path)])
    assert (agent_config(args).protocol, agent_config(args).crop_set) == ("awares-text", "grid-2x2")
    args = _parser().parse_args(["ask", "x.png", "q", "--model", str(tmp_path), "--protocol", "json"])
    assert agent_config(args).protocol == "json"  # a flag given wins
    (tmp_path / CHECKPOINT_FILE).write_text('{"protocol": "awares-text", "temperature": 3}')
    with pytest.raises(ConfigError, match="only the keys"):
        AgentConfig.from_checkpoint(tmp_path)


# --- the command line, end to end -------------------------------------------------------------------------


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_train_sft_then_ask_and_eval_the_trained_model(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sft"
    export = exports["awares-text"]
    code = main(
        ["train", "sft", "--data", str(export), "--model", "tiny", "--out", str(out), "--max-steps", "3",
         "--per_device_train_batch_size", "2", "--save_strategy", "no", "--report_to", "none"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    before, after = _weights(out / "tiny-base"), _weights(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert json.loads((out / CHECKPOINT_FILE).read_text())["protocol"] == "awares-text"
    state = json.loads((out / "trainer_state.json").read_text())  # the loss curve, saved with no checkpoint
    assert state["global_step"] == 3 and any("train_loss" in h for h in state["log_history"])
    capsys.readouterr()
    page("C01", large=False, where=0).save(tmp_path / "page.png")
    code = main(["ask", str(tmp_path / "page.png"), "What is the code?", "--model", str(out), "--json",
                 "--max-new-tokens", "8", "--offline"])  # fmt: skip
    answer = json.loads(capsys.readouterr().out)
    assert code == 0 and answer["trajectory"]["settings"]["protocol"] == "awares-text"
    assert answer["trajectory"]["calls"] >= 1
    code = main(["train", "eval", "--model", str(out), "--data", str(export), "--out", str(tmp_path / "ev"),
                 "--limit", "2"])  # fmt: skip
    report = json.loads((tmp_path / "ev" / "policy.json").read_text())
    assert code == 0 and report["samples"] == 2 and report["rtr"] >= 0.0


@pytest.mark.slow
def test_collect_label_then_train_sft_then_ask_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's "done when", as a user types it: the offline teacher, a fresh tiny model, then ask."""
    from awares_agent.evals.synthetic.decision import generate_decision

    labels, out = tmp_path / "labels", tmp_path / "sft"
    code = main(["collect", "label", "--bench", "crop-decision", "--limit", "6", "--out", str(labels),
                 "--protocol", "awares-text"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    code = main(["train", "sft", "--data", str(labels / "export"), "--model", "tiny", "--out", str(out),
                 "--max-steps", "2", "--save_strategy", "no", "--report_to", "none",
                 "--eval-data", str(labels / "export"), "--eval-limit", "2"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert json.loads((out / "policy-eval" / "policy.json").read_text())["samples"] == 2
    capsys.readouterr()
    sample = generate_decision(1, seed=99)[0]
    sample.image.save(tmp_path / "page.png")
    code = main(["ask", str(tmp_path / "page.png"), sample.question, "--model", str(out), "--offline",
                 "--max-new-tokens", "8"])  # fmt: skip
    shown = capsys.readouterr().out
    assert code == 0 and "Answer:" in shown and "RTR" in shown


@pytest.mark.slow
def test_a_killed_training_run_resumes_from_its_last_checkpoint(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "resume"
    base = ["train", "sft", "--data", str(exports["json"]), "--model", "tiny", "--out", str(out),
            "--save_strategy", "steps", "--save_steps", "2", "--report_to", "none"]  # fmt: skip
    assert main([*base, "--max-steps", "2"]) == 0  # as if killed after the checkpoint at step 2
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    assert main([*base, "--max-steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-2")]) == 0
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (out / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_tiny_qwen2_5_vl_trains_with_the_same_command(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q3"
    code = main(["train", "sft", "--data", str(exports["json"]), "--model", "tiny-qwen2.5-vl",
                 "--out", str(out), "--max-steps", "2", "--save_strategy", "no",
                 "--report_to", "none"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2_5_vl"
    before, after = _weights(out / "tiny-base"), _weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    capsys.readouterr()
    page("C01", large=False, where=0).save(tmp_path / "page.png")
    code = main(["ask", str(tmp_path / "page.png"), "What is the code?", "--model", str(out), "--json",
                 "--max-new-tokens", "4", "--offline"])  # fmt: skip
    trajectory = json.loads(capsys.readouterr().out)["trajectory"]
    assert (
        code == 0
        and trajectory["settings"]["protocol"] == "json"
        and trajectory["cost"]["rule"] == "qwen2.5-vl"
    )


@pytest.mark.slow
def test_lora_adapters_are_merged_into_a_plain_checkpoint(exports: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "lora"
    code = main(
        ["train", "sft", "--data", str(exports["json"]), "--model", "tiny", "--out", str(out), "--lora",
         "--lora_r", "4", "--max-steps", "2", "--save_strategy", "no", "--report_to", "none",
         "--learning_rate", "0.05"]
    )  # fmt: skip
    assert code == 0
    assert not (out / "adapter_config.json").exists()
    before, after = _weights(out / "tiny-base"), _weights(out)
    assert before.keys() == after.keys()  # no lora_A / lora_B left: merged
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # Only the adapted language-model layers moved; the vision tower and the embeddings did not.
    assert changed and all("visual" not in k and k.split(".")[-2] in targets for k in changed)


def test_cli_errors_for_bad_data_and_bad_options(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "sft", "--model", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert main(["train", "sft", "--data", str(tmp_path / "nope"), "--model", "tiny", "--out", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = ["train", "sft", "--data", str(exports["json"]), "--model", "tiny", "--out", str(tmp_path / "y")]
    assert main([*bad, "--tool-call-weight", "0"]) == 2
    assert "--tool-call-weight must be > 0" in capsys.readouterr().err
    assert main([*bad[:-2], "--model", str(tmp_path / "no-model"), "--out", "z"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "fly"]) == 2
    assert "unknown train command" in capsys.readouterr().err
    assert main([*bad, "--no-such-flag", "1"]) == 2
    assert "--no-such-flag" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "y", ignore_errors=True)


# --- scale-out --------------------------------------------------------------------------------------------

ACCELERATE = Path(__file__).resolve().parents[1] / "training" / "accelerate"


def test_the_shipped_accelerate_configs_and_the_7b_recipe_parse(tmp_path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    from awares_agent.training.cli import _sft_parser

    kinds = {}
    for name in ("zero2", "zero3", "fsdp", "cpu"):
        config = load_config_from_file(str(ACCELERATE / f"{name}.yaml"))
        kinds[name] = (str(config.distributed_type), config.num_processes)
    assert kinds["zero2"] == kinds["zero3"] == ("DistributedType.DEEPSPEED", 8)
    assert kinds["fsdp"] == ("DistributedType.FSDP", 8) and kinds["cpu"][1] == 1
    recipe = ACCELERATE / "sft-qwen2.5-vl-7b.yaml"
    # This machine has no GPU: bf16 off on the command line, which wins over the file.
    (config,) = _sft_parser().parse_args_and_config(
        ["--config", str(recipe), "--data", "d", "--out", str(tmp_path), "--bf16", "false"]
    )
    assert config.model == "Qwen/Qwen2.5-VL-7B-Instruct" and config.tool_call_weight == 5.0
    assert config.model_init_kwargs["attn_implementation"] == "flash_attention_2"
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps * 8 == 64


@pytest.mark.slow
def test_accelerate_launch_runs_the_same_entry_point_in_one_cpu_process(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    launcher = Path(sys.executable).with_name("accelerate")
    command = [
        str(launcher), "launch", "--config_file", str(ACCELERATE / "cpu.yaml"),
        "-m", "awares_agent.training.cli", "sft", "--data", str(exports["json"]), "--model", "tiny",
        "--out", str(tmp_path / "acc"),
        "--max_steps", "1", "--save_strategy", "no", "--report_to", "none",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "acc" / "model.safetensors").is_file() and (
        tmp_path / "acc" / CHECKPOINT_FILE
    ).is_file()
