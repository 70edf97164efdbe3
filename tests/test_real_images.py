"""Real images nobody in this project made (``tests/real_images.py``), through the project's own code.

* the view: sizes, modes (a grey scan and an RGBA logo become RGB), EXIF orientation, visual tokens checked
  against transformers' counts, JPEGs decoded at reduced size; the paper's crops equal the original's pixels;
* the image store: content ids stable across re-adding (and across stores sharing a root), what a backend
  is sent;
* the agent, end to end: the scripted backend requesting a crop, a crop forced by run options on an
  EXIF-rotated photo, the offline reader on the scanned page and, through ``awares ask``, on a photo;
* broken copies of these files (cut short, a corrupted JPEG header, a PNG whose header lies about its size,
  a photo upscaled past the pixel limit) through ``open_image``, ``ImageStore.add``, ``AwaResAgent.ask``
  and ``awares ask``: the typed ImageError naming the file, the command's exit code 2.

The reader's OCR costs about a second a query, so it runs twice here; everything else takes milliseconds.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFile, ImageOps, ImageStat
from real_images import (
    BAD_COPIES,
    JPEGS,
    KNOWN_GAPS,
    REAL,
    UPSCALED_SIDE,
    BadCopy,
    matplotlib_sample_dir,
    rgb_original,
    skimage_data_dir,
    with_exif_orientation,
)
from scripted_backend import ScriptedBackend

from awares_agent.agent import AwaResAgent
from awares_agent.baselines.reader import ReaderBackend
from awares_agent.cli import main
from awares_agent.errors import ImageError, UnknownImageError
from awares_agent.graphs import RunOptions
from awares_agent.image_store import ImageStore
from awares_agent.images import DEFAULT_MAX_IMAGE_PIXELS, ViewSpec, open_image
from awares_agent.messages import ChatReply, ToolCall
from awares_agent.tokens import QWEN2_5_VL, PixelTokenRule, token_cost
from awares_agent.tools.crop_sets import crop_set

#: The model name selects the Qwen2.5-VL token rule, as a real server's name does.
QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"
#: The reader answers this without reading (not a text question), so no refusal test waits for its OCR.
QUESTION = "What colour is it?"
PAPER = crop_set("paper")
PNGS = [name for name, image in REAL.items() if image.format == "PNG"]


def pixel_tokens(size: tuple[int, int]) -> int:
    """One token per started 28x28 square: the reader's rule (``PixelTokenRule``), by plain arithmetic."""
    return math.ceil(size[0] * size[1] / 28**2)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def crop_call(*ids: str) -> ChatReply:
    """A model turn calling the crop tool for ``ids``."""
    arguments = json.dumps({"crops": list(ids)})
    return ChatReply(tool_calls=[ToolCall(id="call_0", name="get_crops", arguments=arguments)])


