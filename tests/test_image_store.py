"""Tests for awares_agent.image_store: content ids, derived images, persistence, encodings, threads."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from awares_agent.errors import AwaresError, ConfigError, ImageDecodeError, ImageTooLargeError
from awares_agent.image_store import ImageStore, UnknownImageError
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
