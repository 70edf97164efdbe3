"""A chat backend that runs a Hugging Face image-text model in-process, with KV-cache reuse and batching.

Any ``AutoModelForImageTextToText`` checkpoint whose processor has a chat template loads; the Qwen-VL family
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, and so the released ``Kimhi/AWARES-Qwen2.5-VL-7B``) is first-class. This
module is the adapter: options, prompting, tokenizing and replies. Its parts live beside it, one concept each:

* :mod:`~awares_agent.backends.hf_loading`: loading the model, device and dtype, pixel bounds, special tokens;
* :mod:`~awares_agent.backends.hf_decode`: the decode loop and its prefix KV cache of finished turns;
* :mod:`~awares_agent.backends.hf_batcher`: the micro-batcher that turns concurrent calls into one batch;
* :mod:`~awares_agent.backends.hf_chat` and :mod:`~awares_agent.backends.hf_processors`: chat-template
  messages and hermes tool calls, and processors that load without torchvision.

What the backend does:

* **Prompting.** Messages go through :func:`~awares_agent.backends.hf_chat.to_hf_messages` and the
  checkpoint's own chat template; tools are offered through the template's ``tools`` argument. Some real
  templates (Qwen2.5-VL-7B-Instruct's among them) ignore ``tools`` and drop assistant ``tool_calls``; the
  backend detects that once, by rendering probe conversations, and then writes the hermes tools block into
  the system message itself, assistant calls as ``<tool_call>`` text and tool results as a user turn of
  ``<tool_response>`` blocks: word for word what Qwen's tool-aware templates render, so the model still sees
  the ``<tool_call>`` format. With no tools (the released model's ``GET_CROPS`` protocol) the reply text is
  returned as generated.
* **Decoding** is the backend's own loop (greedy by default, the paper's setting; or temperature/top-p
  sampling), not ``generate()``: ``generate()`` recomputes multimodal rope positions from the tokens it is
  given, which is wrong once a cached prefix is skipped. The backend computes the 3-D mrope position ids of
  the whole sequence with the model's own ``get_rope_index`` when it prepares a turn, and the loop feeds the
  model only the uncached segment with its slice of them. Its greedy output is token-for-token
  ``model.generate(do_sample=False)``'s (tested). Image, video and vision-start/end tokens are never
  generated; the checkpoint's ``generation_config`` sampling settings (repetition penalty, top-k) are not
  applied: decoding is set by this backend's options.
* **KV-cache reuse.** Every finished turn leaves its token ids, the images in them (store ids and token
  spans) and its KV cache in a small LRU. A new prompt continues from the entry with the longest common token
  prefix whose images are the very same pictures (same ids, not merely the same token count), so an agent's
  second turn prefills only the tool result, the crops and the new user text instead of the system prompt,
  the low-res view and the first answer again. The prompt is tokenized from the images' sizes (their patch
  grids), so the pixels of an image the cache already holds are not even preprocessed. Where the re-rendered
  history tokenizes differently from what was generated, the common prefix is simply shorter. Greedy outputs
  are identical with and without reuse (tested).
* **Batching.** :meth:`TransformersBackend.complete_batch` runs several conversations as one left-padded
  batch, one forward per decoding step. Concurrent :meth:`~TransformersBackend.complete` calls from threads
  (``AwaResAgent.ask_many``) are gathered by the micro-batcher: a request waits up to ``batch_wait_ms`` for
  others, up to ``max_batch_size``, and one batched generation serves them all. Batching and reuse combine
  per row, so a batch may mix first and second turns of different queries.
* **Streaming.** :meth:`TransformersBackend.complete_stream` (the
  :class:`~awares_agent.backends.base.StreamingChatBackend` contract) returns the reply :meth:`complete`
  would, and along the way hands ``on_text`` each new piece of the generated text: the turn's row calls back
  as each token is picked (batched with concurrent calls as usual) and
  :class:`~awares_agent.backends.hf_detokenize.IncrementalDetokenizer` decodes the tokens so far exactly as
  the reply is decoded, holding back a piece that ends inside a multi-byte character.

Models outside the Qwen-VL family (no ``get_rope_index``) run through ``model.generate()`` one request at a
time, without reuse or batching (a ``transformers`` streamer streams them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from awares_agent.backends.base import StreamingChatBackend, TextSink
from awares_agent.backends.error_mapping import ErrorRule, translate_error
from awares_agent.backends.hf_batcher import MicroBatcher
from awares_agent.backends.hf_chat import extract_tool_calls, hermes_history, to_hf_messages, with_tools_block
from awares_agent.backends.hf_decode import (
    DecodeOptions,
    GeneratedTurn,
    PrefixCache,
    PreparedTurn,
    TurnOutcome,
    decode_batch,
    generate_turn,
)
from awares_agent.backends.hf_detokenize import IncrementalDetokenizer, decode_text
from awares_agent.backends.hf_loading import (
    apply_pixel_bounds,
    config_token_id,
    load_model,
    pad_token_id,
    resolve_device,
    resolve_dtype,
    stop_token_ids,
    suppressed_token_ids,
)
from awares_agent.backends.hf_processors import load_processor, pixel_bounds
from awares_agent.errors import BackendError, ConfigError, MessageTranslationError
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, ToolSpec, Usage
from awares_agent.tokens import QwenVLTokenRule, smart_resize

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from awares_agent.image_store import ImageStore

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "TransformersBackend"]

#: Most tokens generated per turn when ``max_new_tokens`` is not given.
DEFAULT_MAX_NEW_TOKENS = 256

logger = logging.getLogger(__name__)

_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "awares_probe_tool",
        "description": "probe",
        "parameters": {"type": "object", "properties": {}},
    },
}

_MODEL_TYPE_RULES = {"qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl", "qwen3_vl": "qwen3-vl"}


@dataclass
class _Stats:
    """The counters behind :attr:`TransformersBackend.stats`."""

    requests: int = 0
    batches: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    cache_hits: int = 0
    preprocessed_images: int = 0


class TransformersBackend(StreamingChatBackend):
    """Run a Hugging Face image-text chat model in this process.

    Args:
        model: a hub id or local checkpoint directory (loaded with ``AutoModelForImageTextToText``), or an
            already loaded model (then ``device`` and ``dtype`` are ignored: the model stays where it is).
        processor: the model's processor; loaded with
            :func:`~awares_agent.backends.hf_processors.load_processor` when omitted.
        device: where to load the model (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
        dtype: the weights' dtype: ``"auto"`` (the checkpoint's), ``"bfloat16"``, ``"float16"``,
            ``"float32"`` or a ``torch.dtype``.
        attn_implementation: e.g. ``"sdpa"``, ``"flash_attention_2"``, ``"eager"`` (transformers' default
            when ``None``).
        min_pixels: the image processor's lower pixel bound; ``None``: 32 visual tokens of the model's own
            unit (``(patch_size * merge_size)**2`` pixels: 28x28 for Qwen2.5-VL, 32x32 for Qwen3-VL).
        max_pixels: the upper pixel bound; ``None``: 2048 visual tokens of that unit (the paper's full
            resolution cap). Both bounds are also set on a processor you pass.
        max_new_tokens: most tokens generated per turn.
        do_sample: sample instead of greedy decoding (the paper decodes greedily).
        temperature: sampling temperature (only with ``do_sample``; 1.0 when ``None``).
        top_p: nucleus sampling mass (only with ``do_sample``; no truncation when ``None``).
        kv_reuse: continue from the KV cache of an earlier turn that shares the prompt's prefix.
        kv_cache_entries: finished turns kept for reuse (least recently used evicted first).
        max_batch_size: most requests generated together; 1 disables batching.
        batch_wait_ms: how long a :meth:`complete` call waits for others to batch with (20-50 ms gathers
            fuller batches when many threads call at once).
        local_files_only: never contact the hub.
        revision: the hub revision of model and processor.
        model_name: the name reported in replies and trajectories (it selects the token rule); defaults to
            the model id or path.

    Raises:
        ConfigError: an invalid option, or a model or processor that cannot be loaded.
    """

    def __init__(
        self,
        model: str | Path | PreTrainedModel,
        processor: Any | None = None,
        *,
        device: str = "cpu",
        dtype: str | torch.dtype = "auto",
        attn_implementation: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        do_sample: bool = False,
        temperature: float | None = None,
        top_p: float | None = None,
        kv_reuse: bool = True,
        kv_cache_entries: int = 16,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        local_files_only: bool = False,
        revision: str | None = None,
        model_name: str | None = None,
    ) -> None:
        import torch

        _check_int(max_new_tokens, "max_new_tokens", 1)
        _check_int(max_batch_size, "max_batch_size", 1)
        _check_int(kv_cache_entries, "kv_cache_entries", 0)
        if not isinstance(batch_wait_ms, int | float) or batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be a number >= 0, got {batch_wait_ms!r}")
        if temperature is not None and (not isinstance(temperature, int | float) or temperature <= 0):
            raise ConfigError(f"temperature must be > 0, got {temperature!r}; use do_sample=False for greedy")
        if top_p is not None and (not isinstance(top_p, int | float) or not 0 < top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")
        for value, what in ((min_pixels, "min_pixels"), (max_pixels, "max_pixels")):
            if value is not None:
                _check_int(value, what, 1)
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise ConfigError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")

        self.max_new_tokens = max_new_tokens
        self.do_sample = do_sample
        self.temperature = float(temperature) if temperature is not None else 1.0
        self.top_p = float(top_p) if top_p is not None else 1.0
        self.max_batch_size = max_batch_size
        self.batch_wait_ms = float(batch_wait_ms)
        self._prefix_cache = PrefixCache(kv_cache_entries)

        if isinstance(model, str | Path):
            source = str(model)
            self.model = load_model(
                source,
                device=resolve_device(device),
                dtype=resolve_dtype(dtype),
                attn_implementation=attn_implementation,
                local_files_only=local_files_only,
                revision=revision,
            )
        elif isinstance(model, torch.nn.Module) and hasattr(model, "config"):
            source = getattr(model, "name_or_path", "") or ""
            self.model = model.eval()
        else:
            raise ConfigError(
                f"model must be a hub id, a checkpoint directory or a loaded transformers model, got "
                f"{type(model).__name__}"
            )
        self._name = model_name or source or type(self.model).__name__
        if processor is None:
            if not source:
                raise ConfigError("the model has no name_or_path to load its processor from; pass processor=")
            processor = load_processor(source, local_files_only=local_files_only, revision=revision)
        if not getattr(processor, "chat_template", None) or not hasattr(processor, "tokenizer"):
            raise ConfigError(f"the processor of {self._name!r} has no tokenizer or chat template")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        apply_pixel_bounds(processor, min_pixels, max_pixels)

        config = self.model.config
        self._core = getattr(self.model, "model", self.model)
        self._mrope = callable(getattr(self._core, "get_rope_index", None))
        image_processor = getattr(processor, "image_processor", None)
        # Qwen-VL processors: tokenize from image sizes and preprocess only the pixels that are needed.
        self._split_images = self._mrope and all(
            getattr(obj, attr, None) is not None
            for obj, attr in (
                (processor, "image_token"),
                (image_processor, "patch_size"),
                (image_processor, "merge_size"),
            )
        )
        self.kv_reuse = bool(kv_reuse) and self._mrope and kv_cache_entries > 0
        self._image_token_id = config_token_id(config, "image_token_id", self.tokenizer, "<|image_pad|>")
        self._video_token_id = config_token_id(config, "video_token_id", self.tokenizer, "<|video_pad|>")
        self._pad_id = pad_token_id(self.model, self.tokenizer)
        self._stop_ids = stop_token_ids(self.model, self.tokenizer)
        self._suppress_ids = suppressed_token_ids(self.model, self.tokenizer, self._stop_ids)

        self._lock = threading.RLock()  # one generation at a time
        self._stats_lock = threading.Lock()
        self._stats = _Stats()
        self._template_flags: tuple[bool, bool] | None = None
        self._batcher: MicroBatcher[PreparedTurn, TurnOutcome] = MicroBatcher(
            self._execute, max_batch_size, self.batch_wait_ms / 1000
        )

    # --- identity -------------------------------------------------------------------------------------

    @property
    def kv_cache_entries(self) -> int:
        """Finished turns kept for reuse (least recently used evicted first); settable."""
        return self._prefix_cache.capacity

    @kv_cache_entries.setter
    def kv_cache_entries(self, value: int) -> None:
        self._prefix_cache.capacity = value

    @property
    def model_name(self) -> str:
        """The model id or path given (or ``model_name``): trajectories record it; it picks the token rule."""
        return self._name

    @property
    def device(self) -> torch.device:
        """The device the model runs on."""
        return self.model.device

    @property
    def token_rule(self) -> QwenVLTokenRule | None:
        """The visual-token rule of this model *as its processor is configured* (``None`` outside Qwen-VL).

        It agrees with the processor's own counts by construction (same patch, merge and pixel bounds); with
        the default bounds it equals :data:`~awares_agent.tokens.QWEN2_5_VL` for a Qwen2.5-VL model.
        """
        rule = _MODEL_TYPE_RULES.get(getattr(self.model.config, "model_type", ""))
        image_processor = self.processor.image_processor
        patch = getattr(image_processor, "patch_size", None)
        merge = getattr(image_processor, "merge_size", None)
        if rule is None or not patch or not merge:
            return None
        lo, hi = pixel_bounds(image_processor)
        return QwenVLTokenRule(rule, int(patch), int(merge), min_pixels=lo, max_pixels=hi)

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since creation (or :meth:`reset_stats`): a snapshot.

        Keys: ``requests``, ``batches``, ``batch_sizes`` (size -> batches of that size), ``prompt_tokens``,
        ``reused_tokens`` (prompt tokens taken from a cached turn), ``prefilled_tokens`` (prompt tokens
        computed), ``generated_tokens``, ``cache_hits`` (requests that reused a cache),
        ``preprocessed_images`` (images whose pixels were preprocessed: cached ones are not),
        ``cache_entries``.
        """
        with self._stats_lock:
            s = self._stats
            return {
                "requests": s.requests,
                "batches": s.batches,
                "batch_sizes": dict(s.batch_sizes),
                "prompt_tokens": s.prompt_tokens,
                "reused_tokens": s.reused_tokens,
                "prefilled_tokens": s.prefilled_tokens,
                "generated_tokens": s.generated_tokens,
                "cache_hits": s.cache_hits,
                "preprocessed_images": s.preprocessed_images,
                "cache_entries": len(self._prefix_cache),
            }

    def reset_stats(self) -> None:
        """Zero the counters of :attr:`stats`."""
        with self._stats_lock:
            self._stats = _Stats()

    def clear_cache(self) -> None:
        """Forget every cached turn (frees their KV memory)."""
        self._prefix_cache.clear()

    def __repr__(self) -> str:
        return (
            f"TransformersBackend(model={self._name!r}, device={str(self.device)!r}, "
            f"kv_reuse={self.kv_reuse}, max_batch_size={self.max_batch_size})"
        )

    # --- the ChatBackend protocol ---------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Generate one assistant turn.

        Concurrent calls from several threads are batched together (see ``max_batch_size``).

        Args:
            messages: the conversation so far.
            images: the store that resolves the messages' image references.
            tools: functions to offer the model; hermes ``<tool_call>`` blocks in its reply then become
                :attr:`ChatReply.tool_calls`. Without tools the text is returned as generated.

        Returns:
            The reply, with usage (``prompt_tokens`` is the full prompt, reused or not), the finish reason
            (``"stop"`` or ``"length"``) and each image's visual tokens as the processor counted them.

        Raises:
            MessageTranslationError: the conversation cannot be rendered (e.g. an image in a tool message).
            BackendError: generation failed (e.g. out of memory).
        """
        return self.complete_with_ids(messages, images=images, tools=tools)[0]

    def complete_with_ids(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> tuple[ChatReply, GeneratedTurn]:
        """:meth:`complete`, also returning the exact token ids the model was given and generated.

        RL training (``awares train grpo``) needs them: a rollout is trained on the tokens it sampled, not on
        a re-tokenization of their text. Batched with concurrent calls like :meth:`complete`.

        Returns:
            The reply and the turn's :class:`~awares_agent.backends.hf_decode.GeneratedTurn`.
        """
        return self._generate(messages, images, tools, None)

    # --- the StreamingChatBackend protocol ------------------------------------------------------------

    def complete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: TextSink,
    ) -> ChatReply:
        """Generate one assistant turn, handing ``on_text`` each new piece of its text as it is generated.

        Batched with concurrent calls like :meth:`complete`, streaming or not. ``on_text`` runs on the thread
        that runs the batch (possibly another caller's) while the model is held, so it must be quick; one that
        raises is dropped with a warning, and the turn and its batch go on.

        Args:
            messages: the conversation so far.
            images: the store that resolves the messages' image references.
            tools: functions to offer the model, as for :meth:`complete`.
            on_text: receives the pieces of the generated text in order (never an empty one); joined, they
                are the text as generated, hermes ``<tool_call>`` blocks included, before any tool-call
                extraction.

        Returns:
            The reply :meth:`complete` returns for the same generation.

        Raises:
            MessageTranslationError: the conversation cannot be rendered (nothing is streamed then).
            BackendError: generation failed (some text may have been streamed already).
        """
        return self._generate(messages, images, tools, on_text)[0]

    def _generate(
        self,
        messages: Sequence[ChatMessage],
        images: ImageStore,
        tools: Sequence[ToolSpec] | None,
        on_text: TextSink | None,
    ) -> tuple[ChatReply, GeneratedTurn]:
        """One turn through the micro-batcher (or alone), streamed to ``on_text`` when one is given."""
        t0 = time.perf_counter()
        request = self._prepare(messages, images, tools)
        stream = None
        if on_text is not None:
            stream = IncrementalDetokenizer(self.tokenizer, on_text, name=self._name)
            request.on_token = stream.update
        outcome = self._run_alone(request) if self.max_batch_size == 1 else self._batcher.submit(request)
        if stream is not None:
            stream.finish(outcome.tokens)
        turn = GeneratedTurn(
            prompt_ids=request.input_ids.tolist(),
            completion_ids=list(outcome.tokens),
            images=list(request.images),
            finish_reason=outcome.finish_reason,
        )
        return self._reply(request, outcome, time.perf_counter() - t0), turn

    def complete_batch(
        self,
        requests: Sequence[tuple[Sequence[ChatMessage], Sequence[ToolSpec] | None]],
        *,
        images: ImageStore,
    ) -> list[ChatReply]:
        """Generate a turn for each of several conversations, ``max_batch_size`` at a time.

        Args:
            requests: ``(messages, tools)`` pairs, as for :meth:`complete`.
            images: the store that resolves every conversation's image references.

        Returns:
            One reply per request, in order.

        Raises:
            MessageTranslationError: a conversation cannot be rendered (nothing is generated then).
            BackendError: generation failed.
        """
        t0 = time.perf_counter()
        prepared = [self._prepare(messages, images, tools) for messages, tools in requests]
        outcomes: list[TurnOutcome] = []
        for start in range(0, len(prepared), self.max_batch_size):
            chunk = prepared[start : start + self.max_batch_size]
            with self._lock:
                outcomes += self._run(chunk)
        latency = time.perf_counter() - t0
        return [self._reply(r, o, latency) for r, o in zip(prepared, outcomes, strict=True)]

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> str:
        """The prompt text the model would be given for ``messages`` (image pads not yet expanded).

        Args:
            messages: the conversation.
            images: the store that resolves image references.
            tools: functions offered, as for :meth:`complete`.
        """
        text, _, _ = self._render(messages, images, tools)
        return text

    # --- preparing a request --------------------------------------------------------------------------

    def _render(
        self, messages: Sequence[ChatMessage], images: ImageStore, tools: Sequence[ToolSpec] | None
    ) -> tuple[str, list[Any], list[str]]:
        image_ids: list[str] = []
        for i, msg in enumerate(messages):
            if msg.role in ("system", "tool") and msg.images:
                raise MessageTranslationError(
                    f"message {i} ({msg.role}) holds {len(msg.images)} image(s); images may only be sent in "
                    f"user or assistant messages (put crops in a user message after the tool result)"
                )
            image_ids += [p.image_id for p in msg.content if isinstance(p, ImagePart)]
        hf_messages, pil_images = to_hf_messages(messages, images)
        openai_tools = [spec.to_openai() for spec in tools] if tools else None
        renders_tools, renders_calls = self._template_support()
        if not renders_calls:
            hf_messages = hermes_history(hf_messages)
        if openai_tools and not renders_tools:
            hf_messages = with_tools_block(hf_messages, openai_tools)
        try:
            text = self.processor.apply_chat_template(
                hf_messages,
                tools=openai_tools if renders_tools else None,
                add_generation_prompt=True,
                tokenize=False,
            )
        except Exception as exc:  # jinja2 errors, raise_exception() in templates
            raise MessageTranslationError(f"the chat template of {self._name!r} failed: {exc}") from exc
        return text, pil_images, image_ids

    def _template_support(self) -> tuple[bool, bool]:
        """Whether the chat template renders ``tools``, and assistant ``tool_calls`` (probed once)."""
        if self._template_flags is None:
            user = {"role": "user", "content": [{"type": "text", "text": "probe"}]}
            call = {"type": "function", "function": {"name": "awares_probe_call", "arguments": {}}}
            assistant = {"role": "assistant", "content": [], "tool_calls": [call]}

            def render(conversation: list[dict[str, Any]], tools: list[Any] | None) -> str:
                try:
                    return self.processor.apply_chat_template(
                        conversation, tools=tools, add_generation_prompt=False, tokenize=False
                    )
                except Exception:  # a template that rejects the probe is treated as not supporting it
                    return ""

            renders_tools = render([user], [_PROBE_TOOL]) != render([user], None)
            renders_calls = "awares_probe_call" in render([user, assistant], None)
            if not (renders_tools and renders_calls):
                logger.info(
                    "the chat template of %s does not render %s; awares writes them in Qwen's hermes format",
                    self._name,
                    "tools" if not renders_tools else "tool calls",
                )
            self._template_flags = (renders_tools, renders_calls)
        return self._template_flags

    def _prepare(
        self, messages: Sequence[ChatMessage], images: ImageStore, tools: Sequence[ToolSpec] | None
    ) -> PreparedTurn:
        """Render and tokenize a turn (in the caller's thread, so concurrent callers prepare in parallel).

        On the Qwen-VL path the prompt is tokenized from the images' grids, which depend on their sizes
        only, and pixels are preprocessed only for images that a cached turn does not already hold.
        """
        if not messages:
            raise MessageTranslationError("the conversation is empty")
        text, pil_images, image_ids = self._render(messages, images, tools)
        split = self._mrope and self._split_images
        if split:
            input_ids, grids = self._tokenize(text, pil_images)
            inputs = None
        else:
            try:
                inputs = self.processor(text=[text], images=pil_images or None, return_tensors="pt")
            except (ValueError, TypeError) as exc:
                raise MessageTranslationError(
                    f"the processor of {self._name!r} could not encode the conversation: {exc}"
                ) from exc
            input_ids, grids = inputs["input_ids"][0], inputs.get("image_grid_thw")
        types = (input_ids == self._image_token_id).long() + 2 * (input_ids == self._video_token_id).long()
        merge = int(getattr(self.processor.image_processor, "merge_size", 1) or 1)
        spans: list[tuple[int, int]] = []
        pixels: list[torch.Tensor | None] = [None] * len(pil_images)
        image_tokens: list[int] | None = [] if not pil_images else None
        if grids is not None:
            image_tokens = [int(g.prod()) // merge**2 for g in grids]
            # Pad tokens are dealt out to the images in order: image k owns the next image_tokens[k] of them.
            where = (input_ids == self._image_token_id).nonzero().flatten().tolist()
            start = 0
            for n in image_tokens:
                chunk = where[start : start + n]
                spans.append((chunk[0], chunk[-1] + 1) if chunk else (0, 0))
                start += n
            if inputs is not None:
                rows = [int(g.prod()) for g in grids]
                pixels = list(inputs["pixel_values"].split(rows))
        position_ids = None
        if self._mrope:
            position_ids, _ = self._core.get_rope_index(
                input_ids[None], mm_token_type_ids=types[None], image_grid_thw=grids
            )
            position_ids = position_ids[:, 0]
        request = PreparedTurn(
            input_ids=input_ids,
            mm_token_type_ids=types,
            position_ids=position_ids,
            images=pil_images,
            image_grid_thw=grids,
            pixels=pixels,
            image_ids=image_ids,
            spans=spans,
            image_tokens=image_tokens,
            tools_offered=bool(tools),
            inputs=inputs,
        )
        if pil_images and split:
            # Preprocess now (in parallel with other callers) what the cache will probably not cover; the
            # decode step computes any image whose cached turn has gone in the meantime.
            reusable = self._prefix_cache.lookup(request, touch=False)[1] if self.kv_reuse else 0
            for k, (begin, _) in enumerate(spans):
                if begin >= reusable:
                    pixels[k] = self._pixels(request, k)
        return request

    def _tokenize(self, text: str, images: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The prompt's token ids and the images' grids, computed from image sizes (no pixel work).

        This is what the Qwen-VL processors do (each image pad becomes ``prod(grid) // merge_size**2`` pads,
        then the text is tokenized), with each grid from transformers' resize rule
        (:func:`~awares_agent.tokens.smart_resize`, with the image processor's own bounds); every grid is
        checked against the image processor's output when the image's pixels are preprocessed.
        """
        import torch

        image_processor = self.processor.image_processor
        patch, merge = int(image_processor.patch_size), int(image_processor.merge_size)
        lo, hi = pixel_bounds(image_processor)
        pad = self.processor.image_token
        pieces = text.split(pad)
        if len(pieces) - 1 != len(images):
            raise MessageTranslationError(
                f"the chat template of {self._name!r} wrote {len(pieces) - 1} image placeholder(s) for "
                f"{len(images)} image(s)"
            )
        grids = []
        for image in images:
            width, height = image.size
            if max(width, height) > 200 * min(width, height):
                raise MessageTranslationError(
                    f"a {width}x{height} image has an aspect ratio above 200, which the processor refuses"
                )
            rh, rw = smart_resize(height, width, factor=patch * merge, min_pixels=lo, max_pixels=hi)
            grids.append([1, rh // patch, rw // patch])
        expanded = pieces[0] + "".join(
            pad * (h * w // merge**2) + piece for (_, h, w), piece in zip(grids, pieces[1:], strict=True)
        )
        input_ids = torch.tensor(self.tokenizer(expanded)["input_ids"], dtype=torch.long)
        return input_ids, torch.tensor(grids, dtype=torch.long) if grids else None

    def _pixels(self, request: PreparedTurn, k: int) -> torch.Tensor:
        """Preprocess image ``k`` of ``request`` with the image processor (checking the grid agrees)."""
        image = request.images[k]
        try:
            out = self.processor.image_processor(images=[image], return_tensors="pt")
        except (ValueError, TypeError, OSError) as exc:
            raise MessageTranslationError(
                f"the image processor of {self._name!r} could not preprocess a "
                f"{image.size[0]}x{image.size[1]} image: {exc}"
            ) from exc
        with self._stats_lock:
            self._stats.preprocessed_images += 1
        grid = out["image_grid_thw"][0]
        if not bool((grid == request.image_grid_thw[k]).all()):
            raise BackendError(
                f"the image processor of {self._name!r} gave a {grid.tolist()} patch grid for a "
                f"{image.size[0]}x{image.size[1]} image where {request.image_grid_thw[k].tolist()} was "
                f"expected; this processor is not a Qwen-VL one awares knows"
            )
        return out["pixel_values"]

    def _reply(self, request: PreparedTurn, outcome: TurnOutcome, latency_s: float) -> ChatReply:
        text = decode_text(self.tokenizer, outcome.tokens)
        calls = []
        if request.tools_offered:
            text, calls = extract_tool_calls(text)
        return ChatReply(
            text=text,
            tool_calls=calls,
            usage=Usage(prompt_tokens=request.length, completion_tokens=len(outcome.tokens)),
            finish_reason=outcome.finish_reason,
            model=self._name,
            latency_s=latency_s,
            image_tokens=request.image_tokens,
        )

    # --- running requests -----------------------------------------------------------------------------

    def _run_alone(self, request: PreparedTurn) -> TurnOutcome:
        with self._lock:
            return self._run([request])[0]

    def _execute(self, requests: list[PreparedTurn]) -> list[TurnOutcome]:
        with self._lock:
            return self._run(requests)

    def _translate(self, err: RuntimeError, requests: list[PreparedTurn]) -> BackendError:
        """Map a failed generation onto the BackendError hierarchy through this backend's table."""
        prompts = f"{len(requests)} prompt(s) of {', '.join(str(r.length) for r in requests)} tokens"
        failed = f"{self._name} failed to generate on {self.device} for {prompts}"
        table = (
            ErrorRule(
                BackendError,
                lambda e: (
                    f"{failed}: out of memory; lower max_pixels, max_batch_size or max_new_tokens, or use a "
                    f"larger device"
                ),
                test=_out_of_memory,
            ),
            ErrorRule(BackendError, lambda e: f"{failed}: {e}", types=(RuntimeError,)),
        )
        return translate_error(err, table)

    def _run(self, requests: list[PreparedTurn]) -> list[TurnOutcome]:
        """Generate for ``requests`` as one batch (the caller holds the lock)."""
        import torch

        # Read the options now: they are plain attributes a caller may change between calls.
        options = DecodeOptions(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            pad_id=self._pad_id,
            stop_ids=self._stop_ids,
            suppress_ids=self._suppress_ids,
        )

        try:
            with torch.inference_mode():
                if self._mrope:
                    outcomes = decode_batch(
                        self.model,
                        requests,
                        options=options,
                        prefix_cache=self._prefix_cache,
                        reuse=self.kv_reuse,
                        preprocess=self._pixels,
                        name=self._name,
                    )
                else:
                    outcomes = [generate_turn(self.model, r, options) for r in requests]
        except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
            if _out_of_memory(exc) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise self._translate(exc, requests) from exc
        with self._stats_lock:
            s = self._stats
            s.requests += len(requests)
            s.batches += 1
            s.batch_sizes[len(requests)] += 1
            for r, o in zip(requests, outcomes, strict=True):
                s.prompt_tokens += r.length
                s.reused_tokens += o.reused
                s.prefilled_tokens += o.prefilled
                s.generated_tokens += len(o.tokens)
                s.cache_hits += o.reused > 0
        return outcomes


def _out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _check_int(value: Any, what: str, minimum: int) -> None:
    """Raise ConfigError unless ``value`` is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
