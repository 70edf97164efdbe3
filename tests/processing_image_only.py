"""An image-only Qwen2.5-VL processor, shipped beside a checkpoint as remote code for ``transformers serve``.

``tests/transformers_server.py`` copies this file into the checkpoint it serves and names the class in
``processor_config.json``'s ``auto_map``; ``transformers serve --trust-remote-code`` then loads it through
``AutoProcessor``. The stock ``Qwen2_5_VLProcessor`` also builds a video processor, which needs torchvision;
torchvision cannot be installed next to the CPU build of torch these tests use, so the stock processor fails
to load there. This file runs inside the server's process, where only transformers can be assumed: it must
not import awares.
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2_5_VLProcessor


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without its video processor (its image processor, tokenizer and template kept).

    ``ProcessorMixin`` takes a processor's parts from its ``__init__`` signature, so leaving
    ``video_processor`` out of it is what makes loading skip the video processor.

    Args:
        image_processor: the checkpoint's image processor (transformers picks the PIL variant).
        tokenizer: the checkpoint's tokenizer.
        chat_template: the checkpoint's chat template.
        **kwargs: passed on to ``Qwen2_5_VLProcessor``.
    """

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(
            image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs
        )
