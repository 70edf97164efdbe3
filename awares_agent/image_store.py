"""A thread-safe, content-addressed store of source images and the views and crops derived from them.

Pixels never enter graph state: the state holds only :class:`~awares_agent.messages.ImagePart` references (an
id and a size), and backends resolve them here. Ids are content hashes, so the same request always gives the
same id. With a ``root`` folder the store persists, so another process (for example one resuming a run from a
checkpoint) can resolve the same ids::

    root/sources/<id>        the source image's original encoded bytes (PIL images: as PNG), written once
    root/derived/<id>.json   how a view or crop was made (source id + operation); its pixels are not written

Memory: everything computed from a source (derived pixels, encodings, data URIs and the decoded
full-resolution source pixels) lives in one least-recently-used cache of ``cache_bytes``; an evicted entry is
recomputed deterministically when next needed. The sources themselves (their encoded bytes) are kept until
:meth:`ImageStore.discard`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tempfile
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any, Literal, TypeAlias

from PIL import Image

from awares_agent.errors import ConfigError, ImageError, UnknownImageError
from awares_agent.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageInput,
    SourceImage,
    ViewSpec,
    validate_box,
)
from awares_agent.messages import ImagePart

_ID_PATTERN = re.compile(r"[0-9a-f]{64}")
_RECIPE_VERSION = 1
DEFAULT_CACHE_BYTES = 512 * 2**20
"""The default budget of an :class:`ImageStore`'s cache of computed pixels and encodings (512 MiB)."""


@dataclass(frozen=True)
class _Recipe:
    """How a derived image is made from its source: a view (``spec``) or a crop (``box``)."""

    source_id: str
    op: Literal["view", "crop"]
    spec: ViewSpec | None = None
    box: tuple[int, int, int, int] | None = None

    @property
    def image_id(self) -> str:
        if self.op == "view":
            assert self.spec is not None
            return _sha256(f"{self.source_id}/view/{self.spec.key()}")
        assert self.box is not None
        return _sha256(f"{self.source_id}/crop/{','.join(map(str, self.box))}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": _RECIPE_VERSION, "source": self.source_id, "op": self.op}
        if self.spec is not None:
            data["view"] = {"scale": self.spec.scale, "longest_side": self.spec.longest_side}
        if self.box is not None:
            data["box"] = list(self.box)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Recipe:
        if data["op"] == "view":
            view = data["view"]
            return cls(data["source"], "view", spec=ViewSpec(view["scale"], view["longest_side"]))
        if data["op"] == "crop":
            left, top, right, bottom = (int(v) for v in data["box"])
            return cls(data["source"], "crop", box=(left, top, right, bottom))
        raise ValueError(f"unknown operation {data['op']!r}")


