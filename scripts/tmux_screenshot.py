"""Run ``awares demo`` in tmux as a user would, ask the first sample's question, and save the screen as a PNG.

tmux's own capture (``capture-pane -e``) is what a user's terminal shows, escape codes and all; this script
draws it cell by cell (DejaVu Sans Mono from matplotlib, half-blocks drawn as two pixels) so the docs can
show it. Needs tmux (Debian's package) and the project installed (``make setup``)::

    .venv/bin/python scripts/tmux_screenshot.py docs/demo.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont
from rich.color import Color
from rich.console import Console
from rich.text import Text

CELL = (9, 18)
FG, BG = (220, 220, 220), (12, 12, 12)
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"
_console = Console()  # resolves the captured styles


def _rgb(color: Color | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if color is None or color.is_default:
        return default
    t = color.get_truecolor()
    return (t.red, t.green, t.blue)


def render(capture: str, out: Path) -> None:
    """Draw a ``capture-pane -e -p`` capture as a PNG."""
    rows = capture.rstrip("\n").split("\n")
    width = max(len(Text.from_ansi(r).plain) for r in rows)
    image = Image.new("RGB", (width * CELL[0], len(rows) * CELL[1]), BG)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 15)
    for y, row in enumerate(rows):
        text = Text.from_ansi(row)
        for x in range(len(text.plain)):
            style = text.get_style_at_offset(_console, x)
            fg, bg = _rgb(style.color, FG), _rgb(style.bgcolor, BG)
            if style.reverse:
                fg, bg = bg, fg
            char = text.plain[x]
            x0, y0 = x * CELL[0], y * CELL[1]
            if char == "▀":
                draw.rectangle((x0, y0, x0 + CELL[0] - 1, y0 + CELL[1] // 2 - 1), fill=fg)
                draw.rectangle((x0, y0 + CELL[1] // 2, x0 + CELL[0] - 1, y0 + CELL[1] - 1), fill=bg)
                continue
            draw.rectangle((x0, y0, x0 + CELL[0] - 1, y0 + CELL[1] - 1), fill=bg)
            if char.strip():
                draw.text((x0, y0 + 1), char, font=font, fill=fg)
    image.save(out)


def _wait_for(session: str, text: str, seconds: float) -> str:
    """Poll the pane until ``text`` shows; exit with the screen if it does not within ``seconds``."""
    capture = ""
    for _ in range(int(seconds * 2)):
        time.sleep(0.5)
        capture = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout
        if text in capture:
            return capture
    sys.exit(f"{text!r} did not show on the screen in {seconds:g} s:\n{capture}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="160x46", help="terminal columns x rows")
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for the answer")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("tmux is not installed (apt-get install tmux)")
    cols, rows = args.size.split("x")
    awares = Path(sys.executable).with_name("awares")
    session = f"awares-shot-{int(time.time())}"
    env = "TERM=xterm-256color COLORTERM="
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", cols, "-y", rows, f"{env} {awares} demo"],
        check=True,
    )
    try:
        _wait_for(session, "press Enter", args.wait)  # the app is up, the first sample's question ready
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        _wait_for(session, "answer:", args.wait)
        time.sleep(1.0)
        colour = subprocess.run(
            ["tmux", "capture-pane", "-e", "-p", "-t", session], capture_output=True, text=True
        )
        render(colour.stdout, args.out)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
