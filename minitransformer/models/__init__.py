from minitransformer.models.bert import BERT, BertConfig, BertForMaskedLM, BertForSequenceClassification  # noqa: F401
from minitransformer.models.gpt2 import GPT2, GPT2Config  # noqa: F401  (gpt2/llama engineer)
from minitransformer.models.llama import Llama, LlamaConfig, MistralConfig, Qwen2Config  # noqa: F401
from minitransformer.models.t5 import T5, T5Config  # noqa: F401
