"""Speculative decoding (Leviathan et al. 2023, Chen et al. 2023), greedy version.

A small draft model guesses ``num_draft_tokens`` tokens one by one (cheap); the large target model
then checks all of them in a single forward (one pass over its weights for k + 1 tokens). The guesses
are kept up to the first one the target would not have chosen, and the target's own choice there is
added: every round yields between 1 and k + 1 tokens, and the output is exactly the target's greedy
output, whatever the draft guesses.

    committed: [prompt ... t]          target cache: all but t        draft cache: all it has seen
    draft:     t -> d1 -> d2 -> ... -> dk                             (k cheap forwards)
    target:    [t, d1, ..., dk] -> g1, g2, ..., g(k+1)                (one forward, T = k + 1)
    accept d1..dn while d_i == g_i, then append g(n+1); crop both caches back to the committed tokens
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SpeculativeOutput:
    """``sequences`` (1, P + n) as ``generate`` returns them; ``acceptance_rate`` = accepted / drafted."""

    sequences: torch.Tensor
    drafted: int
    accepted: int
    target_forwards: int

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(self.drafted, 1)


def speculative_generate(target, draft, input_ids: torch.Tensor, *, max_new_tokens: int, num_draft_tokens: int = 4,
                         eos_token_id: int | list[int] | None = None) -> SpeculativeOutput:
    """Greedy generation from ``target`` sped up by ``draft`` (same vocabulary); batch size 1.

    Returns a :class:`SpeculativeOutput` whose ``sequences`` equal
    ``target.generate(input_ids, max_new_tokens=..., eos_token_id=...)``.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"speculative_generate takes one sequence, input_ids (1, P); got {tuple(input_ids.shape)}")
    if not isinstance(num_draft_tokens, int) or num_draft_tokens < 1:
        raise ValueError(f"num_draft_tokens must be an int >= 1, got {num_draft_tokens!r}")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(f"the draft's vocab_size={draft.config.vocab_size} differs from the target's "
                         f"{target.config.vocab_size}: the two models must share a tokenizer")
    P = input_ids.shape[1]
    limit = target.max_positions
    if limit is not None and P + max_new_tokens > limit:
        raise ValueError(f"max_new_tokens={max_new_tokens} after {P} prompt tokens passes the target's context "
                         f"of {limit}; use max_new_tokens <= {limit - P}")
    if eos_token_id is None:
        eos_token_id = getattr(target.config, "eos_token_id", None)
    eos = set() if eos_token_id is None else {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)

    ids = input_ids[0].tolist()
    target_cache, draft_cache = target.new_cache(), draft.new_cache()
    drafted = accepted = target_forwards = 0
    with torch.no_grad():
        # Prefill the target with all but the last prompt token (the first round feeds it).
        if P > 1:
            target(input_ids[:, :-1], past_key_values=target_cache, logits_to_keep=1)
        while len(ids) - P < max_new_tokens:
            k = min(num_draft_tokens, max_new_tokens - (len(ids) - P))
            # 1. The draft guesses k tokens; its first forward feeds whatever it has not seen yet.
            guesses = []
            for _ in range(k):
                fresh = torch.tensor([(ids + guesses)[draft_cache.get_seq_length():]])  # (1, T)
                logits = draft(fresh, past_key_values=draft_cache, logits_to_keep=1).logits[0, -1]
                guesses.append(int(logits.argmax()))
            # 2. The target scores the last committed token and the k guesses in one forward.
            block = torch.tensor([ids[-1:] + guesses])  # (1, k + 1)
            logits = target(block, past_key_values=target_cache).logits[0]  # (k + 1, V)
            choices = logits.argmax(dim=-1).tolist()  # what the target itself would pick after each
            target_forwards += 1
            # 3. Keep the guesses the target agrees with, then the target's own next token.
            n = 0
            while n < k and guesses[n] == choices[n]:
                n += 1
            drafted, accepted = drafted + k, accepted + n
            new = guesses[:n] + [choices[n]]
            for i, token in enumerate(new):  # stop at EOS
                if token in eos:
                    new = new[:i + 1]
                    break
            ids += new[:max_new_tokens - (len(ids) - P)]
            # 4. Forget the rejected guesses: the caches hold the committed tokens, all but the last.
            target_cache.crop(len(ids) - 1)
            draft_cache.crop(min(draft_cache.get_seq_length(), len(ids) - 1))
            if ids[-1] in eos:
                break
    sequences = torch.tensor([ids], device=input_ids.device)
    return SpeculativeOutput(sequences, drafted, accepted, target_forwards)