def region_box(region_id: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    return PAPER.region(region_id, *size).box


# --- the files -----------------------------------------------------------------------------------------


def test_the_images_are_the_installed_packages_own_files() -> None:
    for image in REAL.values():
        folder = skimage_data_dir() if image.package == "skimage" else matplotlib_sample_dir()
        assert image.path.parent == folder and image.path.is_file()
        with Image.open(image.path) as im:
            assert (im.format, im.mode, im.size) == (image.format, image.mode, image.size), image.name
            assert im.getexif().get(0x0112, 1) == 1  # upright as stored
    assert len({image.path for image in REAL.values()}) == len(REAL)


# --- the view ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_view_size_mode_and_visual_tokens(name: str) -> None:
    image = REAL[name]
    source = open_image(image.path)
    assert (source.width, source.height, source.format, source.orientation) == (*image.size, image.format, 1)
    assert source.label == str(image.path)
    assert source.id == hashlib.sha256(image.path.read_bytes()).hexdigest()

    view = source.low_res(ViewSpec())
    assert view.mode == "RGB" and view.size == image.view_size
    full = source.full()
    assert full.mode == "RGB" and full.size == image.size

    # Qwen2.5-VL: the project's rule against what transformers' own image processor counts.
    cost = token_cost(QWEN2_5_VL, image.size, view.size)
    assert (cost.view_tokens, cost.full_tokens) == (image.qwen_view_tokens, image.qwen_full_tokens)
    assert cost.rtr == image.qwen_view_tokens / image.qwen_full_tokens
    # The pixel rule (the reader's) and the paper's pixel RTR, from the sizes by plain arithmetic.
    cost = token_cost(PixelTokenRule(), image.size, view.size)
    assert (cost.view_tokens, cost.full_tokens) == (pixel_tokens(view.size), pixel_tokens(image.size))
    assert cost.pixel_rtr == (view.width * view.height) / (image.size[0] * image.size[1])


def test_the_grey_scan_becomes_rgb_with_its_grey_values() -> None:
    page = REAL["page.png"]
    source = open_image(page.path)
    with Image.open(page.path) as grey:
        grey.load()
    full, view = source.full(), source.low_res(ViewSpec())
    assert full.mode == view.mode == "RGB"
    assert all(band.tobytes() == grey.tobytes() for band in full.split())
    # LANCZOS works band by band: the view is the grey scan resized, in each of the three bands.
    reference = grey.resize(page.view_size, Image.Resampling.LANCZOS)
    assert all(band.tobytes() == reference.tobytes() for band in view.split())


@pytest.mark.parametrize("name", PNGS)
def test_a_png_view_is_the_original_resized_with_lanczos(name: str) -> None:
    image = REAL[name]
    view = open_image(image.path).low_res(ViewSpec())
    expected = rgb_original(image).resize(image.view_size, Image.Resampling.LANCZOS)
    assert view.tobytes() == expected.tobytes()


@pytest.mark.parametrize("name", JPEGS)
def test_a_jpeg_view_is_decoded_at_reduced_size(name: str) -> None:
    image = REAL[name]
    source = open_image(image.path)
    view = source.low_res(ViewSpec())
    assert view.size == image.view_size
    assert not source.full_decoded  # the view came from libjpeg's half-size decode, not the full image
    # ...and looks like the full image resized (they differ by rounding only).
    assert mean_abs_diff(view, rgb_original(image).resize(view.size, Image.Resampling.LANCZOS)) < 3
    source.crop((0, 0, 10, 10))
    assert source.full_decoded


def test_the_hubble_photos_exif_keeps_it_upright() -> None:
    hubble = REAL["hubble_deep_field.jpg"]
    with Image.open(hubble.path) as im:
        exif = im.getexif()
    assert exif.get(0x0131, "").startswith("Adobe Photoshop")  # a real EXIF block, saying orientation 1
    source = open_image(hubble.path)
    assert source.orientation == 1 and (source.width, source.height) == hubble.size


@pytest.mark.parametrize(
    ("orientation", "transpose"),
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90)],
    ids=["orientation-3", "orientation-6", "orientation-8"],
)
def test_an_exif_rotated_copy_is_served_upright(
    orientation: int, transpose: Image.Transpose, tmp_path: Path
) -> None:
    grace = REAL["grace_hopper.jpg"]
    path = tmp_path / f"grace-orientation-{orientation}.jpg"
    path.write_bytes(with_exif_orientation(grace.path.read_bytes(), orientation))
    source, original = open_image(path), open_image(grace.path)
    assert source.orientation == orientation and source.id != original.id
    upright = (600, 512) if orientation in (6, 8) else (512, 600)
    assert (source.width, source.height) == upright

    view = source.low_res(ViewSpec())
    assert view.size == (upright[0] // 2, upright[1] // 2)
    assert view.tobytes() == original.low_res(ViewSpec()).transpose(transpose).tobytes()
    with Image.open(path) as stored:
        reference = ImageOps.exif_transpose(stored).convert("RGB")  # PIL's own reading of the orientation
    assert source.full().tobytes() == reference.tobytes()
    for region in PAPER.regions(*upright):
        assert source.crop(region.box).tobytes() == reference.crop(region.box).tobytes(), region.id


# --- the paper's crops ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_paper_crops_are_the_originals_pixels_at_full_resolution(name: str) -> None:
    image = REAL[name]
    width, height = image.size
    source, reference = open_image(image.path), rgb_original(image)
    regions = PAPER.regions(width, height)
    assert [r.id for r in regions] == [*map(str, range(9)), "all"]
    assert regions[-1].box == (0, 0, width, height)
    for region in regions:
        crop = source.crop(region.box)
        assert crop.mode == "RGB" and crop.size == (region.width, region.height)
        assert crop.tobytes() == reference.crop(region.box).tobytes(), region.id


def test_the_scans_short_side_gives_crops_of_at_least_100_pixels() -> None:
    # 191 px high: half would be 95, under the crop set's 100-pixel minimum.
    boxes = {r.name: r.box for r in PAPER.regions(*REAL["page.png"].size)}
    assert boxes["top"] == (0, 0, 384, 100) and boxes["bottom"] == (0, 91, 384, 191)
    assert boxes["center"] == (96, 45, 288, 145)


# --- the image store -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["page.png", "hubble_deep_field.jpg"])
def test_store_ids_are_stable_across_re_adding_the_same_file(name: str, tmp_path: Path) -> None:
    image = REAL[name]
    data = image.path.read_bytes()
    box = region_box("3", image.size)

    store = ImageStore()
    source = store.add(image.path)
    assert store.add(image.path) is source and store.add(str(image.path)) is source
    assert store.add(data) is source  # the same content, given as bytes
    assert source.id == hashlib.sha256(data).hexdigest()
    view, crop = store.view(source.id, ViewSpec()), store.crop(source.id, box)
    assert view.image_id == hashlib.sha256(f"{source.id}/view/scale=0.5".encode()).hexdigest()

    other = ImageStore()
    again = other.add(image.path)
    assert again.id == source.id
    assert other.view(again.id, ViewSpec()).image_id == view.image_id
    assert other.crop(again.id, box).image_id == crop.image_id
    assert other.crop(again.id, region_box("0", image.size)).image_id != crop.image_id

    # A persisted store: another store on the same root resolves the same ids to the same pixels.
    persisted = ImageStore(root=tmp_path / "store")
    persisted.add(image.path)
    persisted.view(source.id, ViewSpec())
    persisted.crop(source.id, box)
    reopened = ImageStore(root=tmp_path / "store")
    assert reopened.get(crop.image_id).tobytes() == store.get(crop.image_id).tobytes()
    assert reopened.get(view.image_id).tobytes() == store.get(view.image_id).tobytes()

    # The same picture re-encoded is other content: another id.
    buffer = io.BytesIO()
    rgb_original(image).save(buffer, "PNG")
    assert store.add(buffer.getvalue()).id != source.id


@pytest.mark.parametrize("name", ["page.png", *JPEGS])
def test_store_views_and_crops_are_what_a_backend_is_sent(name: str) -> None:
    image = REAL[name]
    store = ImageStore()
    source = store.add(image.path)
    assert not source.full_decoded  # add reads the header only

    view = store.view(source.id, ViewSpec())
    assert (view.kind, view.width, view.height) == ("view", *image.view_size)
    # A JPEG's view is decoded at reduced size; other formats need the full decode first.
    assert source.full_decoded is (image.format != "JPEG")

    box = region_box("4", image.size)
    crop = store.crop(source.id, box)
    assert (crop.kind, crop.width, crop.height) == ("crop", box[2] - box[0], box[3] - box[1])
    assert source.full_decoded
    # What an HTTP backend sends: the PNG data URI, decoding to the original's box exactly.
    payload = store.data_uri(crop.image_id, "png").removeprefix("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(payload))) as sent:
        assert sent.mode == "RGB" and sent.tobytes() == rgb_original(image).crop(box).tobytes()


# --- the agent, end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["page.png", "hubble_deep_field.jpg", "grace_hopper.jpg"])
def test_a_scripted_crop_request_sends_the_originals_box_at_full_resolution(name: str) -> None:
    image = REAL[name]
    backend = ScriptedBackend(crop_call("center"), ChatReply(text="a picture"), model=QWEN)
    agent = AwaResAgent(backend)
    result = agent.ask(image.path, QUESTION)
    assert result.answer == "a picture"

    first, second = backend.requests
    assert [(p.kind, p.width, p.height) for p in first.image_parts] == [("view", *image.view_size)]
    assert first.pixels()[0].tobytes() == open_image(image.path).low_res(ViewSpec()).tobytes()
    box = region_box("4", image.size)
    crop_size = (box[2] - box[0], box[3] - box[1])
    assert [(p.kind, p.width, p.height) for p in second.image_parts] == [
        ("view", *image.view_size),
        ("crop", *crop_size),
    ]
    assert second.pixels()[1].tobytes() == rgb_original(image).crop(box).tobytes()

    trajectory = result.trajectory
    assert (trajectory.image.width, trajectory.image.height) == image.size
    assert trajectory.image.source == str(image.path)
    assert (trajectory.view.width, trajectory.view.height) == image.view_size
    [record] = trajectory.crops
    assert (record.region_id, record.name, record.box) == ("4", "center", box)
    assert (record.width, record.height) == crop_size
    assert record.tokens == QWEN2_5_VL.count(*crop_size)
    cost = trajectory.cost
    assert (cost.rule, cost.view_tokens, cost.full_tokens) == (
        "qwen2.5-vl",
        image.qwen_view_tokens,
        image.qwen_full_tokens,
    )
    assert cost.crop_tokens == [record.tokens]
    assert result.visual_tokens == image.qwen_view_tokens + record.tokens
    assert result.rtr == result.visual_tokens / image.qwen_full_tokens
    assert trajectory.calls == 2


def test_a_forced_crop_on_an_exif_rotated_photo_is_cut_from_the_upright_image(tmp_path: Path) -> None:
    grace = REAL["grace_hopper.jpg"]
    path = tmp_path / "grace-sideways.jpg"
    path.write_bytes(with_exif_orientation(grace.path.read_bytes(), 6))
    backend = ScriptedBackend(ChatReply(text="a portrait"), model=QWEN)
    result = AwaResAgent(backend).ask(path, QUESTION, options=RunOptions(crops=("top-left", "all")))
    assert result.answer == "a portrait"

    [request] = backend.requests  # the forced request is written into the conversation, not asked for
    upright = (600, 512)
    boxes = [(0, 0, 300, 256), (0, 0, 600, 512)]
    assert [(p.kind, p.width, p.height) for p in request.image_parts] == [
        ("view", 300, 256),
        ("crop", 300, 256),
        ("crop", 600, 512),
    ]
    with Image.open(path) as stored:
        reference = ImageOps.exif_transpose(stored).convert("RGB")
    sent = request.pixels()
    assert [im.tobytes() for im in sent[1:]] == [reference.crop(box).tobytes() for box in boxes]
    trajectory = result.trajectory
    assert (trajectory.image.width, trajectory.image.height) == upright
    assert [(c.region_id, c.box) for c in trajectory.crops] == [("0", boxes[0]), ("all", boxes[1])]
    assert trajectory.cost.crop_tokens == [QWEN2_5_VL.count(300, 256), QWEN2_5_VL.count(600, 512)]
    assert trajectory.calls == 1


def test_the_offline_reader_crops_the_scanned_page() -> None:
    page = REAL["page.png"]
    agent = AwaResAgent(ReaderBackend())
    result = agent.ask(page.path, "What follows the markers?")  # one OCR query
    trajectory = result.trajectory
    assert isinstance(result.answer, str) and result.answer
    assert (trajectory.image.width, trajectory.image.height) == page.size
    assert (trajectory.view.width, trajectory.view.height) == page.view_size
    # Its text is about 12 px high, 6 px in the half-size view: too small to read without a crop.
    assert trajectory.crops
    reference = rgb_original(page)
    for record in trajectory.crops:
        assert record.box == region_box(record.region_id, page.size)
        assert (record.width, record.height) == (record.box[2] - record.box[0], record.box[3] - record.box[1])
        assert agent.store.get(record.image_id).tobytes() == reference.crop(record.box).tobytes()
        assert record.tokens == pixel_tokens((record.width, record.height))
    cost = trajectory.cost
    assert (cost.rule, cost.view_tokens, cost.full_tokens) == ("pixels", 24, 94)
    assert cost.sent_tokens == 24 + sum(record.tokens for record in trajectory.crops)
    sent = [(p.kind, p.width, p.height) for m in trajectory.messages for p in m.images]
    assert sent == [("view", *page.view_size)] + [("crop", c.width, c.height) for c in trajectory.crops]


def test_awares_ask_with_the_reader_on_a_real_photo(capsys: pytest.CaptureFixture[str]) -> None:
    grace = REAL["grace_hopper.jpg"]
    assert main(["ask", str(grace.path), "What does the sign say?", "--json"]) == 0  # one OCR query
    captured = capsys.readouterr()
    assert captured.err == ""
    trajectory = json.loads(captured.out)["trajectory"]
    assert trajectory["image"] == {
        "id": hashlib.sha256(grace.path.read_bytes()).hexdigest(),
        "width": 512,
        "height": 600,
        "source": str(grace.path),
    }
    assert (trajectory["view"]["width"], trajectory["view"]["height"]) == grace.view_size
    for record in trajectory["crops"]:
        assert tuple(record["box"]) == region_box(record["region_id"], grace.size)
    assert trajectory["cost"]["view_tokens"] == pixel_tokens(grace.view_size)
    assert trajectory["cost"]["full_tokens"] == pixel_tokens(grace.size)


# --- broken copies -------------------------------------------------------------------------------------


def test_the_broken_copies_are_what_they_claim() -> None:
    assert len({copy.name for copy in BAD_COPIES}) == len(BAD_COPIES)
    assert set(KNOWN_GAPS) <= {copy.name for copy in BAD_COPIES}
    assert UPSCALED_SIDE**2 > DEFAULT_MAX_IMAGE_PIXELS  # the upscaled photo is over the default limit
    assert {copy.when for copy in BAD_COPIES} == {"open", "decode"}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every broken copy, written once as a file."""
    folder = tmp_path_factory.mktemp("broken-real-images")
    return {copy.name: copy.build(folder) for copy in BAD_COPIES}


def check_refusal(copy: BadCopy, path: Path, error: BaseException) -> None:
    """``error`` is the copy's typed error, and its one-line message names the file and what is wrong."""
    assert type(error) is copy.error, f"{copy.name}: {type(error).__name__}: {error}"
    message = str(error)
    assert str(path) in message and copy.says in message, message
    assert error.source == str(path)  # type: ignore[attr-defined]
    assert "\n" not in message


CASES = [
    pytest.param(copy, id=copy.name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[copy.name]))
    if copy.name in KNOWN_GAPS
    else pytest.param(copy, id=copy.name)
    for copy in BAD_COPIES
]


@pytest.mark.parametrize("copy", CASES)
def test_open_image_refuses_the_broken_copy(copy: BadCopy, broken: dict[str, Path]) -> None:
    path = broken[copy.name]
    if copy.when == "open":
        with pytest.raises(ImageError) as info:
            open_image(path)
        check_refusal(copy, path, info.value)
        return
    source = open_image(path)  # the header reads; the pixels do not, by either decode path
    with pytest.raises(ImageError) as info:
        source.low_res(ViewSpec())
    check_refusal(copy, path, info.value)
    with pytest.raises(ImageError) as info:
        source.crop(region_box("0", (source.width, source.height)))
    check_refusal(copy, path, info.value)


@pytest.mark.parametrize("copy", CASES)
def test_image_store_refuses_the_broken_copy(copy: BadCopy, broken: dict[str, Path]) -> None:
    path = broken[copy.name]
    store = ImageStore()
    if copy.when == "open":
        with pytest.raises(ImageError) as info:
            store.add(path)
        check_refusal(copy, path, info.value)
        with pytest.raises(UnknownImageError):  # nothing was registered
            store.source(hashlib.sha256(path.read_bytes()).hexdigest())
        return
    source = store.add(path)
    with pytest.raises(ImageError) as info:
        store.view(source.id, ViewSpec())
    check_refusal(copy, path, info.value)
    with pytest.raises(ImageError) as info:
        store.crop(source.id, (0, 0, 1, 1))
    check_refusal(copy, path, info.value)


@pytest.mark.parametrize("copy", CASES)
def test_the_agent_refuses_the_broken_copy_before_calling_the_model(
    copy: BadCopy, broken: dict[str, Path]
) -> None:
    path = broken[copy.name]
    backend = ScriptedBackend(model=QWEN)  # no replies scripted: any call fails the test
    with pytest.raises(ImageError) as info:
        AwaResAgent(backend).ask(path, QUESTION)
    check_refusal(copy, path, info.value)
    assert backend.requests == []


@pytest.mark.parametrize("copy", CASES)
def test_awares_ask_refuses_the_broken_copy_with_exit_code_2(
    copy: BadCopy, broken: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = broken[copy.name]
    assert main(["ask", str(path), QUESTION]) == 2  # the offline reader: no server needed
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert str(path) in lines[0] and copy.says in lines[0]


def test_the_upscaled_photo_is_refused_before_any_pixel_is_decoded(
    broken: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = broken["camera-upscaled"]
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load

    def counted_load(self: ImageFile.ImageFile) -> object:
        loads.append(self.format or "?")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted_load)
    for refuse in (open_image, ImageStore().add, lambda p: AwaResAgent(ScriptedBackend()).ask(p, QUESTION)):
        with pytest.raises(ImageError, match=f"{UPSCALED_SIDE}x{UPSCALED_SIDE}"):
            refuse(path)
    assert loads == []
    open_image(REAL["camera.png"].path).full()  # the counter sees a decode when there is one
    assert loads and set(loads) == {"PNG"}