class ImageStore:
    """Content-addressed images: sources, their low-resolution views and their crops. Thread-safe.

    Derived pixels are computed when a view or crop is first requested; they, the encodings (PNG, JPEG, data
    URIs) and the decoded full-resolution sources share one least-recently-used cache of at most
    ``cache_bytes`` (each entry charged its approximate size: width x height x bands for pixels, the length
    for encodings). Whatever is evicted is re-derived, bit for bit, when next needed, so the budget only
    trades memory for time. :meth:`clear_cache` empties the cache; :meth:`discard` forgets a source
    altogether.

    Args:
        root: a folder to persist to (created if needed), or None to keep everything in memory only.
        max_pixels: refuse source images with more pixels than this (a decompression-bomb guard).
        cache_bytes: the cache's budget in bytes; 0 caches nothing (everything is recomputed each time).
            An entry larger than the budget is computed and returned but not kept.

    Raises:
        ConfigError: ``cache_bytes`` is not a non-negative integer.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, Integral) or cache_bytes < 0:
            raise ConfigError(f"cache_bytes must be a non-negative integer (bytes), got {cache_bytes!r}")
        self.root = Path(root) if root is not None else None
        self.max_pixels = max_pixels
        self._lock = threading.RLock()
        self._sources: dict[str, SourceImage] = {}
        self._recipes: dict[str, _Recipe] = {}
        # Keys: ("pixels", id), ("full", source id), ("encoded" | "uri", id, format, quality).
        self._cache = _LRUCache(int(cache_bytes))
        self._holders: Counter[str] = Counter()
        if self.root is not None:
            (self.root / "sources").mkdir(parents=True, exist_ok=True)
            (self.root / "derived").mkdir(parents=True, exist_ok=True)

    # --- sources ---------------------------------------------------------------------------------------

    def add(self, src: ImageInput) -> SourceImage:
        """Register a source image (idempotent: the same content gives the same, already-registered image).

        Only the header is read; pixels are decoded when a view or crop needs them.

        Args:
            src: a path, encoded bytes, a ``data:`` URI or a PIL image
                (see :func:`~awares_agent.images.open_image`).

        Returns:
            The registered :class:`~awares_agent.images.SourceImage`; its ``id`` is the content id.

        Raises:
            ImageDecodeError: the input is not a readable image.
            ImageTooLargeError: it has more than ``max_pixels`` pixels.
        """
        image = SourceImage(src, max_pixels=self.max_pixels, on_full=self._full_returned)
        with self._lock:
            existing = self._sources.get(image.id)
        if existing is not None:
            return existing
        if self.root is not None:
            # Written before the id is handed out, so another process never sees an id it cannot open.
            path = self.root / "sources" / image.id
            if not path.exists():
                # PIL inputs have no encoded form; PNG of the RGB pixels reproduces full() exactly.
                data = image.encoded if image.encoded is not None else _encode_png(image.full())
                _write_atomic(path, data)
        with self._lock:
            return self._sources.setdefault(image.id, image)

    def source(self, image_id: str) -> SourceImage:
        """The source image with this id.

        Args:
            image_id: a source id as returned by :meth:`add`.

        Raises:
            UnknownImageError: no source has this id.
        """
        with self._lock:
            image = self._sources.get(image_id)
        if image is not None:
            return image
        path = self._persisted("sources", image_id, "")
        if path is None:
            raise UnknownImageError(f"no source image with id {image_id!r} in this image store")
        image = SourceImage(
            path.read_bytes(),
            max_pixels=self.max_pixels,
            image_id=image_id,
            label=str(path),
            on_full=self._full_returned,
        )
        with self._lock:
            return self._sources.setdefault(image_id, image)

    # --- image references ------------------------------------------------------------------------------

    def view(self, source_id: str, spec: ViewSpec, *, label: str | None = "low-res view") -> ImagePart:
        """The low-resolution view of a source, computed (once) now.

        Args:
            source_id: the source's id.
            spec: how to derive the view.
            label: the label of the returned part.

        Returns:
            An :class:`ImagePart` of kind ``view``; its id is ``sha256(f"{source_id}/view/{spec.key()}")``.

        Raises:
            UnknownImageError: no source has this id.
            ImageDecodeError: the source's pixels are corrupt.
        """
        source = self.source(source_id)
        width, height = spec.size(source.width, source.height)
        image_id = self._derive(_Recipe(source_id, "view", spec=spec))
        return ImagePart(image_id=image_id, width=width, height=height, kind="view", label=label)

    def crop(self, source_id: str, box: tuple[int, int, int, int], *, label: str | None = None) -> ImagePart:
        """A full-resolution crop of a source, computed (once) now; the source is decoded if it was not yet.

        Args:
            source_id: the source's id.
            box: ``(left, top, right, bottom)`` in pixels of the orientation-corrected source.
            label: the label of the returned part, e.g. ``"crop 0 (top-left)"``.

        Returns:
            An :class:`ImagePart` of kind ``crop``; its id depends only on the source id and the box.

        Raises:
            UnknownImageError: no source has this id.
            ConfigError: the box is malformed or outside the image.
            ImageDecodeError: the source's pixels are corrupt.
        """
        source = self.source(source_id)
        left, top, right, bottom = validate_box(box, source.width, source.height, label=source.label)
        image_id = self._derive(_Recipe(source_id, "crop", box=(left, top, right, bottom)))
        return ImagePart(image_id=image_id, width=right - left, height=bottom - top, kind="crop", label=label)

    def full(self, source_id: str, *, label: str | None = "full image") -> ImagePart:
        """A reference to the whole full-resolution source (nothing is decoded).

        Args:
            source_id: the source's id.
            label: the label of the returned part.

        Raises:
            UnknownImageError: no source has this id.
        """
        source = self.source(source_id)
        return ImagePart(
            image_id=source_id, width=source.width, height=source.height, kind="full", label=label
        )

    def _derive(self, recipe: _Recipe) -> str:
        """Compute, cache and (with a root) record a derived image; its id."""
        image_id = recipe.image_id
        self._pixels_of(image_id, recipe)
        if self.root is not None:
            path = self.root / "derived" / f"{image_id}.json"
            if not path.exists():
                _write_atomic(path, json.dumps(recipe.to_json(), sort_keys=True).encode())
        return image_id

    def _pixels_of(self, image_id: str, recipe: _Recipe) -> Image.Image:
        key = ("pixels", image_id)
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None:
            return entry.value
        # Computed outside the lock so that other images are not held up; a race only wastes one resize.
        source = self.source(recipe.source_id)
        if recipe.op == "view":
            assert recipe.spec is not None
            pixels = source.low_res(recipe.spec)
        else:
            assert recipe.box is not None
            pixels = source.crop(recipe.box)
        with self._lock:
            if self._sources.get(recipe.source_id) is not source:
                return pixels  # the source was discarded meanwhile: remember nothing derived from it
            self._recipes.setdefault(image_id, recipe)
        return self._keep(key, pixels)

    # --- pixels and encodings --------------------------------------------------------------------------

    def get(self, image_id: str) -> Image.Image:
        """The pixels of any stored image (a source id gives the full image). Treat them as read-only.

        Args:
            image_id: a source, view or crop id.

        Raises:
            UnknownImageError: no image has this id.
        """
        with self._lock:
            entry = self._cache.get(("pixels", image_id))
            recipe = self._recipes.get(image_id)
            source = self._sources.get(image_id)
        if entry is not None:
            return entry.value
        if source is not None:
            return source.full()
        if recipe is None:
            recipe = self._load_recipe(image_id)
        if recipe is not None:
            return self._pixels_of(image_id, recipe)
        if self._persisted("sources", image_id, "") is not None:
            return self.source(image_id).full()
        raise UnknownImageError(f"no image with id {image_id!r} in this image store")

    def encode(self, image_id: str, fmt: Literal["png", "jpeg"] = "png", *, quality: int = 95) -> bytes:
        """The image encoded as PNG (lossless, fast compression) or JPEG; cached.

        Args:
            image_id: a source, view or crop id.
            fmt: ``"png"`` or ``"jpeg"``.
            quality: JPEG quality, 1 to 100 (ignored for PNG).

        Raises:
            UnknownImageError: no image has this id.
            ConfigError: unknown format or quality out of range.
        """
        key = ("encoded", *self._encoding_key(image_id, fmt, quality))
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None:
            return entry.value
        image = self.get(image_id)
        data = _encode_png(image) if fmt == "png" else _encode_jpeg(image, quality)
        return self._keep(key, data)

    def data_uri(self, image_id: str, fmt: Literal["png", "jpeg"] = "png", *, quality: int = 95) -> str:
        """The image as a ``data:image/<fmt>;base64,...`` URI; cached.

        Args:
            image_id: a source, view or crop id.
            fmt: ``"png"`` or ``"jpeg"``.
            quality: JPEG quality, 1 to 100 (ignored for PNG).

        Raises:
            UnknownImageError: no image has this id.
            ConfigError: unknown format or quality out of range.
        """
        key = ("uri", *self._encoding_key(image_id, fmt, quality))
        with self._lock:
            entry = self._cache.get(key)
        if entry is not None:
            return entry.value
        payload = base64.b64encode(self.encode(image_id, fmt, quality=quality)).decode()
        return self._keep(key, f"data:image/{fmt};base64,{payload}")

    @staticmethod
    def _encoding_key(image_id: str, fmt: str, quality: int) -> tuple[str, str, int | None]:
        if fmt not in ("png", "jpeg"):
            raise ConfigError(f"image encoding must be 'png' or 'jpeg', got {fmt!r}")
        if fmt == "png":
            return image_id, fmt, None
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise ConfigError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
        return image_id, fmt, quality

    # --- memory --------------------------------------------------------------------------------------

    @property
    def cache_bytes(self) -> int:
        """The cache's budget in bytes (as passed to the constructor)."""
        return self._cache.budget

    @property
    def cached_bytes(self) -> int:
        """The approximate size of everything the cache holds now (at most ``cache_bytes``)."""
        with self._lock:
            return self._cache.total

    def clear_cache(self) -> None:
        """Drop cached pixels (derived and decoded sources) and encodings; they are recomputed when needed."""
        dropped: list[_Entry] = []
        with self._lock:
            self._cache.clear(dropped)
            sources = list(self._sources.values())
        for source in sources:
            source.release()
        _released(dropped)

    def discard(self, source_id: str) -> None:
        """Forget a source and everything derived from it (its views' and crops' recipes, pixels, encodings).

        Use it in a long-running process (an evaluation or data-collection run) once a query is done and its
        images are no longer needed: the cache is bounded by ``cache_bytes``, but every registered source
        keeps its encoded bytes (a few MB for a photo) and every view or crop its recipe until discarded.
        Only memory is freed: files under ``root`` are kept, so this store (or another on the same root) can
        still resolve the ids from them; in a memory-only store the ids are unknown afterwards. A
        :class:`SourceImage` the caller still holds goes on working on its own.

        Args:
            source_id: a source's id; an id this store does not hold in memory is ignored.
        """
        dropped: list[_Entry] = []
        with self._lock:
            source = self._sources.pop(source_id, None)
            ids = {source_id}
            for image_id, recipe in list(self._recipes.items()):
                if recipe.source_id == source_id:
                    del self._recipes[image_id]
                    ids.add(image_id)
            for key in [key for key in self._cache.entries if key[1] in ids]:
                self._cache.pop(key, dropped)
        if source is not None:
            source.on_full = None
            source.release()
        _released(dropped)

    def hold(self, src: ImageInput) -> SourceImage:
        """:meth:`add` a source and count one more user of it, for :meth:`release`.

        Long-running loops (evaluation, collection) hold a sample's image while its query runs and release it
        afterwards; the source is discarded when its last holder releases it, so memory stays flat even when
        several samples in flight share one image.

        Raises:
            ImageDecodeError: the input is not a readable image.
            ImageTooLargeError: it has more than ``max_pixels`` pixels.
        """
        source = self.add(src)
        with self._lock:
            self._holders[source.id] += 1
        return source

    def release(self, source_id: str) -> None:
        """Drop one holder of a source taken with :meth:`hold`; the last one discards it (:meth:`discard`)."""
        with self._lock:
            if self._holders[source_id] > 1:
                self._holders[source_id] -= 1
                return
            self._holders.pop(source_id, None)
        self.discard(source_id)

    def _keep(self, key: _CacheKey, value: Any) -> Any:
        """Cache ``value`` under ``key`` as the most recent entry; another thread's value if it was first."""
        dropped: list[_Entry] = []
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                return entry.value
            self._cache.put(key, _Entry(value, _size(value)), dropped)
        _released(dropped)
        return value

    def _full_returned(self, source: SourceImage, image: Image.Image) -> None:
        """``source.full()`` returned ``image`` (its ``on_full`` hook): charge it to the cache, or drop it."""
        key = ("full", source.id)
        dropped: list[_Entry] = []
        kept = False
        with self._lock:
            if self._sources.get(source.id) is source:
                entry = self._cache.get(key)  # a hit: now the most recent
                # Already charged; or superseded (released, or decoded again: that call charges the new one).
                if (entry is not None and entry.value is image) or source._full is not image:
                    return
                kept = self._cache.put(key, _Entry(image, _size(image), source), dropped)
        if not kept:  # larger than the budget, or the source is not (or no longer) registered
            source.release(image)
        _released(dropped)

    # --- membership ------------------------------------------------------------------------------------

    def __contains__(self, image_id: object) -> bool:
        if not isinstance(image_id, str):
            return False
        with self._lock:
            if image_id in self._sources or image_id in self._recipes:
                return True
        return (
            self._persisted("sources", image_id, "") is not None
            or self._persisted("derived", image_id, ".json") is not None
        )

    def __len__(self) -> int:
        with self._lock:
            ids = set(self._sources) | set(self._recipes)
        if self.root is not None:
            ids.update(p.name for p in (self.root / "sources").iterdir() if _ID_PATTERN.fullmatch(p.name))
            ids.update(
                p.stem for p in (self.root / "derived").glob("*.json") if _ID_PATTERN.fullmatch(p.stem)
            )
        return len(ids)

    # --- persistence -----------------------------------------------------------------------------------

    def _persisted(self, folder: str, image_id: str, suffix: str) -> Path | None:
        """The file persisting ``image_id`` under root, if there is one (ids are checked: no path tricks)."""
        if self.root is None or not isinstance(image_id, str) or not _ID_PATTERN.fullmatch(image_id):
            return None
        path = self.root / folder / f"{image_id}{suffix}"
        return path if path.is_file() else None

    def _load_recipe(self, image_id: str) -> _Recipe | None:
        path = self._persisted("derived", image_id, ".json")
        if path is None:
            return None
        try:
            recipe = _Recipe.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            raise ImageError(f"the recipe {path} is unreadable or corrupt: {exc}", source=str(path)) from exc
        if recipe.image_id != image_id:
            raise ImageError(f"the recipe {path} does not describe image {image_id}", source=str(path))
        with self._lock:
            return self._recipes.setdefault(image_id, recipe)

    def __repr__(self) -> str:
        where = f"root={str(self.root)!r}" if self.root is not None else "in memory"
        return (
            f"ImageStore({where}, {len(self._sources)} sources, {len(self._recipes)} derived, "
            f"cache {self._cache.total:,}/{self.cache_bytes:,} bytes)"
        )


