"""A chat backend that runs a Hugging Face image-text model in-process, with KV-cache reuse and batching.

Any ``AutoModelForImageTextToText`` checkpoint whose processor has a chat template loads; the Qwen-VL family
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, and so the released ``Kimhi/AWARES-Qwen2.5-VL-7B``) is first-class:

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
  given, which is wrong once a cached prefix is skipped. The loop computes the 3-D mrope position ids of the
  whole sequence with the model's own ``get_rope_index`` and feeds the model only the uncached segment with
  its slice of them; each generated token then takes position ``previous + 1``, as ``generate()`` does. Its
  greedy output is token-for-token ``model.generate(do_sample=False)``'s (tested). Image, video and
  vision-start/end tokens are never generated; the checkpoint's ``generation_config`` sampling settings
  (repetition penalty, top-k) are not applied: decoding is set by this backend's options.
* **KV-cache reuse.** Every finished turn leaves its token ids, the images in them (store ids and token
  spans) and its KV cache in a small LRU. A new prompt continues from the entry with the longest common token
  prefix whose images are the very same pictures (same ids, not merely the same token count), so an agent's
  second turn prefills only the tool result, the crops and the new user text instead of the system prompt,
  the low-res view and the first answer again. The prompt is tokenized from the images' sizes (their patch
  grids), so the pixels of an image the cache already holds are not even preprocessed. Cached tensors are
  never written in place (a turn copies what it reuses into its own cache), so one entry may serve several
  requests; an entry is dropped once a longer turn has fully extended it. Where the re-rendered history
  tokenizes differently from what was generated, the common prefix is simply shorter. Greedy outputs are
  identical with and without reuse (tested).
* **Batching.** :meth:`TransformersBackend.complete_batch` runs several conversations as one left-padded
  batch, one forward per decoding step. Concurrent :meth:`~TransformersBackend.complete` calls from threads
  (``AwaResAgent.ask_many``) are gathered by a micro-batcher: a request waits up to ``batch_wait_ms`` for
  others, up to ``max_batch_size``, and one batched generation serves them all. Batching and reuse combine
  per row: each row's reused prefix is laid out left-padded in the batch's cache and its uncached segment
  left-padded after it, with the attention mask hiding both paddings, so a batch may mix first and second
  turns of different queries.

Models outside the Qwen-VL family (no ``get_rope_index``) run through ``model.generate()`` one request at a
time, without reuse or batching.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from awares_agent.backends.hf_chat import extract_tool_calls, hermes_history, to_hf_messages, with_tools_block
from awares_agent.backends.hf_processors import load_processor, pixel_bounds, set_pixel_bounds
from awares_agent.errors import BackendError, ConfigError, MessageTranslationError
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, ToolSpec, Usage
from awares_agent.tokens import QwenVLTokenRule, smart_resize

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from awares_agent.image_store import ImageStore

__all__ = ["TransformersBackend"]

logger = logging.getLogger(__name__)

#: The paper's visual-token budget per image: 32 to 2048 tokens.
MIN_IMAGE_TOKENS = 32
MAX_IMAGE_TOKENS = 2048

#: A cached prefix shorter than this is not worth the bookkeeping; the prompt is prefilled in full.
MIN_REUSE_TOKENS = 16

_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
_END_OF_TURN = "<|im_end|>"

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
class _Request:
    """One conversation turn, rendered and processed, ready for the model (tensors on the CPU)."""

    input_ids: torch.Tensor  # (L,)
    mm_token_type_ids: torch.Tensor  # (L,)
    position_ids: torch.Tensor | None  # (3, L) mrope positions of the whole sequence
    images: list[Any]  # PIL images, in order
    image_grid_thw: torch.Tensor | None  # (n_images, 3)
    pixels: list[torch.Tensor | None]  # each image's patches; None until needed (not for cached images)
    image_ids: list[str]
    spans: list[tuple[int, int]]  # each image's pad-token span in input_ids
    image_tokens: list[int] | None  # None: the processor does not say (no image grid)
    tools_offered: bool
    inputs: dict[str, Any] | None = None  # the processor's output, for the generate() path

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class _Entry:
    """A finished turn: the tokens its KV cache holds, the images among them, and the cache itself."""

    ids: torch.Tensor  # (L,) prompt + generated tokens that were fed to the model
    image_ids: list[str]
    spans: list[tuple[int, int]]
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, (1, heads, L, head_dim); never written in place


@dataclass
class _Outcome:
    """What one row of a generation produced."""

    tokens: list[int]
    finish_reason: str
    reused: int
    prefilled: int


@dataclass
class _Pending:
    """A request waiting in the micro-batcher, and where its result goes."""

    request: _Request
    arrived: float
    done: bool = False
    outcome: _Outcome | None = None
    error: BaseException | None = None


@dataclass
class _Stats:
    requests: int = 0
    batches: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    cache_hits: int = 0
    preprocessed_images: int = 0


class TransformersBackend:
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
        max_new_tokens: int = 256,
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
        self.kv_cache_entries = kv_cache_entries

        if isinstance(model, str | Path):
            source = str(model)
            self.model = _load_model(
                source,
                device=_device(device),
                dtype=_dtype(dtype),
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
        self._set_pixel_bounds(min_pixels, max_pixels)

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
        self._image_token_id = _config_id(config, "image_token_id", self.tokenizer, "<|image_pad|>")
        self._video_token_id = _config_id(config, "video_token_id", self.tokenizer, "<|video_pad|>")
        self._pad_id = self._pad_token_id()
        self._stop_ids = self._stop_token_ids()
        self._suppress_ids = self._suppressed_token_ids()

        self._lock = threading.RLock()  # one generation at a time
        self._cache_lock = threading.Lock()  # the LRU of finished turns
        self._stats_lock = threading.Lock()
        self._cache: OrderedDict[int, _Entry] = OrderedDict()
        self._next_entry = 0
        self._stats = _Stats()
        self._template_flags: tuple[bool, bool] | None = None
        self._batcher = _MicroBatcher(self._execute, max_batch_size, self.batch_wait_ms / 1000)

    # --- identity -------------------------------------------------------------------------------------

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
                "cache_entries": len(self._cache),
            }

    def reset_stats(self) -> None:
        """Zero the counters of :attr:`stats`."""
        with self._stats_lock:
            self._stats = _Stats()

    def clear_cache(self) -> None:
        """Forget every cached turn (frees their KV memory)."""
        with self._cache_lock:
            self._cache.clear()

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
        t0 = time.perf_counter()
        request = self._prepare(messages, images, tools)
        outcome = self._run_alone(request) if self.max_batch_size == 1 else self._batcher.submit(request)
        return self._reply(request, outcome, time.perf_counter() - t0)

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Async :meth:`complete` (runs in a worker thread, so concurrent calls batch too)."""
        return await asyncio.to_thread(self.complete, messages, images=images, tools=tools)

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
        outcomes: list[_Outcome] = []
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
    ) -> _Request:
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
        request = _Request(
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
            reusable = self._peek(request)
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

    def _pixels(self, request: _Request, k: int) -> torch.Tensor:
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

    def _reply(self, request: _Request, outcome: _Outcome, latency_s: float) -> ChatReply:
        text = self.tokenizer.decode(outcome.tokens, skip_special_tokens=True)
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

    def _run_alone(self, request: _Request) -> _Outcome:
        with self._lock:
            return self._run([request])[0]

    def _execute(self, requests: list[_Request]) -> list[_Outcome]:
        with self._lock:
            return self._run(requests)

    def _run(self, requests: list[_Request]) -> list[_Outcome]:
        """Generate for ``requests`` as one batch (the caller holds the lock)."""
        import torch

        try:
            with torch.inference_mode():
                outcomes = self._decode(requests) if self._mrope else [self._generate(r) for r in requests]
        except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
            oom = isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
            if oom and torch.cuda.is_available():
                torch.cuda.empty_cache()
            lengths = ", ".join(str(r.length) for r in requests)
            hint = (
                "; lower max_pixels, max_batch_size or max_new_tokens, or use a larger device" if oom else ""
            )
            raise BackendError(
                f"{self._name} failed to generate on {self.device} for {len(requests)} prompt(s) of "
                f"{lengths} tokens: {'out of memory' if oom else exc}{hint}"
            ) from exc
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

    def _decode(self, requests: list[_Request]) -> list[_Outcome]:
        """Prefill every row's uncached segment, then decode the batch one token per step."""
        import torch
        from transformers import DynamicCache

        device = self.device
        found = [self._lookup(r) for r in requests]
        batch = len(requests)
        reused = [n for _, n in found]
        fresh = [r.length - n for r, n in zip(requests, reused, strict=True)]
        past, width = max(reused), max(fresh)

        # Layout of row i: [pad | its reused prefix] in the cache, then [pad | its uncached segment].
        input_ids = torch.full((batch, width), self._pad_id, dtype=torch.long)
        types = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((3, batch, width), dtype=torch.long)
        mask = torch.zeros((batch, past + width), dtype=torch.long)
        pixels: list[torch.Tensor] = []
        grids: list[torch.Tensor] = []
        for i, (r, p, n) in enumerate(zip(requests, reused, fresh, strict=True)):
            input_ids[i, width - n :] = r.input_ids[p:]
            types[i, width - n :] = r.mm_token_type_ids[p:]
            positions[:, i, width - n :] = r.position_ids[:, p:]
            mask[i, past - p : past] = 1
            mask[i, past + width - n :] = 1
            for k, (start, _) in enumerate(r.spans):
                if start >= p:  # a reused prefix never ends inside an image
                    if r.pixels[k] is None:
                        r.pixels[k] = self._pixels(r, k)
                    pixels.append(r.pixels[k])
                    grids.append(r.image_grid_thw[k : k + 1])

        cache = DynamicCache(config=self.model.config)
        if past:
            layers = []
            template = next(e for e, _ in found if e is not None).kv
            for layer, (k0, v0) in enumerate(template):
                keys = k0.new_zeros((batch, k0.shape[1], past, k0.shape[3]))
                values = v0.new_zeros((batch, v0.shape[1], past, v0.shape[3]))
                for i, (entry, p) in enumerate(found):
                    if entry is not None:
                        keys[i, :, past - p :] = entry.kv[layer][0][0, :, :p]
                        values[i, :, past - p :] = entry.kv[layer][1][0, :, :p]
                layers.append((keys, values))
            cache = DynamicCache(layers, config=self.model.config)

        mask = mask.to(device)
        positions = positions.to(device)
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            pixel_values=torch.cat(pixels).to(device) if pixels else None,
            image_grid_thw=torch.cat(grids).to(device) if grids else None,
            mm_token_type_ids=types.to(device),
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1, :]
        last = positions[:, :, -1:]
        generated: list[list[int]] = [[] for _ in requests]
        alive = [True] * batch
        stop = set(self._stop_ids)
        for step in range(self.max_new_tokens):
            tokens = self._pick(logits).tolist()
            for i, token in enumerate(tokens):
                if alive[i]:
                    generated[i].append(token)
                    alive[i] = token not in stop
            if step == self.max_new_tokens - 1 or not any(alive):
                break
            # Finished rows are fed padding that nothing attends to, so the cache stays one tensor.
            feed = torch.tensor([t if a else self._pad_id for t, a in zip(tokens, alive, strict=True)])
            mask = torch.cat([mask, torch.tensor(alive, dtype=torch.long, device=device)[:, None]], dim=1)
            last = last + 1
            out = self.model(
                input_ids=feed[:, None].to(device),
                attention_mask=mask,
                position_ids=last,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :]

        if self.kv_reuse:
            self._remember(requests, found, generated, cache, mask)
        outcomes = []
        for r, g, p in zip(requests, generated, reused, strict=True):
            finish = "stop" if g and g[-1] in self._stop_ids else "length"
            outcomes.append(_Outcome(tokens=g, finish_reason=finish, reused=p, prefilled=r.length - p))
            logger.debug(
                "%s: prompt %d tokens (%d reused, %d prefilled), %d generated, batch of %d",
                self._name,
                r.length,
                p,
                r.length - p,
                len(g),
                batch,
            )
        return outcomes

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token of each row: argmax, or a temperature/top-p sample."""
        import torch

        logits = logits.float()
        if self._suppress_ids:
            logits[:, self._suppress_ids] = float("-inf")
        if not self.do_sample:
            return logits.argmax(dim=-1)
        logits = logits / self.temperature
        if self.top_p < 1.0:
            ordered, order = logits.sort(dim=-1, descending=True)
            mass = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = mass - ordered.softmax(dim=-1) > self.top_p  # keep the smallest prefix reaching top_p
            ordered = ordered.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
        return torch.multinomial(logits.softmax(dim=-1), 1)[:, 0]

    def _generate(self, request: _Request) -> _Outcome:
        """``model.generate()`` for models outside the Qwen-VL family (no reuse, one request at a time)."""
        assert request.inputs is not None
        inputs = {k: v.to(self.device) for k, v in request.inputs.items()}
        options: dict[str, Any] = {"do_sample": self.do_sample}
        if self.do_sample:
            options.update(temperature=self.temperature, top_p=self.top_p)
        out = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self._stop_ids,
            pad_token_id=self._pad_id,
            suppress_tokens=self._suppress_ids or None,
            **options,
        )
        tokens = out[0, request.length :].tolist()
        while tokens and tokens[-1] == self._pad_id and self._pad_id not in self._stop_ids:
            tokens.pop()
        finish = "stop" if tokens and tokens[-1] in self._stop_ids else "length"
        return _Outcome(tokens=tokens, finish_reason=finish, reused=0, prefilled=request.length)

    # --- the KV cache of finished turns ---------------------------------------------------------------

    def _lookup(self, request: _Request, *, touch: bool = True) -> tuple[_Entry | None, int]:
        """The cached turn sharing the longest usable prefix with ``request``, and that prefix's length.

        Args:
            request: the prepared turn.
            touch: mark the entry found as recently used.
        """
        if not self.kv_reuse:
            return None, 0
        best: tuple[_Entry | None, int] = (None, 0)
        best_key = None
        with self._cache_lock:
            for key, entry in self._cache.items():
                n = _usable_prefix(entry, request)
                if n > best[1]:
                    best, best_key = (entry, n), key
            if best[1] < MIN_REUSE_TOKENS:
                return None, 0
            if touch:
                self._cache.move_to_end(best_key)
        return best

    def _peek(self, request: _Request) -> int:
        """How many leading tokens of ``request`` a cached turn holds now."""
        return self._lookup(request, touch=False)[1]

    def _remember(
        self,
        requests: list[_Request],
        found: list[tuple[_Entry | None, int]],
        generated: list[list[int]],
        cache: Any,
        mask: torch.Tensor,
    ) -> None:
        """Keep each row's finished turn; drop the entries they fully extend; evict beyond capacity."""
        import torch
        from transformers.cache_utils import DynamicLayer

        if not all(type(layer) is DynamicLayer for layer in cache.layers):
            return  # sliding-window or quantized layers cannot be cut at an arbitrary prefix
        batch = len(requests)
        for i, (r, (used, p), g) in enumerate(zip(requests, found, generated, strict=True)):
            fed = g[:-1]  # the last generated token was never fed to the model
            valid = mask[i].bool()
            if int(valid.sum()) != r.length + len(fed):
                logger.warning("KV cache bookkeeping mismatch; not caching this turn")
                continue
            if batch == 1 and bool(valid.all()):
                kv = [(layer.keys, layer.values) for layer in cache.layers]
            else:
                kv = [
                    (layer.keys[i : i + 1, :, valid], layer.values[i : i + 1, :, valid])
                    for layer in cache.layers
                ]
            ids = torch.cat([r.input_ids, torch.tensor(fed, dtype=r.input_ids.dtype)])
            with self._cache_lock:
                if used is not None and p == used.ids.shape[0]:
                    for key, entry in list(self._cache.items()):
                        if entry is used:
                            del self._cache[key]
                self._cache[self._next_entry] = _Entry(ids=ids, image_ids=r.image_ids, spans=r.spans, kv=kv)
                self._next_entry += 1
                while len(self._cache) > self.kv_cache_entries:
                    self._cache.popitem(last=False)

    # --- set-up helpers -------------------------------------------------------------------------------

    def _set_pixel_bounds(self, min_pixels: int | None, max_pixels: int | None) -> None:
        image_processor = getattr(self.processor, "image_processor", None)
        if image_processor is None:
            return
        patch = getattr(image_processor, "patch_size", None)
        merge = getattr(image_processor, "merge_size", None)
        if patch and merge:
            unit = (int(patch) * int(merge)) ** 2
            min_pixels = min_pixels if min_pixels is not None else MIN_IMAGE_TOKENS * unit
            max_pixels = max_pixels if max_pixels is not None else MAX_IMAGE_TOKENS * unit
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise ConfigError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
        set_pixel_bounds(image_processor, min_pixels=min_pixels, max_pixels=max_pixels)

    def _pad_token_id(self) -> int:
        for candidate in (
            self.tokenizer.pad_token_id,
            getattr(self.model.generation_config, "pad_token_id", None),
            self.tokenizer.eos_token_id,
        ):
            if isinstance(candidate, int):
                return candidate
        return 0

    def _stop_token_ids(self) -> list[int]:
        ids: list[int] = []
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids += eos if isinstance(eos, list) else [eos]
        ids.append(self.tokenizer.eos_token_id)
        ids.append(self._vocab_id(_END_OF_TURN))
        return sorted({i for i in ids if isinstance(i, int)})

    def _suppressed_token_ids(self) -> list[int]:
        config = self.model.config
        ids = [
            getattr(config, name, None)
            for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        ]
        ids += [self._vocab_id(t) for t in _VISION_TOKENS]
        return sorted({i for i in ids if isinstance(i, int) and i not in self._stop_ids})

    def _vocab_id(self, token: str) -> int | None:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        return token_id if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id else None


