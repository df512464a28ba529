"""The training loop: a peft LoRA adapter or every weight, seeded, with an optional KL
penalty to the base model, progress lines and a held-out loss.

A plain torch loop rather than `transformers.Trainer`: it starts in milliseconds, logs through
a callback (pytest's terminal or the CLI's stderr), and computes the language-model head only
at positions whose next token is trained, which saves a fifth of the work of a small model
with a large vocabulary. Loss is the mean cross-entropy over the trained (assistant) tokens
of an optimiser step, however they are split into micro-batches.

torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_emergent.finetune.data import IGNORE, Encoded
from pytest_emergent.finetune.presets import FinetuneConfigError, TrainConfig

Progress = Callable[[str], None]


@dataclass
class TrainStats:
    """What a run did, for the metadata file and the handle."""

    steps: int = 0
    train_examples: int = 0
    trained_tokens_per_epoch: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    heldout_examples: int = 0
    heldout_loss_before: float | None = None
    heldout_loss_after: float | None = None
    trainable_params: int = 0
    adapted_modules: list[str] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0


def num_layers(model: Any) -> int:
    """Number of decoder layers of a causal LM (text config for multimodal models)."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    count = getattr(config, "num_hidden_layers", None)
    if not isinstance(count, int):
        raise FinetuneConfigError("cannot tell the model's number of layers (num_hidden_layers)")
    return count


def resolve_layers(config: TrainConfig, model: Any) -> list[int] | None:
    """The layer indices that get adapters (None: all layers)."""
    if config.layers is None:
        return None
    total = num_layers(model)
    # a string can only be MIDDLE: validation lets no other name through
    middle = isinstance(config.layers, str)
    layers = [total // 2] if middle else [int(i) for i in config.layers]
    out_of_range = [i for i in layers if i >= total]
    if out_of_range:
        raise FinetuneConfigError(
            f"hyper-parameter 'layers': {out_of_range} out of range for a model with "
            f"{total} layers (0..{total - 1})"
        )
    return layers


def prepare_model(model: Any, config: TrainConfig, init_adapter: Path | None = None) -> Any:
    """Make `model` trainable as `config` says (it is modified; pass a copy).

    LoRA wraps it in a peft model (continuing `init_adapter` when given, whose own rank and
    targets then apply); full fine-tuning unfreezes every weight. Seeded by the caller.
    """
    if config.method == "full":
        if init_adapter is not None:
            raise FinetuneConfigError("init_adapter applies to LoRA training, not 'full'")
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    import peft

    with warnings.catch_warnings():
        # peft asks about gradient checkpointing through a name transformers deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        if init_adapter is not None:
            return peft.PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        return _new_lora(peft, model, config)


def _new_lora(peft: Any, model: Any, config: TrainConfig) -> Any:
    lora = peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        use_rslora=config.rslora,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=resolve_layers(config, model),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return peft.get_peft_model(model, lora)
    except ValueError as exc:
        raise FinetuneConfigError(
            f"LoRA targets {list(config.target_modules)} (layers {config.layers}) match no "
            f"module of this model: {exc}"
        ) from exc


def adapted_modules(model: Any) -> list[str]:
    """Names of the modules that carry a LoRA adapter."""
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A")
            and len(getattr(module, "lora_A", {})) > 0]


# -- batches ---------------------------------------------------------------------------


