"""Over-fit the tiny local VLM on a handful of AwaRes trajectories, so tests can watch it call the crop tool.

A random model never emits a valid tool call. This trains the tiny Qwen2.5-VL for a few seconds on
trajectories that the real agent produced (scripted through the loopback server), rendered exactly as the
transformers backend renders prompts (``to_hf_messages`` + the checkpoint's chat template), with the loss on
assistant tokens only. Afterwards the model answers one question directly and asks for crop 3 on the other,
in both tool-call protocols.
"""

from __future__ import annotations

from pathlib import Path

from chat_server import Completion, ScriptedChatServer
from PIL import Image, ImageDraw

from awares_agent import AwaResAgent, OpenAIBackend, Trajectory
from awares_agent.backends.hf_chat import to_hf_messages
from awares_agent.image_store import ImageStore

DIRECT_Q = "What colour is the background?"
DIRECT_A = "white"
CROP_Q = "What is written in the bottom-right corner?"
CROP_A = "B7"


def sign_image() -> Image.Image:
    """The 640x480 picture every over-fit conversation is about."""
    img = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((420, 330, 620, 460), outline="black", width=3)
    draw.text((500, 390), "B7", fill="black")
    return img


def scripted_trajectories(store: ImageStore) -> list[Trajectory]:
    """The four target conversations (direct and crop, in both protocols), produced by the real agent."""
    out = []
    with ScriptedChatServer() as server:
        for protocol, call in (
            ("json", Completion(tool_calls=[("get_crops", {"crops": ["3"]})])),
            ("awares-text", Completion(text="GET_CROPS: ['3']")),
        ):
            agent = AwaResAgent(
                OpenAIBackend("Qwen/Qwen2.5-VL-tiny", base_url=server.base_url),
                store=store,
                protocol=protocol,
            )
            server.enqueue(Completion(text=DIRECT_A))
            out.append(agent.ask(sign_image(), DIRECT_Q).trajectory)
            server.enqueue(call, Completion(text=CROP_A))
            out.append(agent.ask(sign_image(), CROP_Q).trajectory)
    return out


def overfit(model_dir: Path, out_dir: Path, *, steps: int = 120, lr: float = 3e-3) -> Path:
    """Train the checkpoint in ``model_dir`` on :func:`scripted_trajectories` and save it to ``out_dir``."""
    import torch
    from transformers import AutoModelForImageTextToText

    from awares_agent.backends.hf_processors import load_processor
    from awares_agent.tools.crop_sets import crop_set
    from awares_agent.tools.protocols import make_protocol

    store = ImageStore()
    processor = load_processor(str(model_dir), local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True)
    batches = []
    for trajectory in scripted_trajectories(store):
        hf_messages, images = to_hf_messages(trajectory.messages, store)
        tools = make_protocol(trajectory.settings.protocol, crop_set(trajectory.settings.crop_set)).tools()
        enc = processor.apply_chat_template(
            hf_messages,
            tools=[t.to_openai() for t in tools] if tools else None,
            tokenize=False,
        )
        batch = processor(text=[enc], images=images, return_tensors="pt")
        mask = processor.apply_chat_template(
            _with_images(hf_messages, images),
            tools=[t.to_openai() for t in tools] if tools else None,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            return_tensors="pt",
        )["assistant_masks"]
        labels = batch["input_ids"].clone()
        labels[torch.as_tensor(mask) == 0] = -100
        batch["labels"] = labels
        batches.append(batch)

    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        batch = batches[step % len(batches)]
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    for name in ("processor_config.json", "tokenizer_config.json", "chat_template.jinja"):
        if (model_dir / name).exists():
            (out_dir / name).write_bytes((model_dir / name).read_bytes())
    return out_dir


def _with_images(hf_messages: list[dict], images: list[Image.Image]) -> list[dict]:
    """The same messages with each image part carrying its PIL image (what tokenize=True needs)."""
    pool = iter(images)
    out = []
    for message in hf_messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image", "image": next(pool)} if p["type"] == "image" else p for p in content]
        out.append({**message, "content": content})
    return out