# --- the micro-batcher ---------------------------------------------------------------------------------


class _MicroBatcher:
    """Gathers concurrent requests into batches; the first waiting caller runs each batch (no extra thread).

    A caller whose request is queued either becomes the *leader* (if no one is) or waits. The leader waits
    until ``max_size`` requests are queued or the oldest has waited ``wait_s``, takes up to ``max_size`` of
    them, runs them, hands every caller its own result or exception, and repeats until its own request is
    served; then another waiting caller takes over. Requests that arrive while a batch runs queue up and
    form the next batch.
    """

    def __init__(self, run: Callable[[list[_Request]], list[_Outcome]], max_size: int, wait_s: float) -> None:
        self._run = run
        self._max = max_size
        self._wait_s = wait_s
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._leader = False

    def submit(self, request: _Request) -> _Outcome:
        pending = _Pending(request, time.monotonic())
        with self._cond:
            self._queue.append(pending)
            self._cond.notify_all()
            while not pending.done and self._leader:
                self._cond.wait()
            lead = not pending.done
            if lead:
                self._leader = True
        if lead:
            try:
                while not pending.done:
                    self._execute(self._take())
            finally:
                with self._cond:
                    self._leader = False
                    self._cond.notify_all()
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def _take(self) -> list[_Pending]:
        with self._cond:
            deadline = self._queue[0].arrived + self._wait_s
            while len(self._queue) < self._max and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            batch, self._queue[: self._max] = self._queue[: self._max], []
            return batch

    def _execute(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self._run([p.request for p in batch])
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:  # run each alone, so that an error reaches only the request that causes it
                for p in batch:
                    self._execute([p])
                return
        else:
            for p, o in zip(batch, outcomes, strict=True):
                p.outcome = o
        with self._cond:
            for p in batch:
                p.done = True
            self._cond.notify_all()


# --- helpers -------------------------------------------------------------------------------------------


def _usable_prefix(entry: _Entry, request: _Request) -> int:
    """How many leading tokens of ``request`` the cached turn ``entry`` holds, with the very same images.

    At least one prompt token is always left to prefill (its logits start the reply).
    """
    n = min(entry.ids.shape[0], request.length - 1)
    if n <= 0:
        return 0
    differ = (entry.ids[:n] != request.input_ids[:n]).nonzero()
    n = int(differ[0]) if differ.numel() else n
    for k, (start, end) in enumerate(request.spans):
        if start >= n:
            break
        same = k < len(entry.image_ids) and entry.image_ids[k] == request.image_ids[k]
        if not same or entry.spans[k] != (start, end) or end > n:
            return start  # identical pad tokens do not mean identical pixels: stop before this image
    return n


def _check_int(value: Any, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")


def _device(device: str) -> str:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: use 'cpu', 'cuda', 'cuda:<n>' or 'mps'") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use device='cpu'")
    return str(parsed)


def _dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else None
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(
            f"invalid dtype {dtype!r}: use 'auto', 'bfloat16', 'float16', 'float32' or a torch.dtype"
        )
    return resolved


def _load_model(
    source: str,
    *,
    device: str,
    dtype: Any,
    attn_implementation: str | None,
    local_files_only: bool,
    revision: str | None,
) -> Any:
    from transformers import AutoModelForImageTextToText

    looks_local = source.startswith((".", "/", "~")) or Path(source).expanduser().exists()
    if looks_local and not Path(source).expanduser().is_dir():
        raise ConfigError(
            f"model directory {source!r} does not exist; pass a checkpoint directory or a hub id"
        )
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": local_files_only, "revision": revision}
    # With peft installed, transformers looks for an adapter config first without passing local_files_only on
    # (and retries a missing network for ~25 s); say it explicitly.
    kwargs["adapter_kwargs"] = {"local_files_only": local_files_only}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            str(Path(source).expanduser()) if looks_local else source, **kwargs
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot load model {source!r}: {exc}. Download it first with "
            f"`huggingface-cli download {source}` (or `hf download {source}`) or pass a local path; with "
            f"HF_HUB_OFFLINE=1 or "
            f"local_files_only=True only models already in the cache load"
        ) from exc
    except (ValueError, KeyError, ImportError) as exc:
        raise ConfigError(
            f"cannot load {source!r} as an image-text-to-text model: {exc}. Check that it is a "
            f"vision-language checkpoint this transformers version supports (upgrade transformers if its "
            f"architecture is newer), and that attn_implementation={attn_implementation!r} is available"
        ) from exc
    return model.to(device).eval()


def _config_id(config: Any, attr: str, tokenizer: Any, token: str) -> int:
    value = getattr(config, attr, None)
    if isinstance(value, int):
        return value
    token_id = tokenizer.convert_tokens_to_ids(token)
    return token_id if isinstance(token_id, int) else -1