def _batch(rows: Sequence[Encoded], pad_id: int, device: Any) -> tuple[Any, Any, Any, Any]:
    """(input_ids, attention_mask, select, targets): right-padded; `select` marks positions
    whose next token is trained and `targets` holds those next tokens, in order."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n] = torch.tensor(row.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(row.labels)
    nxt = labels[:, 1:]
    select = torch.zeros_like(mask, dtype=torch.bool)
    select[:, :-1] = nxt != IGNORE
    targets = nxt[nxt != IGNORE]
    return ids.to(device), mask.to(device), select.to(device), targets.to(device)


def selected_logits(model: Any, ids: Any, mask: Any, select: Any) -> Any:
    """Logits at the `select`ed positions only, shape (n_selected, vocab).

    Runs the decoder, then the output head on the selected hidden states; models whose head
    is not a plain projection (final logit soft-capping) get the full forward pass.
    """
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = core.config.get_text_config() if hasattr(core.config, "get_text_config") else (
        core.config
    )
    plain_head = getattr(config, "final_logit_softcapping", None) is None
    decoder = core.get_decoder() if hasattr(core, "get_decoder") else None
    head = core.get_output_embeddings() if hasattr(core, "get_output_embeddings") else None
    if decoder is None or head is None or not plain_head:
        from pytest_emergent.models.hf.placement import unwrapped

        # without `place`'s wrapping (a placed model's copy keeps it): the logits stay on
        # the device, in the model's dtype, where `select` and the targets are
        with unwrapped(model):
            return model(input_ids=ids, attention_mask=mask, use_cache=False).logits[select]
    hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False)[0]
    return head(hidden[select])


def _groups(rows: list[Encoded], config: TrainConfig, epoch: int) -> list[list[list[Encoded]]]:
    """An epoch's optimiser steps, each a list of micro-batches. The order is seeded; inside
    a step, examples are sorted by length so micro-batches pad little."""
    order = list(range(len(rows)))
    random.Random(config.seed * 1000 + epoch).shuffle(order)
    per_step = config.effective_batch
    steps = []
    for start in range(0, len(order), per_step):
        chunk = sorted((rows[i] for i in order[start : start + per_step]),
                       key=lambda r: len(r.input_ids))
        steps.append(
            [chunk[j : j + config.batch_size] for j in range(0, len(chunk), config.batch_size)]
        )
    return steps


def _lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """Warm-up then the scheduler's decay; `step` counts from 0."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if config.scheduler == "constant":
        return 1.0
    span = max(1, total - config.warmup_steps)
    done = (step - config.warmup_steps) / span
    if config.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return max(0.0, 1.0 - done)


# -- the loop --------------------------------------------------------------------------


