"""Training: the pieces chapter 10 teaches, and a trainer that never loses work.

    optim.py         cross_entropy, adamw_update, lr_at (warmup + cosine), configure_optimizer
    data.py          tokenize once into a memory-mapped token file; TokenBlocks, MaskedTokenBlocks;
                     char_tokenizer, bpe_tokenizer
    corpus.py        the built-in corpus (Python's pydoc_data.topics, PSF licence) and read_corpus
    checkpoint.py    atomic checkpoints (safetensors + JSON, no pickle), keep the last K, resume checks
    trainer.py       TrainingConfig, Trainer, TrainResult
    distributed.py   torchrun hooks: DDP and FSDP2 on PyTorch's own engine
    cli.py           ``minitransformer train``
    finetune.py      ``minitransformer finetune``: a BERT classifier, precision / recall / F1 before and after
    memory.py        training_memory: the bytes of weights, gradients, AdamW state and activations, predicted
                     from a config; measure_training_memory checks it on a real model

This package sits above models, generation and loading: nothing below imports it.
"""

from minitransformer.training.corpus import builtin_corpus, read_corpus
from minitransformer.training.data import MaskedTokenBlocks, TokenBlocks, bpe_tokenizer, char_tokenizer
from minitransformer.training.finetune import FinetuneResult, classification_report, finetune
from minitransformer.training.memory import TrainingMemory, measure_training_memory, training_memory
from minitransformer.training.optim import adamw_update, configure_optimizer, cross_entropy, lr_at
from minitransformer.training.trainer import Trainer, TrainingConfig, TrainResult

__all__ = ["FinetuneResult", "MaskedTokenBlocks", "TokenBlocks", "TrainResult", "Trainer", "TrainingConfig",
           "TrainingMemory", "adamw_update", "bpe_tokenizer", "builtin_corpus", "char_tokenizer",
           "classification_report", "configure_optimizer", "cross_entropy", "finetune", "lr_at",
           "measure_training_memory", "read_corpus", "training_memory"]
