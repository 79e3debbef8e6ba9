"""Text while it is generated: streamers, a streaming iterator, and stop strings.

A streamer is anything with ``put(ids)`` and ``end()``: ``generate`` calls ``put`` with the prompt
(1, P), then with every new token (1,), then ``end()`` (the protocol of transformers' streamers, so
theirs work here too).

- :class:`TextStreamer` prints the text as it comes;
- :class:`TextIteratorStreamer` hands it to another thread as an iterator;
- :func:`stream_text` wraps both sides: ``for piece in stream_text(model, tokenizer, ids, max_new_tokens=20)``.

Text is decoded from all the new tokens so far and only the new part is emitted, so a character
split over several byte-level tokens appears once it is complete (never as U+FFFD).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import torch


class TextStreamer:
    """Decodes the new tokens as they arrive and passes each new piece of text to :meth:`on_text`.

    Args:
        tokenizer: anything with ``decode(list[int]) -> str``.
        skip_prompt: do not emit the prompt (default True).
    """

    def __init__(self, tokenizer, skip_prompt: bool = True, **decode_kwargs):
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.ids: list[int] = []
        self.emitted = 0  # characters of the decoded text already passed on
        self.seen_prompt = False

    def put(self, ids: torch.Tensor) -> None:
        if not self.seen_prompt:  # the first call carries the prompt (1, P)
            self.seen_prompt = True
            if self.skip_prompt:
                return
        self.ids.extend(ids.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, **self.decode_kwargs)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 character: wait for its next bytes
            return
        self.on_text(text[self.emitted:], stream_end=False)
        self.emitted = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, **self.decode_kwargs) if self.ids else ""
        self.on_text(text[self.emitted:], stream_end=True)
        self.ids, self.emitted, self.seen_prompt = [], 0, False

    def on_text(self, text: str, stream_end: bool = False) -> None:
        print(text, end="\n" if stream_end else "", flush=True)


class TextIteratorStreamer(TextStreamer):
    """A streamer that is also an iterator of text pieces: run ``generate`` in a thread, iterate here.

    Example:
        >>> streamer = TextIteratorStreamer(tokenizer)                         # doctest: +SKIP
        >>> threading.Thread(target=model.generate, args=(ids,),
        ...                  kwargs=dict(max_new_tokens=20, streamer=streamer)).start()  # doctest: +SKIP
        >>> "".join(streamer)                                                  # doctest: +SKIP
    """

    _END = object()

    def __init__(self, tokenizer, skip_prompt: bool = True, timeout: float | None = None, **decode_kwargs):
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.queue: queue.Queue = queue.Queue()
        self.timeout = timeout

    def on_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.queue.put(text)
        if stream_end:
            self.queue.put(self._END)

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self.queue.get(timeout=self.timeout)
            if item is self._END:
                return
            yield item


def stream_text(model, tokenizer, input_ids: torch.Tensor, **generate_kwargs) -> Iterator[str]:
    """Yield the generated text piece by piece while ``model.generate`` runs in a background thread.

    ``generate_kwargs`` are those of ``generate`` (``max_new_tokens`` at least). An error inside
    ``generate`` is raised here once the stream ends.
    """
    streamer = TextIteratorStreamer(tokenizer)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            model.generate(input_ids, streamer=streamer, **generate_kwargs)
        except BaseException as error:  # hand it to the reading side
            errors.append(error)
            streamer.queue.put(TextIteratorStreamer._END)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if errors:
        raise errors[0]


class StopStrings:
    """Tells which rows' generated text contains one of ``stop_strings``.

    Only the last few tokens are decoded each step: a stop string of n characters is spread over at
    most n tokens (each token decodes to at least one byte, a character to at most 4 bytes), and an
    earlier occurrence would have stopped the row already.
    """

    def __init__(self, stop_strings: str | list[str], tokenizer):
        self.stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be a non-empty string or list of them, got {stop_strings!r}")
        self.tokenizer = tokenizer
        self.window = 4 * max(len(s) for s in self.stop_strings) + 1  # tokens to decode

    def __call__(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """new_tokens (B, n): the tokens generated so far. Returns (B,) bool: True where a stop string appeared."""
        tails = new_tokens[:, -self.window:].tolist()
        hits = [any(s in self.tokenizer.decode(tail) for s in self.stop_strings) for tail in tails]
        return torch.tensor(hits, dtype=torch.bool, device=new_tokens.device)