_CacheKey: TypeAlias = tuple[Any, ...]


@dataclass(eq=False)
class _Entry:
    """A cached value and the bytes it is charged; for a decoded full image, the source that holds it."""

    value: Any
    size: int
    source: SourceImage | None = None


class _LRUCache:
    """Entries charged their size, least recently used first; inserting evicts down to the budget.

    Not thread-safe: the store uses it under its lock. Removed entries are handed back to the caller so that,
    outside the lock, their sources release decoded full images (and their memory is freed there).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.entries: OrderedDict[_CacheKey, _Entry] = OrderedDict()
        self.total = 0

    def get(self, key: _CacheKey) -> _Entry | None:
        """The entry under ``key``, now the most recently used; None if there is none."""
        entry = self.entries.get(key)
        if entry is not None:
            self.entries.move_to_end(key)
        return entry

    def put(self, key: _CacheKey, entry: _Entry, dropped: list[_Entry]) -> bool:
        """Store ``entry`` (replacing any under ``key``) as the most recent, evicting the least recent down to
        the budget; False, and nothing stored, if it alone is over the budget."""
        self.pop(key, dropped)
        if self.budget == 0 or entry.size > self.budget:
            return False
        self.entries[key] = entry
        self.total += entry.size
        while self.total > self.budget:
            _, oldest = self.entries.popitem(last=False)
            self.total -= oldest.size
            dropped.append(oldest)
        return True

    def pop(self, key: _CacheKey, dropped: list[_Entry]) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.total -= entry.size
            dropped.append(entry)

    def clear(self, dropped: list[_Entry]) -> None:
        dropped.extend(self.entries.values())
        self.entries.clear()
        self.total = 0


def _size(value: Image.Image | bytes | str) -> int:
    """What a cached value is charged: width x height x bands for pixels, the length for bytes and text."""
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    return len(value)


def _released(dropped: list[_Entry]) -> None:
    """Release dropped decoded full images from their sources; called outside the store's lock."""
    for entry in dropped:
        if entry.source is not None:
            entry.source.release(entry.value)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # compress_level=1: several times faster than the default 6, and still lossless (text stays sharp).
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename, so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
