"""A tiny Qwen2.5-VL built locally from config: the real architecture, for tests, benchmarks and smoke runs.

It is for checking that things run, not for answers: the weights are random (seeded), nothing is downloaded,
and building it takes a few seconds on a CPU. Use it to smoke-test a pipeline offline, for example::

    from awares_agent.testing import build_tiny_vlm
    from awares_agent.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(build_tiny_vlm("/tmp/tiny-vlm")), local_files_only=True)

:func:`build_tiny_vlm` writes a checkpoint directory laid out like a real Qwen2.5-VL one (``config.json``,
safetensors weights, tokenizer, image-processor and processor configs, a chat template) with about 0.6 M
parameters and random weights. It loads offline through the Auto classes and
:func:`~awares_agent.backends.hf_processors.load_processor`, exactly like ``Qwen/Qwen2.5-VL-7B-Instruct``;
nothing that loads it knows it is tiny. The test suite, the benchmarks and the training package share it.

Its parts:

* a byte-level BPE tokenizer trained on the spot (all 256 bytes are in the vocabulary, so no text is ever
  unknown) plus Qwen's special tokens and the ``<tool_call>``/``<tool_response>`` tags as single tokens;
* the Qwen2-VL image processor with the AwaRes paper's pixel bounds (32 to 2048 visual tokens);
* :data:`CHAT_TEMPLATE`, Qwen's hermes-style tools block with image parts and ``{% generation %}`` markers
  around assistant output, so ``return_assistant_tokens_mask=True`` gives the training loss mask.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from awares_agent.backends.hf_processors import image_only_processor_class, save_processor
from awares_agent.tools.crop_sets import PaperCropSet
from awares_agent.tools.protocols import AwaresTextProtocol, JsonProtocol

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
"""Qwen's special tokens, in the tiny tokenizer as special tokens."""
TAG_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
"""The hermes tool-call tags: single tokens, but not special (decoding keeps them)."""

MIN_PIXELS = 32 * 28 * 28
"""The image processor's lower pixel bound: 32 visual tokens, as the paper."""
MAX_PIXELS = 2048 * 28 * 28
"""The image processor's upper pixel bound: 2048 visual tokens, as the paper."""

# Parts are dispatched on ``type`` only: rows read back from `datasets` carry ``image: None`` on text parts.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content is not none -%}{%- for part in content -%}"
    "{%- if part.type == 'image' or part.type == 'image_url' -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part.type == 'text' -%}{{- part.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if messages[0].role == 'system' -%}{{- render(messages[0].content) -}}"
    "{%- else -%}{{- 'You are a helpful assistant.' -}}{%- endif -%}"
    "{{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}"
    "{%- for tool in tools -%}{{- '\\n' -}}{{- tool | tojson -}}{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\\n</tool_call><|im_end|>\\n' -}}"
    "{%- elif messages[0].role != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'system' -%}"
    "{%- if not (loop.first and tools) -%}"
    "{{- '<|im_start|>system\\n' -}}{{- render(message.content) -}}{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- elif message.role == 'user' -%}"
    "{{- '<|im_start|>user\\n' -}}{{- render(message.content) -}}{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{{- render(message.content) -}}"
    "{%- for call in message.tool_calls or [] -%}"
    "{%- set f = call.function if call.function is defined else call -%}"
    "{%- if not loop.first or message.content -%}{{- '\\n' -}}{%- endif -%}"
    '{{- \'<tool_call>\\n{"name": "\' -}}{{- f.name -}}{{- \'", "arguments": \' -}}'
    "{%- if f.arguments is string -%}{{- f.arguments -}}{%- else -%}{{- f.arguments | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' -}}{{- render(message.content) -}}{{- '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: the prompts and calls the agent really exchanges, plus plain text."""
    crop_set = PaperCropSet()
    texts = [
        JsonProtocol(crop_set).system_prompt(),
        AwaresTextProtocol(crop_set).system_prompt(),
        json.dumps(JsonProtocol(crop_set).tool.spec().to_openai()),
        "You may call one or more functions to assist with the user query.",
        "What is written in the top-left corner? What is the total? Which exit? Answer the question now.",
        "The quick brown fox jumps over the lazy dog. 0123456789 $%.,:;!?'\"()[]{}<>-_/",
    ]
    texts += [f'{{"name": "get_crops", "arguments": {{"crops": ["{i}"]}}}}' for i in crop_set.ids]
    texts += [f"GET_CROPS: ['{i}']" for i in crop_set.ids]
    return texts * 4


def build_tokenizer() -> object:
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Qwen's special tokens and the tool tags."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    core.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    # The tool tags are single tokens but not special: decoding with skip_special_tokens keeps them.
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _text_config(
    ids: dict[str, int], vocab_size: int, rope: dict[str, object], **extra: object
) -> dict[str, object]:
    """The tiny language model both builders share: 128 wide, 2 layers, 4 heads (2 KV) of 32."""
    return {
        **extra,
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8192,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, **rope},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _vision_token_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def sinusoidal_grid(side: int, dim: int) -> Any:
    """A 2-D sinusoidal position table, ``(side * side, dim)`` in row-major order (row, then column).

    Half the channels encode the row, half the column; each half is sine and cosine over ``dim // 4``
    geometric frequencies from half a period across the grid (pi / side) to one period every two cells (pi),
    so every cell's pair of coordinates is linearly recoverable from its vector.
    """
    import math

    import torch

    if dim % 4:
        raise ValueError(f"a 2-D sinusoidal table needs a width divisible by 4, not {dim}")
    n = dim // 4
    omega = math.pi / side * torch.pow(torch.tensor(float(side)), torch.arange(n) / max(n - 1, 1))
    coords = torch.arange(side, dtype=torch.float32)
    axis = torch.cat([torch.sin(coords[:, None] * omega), torch.cos(coords[:, None] * omega)], dim=1)
    rows = axis[:, None, :].expand(side, side, 2 * n)
    cols = axis[None, :, :].expand(side, side, 2 * n)
    return torch.cat([rows, cols], dim=2).reshape(side * side, dim)


