"""An offline, training-free AwaRes policy for text-reading questions, as a chat backend.

:class:`ReaderBackend` answers questions whose answer is text written in the image ("What is the invoice
number?", "What is the price of Espresso?", "What is the Qty for Widget?", "What does the sign say?") by
reading the image with an OCR engine (``rapidocr-onnxruntime``, whose models ship inside its wheel, so it
runs with no network and no download). It is a real :class:`~awares_agent.backends.base.ChatBackend`: it
sees only what a VLM sees (the messages' text and pixels), and it goes through the same graph, tool-call
protocols, token accounting and trajectories as a VLM. It handles text-reading questions only; anything else
(no key it can find, questions about colours, counts, objects...) is answered ``"unknown"``.

It is a heuristic **baseline fitted to the synthetic generator**: its thresholds (:class:`ReaderConfig`)
were tuned on synthetic seeds 101-110 and are frozen; the held-out seeds 0, 2027 and 4242 are for reporting
only.

The package, by concept:

* :mod:`~.config`: every tuned threshold, in one frozen :class:`ReaderConfig`;
* :mod:`~.ocr`: the OCR engine, its text boxes and cache; :mod:`~.text`: what OCR'd text says;
* :mod:`~.questions`: questions parsed into a :class:`Query`; :mod:`~.keys`: finding the key in the text;
* finders of the answer: :mod:`~.fields`, :mod:`~.tables`, :mod:`~.charts`, :mod:`~.signs` (dispatched by
  :mod:`~.answers`), with :mod:`~.keywords` (keyword spotting in text too small to read) and :mod:`~.guess`
  (the last-resort crop guess);
* :mod:`~.conversation`: what the messages hold; :mod:`~.images`: their OCR placed on the original;
* :mod:`~.policy`: answer, or which crops; :mod:`~.backend`: :class:`ReaderBackend`.
"""

from awares_agent.baselines.reader.answers import UNKNOWN, read
from awares_agent.baselines.reader.backend import ReaderBackend
from awares_agent.baselines.reader.charts import BarChart, find_bar_charts
from awares_agent.baselines.reader.config import (
    DEFAULT_CONFIG,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_TEXT_PX,
    ReaderConfig,
)
from awares_agent.baselines.reader.keywords import key_likelihood
from awares_agent.baselines.reader.ocr import TextBox, read_text
from awares_agent.baselines.reader.policy import ReaderPolicy
from awares_agent.baselines.reader.questions import Query, parse_question
from awares_agent.baselines.reader.reading import Reading, plausible
from awares_agent.baselines.reader.tables import text_blocks
from awares_agent.ocr import RawBox

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_MIN_TEXT_PX",
    "UNKNOWN",
    "BarChart",
    "Query",
    "RawBox",
    "ReaderBackend",
    "ReaderConfig",
    "ReaderPolicy",
    "Reading",
    "TextBox",
    "find_bar_charts",
    "key_likelihood",
    "parse_question",
    "plausible",
    "read",
    "read_text",
    "text_blocks",
]
