"""Chapter 9 exercises: the KV cache, its size, decoding with left padding, cached greedy decoding,
and two logits processors.

Fill in each function, then grade yourself:

    minitransformer check 9          # or: pytest chapters/09_kv_cache
    minitransformer.check("9")       # the same, from a notebook (it reads this file afresh)
    from exercises_09 import ...     # your functions, in this folder's notebook

Shapes: B batch, Hkv key/value heads, S cached tokens, T new tokens, D head size, V vocabulary.
Use only torch; not transformers (the checks compare you with it) and not minitransformer.generation.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


class KVCache:
    """Exercise 9.1: one attention layer's key/value cache.

    Attention calls ``update`` with this step's keys and values, each (B, Hkv, T, D) (T = the whole
    prompt at the first call, then 1 per generated token) and attends over what it returns: every
    key and value cached so far, this step's included, (B, Hkv, S + T, D).

    The checks plug one KVCache per layer into the library's GPT-2 and LLaMA, whose attention calls
    ``cache.update(k, v)``, and compare the cached logits with a full forward.
    """

    def __init__(self) -> None:
        self.key: torch.Tensor | None = None  # (B, Hkv, S, D) once something is cached
        self.value: torch.Tensor | None = None

    def get_seq_length(self) -> int:
        """S: how many tokens are cached (the models ask it to place the new tokens' positions)."""
        return 0 if self.key is None else self.key.shape[2]

    def update(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append key and value (B, Hkv, T, D) after the cached ones; return (all keys, all values)."""
        todo("9.1", "the first time, keep key and value as they are; after that torch.cat([self.key, key], "
                    "dim=2) (the sequence axis), the same for value; return (self.key, self.value)")


def cache_size_bytes(num_layers: int, batch: int, kv_heads: int, seq_len: int, head_dim: int,
                     dtype: torch.dtype = torch.float32) -> int:
    """Exercise 9.2: the bytes a full KV cache takes, as an int.

    Every layer keeps a key AND a value tensor of shape (batch, kv_heads, seq_len, head_dim), each
    element ``dtype``-sized: 4 bytes for float32, 2 for bfloat16 and float16.
    """
    todo("9.2", "2 * num_layers * batch * kv_heads * seq_len * head_dim * bytes; "
                "torch.empty((), dtype=dtype).element_size() gives the bytes per element")


def decode_step_inputs(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 9.3: the attention mask and position of the next token, with a left-padded batch.

    attention_mask (B, S): 1 for the real tokens seen so far (prompt and generated), 0 for padding.
    A left-padded row ``[pad, pad, a, b]`` has positions ``[0, 0, 0, 1]``: real tokens count from 0,
    as if the row were alone, so its next token sits at position 2.

    Returns (new_mask (B, S + 1): attention_mask with a 1 appended for the new token,
             position_ids (B, 1): the new token's position), both long tensors.
    """
    todo("9.3", "append a column of ones (torch.cat with attention_mask.new_ones(B, 1)); the new token's "
                "position is the number of real tokens before it: attention_mask.sum(dim=1, keepdim=True)")


def greedy_generate_with_cache(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Exercise 9.4: greedy decoding with a KV cache.

    ``model(ids, use_cache=True)`` returns ``.logits`` (B, T, V) and ``.past_key_values``, the cache
    holding the keys and values of ``ids``; ``model(new_ids, past_key_values=cache, use_cache=True)``
    runs only the new tokens against it (and updates it). Ours and transformers' models both do.

    Feed the whole prompt once (prefill), then ONE token per forward: the argmax of the last
    logits. input_ids (B, T) -> (B, T + max_new_tokens), starting with input_ids, equal to the
    uncached loop of chapter 7. Run under torch.no_grad(). The checks count your forwards and their
    lengths: the prompt once, then T = 1 each time.
    """
    todo("9.4", "out = model(input_ids, use_cache=True); loop: next_id = out.logits[:, -1].argmax(-1, "
                "keepdim=True); append it; out = model(next_id, past_key_values=out.past_key_values, use_cache=True)")


def top_k_top_p_filter(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Exercise 9.5: top-k, then top-p (nucleus) filtering of next-token logits (B, V).

    Filtered tokens get -inf, so that softmax gives them probability 0; kept ones keep their logit.
    - top-k: keep the k highest logits of each row (a logit equal to the k-th highest is kept too).
    - top-p: keep the smallest set of most likely tokens whose probabilities (softmax of the logits
      left after top-k) add up to at least top_p; the most likely token is always kept.
    None means that filter is off. Returns (B, V).
    """
    todo("9.5", "top-k: kth = logits.topk(k).values[:, -1:], mask logits < kth. top-p: sort descending, "
                "probs = softmax, cum = probs.cumsum(-1); drop a token if cum - its prob >= top_p; unsort "
                "(scatter), masked_fill(-inf)")


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Exercise 9.6: make tokens already in the sequence less likely (CTRL, Keskar et al. 2019).

    logits (B, V); previous_ids (B, T), the prompt and the tokens generated so far. For every token
    that appears in row b's previous_ids (once or more: it is penalised once), its logit in row b is
    divided by ``penalty`` if positive and multiplied by it if negative. Other logits are unchanged.
    Returns a new (B, V) tensor.
    """
    todo("9.6", "score = logits.gather(1, previous_ids); score = torch.where(score < 0, score * penalty, "
                "score / penalty); logits.scatter(1, previous_ids, score)")