def _build(
    out: Path,
    *,
    seed: int,
    model_type: str,
    make_config: Any,
    model_class: Any,
    image_processor: Any,
    init: Any = None,
) -> Path:
    """Build the model ``make_config(tokenizer, ids)`` describes, seeded, and save it with its processor.

    ``init(model)``, when given, sets weights after the seeded random initialisation.
    """
    import torch

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    torch.manual_seed(seed)
    model = model_class(make_config(len(tokenizer), ids))
    if init is not None:
        init(model)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    processor = image_only_processor_class(model_type)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    # Named as the stock processor class, as a real checkpoint is; loaders pick their own variant.
    save_processor(processor, out)
    return out


def build_tiny_vlm(path: str | Path, *, seed: int = 0) -> Path:
    """Build a randomly initialised tiny Qwen2.5-VL and save it as a checkpoint directory.

    Args:
        path: the directory to write (created if needed).
        seed: the seed of the random weights.

    Returns:
        ``path``, which ``AutoModelForImageTextToText.from_pretrained`` and
        :func:`~awares_agent.backends.hf_processors.load_processor` load offline.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    def config(vocab_size: int, ids: dict[str, int]) -> Any:
        return Qwen2_5_VLConfig(
            # mrope splits head_dim / 2 = 16 rotary pairs over (time, height, width).
            text_config=_text_config(ids, vocab_size, {"mrope_section": [4, 6, 6]}),
            vision_config={
                "depth": 2,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_heads": 2,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 112,
                "fullatt_block_indexes": [1],
                "out_hidden_size": 128,
            },
            tie_word_embeddings=True,
            **_vision_token_ids(ids),
        )

    return _build(
        Path(path),
        seed=seed,
        model_type="qwen2_5_vl",
        make_config=config,
        model_class=Qwen2_5_VLForConditionalGeneration,
        image_processor=Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
    )


def build_tiny_qwen3_vl(
    path: str | Path, *, seed: int = 0, positions: Literal["sinusoidal", "random"] = "sinusoidal"
) -> Path:
    """Build a tiny Qwen3-VL that can tell where things are in an image; save it as a checkpoint directory.

    The same tokenizer and chat template as :func:`build_tiny_vlm`, with Qwen3-VL's own architecture: a
    vision tower of 16 px patches (32 px per visual token after merging) with learned absolute position
    embeddings, and an interleaved 3-D rotary position in the language model (about 0.66 M parameters).

    *Where* something is reaches a tiny model through this absolute position table (16 x 16, resampled by
    Qwen3-VL to each image's grid, so relative to the image's extent): the vision tower's rotary positions
    are relative, and over a few visual tokens the language model's rotary phases barely differ. The table
    starts as 2-D sinusoids (:func:`sinusoidal_grid`) instead of noise, so the quadrant of a black square
    is linearly readable from the pooled vision output before any training, and a model learns to name it
    in half the steps a random table needs (``benchmarks/bench_location_probe.py``). Train it with its
    vision tower frozen (``--freeze_vision_tower``) or at a low rate, or the positions are washed out before
    the language model learns to read them.

    Args:
        path: the directory to write (created if needed).
        seed: the seed of the random weights.
        positions: ``"sinusoidal"`` (default) or ``"random"`` (the stock initialisation, no usable position).

    Returns:
        ``path``, loadable offline like ``Qwen/Qwen3-VL-2B-Instruct``.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if positions not in ("sinusoidal", "random"):
        raise ValueError(f"positions must be 'sinusoidal' or 'random', not {positions!r}")

    def config(vocab_size: int, ids: dict[str, int]) -> Any:
        # 16 rotary pairs over (time, height, width), interleaved as in Qwen3-VL ([24, 20, 20] of 64).
        rope = {"mrope_section": [6, 5, 5], "mrope_interleaved": True}
        return Qwen3VLConfig(
            # Qwen3's head size is its own setting (128 by default), not hidden / heads.
            text_config=_text_config(ids, vocab_size, rope, head_dim=32),
            vision_config={
                "depth": 2,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_heads": 2,
                "patch_size": 16,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "out_hidden_size": 128,
                "num_position_embeddings": 256,
                "deepstack_visual_indexes": [],
            },
            tie_word_embeddings=True,
            **_vision_token_ids(ids),
        )

    def init(model: Any) -> None:
        import torch

        table = model.model.visual.pos_embed
        side = int(table.num_embeddings**0.5)
        with torch.no_grad():
            table.weight.copy_(sinusoidal_grid(side, table.embedding_dim))

    unit = 32 * 32  # one visual token's pixels: 16 px patches, merged 2x2
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        min_pixels=32 * unit,
        max_pixels=2048 * unit,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return _build(
        Path(path),
        seed=seed,
        model_type="qwen3_vl",
        make_config=config,
        model_class=Qwen3VLForConditionalGeneration,
        image_processor=image_processor,
        init=init if positions == "sinusoidal" else None,
    )
