"""Tests for awares_agent.image_store: content ids, derived images, persistence, encodings, threads."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from awares_agent.errors import (
    AwaresError,
    ConfigError,
    ImageDecodeError,
    ImageTooLargeError,
    UnknownImageError,
)
from awares_agent.image_store import ImageStore
from awares_agent.images import SourceImage, ViewSpec, open_image
from awares_agent.messages import ImagePart


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int = 400, height: int = 300) -> Image.Image:
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    blue = Image.radial_gradient("L").resize((width, height))
    return Image.merge("RGB", (red, green, blue))


@pytest.fixture
def jpeg_bytes() -> bytes:
    return encode(photo(), "JPEG", quality=90)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- sources -------------------------------------------------------------------------------------------


def test_add_is_idempotent_by_content(tmp_path: Path, jpeg_bytes: bytes) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes)
    store = ImageStore()

    first = store.add(jpeg_bytes)
    first.full()
    again = store.add(path)

    assert again is first  # the already-decoded image is reused, not decoded again
    assert again.full_decoded
    assert first.id == hashlib.sha256(jpeg_bytes).hexdigest()
    assert len(store) == 1
    assert first.id in store
    assert store.source(first.id) is first


def test_add_reads_only_the_header(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    source = store.add(jpeg_bytes)
    assert not source.full_decoded
    assert (source.width, source.height) == (400, 300)


def test_add_enforces_max_pixels(jpeg_bytes: bytes) -> None:
    with pytest.raises(ImageTooLargeError):
        ImageStore(max_pixels=1000).add(jpeg_bytes)


def test_add_rejects_non_images() -> None:
    store = ImageStore()
    with pytest.raises(ImageDecodeError):
        store.add(b"definitely not an image")
    assert len(store) == 0


def test_full_reference(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    source = store.add(jpeg_bytes)
    part = store.full(source.id)
    assert part == ImagePart(image_id=source.id, width=400, height=300, kind="full", label="full image")
    assert not source.full_decoded
    assert store.get(source.id) is source.full()


def test_unknown_ids() -> None:
    store = ImageStore()
    for bad in ("0" * 64, "nope", "../../etc/passwd"):
        with pytest.raises(UnknownImageError) as info:
            store.get(bad)
        assert isinstance(info.value, KeyError)
        assert isinstance(info.value, AwaresError)
        assert bad in str(info.value)
        assert not str(info.value).startswith("'")
        assert bad not in store
    with pytest.raises(UnknownImageError):
        store.view("0" * 64, ViewSpec())
    with pytest.raises(UnknownImageError):
        store.crop("0" * 64, (0, 0, 1, 1))
    with pytest.raises(KeyError):
        store.source("0" * 64)


# --- views and crops -----------------------------------------------------------------------------------


def test_view_id_is_deterministic(jpeg_bytes: bytes) -> None:
    one, two = ImageStore(), ImageStore()
    source_id = one.add(jpeg_bytes).id
    two.add(jpeg_bytes)

    part = one.view(source_id, ViewSpec())
    assert part.image_id == sha256(f"{source_id}/view/scale=0.5")
    assert part == two.view(source_id, ViewSpec())
    assert part.kind == "view"
    assert part.label == "low-res view"
    assert (part.width, part.height) == (200, 150)
    assert one.get(part.image_id).size == (200, 150)
    assert one.get(part.image_id) is one.get(part.image_id)  # cached
    assert one.view(source_id, ViewSpec(longest_side=100)).image_id != part.image_id
    assert not one.source(source_id).full_decoded  # a JPEG view is a reduced-size decode


def test_crop_ids_and_pixels(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    source = store.add(jpeg_bytes)
    box = (10, 20, 210, 170)

    part = store.crop(source.id, box, label="crop 0 (top-left)")
    assert source.full_decoded  # decoded only now
    assert part.kind == "crop"
    assert part.label == "crop 0 (top-left)"
    assert (part.width, part.height) == (200, 150)
    assert part.image_id == store.crop(source.id, box).image_id
    other = ImageStore()
    assert part.image_id == other.crop(other.add(jpeg_bytes).id, box).image_id
    assert part.image_id == sha256(f"{source.id}/crop/10,20,210,170")
    assert part.image_id != store.crop(source.id, (10, 20, 210, 171)).image_id
    assert store.get(part.image_id).tobytes() == source.full().crop(box).tobytes()
    assert len(store) == 3


def test_crop_box_is_validated(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    source = store.add(jpeg_bytes)
    with pytest.raises(ConfigError, match="400x300"):
        store.crop(source.id, (0, 0, 401, 10))
    assert not source.full_decoded
    assert len(store) == 1


def test_pil_source(tmp_path: Path) -> None:
    img = photo(64, 48)
    store = ImageStore()
    source = store.add(img)
    assert store.add(img.copy()) is source
    crop = store.crop(source.id, (0, 0, 32, 24))
    assert store.get(crop.image_id).tobytes() == img.crop((0, 0, 32, 24)).tobytes()


def test_clear_cache_re_derives_the_same_pixels(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    source = store.add(jpeg_bytes)
    view = store.view(source.id, ViewSpec())
    crop = store.crop(source.id, (0, 0, 100, 100))
    before = {i: store.get(i).tobytes() for i in (view.image_id, crop.image_id, source.id)}
    png = store.encode(view.image_id)

    store.clear_cache()
    assert not store.source(source.id).full_decoded
    assert {i: store.get(i).tobytes() for i in before} == before
    assert store.encode(view.image_id) == png


# --- persistence ---------------------------------------------------------------------------------------


def test_a_second_store_on_the_same_root_resolves_every_id(tmp_path: Path, jpeg_bytes: bytes) -> None:
    root = tmp_path / "store"
    first = ImageStore(root)
    jpeg_id = first.add(jpeg_bytes).id
    pil_image = photo(80, 60)
    pil_id = first.add(pil_image).id
    view = first.view(jpeg_id, ViewSpec())
    crop = first.crop(jpeg_id, (50, 40, 250, 190))
    pil_view = first.view(pil_id, ViewSpec(longest_side=20))

    # Sources are stored once as their encoded bytes; derived images only as small JSON recipes.
    assert (root / "sources" / jpeg_id).read_bytes() == jpeg_bytes
    assert (root / "sources" / pil_id).read_bytes().startswith(b"\x89PNG")
    derived = sorted(p.name for p in (root / "derived").iterdir())
    assert derived == sorted(f"{i}.json" for i in (view.image_id, crop.image_id, pil_view.image_id))
    assert all(p.stat().st_size < 500 for p in (root / "derived").iterdir())

    second = ImageStore(root)
    assert len(second) == 5
    for image_id in (jpeg_id, pil_id, view.image_id, crop.image_id, pil_view.image_id):
        assert image_id in second
        assert second.get(image_id).tobytes() == first.get(image_id).tobytes()
    assert second.get(pil_id).tobytes() == pil_image.tobytes()
    assert second.source(pil_id).id == pil_id
    # Requests made again in the second store give the same ids.
    assert second.view(jpeg_id, ViewSpec()) == view
    assert second.crop(jpeg_id, (50, 40, 250, 190)) == crop
    assert second.full(pil_id).width == 80


def test_re_adding_to_a_persistent_store_does_not_rewrite(tmp_path: Path, jpeg_bytes: bytes) -> None:
    root = tmp_path / "store"
    source_id = ImageStore(root).add(jpeg_bytes).id
    stored = root / "sources" / source_id
    mtime = stored.stat().st_mtime_ns
    ImageStore(root).add(jpeg_bytes)
    assert stored.stat().st_mtime_ns == mtime
    assert [p.name for p in (root / "sources").iterdir()] == [source_id]


def test_memory_store_writes_nothing(
    tmp_path: Path, jpeg_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = ImageStore()
    store.view(store.add(jpeg_bytes).id, ViewSpec())
    assert list(tmp_path.iterdir()) == []


def test_corrupt_recipe_is_reported(tmp_path: Path, jpeg_bytes: bytes) -> None:
    root = tmp_path / "store"
    store = ImageStore(root)
    view = store.view(store.add(jpeg_bytes).id, ViewSpec())
    (root / "derived" / f"{view.image_id}.json").write_text("{not json")
    with pytest.raises(AwaresError, match="corrupt"):
        ImageStore(root).get(view.image_id)


# --- encodings -----------------------------------------------------------------------------------------


def test_png_round_trip_and_cache(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    source = store.add(jpeg_bytes)
    crop = store.crop(source.id, (0, 0, 120, 80))

    png = store.encode(crop.image_id)
    assert png is store.encode(crop.image_id, "png")
    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG"
    assert decoded.convert("RGB").tobytes() == store.get(crop.image_id).tobytes()

    uri = store.data_uri(crop.image_id)
    assert uri is store.data_uri(crop.image_id)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    # A data URI from the store is a valid input again, with the same pixels.
    assert open_image(uri).full().tobytes() == store.get(crop.image_id).tobytes()


def test_jpeg_encoding(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    view = store.view(store.add(jpeg_bytes).id, ViewSpec())
    low, high = store.encode(view.image_id, "jpeg", quality=30), store.encode(view.image_id, "jpeg")
    assert low != high
    assert Image.open(io.BytesIO(high)).size == (200, 150)
    assert store.data_uri(view.image_id, "jpeg").startswith("data:image/jpeg;base64,")
    with pytest.raises(ConfigError):
        store.encode(view.image_id, "webp")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        store.encode(view.image_id, "jpeg", quality=0)


# --- threads -------------------------------------------------------------------------------------------


def test_many_threads_adding_and_cropping(jpeg_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = 0
    original = SourceImage._decode_full

    def counting(self: SourceImage) -> Image.Image:
        nonlocal decodes
        decodes += 1
        return original(self)

    monkeypatch.setattr(SourceImage, "_decode_full", counting)
    store = ImageStore()
    errors: list[BaseException] = []
    results: list[tuple[str, str, str]] = []
    barrier = threading.Barrier(16)

    def work(i: int) -> None:
        try:
            barrier.wait()
            source = store.add(jpeg_bytes)
            view = store.view(source.id, ViewSpec())
            crop = store.crop(source.id, (i, i, 100 + i, 100 + i))
            assert store.get(crop.image_id).size == (100, 100)
            store.encode(view.image_id)
            same = store.crop(source.id, (0, 0, 50, 50))
            results.append((source.id, view.image_id, same.image_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(set(results)) == 1
    assert decodes == 1
    assert len(store) == 1 + 1 + 16 + 1  # source, view, 16 crops, the shared (0, 0, 50, 50) crop


# --- the bounded cache ---------------------------------------------------------------------------------

FULL_BYTES = 400 * 300 * 3  # a decoded 400x300 RGB source
CROP_BYTES = 100 * 100 * 3


def cached_pixel_ids(store: ImageStore) -> set[str]:
    return {key[1] for key in store._cache.entries if key[0] == "pixels"}


def assert_consistent(store: ImageStore) -> None:
    """The accounting adds up, stays within budget, and every decoded full image is charged."""
    with store._lock:
        entries = dict(store._cache.entries)
        total = store.cached_bytes
        sources = list(store._sources.values())
    assert sum(entry.size for entry in entries.values()) == total <= store.cache_bytes
    for source in sources:
        # A PIL input's RGB copy is its full image, kept by the source anyway: not charged.
        if source.full_decoded and source._full is not source._pil:
            entry = entries.get(("full", source.id))
            assert entry is not None and entry.value is source._full


def test_cache_bytes_is_validated() -> None:
    for bad in (-1, True, 1.5, "1", None):
        with pytest.raises(ConfigError, match="cache_bytes"):
            ImageStore(cache_bytes=bad)  # type: ignore[arg-type]
    assert ImageStore().cache_bytes == 512 * 2**20
    assert ImageStore(cache_bytes=0).cached_bytes == 0


def test_a_small_budget_bounds_the_cache_and_re_derives_identical_pixels(jpeg_bytes: bytes) -> None:
    budget = FULL_BYTES + 5 * CROP_BYTES
    store, reference = ImageStore(cache_bytes=budget), ImageStore()
    source_id = store.add(jpeg_bytes).id
    reference.add(jpeg_bytes)
    parts = []
    for i in range(40):
        box = (i * 5, i * 3, i * 5 + 100, i * 3 + 100)
        parts.append(store.crop(source_id, box))
        parts.append(store.view(source_id, ViewSpec(longest_side=50 + i)))
        assert reference.crop(source_id, box) == parts[-2]
        assert reference.view(source_id, ViewSpec(longest_side=50 + i)) == parts[-1]
        store.data_uri(parts[-2].image_id)
        store.encode(parts[-1].image_id, "jpeg", quality=80)
        assert 0 < store.cached_bytes <= budget
        assert_consistent(store)
    assert len(cached_pixel_ids(store)) < len(parts)  # most were evicted...
    for part in parts:  # ...and come back identical
        assert store.get(part.image_id).tobytes() == reference.get(part.image_id).tobytes()
        assert store.get(part.image_id).size == (part.width, part.height)
        assert store.cached_bytes <= budget
    last = parts[0].image_id
    assert store.encode(last) == reference.encode(last)
    assert store.data_uri(last, "jpeg") == reference.data_uri(last, "jpeg")
    assert len(store) == 1 + len(parts)  # evicting pixels forgets no recipe
    assert_consistent(store)


def test_decoded_full_images_are_evicted_and_decoded_again(jpeg_bytes: bytes) -> None:
    store, reference = ImageStore(cache_bytes=FULL_BYTES + 2 * CROP_BYTES), ImageStore()
    first = store.add(jpeg_bytes)
    second = store.add(encode(photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", quality=90))
    reference.add(jpeg_bytes)

    store.crop(first.id, (0, 0, 100, 100))
    assert first.full_decoded
    assert store.cached_bytes == FULL_BYTES + CROP_BYTES
    store.crop(second.id, (0, 0, 100, 100))  # its full image pushes out the first's
    assert second.full_decoded
    assert not first.full_decoded
    assert_consistent(store)

    box = (150, 100, 250, 200)
    again = store.crop(first.id, box)  # decodes the first source again, correctly
    assert first.full_decoded
    assert not second.full_decoded
    assert (
        store.get(again.image_id).tobytes() == reference.get(reference.crop(first.id, box).image_id).tobytes()
    )
    assert store.get(first.id).tobytes() == reference.get(first.id).tobytes()
    assert_consistent(store)

    # A full image larger than the whole budget is used, then dropped at once.
    small = ImageStore(cache_bytes=FULL_BYTES - 1)
    source = small.add(jpeg_bytes)
    crop = small.crop(source.id, box)
    assert reference.crop(source.id, box) == crop
    assert not source.full_decoded
    assert small.get(source.id).tobytes() == reference.get(source.id).tobytes()
    assert not source.full_decoded
    assert small.get(crop.image_id).tobytes() == reference.get(crop.image_id).tobytes()
    assert_consistent(small)


def test_least_recently_used_entries_go_first(jpeg_bytes: bytes) -> None:
    store = ImageStore(cache_bytes=3 * CROP_BYTES)  # three crops; the full image never fits
    source_id = store.add(jpeg_bytes).id
    a, b, c = (store.crop(source_id, (i, 0, i + 100, 100)).image_id for i in (0, 10, 20))
    assert cached_pixel_ids(store) == {a, b, c}
    assert store.cached_bytes == 3 * CROP_BYTES
    kept = store.get(a)  # a hit: a is now the most recent, b the oldest

    d = store.crop(source_id, (30, 0, 130, 100)).image_id
    assert cached_pixel_ids(store) == {a, c, d}
    assert store.get(a) is kept
    evicted = store.get(b)  # re-derived (and cached again, pushing out c)
    assert cached_pixel_ids(store) == {a, d, b}
    assert store.get(b) is evicted
    assert_consistent(store)


def test_a_zero_budget_caches_nothing(jpeg_bytes: bytes) -> None:
    store, reference = ImageStore(cache_bytes=0), ImageStore()
    source = store.add(jpeg_bytes)
    reference.add(jpeg_bytes)
    view = store.view(source.id, ViewSpec())
    crop = store.crop(source.id, (10, 20, 210, 170))
    assert not source.full_decoded
    assert (reference.view(source.id, ViewSpec()), reference.crop(source.id, (10, 20, 210, 170))) == (
        view,
        crop,
    )
    for image_id in (source.id, view.image_id, crop.image_id):
        assert store.get(image_id) is not store.get(image_id)
        assert store.get(image_id).tobytes() == reference.get(image_id).tobytes()
        assert store.encode(image_id) == reference.encode(image_id)
        assert store.data_uri(image_id, "jpeg", quality=70) == reference.data_uri(
            image_id, "jpeg", quality=70
        )
    assert store.cached_bytes == 0
    assert store._cache.entries == {}
    assert not source.full_decoded
    assert len(store) == 3


def test_discard_forgets_a_source_and_what_was_derived_from_it(jpeg_bytes: bytes) -> None:
    store = ImageStore()
    source = store.add(jpeg_bytes)
    other = store.add(photo(64, 48))
    view = store.view(source.id, ViewSpec())
    crop = store.crop(source.id, (0, 0, 100, 100))
    store.data_uri(crop.image_id)
    store.encode(source.id)
    kept = store.crop(other.id, (0, 0, 10, 10))
    store.encode(kept.image_id)
    assert source.full_decoded

    store.discard(source.id)
    for image_id in (source.id, view.image_id, crop.image_id):
        assert image_id not in store
        with pytest.raises(UnknownImageError):
            store.get(image_id)
    assert len(store) == 2
    assert cached_pixel_ids(store) == {kept.image_id}
    assert {key[1] for key in store._cache.entries} == {kept.image_id}
    assert store.cached_bytes == 10 * 10 * 3 + len(store.encode(kept.image_id))
    assert not source.full_decoded
    assert_consistent(store)
    # The caller's SourceImage goes on working on its own; unknown ids are ignored.
    assert source.full().size == (400, 300)
    assert source.full_decoded
    assert store.cached_bytes == 10 * 10 * 3 + len(store.encode(kept.image_id))
    store.discard(source.id)
    store.discard("nope")
    store.discard(view.image_id)
    assert store.get(kept.image_id).size == (10, 10)
    # Adding it again registers it afresh.
    assert store.add(jpeg_bytes).id in store
    assert store.add(jpeg_bytes) is not source


def test_discard_keeps_persisted_files(tmp_path: Path, jpeg_bytes: bytes) -> None:
    store = ImageStore(tmp_path / "store")
    source = store.add(jpeg_bytes)
    view = store.view(source.id, ViewSpec())
    crop = store.crop(source.id, (0, 0, 100, 100))
    before = {i: store.get(i).tobytes() for i in (source.id, view.image_id, crop.image_id)}

    store.discard(source.id)
    assert store.cached_bytes == 0
    assert not source.full_decoded
    for image_id, pixels in before.items():
        assert image_id in store
        assert store.get(image_id).tobytes() == pixels
    assert store.source(source.id) is not source  # reopened from root
    assert len(store) == 3
    assert ImageStore(tmp_path / "store").get(crop.image_id).tobytes() == before[crop.image_id]


@pytest.mark.parametrize("budget", [0, 2 * CROP_BYTES, FULL_BYTES + CROP_BYTES, 3 * FULL_BYTES])
def test_threads_under_a_tiny_budget_keep_the_accounting_consistent(jpeg_bytes: bytes, budget: int) -> None:
    sources = [jpeg_bytes, encode(photo().transpose(Image.Transpose.FLIP_TOP_BOTTOM), "JPEG", quality=85)]
    store = ImageStore(cache_bytes=budget)
    errors: list[BaseException] = []
    crops: list[tuple[str, tuple[int, int, int, int], bytes, str]] = []
    views: list[tuple[str, ViewSpec, bytes]] = []
    barrier = threading.Barrier(12)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for j in range(12):
                source_id = store.add(sources[(i + j) % 2]).id
                left, top = (i * 7 + j) % 250, (i + j * 5) % 150
                box = (left, top, left + 100, top + 80)
                crop = store.crop(source_id, box)
                spec = ViewSpec(longest_side=40 + j % 3)
                view = store.view(source_id, spec)
                crops.append(
                    (source_id, box, store.get(crop.image_id).tobytes(), store.data_uri(crop.image_id))
                )
                views.append((source_id, spec, store.encode(view.image_id, "jpeg")))
                assert store.get(source_id).size == (400, 300)
                if (i + j) % 17 == 0:
                    store.clear_cache()
                assert store.cached_bytes <= budget
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(crops) == len(views) == 12 * 12  # every thread did every round
    assert_consistent(store)
    reference = ImageStore()
    for data in sources:
        reference.add(data)
    for source_id, box, pixels, uri in crops:
        crop_id = reference.crop(source_id, box).image_id
        assert pixels == reference.get(crop_id).tobytes()
        assert uri == reference.data_uri(crop_id)
    for source_id, spec, jpeg in views:
        assert jpeg == reference.encode(reference.view(source_id, spec).image_id, "jpeg")


def test_hold_and_release_count_users_and_discard_with_the_last() -> None:

    store = ImageStore()
    image = Image.new("RGB", (64, 48), "white")
    first = store.hold(image)
    second = store.hold(image)
    assert first.id == second.id
    store.release(first.id)
    assert first.id in store  # still held once
    store.release(first.id)
    assert first.id not in store
    store.release(first.id)  # releasing an unknown id is harmless
