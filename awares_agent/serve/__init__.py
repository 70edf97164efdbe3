"""``awares serve``: an OpenAI-compatible server that answers image questions with AwaRes over an upstream.

Point any OpenAI client (the ``openai`` packages, LangChain's ``ChatOpenAI``, curl) at it instead of at the
model server. A question about one image is answered by the AwaRes agent over the upstream: the low-resolution
view first, the crops the model asks for, then the answer, returned as an ordinary chat completion whose
``usage`` is summed over the upstream calls and whose ``awares`` field (and ``x-awares-*`` headers) say what
AwaRes did (:mod:`awares_agent.serve.completions`). Everything else goes to the upstream unchanged, or is
refused where passing it on would be wrong::

    awares serve --upstream http://localhost:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct --port 8080

Where each request goes
-----------------------

=========================================================================  ============================
request                                                                    what the server does
=========================================================================  ============================
``POST /v1/chat/completions`` for ``--model``: the last message a user     **AwaRes** (whole, or SSE with
turn with exactly one image and some text, before it only system or        ``stream: true``)
developer messages of text, no client ``tools``/``functions``/
``tool_choice``, ``n`` 1, text output, no ``logprobs``/``audio``
... naming another model                                                   passthrough (``model``)
... with the client's own tools, ``n`` > 1, a ``response_format`` other    passthrough
than text, ``logprobs``, audio output, ``prediction``...                   (``option:<field>``)
... last user turn without an image / with several images                  passthrough (``no_image``,
                                                                           ``several_images``)
... image but no question text                                             passthrough (``no_question``)
... earlier user, assistant or tool turns (a conversation)                 passthrough (``history``)
... other content parts (audio, files, video) / last turn not the user's   passthrough (``other_content``,
                                                                           ``last_turn_not_user``)
``GET /v1/models``                                                         the upstream's list; the
                                                                           served model alone if the
                                                                           upstream cannot answer
any other ``/v1/...`` (``/v1/embeddings``, ``/v1/completions``...)         passthrough (``endpoint``)
an image URL that is a path, ``file:``, or any scheme but ``data:`` and    **refused** 400
``http(s)``, anywhere in a request (AwaRes or passthrough)                 ``image_url_not_allowed``
an ``http(s)`` image URL without ``--allow-image-urls``                    **refused** 400
                                                                           ``image_url_not_allowed``
... with it: fetched by the server (public addresses only, size and time   AwaRes, or inlined as a
capped); a passthrough request gets the image inlined as ``data:``         ``data:`` URI and passed on
a ``video_url``/``audio_url``/``file_url`` that is not ``data:``           **refused** 400
a body over ``--max-body-bytes``                                           **refused** 413
                                                                           ``request_too_large``
a body that is not JSON, not an object, or not a chat request (no model,   **refused** 400
no messages)                                                               ``invalid_json``,
                                                                           ``invalid_request``
a malformed ``data:`` URI; not an image; an image over                     **refused** 400
``--max-image-bytes`` or ``--max-image-pixels`` (decompression bombs)      ``invalid_image_url``,
                                                                           ``invalid_image``,
                                                                           ``image_too_large``
invalid ``awares`` options                                                 **refused** 400
                                                                           ``invalid_awares_options``
no or a wrong client key (with ``--api-keys-file``)                        **refused** 401
                                                                           ``invalid_api_key``
the request's ``--deadline`` passes                                        504 ``deadline_exceeded``
                                                                           (an ``error`` event if
                                                                           streaming)
the upstream fails                                                         502 / 504 / 429
                                                                           ``upstream_*``, no upstream
                                                                           detail (it is logged)
another path                                                               404 ``not_found``
=========================================================================  ============================

A passed-through request keeps its body (but for the server's own ``awares`` field, and inlined image URLs),
its query string and its headers, except the client's credentials, which are never forwarded; the upstream
gets the server's key (``--upstream-api-key-env``). Its reply streams back as it arrives, with the headers
``x-awares-route: passthrough`` and ``x-awares-passthrough-reason``. /health and /metrics need no key.

A request AwaRes answers may carry its own options: ``"awares": {"policy": "low-res", "max_rtr": 0.4,
"max_rounds": 1}`` (:class:`~awares_agent.serve.options.RequestOptions`), over the server's defaults
(``--policy``, ``--max-rtr``, ``--max-rounds``). Its system messages' text is put before the question; its
sampling fields (``temperature``, ``max_tokens``...) are not applied (the server's upstream settings are) and
are listed in ``awares.ignored``.

The modules, one idea each
--------------------------

* :mod:`~awares_agent.serve.options`: the server's options (:class:`ServeOptions`) and a request's.
* :mod:`~awares_agent.serve.routing`: the table above, as code.
* :mod:`~awares_agent.serve.app`: the ASGI app (:func:`create_app`) and its endpoints.
* :mod:`~awares_agent.serve.runtime`: what a worker shares between requests (:class:`Runtime`), and the
  error a client gets for a failure.
* :mod:`~awares_agent.serve.completions`: an AwaRes result as a chat completion or chunks.
* :mod:`~awares_agent.serve.streaming`: an AwaRes answer as server-sent events.
* :mod:`~awares_agent.serve.answer_stream`: which streamed text is the answer.
* :mod:`~awares_agent.serve.proxy`: passing a request through to the upstream.
* :mod:`~awares_agent.serve.media`, :mod:`~awares_agent.serve.data_uri`, :mod:`~awares_agent.serve.fetch`:
  a client's image URLs, decoded, fetched (guarded) or refused.
* :mod:`~awares_agent.serve.body`, :mod:`~awares_agent.serve.auth`, :mod:`~awares_agent.serve.disconnect`,
  :mod:`~awares_agent.serve.errors`: the request body, client keys, hang-ups, OpenAI-style errors.
* :mod:`~awares_agent.serve.metrics`, :mod:`~awares_agent.serve.trajectories`: Prometheus metrics, and the
  served queries as a collection run folder.
* :mod:`~awares_agent.serve.command`: ``awares serve``.

The server needs the ``serve`` extra: ``pip install "awares[serve]"`` (Starlette, uvicorn, the Prometheus
client).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awares_agent.lazy_exports import lazy_exports

# Starlette, uvicorn and the agent are imported on first use: `awares --help` stays fast.
_EXPORTS = {
    "RequestOptions": "awares_agent.serve.options",
    "ServeOptions": "awares_agent.serve.options",
    "Runtime": "awares_agent.serve.runtime",
    "create_app": "awares_agent.serve.app",
}

__all__ = ["RequestOptions", "Runtime", "ServeOptions", "create_app"]

if TYPE_CHECKING:
    from awares_agent.serve.app import create_app
    from awares_agent.serve.options import RequestOptions, ServeOptions
    from awares_agent.serve.runtime import Runtime

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