def _autocast(config: TrainConfig, device: Any) -> Any:
    """bf16 autocast for the training forward when the (resolved) precision asks for it."""
    import contextlib

    import torch

    if config.precision != "bfloat16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def mean_loss(model: Any, rows: Sequence[Encoded], pad_id: int, batch_size: int) -> float:
    """Mean cross-entropy per trained token over `rows`, without gradients."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            ids, mask, select, targets = _batch(rows[start : start + batch_size], pad_id, device)
            logits = selected_logits(model, ids, mask, select).float()
            total += float(F.cross_entropy(logits, targets, reduction="sum"))
            count += int(targets.numel())
    model.train(was_training)
    return total / max(1, count)


def train(
    model: Any,
    rows: list[Encoded],
    config: TrainConfig,
    *,
    pad_id: int,
    kl_rows: list[Encoded] | None = None,
    heldout: list[Encoded] | None = None,
    progress: Progress | None = None,
    checkpoint: Callable[[int], None] | None = None,
) -> TrainStats:
    """Train the prepared `model` on `rows` in place; returns what happened.

    With `config.kl_weight > 0`, each optimiser step adds `kl_weight` times the mean
    KL(fine-tuned || base) over the trained tokens of one batch of `kl_rows`; the base is the
    model with its adapter switched off (LoRA) or a frozen copy taken now (full).
    """
    import torch
    import torch.nn.functional as F

    say = progress or (lambda _msg: None)
    if not rows:
        raise FinetuneConfigError("no training examples left after tokenisation")
    if config.kl_weight > 0 and not kl_rows:
        raise FinetuneConfigError("kl_weight > 0 needs a KL dataset with examples")
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    stats = TrainStats(
        train_examples=len(rows),
        trained_tokens_per_epoch=sum(r.n_trained for r in rows),
        trainable_params=sum(p.numel() for p in params),
        adapted_modules=adapted_modules(model) if config.method == "lora" else [],
        heldout_examples=len(heldout or []),
    )
    reference = None
    if config.kl_weight > 0 and config.method == "full":
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    per_epoch = math.ceil(len(rows) / config.effective_batch)
    total = config.max_steps or per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(config, s, total)
    )
    kl_order = list(range(len(kl_rows or [])))
    kl_rng = random.Random(config.seed + 7)
    kl_rng.shuffle(kl_order)
    kl_pos = 0
    say(
        f"training {len(rows)} examples ({stats.trained_tokens_per_epoch} reply tokens per "
        f"epoch): {total} steps of {config.effective_batch} examples, "
        f"{stats.trainable_params:,} trainable parameters"
        + (f" in {len(stats.adapted_modules)} LoRA modules" if stats.adapted_modules else "")
    )
    if heldout:
        stats.heldout_loss_before = mean_loss(model, heldout, pad_id, config.batch_size)
        say(f"held-out loss before training: {stats.heldout_loss_before:.4f} "
            f"({len(heldout)} examples)")
    every = 1 if total <= 30 else max(1, total // 20)
    save = checkpoint if config.save_every > 0 else None
    if save is not None:
        save(0)
    model.train()
    start = time.perf_counter()
    step, epoch = 0, 0
    while step < total:
        for micro_batches in _groups(rows, config, epoch):
            if step >= total:
                break
            n_tokens = sum(r.n_trained for mb in micro_batches for r in mb)
            step_loss = 0.0
            for mb in micro_batches:
                ids, mask, select, targets = _batch(mb, pad_id, device)
                with _autocast(config, device):
                    logits = selected_logits(model, ids, mask, select).float()
                loss = F.cross_entropy(logits, targets, reduction="sum") / n_tokens
                loss.backward()
                step_loss += float(loss.detach())
            kl_value = None
            if config.kl_weight > 0 and kl_rows:
                batch = []
                for _ in range(min(config.batch_size, len(kl_rows))):
                    if kl_pos == len(kl_order):
                        kl_rng.shuffle(kl_order)
                        kl_pos = 0
                    batch.append(kl_rows[kl_order[kl_pos]])
                    kl_pos += 1
                with _autocast(config, device):
                    kl = _kl_term(model, reference, batch, pad_id, device)
                (config.kl_weight * kl).backward()
                kl_value = float(kl.detach())
                stats.kl.append(kl_value)
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            stats.losses.append(step_loss)
            if step % every == 0 or step == total:
                spent = time.perf_counter() - start
                per = spent / step
                say(
                    f"step {step}/{total}  loss {step_loss:.4f}"
                    + (f"  kl {kl_value:.4f}" if kl_value is not None else "")
                    + f"  lr {lr:.2e}  {per:.2f} s/step  eta {per * (total - step):.0f} s"
                )
            if save is not None and (step % config.save_every == 0 or step == total):
                save(step)
        epoch += 1
    stats.steps = step
    stats.seconds = time.perf_counter() - start
    model.eval()
    if heldout:
        stats.heldout_loss_after = mean_loss(model, heldout, pad_id, config.batch_size)
        say(f"held-out loss after training: {stats.heldout_loss_after:.4f}")
    return stats


def _kl_term(model: Any, reference: Any, rows: list[Encoded], pad_id: int, device: Any) -> Any:
    """Mean over trained tokens of KL(p_model || p_base), with gradients for `model`."""
    import contextlib

    import torch

    ids, mask, select, _targets = _batch(rows, pad_id, device)
    with torch.no_grad():
        if reference is not None:
            base_logits = selected_logits(reference, ids, mask, select)
        else:
            off = model.disable_adapter() if hasattr(model, "disable_adapter") else None
            with off if off is not None else contextlib.nullcontext():
                base_logits = selected_logits(model, ids, mask, select)
    logp = torch.log_softmax(selected_logits(model, ids, mask, select).float(), dim=-1)
    base_logp = torch.log_softmax(base_logits.float(), dim=-1)
    return (logp.exp() * (logp - base_logp)).sum(-1).mean()


def save_result(model: Any, tokenizer: Any, out_dir: Path, config: TrainConfig,
                base_spec: str) -> None:
    """Write a peft adapter directory (LoRA) or a transformers checkpoint (full)."""
    import json

    if config.method == "lora":
        model.save_pretrained(str(out_dir), safe_serialization=True)
        adapter_config = out_dir / "adapter_config.json"
        data = json.loads(adapter_config.read_text())
        # the registry finds the base through this field; a spec string works as well
        data["base_model_name_or_path"] = base_spec
        adapter_config.write_text(json.dumps(data, indent=2, sort_keys=True))
        return
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
