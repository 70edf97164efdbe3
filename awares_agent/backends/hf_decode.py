"""The transformers backend's decode loop and its prefix KV cache of finished turns.

* **Decoding** (:func:`decode_batch`) is the backend's own loop (greedy by default, the paper's setting; or
  temperature/top-p sampling), not ``generate()``: ``generate()`` recomputes multimodal rope positions from
  the tokens it is given, which is wrong once a cached prefix is skipped. The loop feeds the model only each
  row's uncached segment with its slice of the 3-D mrope position ids (computed for the whole sequence when
  the turn was prepared); each generated token then takes position ``previous + 1``, as ``generate()`` does.
  Its greedy output is token-for-token ``model.generate(do_sample=False)``'s. Rows are left-padded: row
  ``i`` is ``[pad | its reused prefix]`` in the cache, then ``[pad | its uncached segment]``, with the
  attention mask hiding both paddings, so a batch may mix first and second turns of different queries.
* **The prefix cache** (:class:`PrefixCache`) keeps every finished turn's token ids, the images among them
  (store ids and token spans) and its KV cache in a small LRU. A new prompt continues from the entry with the
  longest common token prefix whose images are the very same pictures (same ids, not merely the same token
  count). Cached tensors are never written in place (a turn copies what it reuses into its own cache), so one
  entry may serve several requests; an entry is dropped once a longer turn has fully extended it.
* **Streaming.** A turn may carry an ``on_token`` callback (a :data:`TokenSink`): each time its row picks a
  token, it is called with the row's tokens so far, so a streaming caller decodes its text as it is
  generated while its row still batches with others.

Models without ``get_rope_index`` go through :func:`generate_turn` (``model.generate()``, no reuse; a
``transformers`` streamer feeds ``on_token`` there).
torch and transformers are imported inside the functions that need them (optional dependencies).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MIN_REUSE_TOKENS = 16
"""A cached prefix shorter than this is not worth the bookkeeping; the prompt is prefilled in full."""

TokenSink = Callable[[Sequence[int]], None]
"""Called each time a turn generates a token, with the turn's tokens so far (the new one last; read it, do
not keep or change it). A failed batch is rerun one turn at a time, so the tokens may start again."""


@dataclass
class PreparedTurn:
    """One conversation turn, rendered and processed, ready for the model (tensors on the CPU).

    Attributes:
        input_ids: ``(L,)`` the prompt's token ids.
        mm_token_type_ids: ``(L,)`` 0 for text, 1 for image pads, 2 for video pads.
        position_ids: ``(3, L)`` mrope positions of the whole sequence (``None`` outside Qwen-VL).
        images: the PIL images, in order.
        image_grid_thw: ``(n_images, 3)`` their patch grids (``None`` without images).
        pixels: each image's patches; ``None`` until needed (never for an image a cached turn holds).
        image_ids: the images' store ids, in order.
        spans: each image's pad-token span in ``input_ids``.
        image_tokens: each image's visual tokens (``None``: the processor does not say).
        tools_offered: whether tools were offered (the reply's tool calls are then parsed).
        inputs: the processor's whole output, for the ``generate()`` path.
        on_token: called with the turn's tokens so far each time it generates one (``None``: not streamed).
    """

    input_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    position_ids: torch.Tensor | None
    images: list[Any]
    image_grid_thw: torch.Tensor | None
    pixels: list[torch.Tensor | None]
    image_ids: list[str]
    spans: list[tuple[int, int]]
    image_tokens: list[int] | None
    tools_offered: bool
    inputs: dict[str, Any] | None = None
    on_token: TokenSink | None = None

    @property
    def length(self) -> int:
        """The prompt's length in tokens."""
        return int(self.input_ids.shape[0])


@dataclass
class TurnOutcome:
    """What one row of a generation produced.

    Attributes:
        tokens: the generated token ids (the stop token included, if one was generated).
        finish_reason: ``"stop"`` or ``"length"``.
        reused: prompt tokens taken from a cached turn.
        prefilled: prompt tokens computed.
    """

    tokens: list[int]
    finish_reason: str
    reused: int
    prefilled: int


@dataclass(frozen=True)
class GeneratedTurn:
    """One model turn as token ids: what the model was given and what it generated.

    Attributes:
        prompt_ids: the prompt's token ids, image pads expanded (the whole conversation so far).
        completion_ids: the generated ids (the stop token included, if one was generated).
        images: the prompt's images in order of appearance, as given to the image processor.
        finish_reason: ``"stop"`` or ``"length"``.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    images: list[Any]
    finish_reason: str


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode: the sampling settings and the special token ids.

    Attributes:
        max_new_tokens: most tokens generated per turn.
        do_sample: sample instead of greedy decoding.
        temperature: the sampling temperature.
        top_p: the nucleus sampling mass (1.0: no truncation).
        pad_id: the id finished rows and padding are fed.
        stop_ids: the ids that end a turn.
        suppress_ids: ids never generated (the vision tokens).
    """

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    pad_id: int
    stop_ids: list[int]
    suppress_ids: list[int]


@dataclass
class CachedTurn:
    """A finished turn: the tokens its KV cache holds, the images among them, and the cache itself.

    Attributes:
        ids: ``(L,)`` the prompt and generated tokens that were fed to the model.
        image_ids: the images' store ids, in order.
        spans: each image's pad-token span in ``ids``.
        kv: per layer, ``(keys, values)`` of shape ``(1, heads, L, head_dim)``; never written in place.
    """

    ids: torch.Tensor
    image_ids: list[str]
    spans: list[tuple[int, int]]
    kv: list[tuple[torch.Tensor, torch.Tensor]]


def usable_prefix(entry: CachedTurn, request: PreparedTurn) -> int:
    """How many leading tokens of ``request`` the cached turn ``entry`` holds, with the very same images.

    At least one prompt token is always left to prefill (its logits start the reply).

    Args:
        entry: the cached turn.
        request: the prepared turn.
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


class PrefixCache:
    """An LRU of finished turns whose KV caches later prompts continue from (thread-safe).

    Args:
        capacity: most turns kept; the least recently used is evicted first.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, CachedTurn] = OrderedDict()
        self._next = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every cached turn (frees their KV memory)."""
        with self._lock:
            self._entries.clear()

    def lookup(self, request: PreparedTurn, *, touch: bool = True) -> tuple[CachedTurn | None, int]:
        """The cached turn sharing the longest usable prefix with ``request``, and that prefix's length.

        A prefix under :data:`MIN_REUSE_TOKENS` counts as none: ``(None, 0)``.

        Args:
            request: the prepared turn.
            touch: mark the entry found as recently used.
        """
        best: tuple[CachedTurn | None, int] = (None, 0)
        best_key = None
        with self._lock:
            for key, entry in self._entries.items():
                n = usable_prefix(entry, request)
                if n > best[1]:
                    best, best_key = (entry, n), key
            if best[1] < MIN_REUSE_TOKENS:
                return None, 0
            if touch:
                self._entries.move_to_end(best_key)
        return best

    def remember(
        self,
        requests: list[PreparedTurn],
        found: list[tuple[CachedTurn | None, int]],
        generated: list[list[int]],
        cache: Any,
        mask: torch.Tensor,
    ) -> None:
        """Keep each row's finished turn; drop the entries they fully extend; evict beyond capacity.

        Args:
            requests: the batch's turns.
            found: what :meth:`lookup` found for each row.
            generated: each row's generated tokens.
            cache: the batch's ``DynamicCache`` after the last step.
            mask: the batch's attention mask after the last step (which cache positions are real).
        """
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
            with self._lock:
                if used is not None and p == used.ids.shape[0]:
                    for key, entry in list(self._entries.items()):
                        if entry is used:
                            del self._entries[key]
                self._entries[self._next] = CachedTurn(ids=ids, image_ids=r.image_ids, spans=r.spans, kv=kv)
                self._next += 1
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)


def pick_tokens(logits: torch.Tensor, options: DecodeOptions) -> torch.Tensor:
    """The next token of each row: argmax, or a temperature/top-p sample; suppressed ids never win.

    Args:
        logits: ``(batch, vocab)`` the last position's logits.
        options: the decoding options.
    """
    import torch

    logits = logits.float()
    if options.suppress_ids:
        logits[:, options.suppress_ids] = float("-inf")
    if not options.do_sample:
        return logits.argmax(dim=-1)
    logits = logits / options.temperature
    if options.top_p < 1.0:
        ordered, order = logits.sort(dim=-1, descending=True)
        mass = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = mass - ordered.softmax(dim=-1) > options.top_p  # keep the smallest prefix reaching top_p
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    return torch.multinomial(logits.softmax(dim=-1), 1)[:, 0]


def decode_batch(
    model: Any,
    requests: list[PreparedTurn],
    *,
    options: DecodeOptions,
    prefix_cache: PrefixCache,
    reuse: bool,
    preprocess: Callable[[PreparedTurn, int], torch.Tensor],
    name: str = "",
) -> list[TurnOutcome]:
    """Prefill every row's uncached segment, then decode the batch one token per step.

    The caller holds the model (one generation at a time) and runs this under ``torch.inference_mode()``.
    Each row's ``on_token``, if any, is called as the row picks each token, before the next step runs.

    Args:
        model: a Qwen-VL model (its forward takes ``position_ids`` of shape ``(3, batch, length)``).
        requests: the prepared turns, one row each.
        options: the decoding options.
        prefix_cache: the cache of finished turns to continue from and to add the batch's turns to.
        reuse: continue from, and add to, ``prefix_cache``.
        preprocess: computes the patches of image ``k`` of a turn, for an image the turn must prefill whose
            pixels were not preprocessed (its cached turn has gone since the turn was prepared).
        name: the model's name, for the debug log.
    """
    import torch
    from transformers import DynamicCache

    device = model.device
    found = [prefix_cache.lookup(r) if reuse else (None, 0) for r in requests]
    batch = len(requests)
    reused = [n for _, n in found]
    fresh = [r.length - n for r, n in zip(requests, reused, strict=True)]
    past, width = max(reused), max(fresh)

    # Layout of row i: [pad | its reused prefix] in the cache, then [pad | its uncached segment].
    input_ids = torch.full((batch, width), options.pad_id, dtype=torch.long)
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
                    r.pixels[k] = preprocess(r, k)
                pixels.append(r.pixels[k])
                grids.append(r.image_grid_thw[k : k + 1])

    cache = DynamicCache(config=model.config)
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
        cache = DynamicCache(layers, config=model.config)

    mask = mask.to(device)
    positions = positions.to(device)
    out = model(
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
    stop = set(options.stop_ids)
    for step in range(options.max_new_tokens):
        tokens = pick_tokens(logits, options).tolist()
        for i, token in enumerate(tokens):
            if alive[i]:
                generated[i].append(token)
                alive[i] = token not in stop
                if requests[i].on_token is not None:
                    requests[i].on_token(generated[i])
        if step == options.max_new_tokens - 1 or not any(alive):
            break
        # Finished rows are fed padding that nothing attends to, so the cache stays one tensor.
        feed = torch.tensor([t if a else options.pad_id for t, a in zip(tokens, alive, strict=True)])
        mask = torch.cat([mask, torch.tensor(alive, dtype=torch.long, device=device)[:, None]], dim=1)
        last = last + 1
        out = model(
            input_ids=feed[:, None].to(device),
            attention_mask=mask,
            position_ids=last,
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1, :]

    if reuse:
        prefix_cache.remember(requests, found, generated, cache, mask)
    outcomes = []
    for r, g, p in zip(requests, generated, reused, strict=True):
        finish = "stop" if g and g[-1] in options.stop_ids else "length"
        outcomes.append(TurnOutcome(tokens=g, finish_reason=finish, reused=p, prefilled=r.length - p))
        logger.debug(
            "%s: prompt %d tokens (%d reused, %d prefilled), %d generated, batch of %d",
            name,
            r.length,
            p,
            r.length - p,
            len(g),
            batch,
        )
    return outcomes


def generate_turn(model: Any, request: PreparedTurn, options: DecodeOptions) -> TurnOutcome:
    """``model.generate()`` for models outside the Qwen-VL family (no reuse, one request at a time).

    The turn's ``on_token``, if any, is fed by a streamer as ``generate()`` produces each token.

    Args:
        model: any image-text model.
        request: the prepared turn (with the processor's ``inputs``).
        options: the decoding options.
    """
    assert request.inputs is not None
    streamer = token_streamer(request.on_token) if request.on_token is not None else None
    inputs = {k: v.to(model.device) for k, v in request.inputs.items()}
    sampling: dict[str, Any] = {"do_sample": options.do_sample}
    if options.do_sample:
        sampling.update(temperature=options.temperature, top_p=options.top_p)
    out = model.generate(
        **inputs,
        max_new_tokens=options.max_new_tokens,
        eos_token_id=options.stop_ids,
        pad_token_id=options.pad_id,
        suppress_tokens=options.suppress_ids or None,
        streamer=streamer,
        **sampling,
    )
    tokens = out[0, request.length :].tolist()
    while tokens and tokens[-1] == options.pad_id and options.pad_id not in options.stop_ids:
        tokens.pop()
    finish = "stop" if tokens and tokens[-1] in options.stop_ids else "length"
    return TurnOutcome(tokens=tokens, finish_reason=finish, reused=0, prefilled=request.length)


def token_streamer(on_token: TokenSink) -> Any:
    """A ``generate()`` streamer that calls ``on_token`` with the tokens so far as each one is generated.

    ``generate()`` first hands a streamer the prompt ids: they are skipped. Each later ``put`` holds the next
    token of every row; :func:`generate_turn` runs one row.

    Args:
        on_token: the turn's token callback.

    Returns:
        A ``transformers`` ``BaseStreamer``.
    """
    from transformers.generation.streamers import BaseStreamer

    class TokenStreamer(BaseStreamer):
        def __init__(self) -> None:
            self.tokens: list[int] = []
            self.prompt_seen = False

        def put(self, value: torch.Tensor) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            for token in value.reshape(-1).tolist():
                self.tokens.append(int(token))
                on_token(self.tokens)

        def end(self) -> None:
            pass  # the caller decodes the final tokens itself; nothing is held here

    return TokenStreamer()
