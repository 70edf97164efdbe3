"""Multi-turn GRPO: rollouts that are the inference path, the loss mask, crops in the training forward, the
reward's wiring, the guard, the command line.

The policy is a tiny Qwen2.5-VL given 60 SFT steps on a real export (it then calls the crop tool on some
pages and not on others), so rollouts go through both branches of the agent.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from training_data import collect_export, page

from awares_agent.backends.hf_decode import GeneratedTurn
from awares_agent.backends.hf_processors import load_processor
from awares_agent.backends.transformers_backend import TransformersBackend
from awares_agent.cli import main
from awares_agent.config import CHECKPOINT_FILE, AgentConfig
from awares_agent.errors import ConfigError
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, TextPart
from awares_agent.training.config import AwaresGRPOConfig
from awares_agent.training.data import policy_samples
from awares_agent.training.grpo import AwaresGRPOTrainer, reward_functions
from awares_agent.training.models import load_for_training
from awares_agent.training.rewards import CropCost, LexicalSimilarity, awares_reward
from awares_agent.training.rollouts import RolloutError, RolloutRunner, VLLMTurnBackend, assemble

PROTOCOLS = ("awares-text", "json")
METRICS = (
    "crops/call_rate", "crops/per_call", "crops/rtr", "crops/invalid_rate", "rollouts/well_formed",
    "rollouts/turns", "rollouts/token_drift", "decision/needed_cropped", "decision/needed_direct",
    "decision/not_needed_cropped", "decision/not_needed_direct", "rewards/answer/mean",
    "rewards/crop_cost/mean", "reward", "kl", "loss",
)  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("grpo-exports")
    return {p: Path(collect_export(root / p, protocol=p).dataset).parent for p in PROTOCOLS}


@pytest.fixture(scope="module")
def policies(exports: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An SFT checkpoint per protocol (60 steps of `awares train sft` from the tiny model)."""
    root = tmp_path_factory.mktemp("grpo-policies")
    out = {}
    for protocol, export in exports.items():
        out[protocol] = root / protocol
        code = main(
            ["train", "sft", "--data", str(export), "--model", "tiny", "--out", str(out[protocol]),
             "--max-steps", "60", "--per_device_train_batch_size", "4", "--save_strategy", "no",
             "--report_to", "none", "--logging_steps", "60", "--disable_tqdm", "True",
             "--learning_rate", "3e-3"]  # a quick over-fit that sometimes crops, not tiny's 1e-3 recipe
        )  # fmt: skip
        assert code == 0
    return out


def _config(out: Path, **kw: Any) -> AwaresGRPOConfig:
    options: dict[str, Any] = {
        "output_dir": str(out), "use_cpu": True, "max_steps": 1, "num_generations": 4,
        "per_device_train_batch_size": 8, "learning_rate": 1e-3, "activation_checkpointing": False,
        "max_completion_length": 32, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
        "seed": 0,
    }  # fmt: skip
    return AwaresGRPOConfig(**{**options, **kw})


def _turn(prompt: list[int], completion: list[int], images: int = 1) -> GeneratedTurn:
    return GeneratedTurn(prompt, completion, [f"image{i}" for i in range(images)], "stop")


# --- assembling a rollout ---------------------------------------------------------------------------------


def test_a_rollout_is_one_sequence_with_only_generated_tokens_trained() -> None:
    first = _turn([1, 2, 3], [4, 5, 9])
    second = _turn([1, 2, 3, 4, 5, 9, 7, 7, 8], [6, 9], images=2)
    prompt, completion, mask, images, drift = assemble([first, second])
    assert prompt == [1, 2, 3]
    assert completion == [4, 5, 9, 7, 7, 8, 6, 9]
    assert mask == [1, 1, 1, 0, 0, 0, 1, 1]  # the crop turn (7, 7, 8) is context
    assert images == ["image0", "image1"] and drift == 0
    # One turn: the completion is what was generated.
    assert assemble([first])[:3] == ([1, 2, 3], [4, 5, 9], [1, 1, 1])


def test_a_reply_re_rendered_to_other_tokens_is_not_trained() -> None:
    first = _turn([1, 2, 3], [4, 5, 9])
    second = _turn([1, 2, 3, 45, 9, 7, 8], [6, 9])  # "4 5" came back as one token 45
    _, completion, mask, _, drift = assemble([first, second])
    assert drift == 1
    assert completion == [45, 9, 7, 8, 6, 9] and mask == [0, 0, 0, 0, 1, 1]


