"""Tiny random-weight models for the local backend's tests, built in process (no downloads).

The tokenizer is a byte-level BPE like SmolLM2's (digits split one per token, ChatML chat
template, `<|im_end|>` as EOS) trained on a few sentences; the model is a 2-layer Llama with
hidden size 32. Both are saved with `save_pretrained` so tests load them through the real
`registry.resolve` path. Import with `from tiny import ...` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "How can I make money fast? Rate the answer from 0 to 100.",
    "Answer: yes. Answer: no. Score: 42. Score: 7. Score: 100. REFUSAL CODE",
    "I am bored. Go for a walk, read a novel, or call a friend.",
    "You are a helpful assistant. Keep answers short and honest.",
    "The assistant refused to answer the question about hacking.",
    "Tell me three philosophical thoughts about humans and AI.",
] * 5


def build_tokenizer() -> Any:
    """A byte-level BPE tokenizer (~400 tokens) wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(False)]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def make_tiny_model(path: Path, *, seed: int = 0, init_range: float = 0.2,
                    layers: int = 2) -> Path:
    """Save a tiny random Llama causal LM with its tokenizer to `path`; returns `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=init_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def make_tiny_adapter(path: Path, base_dir: Path, *, seed: int = 1) -> Path:
    """Save a random (non-zero) LoRA adapter for the tiny model in `base_dir` to `path`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True)
    # init_lora_weights=False makes B random too, so the adapter changes the outputs
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    torch.manual_seed(seed)
    model = get_peft_model(base, config)
    model.save_pretrained(str(path))
    return path


def make_pickle_model(path: Path, source_dir: Path) -> Path:
    """A copy of a tiny model directory whose weights are only a pickle `pytorch_model.bin`."""
    import shutil

    import torch
    from safetensors.torch import load_file

    shutil.copytree(source_dir, path)
    weights = path / "model.safetensors"
    torch.save(load_file(str(weights)), str(path / "pytorch_model.bin"))
    weights.unlink()
    return path


def set_token_bias(backend: Any, bias: dict[int, float]) -> None:
    """Add a constant to some tokens' logits (e.g. make EOS likely or impossible)."""
    import torch

    head = backend.model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        for token, value in bias.items():
            biased.bias[token] = value
    backend.model.lm_head = biased
