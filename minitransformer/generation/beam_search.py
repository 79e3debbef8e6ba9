"""Beam search: keep the K best partial sequences (beams) per input instead of one.

Every step, each of the K running beams proposes V continuations scored by the sum of its
log-probabilities; the best of the K x V candidates become the next running beams. A candidate that
ends with EOS (or reaches max length) joins the input's K *finished* hypotheses if it is good enough,
scored by ``sum of log-probs / generated_length ** length_penalty`` (> 0 favours long outputs).

The algorithm, its tie-breaking and its stopping rule are those of transformers' ``_beam_search``,
so that outputs are token-identical:

- 2K candidates are kept per step (more with several EOS ids), so that K of them are still running
  even when the best K all finish; with sampling they are drawn without replacement, then sorted
  best first like the top-k ones;
- only candidates among the best K may finish;
- ``early_stopping``: True stops an input as soon as it has K finished hypotheses; False stops it when
  the best running beam, at its current length, cannot beat the worst finished one; "never" assumes
  the running beam could reach max length (the exact rule when length_penalty > 0).

Shapes: B inputs, K beams, L buffer length (prompt P + max_new_tokens), V vocabulary, N = 2K candidates.
"""

from __future__ import annotations

import torch

from minitransformer.generation.logits import process_logits

NEG = -1.0e9  # the score of a slot that must not be chosen


def gather_beams(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, K, ...) and index (B, N) -> x[b, index[b, n], ...] (B, N, ...)."""
    while index.dim() < x.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(x, index, dim=1)


def beam_search(session, tokens: torch.Tensor, prompt_length: int, cfg, generator: torch.Generator | None = None,
                ignore: torch.Tensor | None = None) -> torch.Tensor:
    """tokens (B * K, L): each input's prompt repeated K times.

    Returns the R = ``cfg.num_return_sequences`` best hypotheses of every input, best first (B * R, n):
    n is the longest of them, the shorter ones padded as transformers pads them.
    """
    K, P = cfg.num_beams, prompt_length
    BK, L = tokens.shape
    B, device = BK // K, tokens.device
    eos = torch.tensor(cfg.eos_token_id, dtype=torch.long, device=device)
    N = max(2, 1 + len(cfg.eos_token_id)) * K  # candidates kept per step
    among_best_k = torch.arange(N, device=device) < K  # (N,) only these may finish
    # transformers fills unused slots with the pad id, or the first EOS id when that pad id is 0
    fill = (cfg.pad_token_id or cfg.eos_token_id[0]) if cfg.eos_token_id else -1

    running = tokens.view(B, K, L).clone()  # (B, K, L) the running beams
    running[:, :, P:] = fill
    running_scores = torch.zeros(B, K, device=device)  # sum of log-probs
    running_scores[:, 1:] = NEG  # all beams start equal: let only the first one propose
    finished = running.clone()  # (B, K, L) the finished hypotheses
    finished_scores = torch.full((B, K), NEG, device=device)  # length-penalised
    finished_lengths = torch.zeros(B, K, dtype=torch.long, device=device)  # new tokens in each
    is_finished = torch.zeros(B, K, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)  # can a running beam still win?

    logits = session.prefill(running.view(BK, L))
    for cur in range(P, L):
        if cur > P:
            logits = session.decode(running.view(BK, L), cur)  # (B * K, V)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        log_probs = process_logits(log_probs, running.view(BK, L)[:, :cur], **cfg.processing(),
                                   ignore=None if ignore is None else ignore[:, :cur],
                                   min_tokens_to_keep=N // K)
        V = log_probs.shape[-1]
        scores = (log_probs.view(B, K, V) + running_scores[:, :, None]).view(B, K * V)

        # 1. The N best continuations over all beams (or N drawn without replacement when sampling).
        if cfg.do_sample:
            index = torch.multinomial(scores.softmax(dim=-1), N, generator=generator)  # (B, N)
            # Best first, as topk orders them: "among the best K" and the beams' order then mean
            # the same as without sampling (transformers sorts its draws too, since 5.24).
            cand_scores, order = scores.gather(1, index).sort(dim=-1, descending=True)  # (B, N)
            index = index.gather(1, order)
        else:
            cand_scores, index = torch.topk(scores, N)  # (B, N)
        cand_beam, cand_token = index // V, index % V  # which beam it extends, with which token
        candidates = gather_beams(running, cand_beam)  # (B, N, L)
        candidates[:, :, cur] = cand_token
        done = torch.isin(cand_token, eos) | (cur + 1 >= L)  # (B, N) EOS, or max length reached

        # 2. The K best candidates still running continue.
        alive_scores = cand_scores + done.float() * NEG
        keep = torch.topk(alive_scores, K).indices  # (B, K)
        running = gather_beams(candidates, keep)
        running_scores = gather_beams(alive_scores, keep)
        origin = gather_beams(cand_beam, keep)  # (B, K) the beam each continues

        # 3. Finished candidates compete with the finished hypotheses so far for the K places.
        just_finished = done & among_best_k
        final_scores = cand_scores / ((cur + 1 - P) ** cfg.length_penalty)
        final_scores += (is_finished.all(-1, keepdim=True) & (cfg.early_stopping is True)).float() * NEG
        final_scores += (~improvable).float() * NEG
        final_scores += (~just_finished).float() * NEG
        best = torch.topk(torch.cat([finished_scores, final_scores], dim=1), K).indices  # (B, K)
        finished = gather_beams(torch.cat([finished, candidates], dim=1), best)
        finished_scores = gather_beams(torch.cat([finished_scores, final_scores], dim=1), best)
        new_lengths = torch.full((B, N), cur + 1 - P, dtype=torch.long, device=device)
        finished_lengths = gather_beams(torch.cat([finished_lengths, new_lengths], dim=1), best)
        is_finished = gather_beams(torch.cat([is_finished, just_finished], dim=1), best)

        # 4. The cache follows the beams: row b * K + k now continues row b * K + origin[b, k].
        session.reorder((origin + torch.arange(B, device=device)[:, None] * K).view(BK))

        # 5. Stop when no input can improve, or (early_stopping=True) all have K finished hypotheses.
        hoped_length = (L - P) if cfg.early_stopping == "never" and cfg.length_penalty > 0 else (cur + 1 - P)
        best_running = running_scores[:, :1] / (hoped_length ** cfg.length_penalty)  # (B, 1)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, NEG)
        improvable = improvable & (best_running > worst_finished).any(dim=-1, keepdim=True)
        all_full = bool(is_finished.all()) and cfg.early_stopping is True
        if not improvable.any() or all_full or bool(done.all()):
            break

    R = cfg.num_return_sequences
    n = int(finished_lengths[:, :R].max())
    return finished[:, :R, :P + n].reshape(B * R, P + n)  # (B * R, P + n): rows b * R ... b * R + R - 1 are input b's