def test_a_turn_whose_history_was_re_rendered_is_not_trained() -> None:
    # The template rewrote the first prompt (token 3 became 30): the first turn's context is gone.
    prompt, completion, mask, _, drift = assemble(
        [_turn([1, 2, 3], [4, 9]), _turn([1, 2, 30, 4, 9, 7], [6, 9])]
    )
    assert drift == 1 and prompt == [1, 2]
    assert completion == [30, 4, 9, 7, 6, 9] and mask == [0, 0, 0, 0, 1, 1]
    with pytest.raises(RolloutError, match="no model call"):
        assemble([])


def test_complete_with_ids_reports_the_ids_the_model_ran_on(tiny_vlm_dir: Path) -> None:
    backend = TransformersBackend(str(tiny_vlm_dir), local_files_only=True, max_new_tokens=6)
    store = ImageStore()
    view = store.full(store.add(page("C01", large=True, where=0)).id)
    messages = [ChatMessage(role="user", content=[view, TextPart(text="What is the code?")])]
    reply, turn = backend.complete_with_ids(messages, images=store)
    assert reply.text == backend.tokenizer.decode(turn.completion_ids, skip_special_tokens=True)
    assert reply.usage.prompt_tokens == len(turn.prompt_ids)
    assert reply.usage.completion_tokens == len(turn.completion_ids)
    assert [im.size for im in turn.images] == [(view.width, view.height)]
    assert backend.complete(messages, images=store).text == reply.text  # greedy: the same turn


# --- rollouts through the agent ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rollouts_are_the_inference_path_token_for_token(
    exports: dict[str, Path], policies: dict[str, Path], protocol: str
) -> None:
    torch.manual_seed(0)
    processor = load_processor(str(policies[protocol]), local_files_only=True)
    backend = TransformersBackend(
        str(policies[protocol]), processor, local_files_only=True, do_sample=True, max_new_tokens=32
    )
    samples = policy_samples(exports[protocol])
    # One at a time: batch composition (thread timing) would change what is sampled.
    runner = RolloutRunner(backend, AgentConfig.from_checkpoint(policies[protocol]), concurrency=1)
    episodes = runner.run([s for s in samples for _ in range(2)])
    runner.close()
    tokenizer, pad = processor.tokenizer, processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert any(e.called for e in episodes) and any(not e.called for e in episodes)
    for episode in episodes:
        if episode.well_formed:  # every later prompt started with the earlier prompt + its sampled ids
            assert episode.drift == 0
        # A malformed reply may hold special tokens its text drops: such a turn is counted, never trained.
        mask = episode.model_mask
        runs = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
        assert runs == episode.turns - episode.drift
        trajectory = episode.result.trajectory
        assert trajectory.settings.protocol == protocol
        # The images of the sequence are the view, then each crop, at the sizes the agent sent them.
        sizes = [(trajectory.view.width, trajectory.view.height)]
        sizes += [(c.width, c.height) for c in trajectory.crops]
        assert [im.size for im in episode.images] == sizes
        sequence = episode.prompt_ids + episode.completion_ids
        grid = processor.image_processor(images=episode.images, return_tensors="pt")["image_grid_thw"]
        assert sequence.count(pad) == int(grid.prod(-1).sum()) // 4  # every image's tokens are there
        # Trained: exactly the model's turns, never an image token or the crop turn's text.
        trained = [t for t, m in zip(episode.completion_ids, episode.model_mask, strict=True) if m]
        assert pad not in trained
        said = tokenizer.decode(trained, skip_special_tokens=True)
        replies = [m for m in trajectory.messages if m.role == "assistant"]
        assert len(replies) == episode.turns
        if protocol == "awares-text":
            assert said == "".join(m.text for m in replies)


def _trainer(exports: dict[str, Path], policies: dict[str, Path], tmp_path: Path) -> tuple[Any, Any]:
    """A GRPO trainer on the awares-text policy, over the pages that need crops (so some rollouts crop)."""
    policy = policies["awares-text"]
    samples = [s for s in policy_samples(exports["awares-text"]) if s.needs_crop]
    model, processor, _ = load_for_training(str(policy), work_dir=tmp_path, local_files_only=True)
    trainer = AwaresGRPOTrainer(
        model, _config(tmp_path / "run"), samples=samples, processing_class=processor,
        agent=AgentConfig.from_checkpoint(policy),
    )  # fmt: skip
    return model, trainer


