"""``GenerationConfig``: every option of ``generate``, in one list, with transformers' names.

The dataclass below *is* the list of options: ``generate(model, ids, **kwargs)`` accepts exactly its
fields as keyword arguments, a checkpoint's ``generation_config.json`` is read into it
(:meth:`GenerationConfig.from_dict`), and :meth:`GenerationConfig.resolve` checks every field in one
place and fills in what the model knows (its EOS and padding ids, its context length).

    kwargs  >  generate(generation_config=...)  >  model.generation_config  >  the defaults below

Every field is None until something sets it (so that merging knows what was set, as transformers
merges); ``resolve`` puts the default of ``option(default)`` there.

Adding an option is one edit: a field here (with its check in :meth:`resolve` if it can be wrong),
plus the code that uses it; a logits processor is a keyword of ``process_logits`` of the same name.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import warnings
from dataclasses import dataclass, field

from minitransformer.generation.logits import process_logits


class UnknownGenerationOption(TypeError):
    """A keyword argument of ``generate`` that is not a :class:`GenerationConfig` field."""


# transformers options we deliberately do not implement, and what to use instead.
UNSUPPORTED: dict[str, str] = {
    "num_beam_groups": "diverse (group) beam search is not implemented; use num_beams=K, or num_beams=K with "
                       "do_sample=True for varied beams",
    "diversity_penalty": "diverse (group) beam search is not implemented; use num_beams=K, or num_beams=K with "
                         "do_sample=True for varied beams",
    "penalty_alpha": "contrastive search is not implemented; use do_sample=True with top_k / top_p / min_p, "
                     "or repetition_penalty / no_repeat_ngram_size against repetition",
    "assistant_model": "assisted generation lives in its own function: "
                       "minitransformer.generation.speculative_generate(target, draft, input_ids, max_new_tokens=...)",
    "prompt_lookup_num_tokens": "prompt-lookup decoding is not implemented; for speculative decoding use "
                                "minitransformer.generation.speculative_generate(target, draft, input_ids, ...)",
    "num_assistant_tokens": "use minitransformer.generation.speculative_generate(..., num_draft_tokens=k)",
    "typical_p": "typical sampling is not implemented; use top_p or min_p",
    "epsilon_cutoff": "epsilon sampling is not implemented; use min_p (a cutoff relative to the top token) or top_p",
    "eta_cutoff": "eta sampling is not implemented; use min_p or top_p",
    "top_h": "top-H sampling is not implemented; use top_p or min_p",
    "constraints": "constrained beam search is not implemented; bad_words_ids forbids sequences",
    "force_words_ids": "constrained beam search is not implemented; bad_words_ids forbids sequences",
    "guidance_scale": "classifier-free guidance is not implemented",
    "sequence_bias": "sequence_bias is not implemented; bad_words_ids forbids sequences outright",
    "encoder_repetition_penalty": "not implemented; use repetition_penalty (on the generated sequence)",
    "encoder_no_repeat_ngram_size": "not implemented; use no_repeat_ngram_size (on the generated sequence)",
    "exponential_decay_length_penalty": "not implemented; use max_new_tokens, or length_penalty in beam search",
    "watermarking_config": "watermarking is not implemented",
    "max_time": "not implemented; bound the output with max_new_tokens, or stop it with stop_strings",
    "output_attentions": "generate returns no attention maps; run the model on the returned sequences with "
                         "model(sequences, output_attentions=True)",
    "output_hidden_states": "generate returns no hidden states; run the model on the returned sequences with "
                            "model(sequences, output_hidden_states=True)",
    "logits_processor": "custom processors are not taken; write the loop with session.prefill / session.decode "
                        "and minitransformer.generation.logits.process_logits (see generate.sample)",
    "stopping_criteria": "custom stopping criteria are not taken; use eos_token_id, stop_strings or max_new_tokens",
    "prefix_allowed_tokens_fn": "not implemented; bad_words_ids forbids tokens and sequences",
    "bos_token_id": "generate needs input_ids; to start from BOS alone pass input_ids=torch.tensor([[bos_token_id]])",
    "synced_gpus": "generate runs on one device; there is nothing to synchronise",
    "num_assistant_tokens_schedule": "use minitransformer.generation.speculative_generate(..., num_draft_tokens=k)",
    "low_memory": "not needed: beam search here already runs every beam in one batch",
    "cache_config": "the caches take no options; use cache_implementation='dynamic' or 'static'",
    "compile_config": "use compile=True or compile={torch.compile keyword arguments}",
    "renormalize_logits": "not implemented; the scores are the processed logits (log_softmax them yourself)",
}


def option(default):
    """A field that is None until set (so that merging knows what was set); ``resolve`` puts ``default`` there."""
    return field(default=None, metadata={"default": default})


@dataclass
class GenerationConfig:
    """The settings of one ``generate`` call. Field names are those of transformers' ``GenerationConfig``.

    Length:
        max_new_tokens: how many tokens to add at most. max_length: the total length instead (prompt
            included; T5: decoder tokens, the start token included). Both given: max_new_tokens wins
            (a warning says so, as in transformers). One of them is needed.
        min_new_tokens: EOS is forbidden until this many tokens are generated. min_length: the same
            counted in total length (prompt included), as transformers counts it.
    Decoding:
        do_sample: sample from the processed distribution instead of taking the argmax.
        temperature, top_k, top_p, min_p: reshape the distribution when sampling, in transformers'
            order (temperature, top-k, top-p, min-p). Unlike transformers, top_k defaults to None (no
            top-k), not 50.
        num_beams, length_penalty, early_stopping: beam search (num_beams > 1).
        num_return_sequences: R sequences per input, rows grouped per input.
    Logits processing (before sampling, in transformers' order):
        repetition_penalty: > 1 makes tokens already in the sequence less likely.
        no_repeat_ngram_size: n > 0 forbids any n-gram from occurring twice.
        bad_words_ids: list of token-id lists that must never be generated.
        forced_bos_token_id: the only choice when the sequence is one token long (T5's first step);
            forced_eos_token_id: the only choice at the last step (max_length - 1).
    Special tokens:
        eos_token_id: int or list; default the model config's. pad_token_id: written after a row has
            finished; default the config's, else the first EOS id. decoder_start_token_id: T5's first
            decoder token; default the config's.
    Stopping: stop_strings: str or list; a row stops once its text contains one (needs tokenizer=).
    Output:
        return_dict_in_generate: return a :class:`GenerateOutput` instead of the sequences alone;
            output_scores / output_logits: with it, the processed scores / raw logits of every step.
    Speed: use_cache, cache_implementation ("dynamic" or "static"), compile (True, or a dict of
        ``torch.compile`` keyword arguments: the fast decode step of ``generation/compiled.py``; it
        takes the static cache, chosen by itself when cache_implementation is not set).
    extra: keys of a ``generation_config.json`` that are no field here, kept as they were (unused).
    """

    # length
    max_new_tokens: int | None = option(None)
    max_length: int | None = option(None)
    min_new_tokens: int | None = option(None)
    min_length: int | None = option(None)
    # decoding strategy
    do_sample: bool | None = option(False)
    num_beams: int | None = option(1)
    num_return_sequences: int | None = option(1)
    length_penalty: float | None = option(1.0)
    early_stopping: bool | str | None = option(False)
    # sampling
    temperature: float | None = option(1.0)
    top_k: int | None = option(None)
    top_p: float | None = option(None)
    min_p: float | None = option(None)
    # logits processing
    repetition_penalty: float | None = option(1.0)
    no_repeat_ngram_size: int | None = option(0)
    bad_words_ids: list[list[int]] | None = option(None)
    forced_bos_token_id: int | None = option(None)
    forced_eos_token_id: int | list[int] | None = option(None)
    # special tokens
    eos_token_id: int | list[int] | None = option(None)
    pad_token_id: int | None = option(None)
    decoder_start_token_id: int | None = option(None)
    # stopping
    stop_strings: str | list[str] | None = option(None)
    # output
    return_dict_in_generate: bool | None = option(False)
    output_scores: bool | None = option(False)
    output_logits: bool | None = option(False)
    # speed
    use_cache: bool | None = option(True)
    cache_implementation: str | None = option("dynamic")
    compile: bool | dict | None = option(False)
    # keys of a generation_config.json we do not use
    extra: dict = field(default_factory=dict)

    # --- reading and writing --------------------------------------------------------------------

    @classmethod
    def options(cls) -> list[str]:
        """The names ``generate`` accepts as keyword arguments (every field but ``extra``)."""
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, d: dict) -> GenerationConfig:
        """From a dict such as a ``generation_config.json``; keys that are no field go to ``extra``.

        Example:
            >>> GenerationConfig.from_dict({"max_new_tokens": 5, "transformers_version": "5.2"}).extra
            {'transformers_version': '5.2'}
        """
        known = set(cls.options())
        extra = dict(d.get("extra", {}))
        extra.update({k: v for k, v in d.items() if k not in known and k != "extra"})
        return cls(**{k: v for k, v in d.items() if k in known}, extra=extra)

    def to_dict(self) -> dict:
        """Every field, with ``extra``'s keys back at the top level (``from_dict`` inverts it)."""
        d = {name: getattr(self, name) for name in self.options()}
        return {**self.extra, **d}

    @classmethod
    def from_any(cls, config) -> GenerationConfig | None:
        """None, a dict, one of ours, or transformers' GenerationConfig (anything with ``to_dict``)."""
        if config is None or isinstance(config, GenerationConfig):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        if hasattr(config, "to_diff_dict"):  # transformers' GenerationConfig: only what it sets
            return cls.from_dict(config.to_diff_dict())
        if hasattr(config, "to_dict"):
            return cls.from_dict(config.to_dict())
        raise TypeError(f"generation_config must be a GenerationConfig or a dict, got {type(config).__name__}")

    def explicit(self) -> dict:
        """The options this config sets (not None)."""
        return {name: getattr(self, name) for name in self.options() if getattr(self, name) is not None}

    @classmethod
    def merge(cls, *layers: GenerationConfig | None, **kwargs) -> GenerationConfig:
        """Later layers win, kwargs win over all: ``merge(model's, the argument's, **kwargs)``.

        A layer overrides an option only where it sets it (not None), as transformers merges them.

        Raises:
            UnknownGenerationOption: a kwarg that is no option, naming the closest one (or what to use instead).
        """
        check_option_names(kwargs)
        values: dict = {}
        extra: dict = {}
        for layer in layers:
            if layer is not None:
                values.update(layer.explicit())
                extra.update(layer.extra)
        values.update({k: v for k, v in kwargs.items() if v is not None})
        return cls(**values, extra=extra)

    # --- checking and filling in ----------------------------------------------------------------

    def resolve(self, model_config, prompt_length: int, max_positions: int | None) -> GenerationConfig:
        """Check every field (errors name it) and fill in the model's defaults; returns a new config.

        After it: max_new_tokens is an int >= 1, eos_token_id a list, pad_token_id and
        decoder_start_token_id ints (or None), min_new_tokens an int, stop_strings a list (or None),
        cache_implementation a string.

        Args:
            model_config: the model's config (vocab_size, eos/pad/decoder_start ids).
            prompt_length: P tokens the new ones follow (T5: 1, the decoder start token).
            max_positions: the model's context (None: no limit, as T5's relative positions).
        """
        c = dataclasses.replace(self, extra=dict(self.extra))
        if c.compile and c.cache_implementation is None:
            c.cache_implementation = "static"  # compile=True alone asks for the fast path: fixed shapes
        for f in dataclasses.fields(c):
            if f.name != "extra" and getattr(c, f.name) is None:
                setattr(c, f.name, f.metadata["default"])
        V = model_config.vocab_size

        # length
        for name in ("max_new_tokens", "max_length", "min_new_tokens"):
            value = getattr(c, name)
            if value is not None and (not is_int(value) or value < 0):
                raise ValueError(f"{name} must be an int >= 0 or None, got {name}={value!r}")
        if c.min_length is not None and (not is_int(c.min_length) or c.min_length < 0):
            raise ValueError(f"min_length must be an int >= 0 or None, got min_length={c.min_length!r}")
        if c.max_new_tokens is not None and c.max_length is not None:
            warnings.warn(f"both max_new_tokens={c.max_new_tokens} and max_length={c.max_length} are set: "
                          "max_new_tokens takes precedence (as in transformers)", UserWarning, stacklevel=4)
        elif c.max_new_tokens is None:
            if c.max_length is None:
                raise ValueError("generate needs max_new_tokens=... (tokens to add) or max_length=... (total length, "
                                 "prompt included)")
            if c.max_length <= prompt_length:
                raise ValueError(f"max_length={c.max_length} leaves no room after a prompt of {prompt_length} "
                                 f"tokens; use max_length > {prompt_length}, or max_new_tokens=...")
            c.max_new_tokens = c.max_length - prompt_length
        if c.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got max_new_tokens={c.max_new_tokens!r}")
        if max_positions is not None and prompt_length + c.max_new_tokens > max_positions:
            raise ValueError(
                f"max_new_tokens={c.max_new_tokens} after a prompt of {prompt_length} tokens needs "
                f"{prompt_length + c.max_new_tokens} positions, past the model's context of {max_positions} "
                f"(model.max_positions); use max_new_tokens <= {max(max_positions - prompt_length, 0)}"
            )
        c.max_length = prompt_length + c.max_new_tokens
        # min_length counts the prompt, min_new_tokens does not; min_new_tokens wins, as in transformers.
        if c.min_new_tokens is not None and c.min_length is not None:
            warnings.warn(f"both min_new_tokens={c.min_new_tokens} and min_length={c.min_length} are set: "
                          "min_new_tokens takes precedence (as in transformers)", UserWarning, stacklevel=4)
        if c.min_new_tokens is None:
            c.min_new_tokens = max((c.min_length or 0) - prompt_length, 0)
        c.min_length = prompt_length + c.min_new_tokens

        # decoding strategy
        if not isinstance(c.do_sample, bool):
            raise ValueError(f"do_sample must be True or False, got do_sample={c.do_sample!r}")
        if not is_int(c.num_beams) or c.num_beams < 1:
            raise ValueError(f"num_beams must be an int >= 1 (1 = no beam search), got num_beams={c.num_beams!r}")
        R = c.num_return_sequences
        if not is_int(R) or R < 1:
            raise ValueError("num_return_sequences must be an int >= 1 (sequences per input), "
                             f"got num_return_sequences={R!r}")
        if R > 1 and c.num_beams == 1 and not c.do_sample:
            raise ValueError(f"num_return_sequences={R} needs do_sample=True (R independent samples) or "
                             f"num_beams >= {R} (the R best beams): greedy decoding has a single answer")
        if c.num_beams > 1 and R > c.num_beams:
            raise ValueError(f"num_return_sequences={R} is more than num_beams={c.num_beams}: beam search keeps "
                             f"only num_beams finished hypotheses per input; use num_beams >= {R}")
        if c.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got early_stopping={c.early_stopping!r}")
        if not isinstance(c.length_penalty, (int, float)):
            raise ValueError(f"length_penalty must be a number, got length_penalty={c.length_penalty!r}")

        # sampling
        if c.do_sample and not c.temperature > 0:
            raise ValueError(f"temperature must be > 0 when do_sample=True, got temperature={c.temperature}; "
                             "use do_sample=False for greedy decoding")
        if c.top_k is not None and (not is_int(c.top_k) or c.top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got top_k={c.top_k!r} "
                             "(transformers' top_k=0, no top-k filtering, is top_k=None here)")
        if c.top_p is not None and not 0.0 < c.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got top_p={c.top_p}")
        if c.min_p is not None and not 0.0 <= c.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got min_p={c.min_p}")

        # logits processing
        if not isinstance(c.repetition_penalty, (int, float)) or not c.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 means none), "
                             f"got repetition_penalty={c.repetition_penalty}")
        if not is_int(c.no_repeat_ngram_size) or c.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be an int >= 0 (0 = off), "
                             f"got no_repeat_ngram_size={c.no_repeat_ngram_size!r}")
        if c.bad_words_ids is not None:
            if (not isinstance(c.bad_words_ids, (list, tuple)) or not c.bad_words_ids
                    or not all(isinstance(w, (list, tuple)) and w for w in c.bad_words_ids)):
                raise ValueError("bad_words_ids must be a non-empty list of non-empty lists of token ids, e.g. "
                                 f"[[5], [7, 8]], got bad_words_ids={c.bad_words_ids!r}")
            for word in c.bad_words_ids:
                for i in word:
                    if not is_int(i) or not 0 <= i < V:
                        raise ValueError(f"bad_words_ids holds {i!r} (in {list(word)}), outside the vocabulary "
                                         f"[0, {V})")
            c.bad_words_ids = [list(w) for w in c.bad_words_ids]
        if c.forced_bos_token_id is not None and (not is_int(c.forced_bos_token_id)
                                                  or not 0 <= c.forced_bos_token_id < V):
            raise ValueError(f"forced_bos_token_id={c.forced_bos_token_id!r} is outside the vocabulary [0, {V})")
        if c.forced_eos_token_id is not None:
            forced = [c.forced_eos_token_id] if is_int(c.forced_eos_token_id) else c.forced_eos_token_id
            if not isinstance(forced, (list, tuple)) or not all(is_int(i) and 0 <= i < V for i in forced):
                raise ValueError(f"forced_eos_token_id={c.forced_eos_token_id!r} must be an id (or list of ids) in "
                                 f"the vocabulary [0, {V})")

        # special tokens
        c.eos_token_id = check_eos(c.eos_token_id, model_config, V)
        if c.pad_token_id is None:
            c.pad_token_id = getattr(model_config, "pad_token_id", None)
            if c.pad_token_id is None or not 0 <= c.pad_token_id < V:
                c.pad_token_id = c.eos_token_id[0] if c.eos_token_id else None
        elif not is_int(c.pad_token_id) or not 0 <= c.pad_token_id < V:
            raise ValueError(f"pad_token_id={c.pad_token_id!r} is outside the vocabulary [0, {V})")
        if getattr(model_config, "is_encoder_decoder", False):
            if c.decoder_start_token_id is None:
                c.decoder_start_token_id = model_config.decoder_start_token_id
            if not is_int(c.decoder_start_token_id) or not 0 <= c.decoder_start_token_id < V:
                raise ValueError(f"decoder_start_token_id={c.decoder_start_token_id!r} is outside the vocabulary "
                                 f"[0, {V})")
        if c.min_new_tokens > 0 and not c.eos_token_id:
            c.min_new_tokens = 0  # nothing to suppress, as transformers (its processor needs an EOS id)

        # stopping
        if c.stop_strings is not None:
            if isinstance(c.stop_strings, str):
                c.stop_strings = [c.stop_strings]
            if not all(isinstance(s, str) and s for s in c.stop_strings):
                raise ValueError(f"stop_strings must be a str or a list of non-empty str, "
                                 f"got stop_strings={c.stop_strings!r}")
            c.stop_strings = list(c.stop_strings) or None

        # output
        for name in ("return_dict_in_generate", "output_scores", "output_logits", "use_cache"):
            if not isinstance(getattr(c, name), bool):
                raise ValueError(f"{name} must be True or False, got {name}={getattr(c, name)!r}")
        if c.num_beams > 1 and c.return_dict_in_generate and (c.output_scores or c.output_logits):
            raise ValueError("output_scores / output_logits are not implemented for beam search (num_beams > 1): "
                             "transformers' per-beam scores and sequences_scores are not returned here; "
                             "use return_dict_in_generate=True without them, or num_beams=1")

        # speed
        if c.cache_implementation not in ("dynamic", "static"):
            raise ValueError(f"cache_implementation must be 'dynamic' or 'static', got {c.cache_implementation!r}")
        if c.compile and (c.cache_implementation != "static" or not c.use_cache):
            raise ValueError("compile=True needs the static cache (fixed shapes) and use_cache=True; "
                             f"got cache_implementation={c.cache_implementation!r}, use_cache={c.use_cache}: "
                             "leave cache_implementation unset (compile=True picks 'static') or set it to 'static'")
        return c

    def processing(self) -> dict:
        """The keyword arguments of :func:`~minitransformer.generation.logits.process_logits` (after resolve):
        every one of its parameters that is an option, by name, so a new processor needs no edit here."""
        parameters = inspect.signature(process_logits).parameters
        return {name: getattr(self, name) for name in self.options() if name in parameters}


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_eos(eos_token_id, model_config, V: int) -> list[int]:
    """The EOS ids as a list: the given ones (checked), else the config's that fit the vocabulary."""
    if eos_token_id is None:  # ids a tiny test vocabulary does not hold can never appear: drop them
        default = getattr(model_config, "eos_token_id", None)
        default = [] if default is None else [default] if isinstance(default, int) else list(default)
        return [i for i in default if 0 <= i < V]
    if hasattr(eos_token_id, "tolist"):  # transformers takes a tensor of ids too
        eos_token_id = eos_token_id.tolist()
    eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    for i in eos:
        if not is_int(i) or not 0 <= i < V:
            raise ValueError(f"eos_token_id={eos_token_id!r} holds {i!r}, outside the vocabulary "
                             f"[0, {V}) (vocab_size={V})")
    return eos


def check_option_names(kwargs: dict) -> None:
    """Raise for a keyword argument of ``generate`` that is no option, saying what to use instead."""
    known = GenerationConfig.options()
    for name in kwargs:
        if name in known:
            continue
        if name in UNSUPPORTED:
            raise UnknownGenerationOption(f"generate(..., {name}=...) is not supported: {UNSUPPORTED[name]}")
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownGenerationOption(f"generate() got an unknown option {name!r}{hint} "
                                      f"(the options are GenerationConfig's fields: {', '.join(known)})")