def test_the_training_forward_sees_the_crops_and_the_loss_only_model_tokens(
    exports: dict[str, Path], policies: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, trainer = _trainer(exports, policies, tmp_path)
    seen: list[list[list[int]]] = []  # grids of every forward with gradients (the training forward)
    model.model.visual.register_forward_hook(
        lambda m, args, kwargs, out: (
            seen.append(kwargs["grid_thw"].tolist()) if torch.is_grad_enabled() else None
        ),
        with_kwargs=True,
    )
    episodes: list[Any] = []
    run = RolloutRunner.run
    monkeypatch.setattr(
        RolloutRunner, "run", lambda self, s: episodes.extend(run(self, s)) or episodes[-len(s) :]
    )
    batches: list[dict[str, Any]] = []
    compute = trainer.compute_loss
    monkeypatch.setattr(
        trainer, "compute_loss", lambda m, inputs, **kw: batches.append(inputs) or compute(m, inputs, **kw)
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    assert sum(e.crops for e in episodes) > 0  # some rollouts asked for crops
    # The training forward ran the vision tower on every image of every rollout: views and crops.
    assert sum(len(g) for g in seen) == sum(len(e.images) for e in episodes)
    (batch,) = batches
    mask = (batch["completion_mask"] * batch["tool_mask"]).tolist()
    ids = batch["completion_ids"].tolist()
    generated = sorted(
        tuple(t for t, m in zip(e.completion_ids, e.model_mask, strict=True) if m) for e in episodes
    )
    # The shuffled batch's loss mask picks out exactly each rollout's generated tokens.
    assert (
        sorted(
            tuple(t for t, m in zip(row, keep, strict=True) if m) for row, keep in zip(ids, mask, strict=True)
        )
        == generated
    )
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_images_that_do_not_match_their_tokens_stop_training(
    exports: dict[str, Path], policies: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, trainer = _trainer(exports, policies, tmp_path)
    run = RolloutRunner.run

    def lose_a_crop(self: RolloutRunner, batch: Any) -> Any:
        episodes = run(self, batch)
        for e in episodes:
            if e.called:
                e.images = e.images[:-1]
        return episodes

    monkeypatch.setattr(RolloutRunner, "run", lose_a_crop)
    with pytest.raises(RolloutError, match="train blind"):
        trainer.train()


# --- the reward -------------------------------------------------------------------------------------------


def _episode(answer: str | None, crops: int) -> Any:
    return SimpleNamespace(result=SimpleNamespace(answer=answer), crops=crops, requested_crops=crops)


@pytest.mark.parametrize(
    ("needed", "answer", "crops", "expected"),
    [
        (True, "C01", 0, 1.0 - 0.5),  # missed a needed crop: alpha_miss
        (True, "C01", 1, 1.0 - 0.1 - 0.05),  # alpha_use + lambda * |C|
        (True, None, 2, 0.0 - 0.1 - 0.10),
        (False, "C01", 0, 1.0),  # direct where nothing was needed: free
        (False, "C01", 1, 1.0 - 0.15),  # a needless crop still costs
        (False, "C0", 0, 1.0 - 1 / 3),  # lexical similarity: one edit in three characters
        (None, "C01", 0, 1.0),  # unlabelled: a direct answer costs nothing
    ],
)
def test_the_reward_functions_sum_to_r_ans_minus_c_tool(
    needed: bool | None, answer: str | None, crops: int, expected: float
) -> None:
    sample = SimpleNamespace(answers=["C01"], question="What is the code?", needs_crop=needed, metric="exact")
    funcs = reward_functions(LexicalSimilarity(), CropCost())
    parts = [f(episode=[_episode(answer, crops)], rollout_sample=[sample])[0] for f in funcs]
    assert [f.__name__ for f in funcs] == ["answer", "crop_cost"]  # TRL logs rewards/<name>/mean
    assert sum(parts) == pytest.approx(expected)
    assert sum(parts) == pytest.approx(awares_reward(answer, ["C01"], needs_crop=needed, crops=crops).total)


# --- the command line -------------------------------------------------------------------------------------


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.slow
def test_train_grpo_two_steps_logs_every_metric_and_loads_as_an_agent(
    exports: dict[str, Path], policies: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tiny_sentence_model import build_tiny_sentence_model

    out, policy = tmp_path / "grpo", policies["awares-text"]
    similarity = build_tiny_sentence_model(tmp_path / "st")  # the paper's R_ans: sentence-embedding cosine
    code = main(
        ["train", "grpo", "--data", str(exports["awares-text"]), "--model", str(policy), "--out", str(out),
         "--max-steps", "2", "--num-generations", "4", "--per_device_train_batch_size", "4", "--beta", "0.04",
         "--alpha-miss", "0.6", "--alpha-use", "0.2", "--crop-cost", "0.1",
         "--similarity", f"st:{similarity}", "--use_cpu", "True", "--activation_checkpointing", "False",
         "--max_completion_length", "32",
         "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "True"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [h for h in history if "loss" in h]
    assert len(steps) == 2
    for entry in steps:
        assert set(METRICS) <= entry.keys(), set(METRICS) - entry.keys()
        # The logged parts are the configured reward's: crop cost in {0, -0.6, -(0.2 + 0.1 k)}.
        assert entry["reward"] == pytest.approx(
            entry["rewards/answer/mean"] + entry["rewards/crop_cost/mean"]
        )
    before, after = _weights(policy), _weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert json.loads((out / CHECKPOINT_FILE).read_text())["protocol"] == "awares-text"
    capsys.readouterr()
    page("C01", large=False, where=0).save(tmp_path / "page.png")
    code = main(["ask", str(tmp_path / "page.png"), "What is the code?", "--model", str(out), "--json",
                 "--max-new-tokens", "8", "--offline"])  # fmt: skip
    assert (
        code == 0
        and json.loads(capsys.readouterr().out)["trajectory"]["settings"]["protocol"] == "awares-text"
    )
    code = main(["eval", "--bench", "crop-decision", "--limit", "4", "--model", str(out), "--policy",
                 "awares,low-res", "--out", str(tmp_path / "eval"), "--offline"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "eval" / "awares").is_dir()


@pytest.mark.slow
def test_the_guard_stops_a_run_whose_call_rate_leaves_the_band_and_keeps_the_best_checkpoint(
    exports: dict[str, Path], policies: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grpo"
    # With 4 rollouts a step the call rate is a multiple of 0.25: never inside [0.3, 0.45].
    code = main(
        ["train", "grpo", "--data", str(exports["awares-text"]), "--model", str(policies["awares-text"]),
         "--out", str(out), "--max-steps", "6", "--num-generations", "4",
         "--per_device_train_batch_size", "4", "--guard-low", "0.3", "--guard-high", "0.45",
         "--guard-action", "stop", "--guard-patience", "2",
         "--save_strategy", "steps", "--save_steps", "1", "--use_cpu", "True", "--activation_checkpointing",
         "False", "--max_completion_length", "32", "--report_to", "none", "--disable_tqdm", "True"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    guard = json.loads((out / "guard.json").read_text())
    assert guard["stopped"] and guard["events"][0]["step"] == 2
    assert guard["best_checkpoint"] == str(out / "checkpoint-1")
    assert not (out / "checkpoint-3").exists()  # it stopped at step 2
    best, kept = _weights(out / "checkpoint-1"), _weights(out)
    assert all(torch.equal(best[k], kept[k]) for k in best)  # the kept model is the best checkpoint's
    assert "keeping" in capsys.readouterr().out


@pytest.mark.slow
def test_bad_grpo_options_are_clear_errors(
    exports: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "grpo", "--data", str(exports["json"]), "--model", "tiny", "--out", str(tmp_path / "g")]
    cases = [
        (["train", "grpo", "--model", "tiny", "--out", "x"], "needs --data"),
        ([*base, "--num-generations", "1"], "--num-generations must be >= 2"),
        ([*base, "--beta", "-1"], "--beta must be >= 0"),
        ([*base, "--alpha-miss", "-1"], "alpha_miss must be a finite number >= 0"),
        ([*base, "--similarity", "cosine"], "--similarity must be 'lexical', 'metric' or 'st:PATH'"),
        ([*base, "--guard-low", "0.9", "--guard-high", "0.1"], "band must satisfy"),
        ([*base, "--guard-action", "panic"], "'warn' or 'stop'"),
        ([*base, "--per_device_train_batch_size", "3", "--num-generations", "2"], "invalid training options"),
        (
            ["train", "grpo", "--data", str(tmp_path / "nope"), "--model", "tiny", "--out", "y"],
            "does not exist",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(ConfigError, match="--similarity"):
        AwaresGRPOConfig(output_dir=str(tmp_path), similarity="bert")


# --- vLLM generation --------------------------------------------------------------------------------------


def test_vllm_turns_are_rendered_and_parsed_as_the_transformers_backend_does(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    """vLLM itself needs a GPU: a scripted engine stands in for it, recording what it is given."""
    processor = load_processor(str(tiny_vlm_dir), local_files_only=True)
    tokenizer = processor.tokenizer
    replies = iter(["GET_CROPS: ['1']<|im_end|>", "C01<|im_end|>"])
    received: list[tuple[list[list[int]], Any]] = []

    def engine(prompts: list[list[int]], images: Any) -> list[list[int]]:
        received.append((prompts, images))
        return [tokenizer(next(replies), add_special_tokens=False)["input_ids"] for _ in prompts]

    model, _, _ = load_for_training(str(tiny_vlm_dir), work_dir=tmp_path, local_files_only=True)
    backend = VLLMTurnBackend(model, processor, engine, max_batch_size=1)
    config = AgentConfig(protocol="awares-text")
    sample = SimpleNamespace(id="s1", image=page("C01", large=False, where=1), question="What is the code?")
    runner = RolloutRunner(backend, config, concurrency=1)
    (episode,) = runner.run([sample])  # type: ignore[list-item]
    assert episode.result.answer == "C01" and [c.region_id for c in episode.result.crops] == ["1"]
    assert episode.drift == 0 and episode.turns == 2
    # The engine got the backend's own expanded prompt ids and the images in order: the view, then the crop.
    (first, first_images), (second, second_images) = received
    assert first[0] == episode.prompt_ids
    assert [im.size for im in first_images[0]] == [im.size for im in episode.images[:1]]
    assert [im.size for im in second_images[0]] == [im.size for im in episode.images]
    trained = [t for t, m in zip(episode.completion_ids, episode.model_mask, strict=True) if m]
    assert tokenizer.decode(trained) == "GET_CROPS: ['1']<|im_end|>C01<|im_end|>"
    assert second[0] == (episode.prompt_ids + episode.completion_ids)[: len(second[0])]


def test_use_vllm_without_vllm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs vLLM"):
        AwaresGRPOConfig(output_dir=str(tmp_path), use_vllm=True)


# --- scale-out --------------------------------------------------------------------------------------------

ACCELERATE = Path(__file__).resolve().parents[1] / "training" / "accelerate"


def test_the_7b_grpo_recipe_parses(tmp_path: Path) -> None:
    from awares_agent.training.cli import _grpo_parser

    # This machine has neither a GPU nor vLLM: both off on the command line, which wins over the file.
    (config,) = _grpo_parser().parse_args_and_config(
        ["--config", str(ACCELERATE / "grpo-qwen2.5-vl-7b.yaml"), "--data", "d", "--out", str(tmp_path),
         "--bf16", "false", "--use_vllm", "false"]
    )  # fmt: skip
    assert config.model == "runs/sft-7b" and config.num_generations == 8 and config.beta == 0.04
    assert config.vllm_mode == "colocate" and config.vllm_tensor_parallel_size == 1
    assert config.per_device_train_batch_size * 8 == 64  # 8 prompts x G per step on 8 GPUs
    assert config.model_init_kwargs["attn_implementation"] == "flash_attention_2"


@pytest.mark.slow
def test_accelerate_launch_runs_grpo_in_one_cpu_process(
    exports: dict[str, Path], policies: dict[str, Path], tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    launcher = Path(sys.executable).with_name("accelerate")
    command = [
        str(launcher), "launch", "--config_file", str(ACCELERATE / "cpu.yaml"),
        "-m", "awares_agent.training.cli", "grpo", "--data", str(exports["json"]),
        "--model", str(policies["json"]), "--out", str(tmp_path / "acc"),
        "--max_steps", "1", "--num_generations", "4", "--per_device_train_batch_size", "4",
        "--max_completion_length", "32", "--activation_checkpointing", "false", "--save_strategy", "no",
        "--report_to", "none",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "acc" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "acc" / CHECKPOINT_FILE).read_text())["keep_tools"] is True  # json


def test_a_malformed_crop_call_costs_like_a_request_of_one_crop() -> None:
    from awares_agent.training.rollouts import Episode

    errors = [SimpleNamespace(kind="invalid_tool_call"), SimpleNamespace(kind="budget")]
    result = SimpleNamespace(answer="C01", trajectory=SimpleNamespace(crops=[], errors=errors))
    episode = Episode([1], [2], [1], [], result, turns=2)  # type: ignore[arg-type]
    assert episode.crops == 0 and episode.invalid_calls == 1 and episode.requested_crops == 1
    sample = SimpleNamespace(answers=["C01"], question="q", needs_crop=False)
    _, crop_cost = reward_functions(LexicalSimilarity(), CropCost())
    assert crop_cost(episode=[episode], rollout_sample=[sample]) == [pytest.approx(-0.15)]
