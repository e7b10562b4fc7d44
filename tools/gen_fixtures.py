#!/usr/bin/env python3
"""Generate tiny random MoE checkpoints + HF transformers reference tensors.

Usage:  python3 tools/gen_fixtures.py [--out tests/fixtures] [--only NAME ...]

Every fixture directory under tests/fixtures/ holds a checkpoint exactly as
`save_pretrained` wrote it (config.json, generation_config.json, *.safetensors
[+ model.safetensors.index.json]) plus:

  reference.safetensors  reference tensors (naming contract in tests/fixtures/README.md)
  fixture.json           summary (model_type, layer split, parameter counts, versions...)

Reference computation: float32 weights in memory, attn_implementation="eager",
experts_implementation="eager", CPU, single forward over `input_ids` with
forward hooks on model.model.layers[l] (hidden.{l}) and on each MoE router
module `layers[l].mlp.gate` (router_logits / topk ids / applied weights are the
router module's own outputs).  `greedy_ids` comes from an argmax loop that
re-runs the full sequence each step (no KV cache); it is cross-checked against
model.generate(do_sample=False, max_new_tokens=32).

Seeds are rejected (and the next seed tried) when any routing decision is a
near tie (gap between k-th and (k+1)-th routing probability <= 1e-4, checked on
the whole input+generated sequence) or any greedy step's top-2 logits are
closer than 1e-3, or the greedy continuation is degenerate (< 12 distinct
tokens, or a token repeated > 4 times in a row).  For the bf16 variants the same checks run on the
bf16-rounded model too.

The script is deterministic: rerunning with the same library versions writes
the same bytes.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

T_PROMPT = 28
N_NEW = 32
ROUTE_GAP = 1e-4
LOGIT_GAP = 1e-3
MIN_DISTINCT = 12   # greedy continuation must not be degenerate:
MAX_RUN = 4         # >= 12 distinct tokens, no token repeated > 4 times in a row

VERSIONS = {
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "safetensors": safetensors.__version__,
    "tokenizers": tokenizers.__version__,
    "numpy": np.__version__,
    "python": "%d.%d.%d" % sys.version_info[:3],
}

# ----------------------------------------------------------------------------
# Architectures.  rms_norm_eps = the architecture's real default.
# ----------------------------------------------------------------------------
ARCHS = {
    "mixtral": dict(
        cls="MixtralForCausalLM", cfg="MixtralConfig", seed=1000,
        kw=dict(vocab_size=320, hidden_size=64, intermediate_size=32,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                num_local_experts=8, num_experts_per_tok=2, rms_norm_eps=1e-5,
                max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                tie_word_embeddings=False)),
    "qwen2_moe": dict(
        cls="Qwen2MoeForCausalLM", cfg="Qwen2MoeConfig", seed=2000,
        kw=dict(vocab_size=288, hidden_size=64, intermediate_size=96,
                moe_intermediate_size=32, shared_expert_intermediate_size=48,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                num_experts=8, num_experts_per_tok=4, norm_topk_prob=False,
                decoder_sparse_step=1, mlp_only_layers=[1], qkv_bias=True,
                rms_norm_eps=1e-6, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                tie_word_embeddings=False)),
    "qwen3_moe": dict(
        cls="Qwen3MoeForCausalLM", cfg="Qwen3MoeConfig", seed=3000,
        kw=dict(vocab_size=304, hidden_size=64, head_dim=32, intermediate_size=80,
                moe_intermediate_size=32, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2,
                num_experts=8, num_experts_per_tok=4, norm_topk_prob=True,
                decoder_sparse_step=1, mlp_only_layers=[1], attention_bias=False,
                rms_norm_eps=1e-6, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
                tie_word_embeddings=False)),
    "olmoe": dict(
        cls="OlmoeForCausalLM", cfg="OlmoeConfig", seed=4000,
        kw=dict(vocab_size=272, hidden_size=64, intermediate_size=32,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                num_experts=8, num_experts_per_tok=3, norm_topk_prob=False,
                rms_norm_eps=1e-5, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                tie_word_embeddings=False)),
    # MLA (research/formats.md §5), shrunk: q/k head = nope 16 + rope 8, v head 12, latent 24;
    # YaRN with mscale_all_dim as the real configs have it (softmax scale times m^2)
    "deepseek_v2": dict(
        cls="DeepseekV2ForCausalLM", cfg="DeepseekV2Config", seed=6000,
        kw=dict(vocab_size=320, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                q_lora_rank=None, kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8,
                v_head_dim=12, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=2,
                first_k_dense_replace=1, topk_method="greedy", n_group=None, topk_group=None,
                norm_topk_prob=False, routed_scaling_factor=1.0, rms_norm_eps=1e-6,
                max_position_embeddings=512,
                rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                                 "original_max_position_embeddings": 128, "beta_fast": 32.0,
                                 "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707},
                tie_word_embeddings=False)),
    "deepseek_v3": dict(
        cls="DeepseekV3ForCausalLM", cfg="DeepseekV3Config", seed=7000,
        kw=dict(vocab_size=320, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                q_lora_rank=32, kv_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8,
                v_head_dim=12, n_routed_experts=16, num_experts_per_tok=3, n_shared_experts=1,
                first_k_dense_replace=1, n_group=4, topk_group=2, norm_topk_prob=True,
                routed_scaling_factor=2.5, rms_norm_eps=1e-6, max_position_embeddings=512,
                rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                                 "original_max_position_embeddings": 128, "beta_fast": 32.0,
                                 "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
                tie_word_embeddings=False)),
    # GLM-4.5 (research/formats-2026.md §1): GQA with q/k/v biases and per-head q/k norms, RoPE on
    # the first half of each head; DeepSeek-V3's MoE block (here 4 groups, 2 searched)
    "glm4_moe": dict(
        cls="Glm4MoeForCausalLM", cfg="Glm4MoeConfig", seed=8000,
        kw=dict(vocab_size=320, hidden_size=64, head_dim=16, intermediate_size=96,
                moe_intermediate_size=32, num_hidden_layers=3, num_attention_heads=6,
                num_key_value_heads=2, n_routed_experts=16, num_experts_per_tok=3,
                n_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2,
                norm_topk_prob=True, routed_scaling_factor=2.5, attention_bias=True,
                use_qk_norm=True, partial_rotary_factor=0.5, rms_norm_eps=1e-5,
                max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                tie_word_embeddings=False)),
    # GPT-OSS (research/formats-2026.md §2): layers sliding (window 8, shorter than the prompt) and
    # full in turn, attention sinks, biases on q/k/v/o, router and experts, YaRN with truncate false
    # as the release has it; swiglu_limit 1.0 so that the clamps act on these small activations
    "gpt_oss": dict(
        cls="GptOssForCausalLM", cfg="GptOssConfig", seed=9000,
        kw=dict(vocab_size=320, hidden_size=64, head_dim=16, intermediate_size=32,
                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                num_local_experts=8, num_experts_per_tok=2, sliding_window=8,
                swiglu_limit=1.0, attention_bias=True, rms_norm_eps=1e-5,
                max_position_embeddings=512,
                rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                                 "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                                 "original_max_position_embeddings": 64},
                tie_word_embeddings=False)),
    # Phi-3.5-MoE (research/formats.md §7): LayerNorm with biases, q/k/v/o and LM-head biases,
    # sparsemixer routing (eps 0.01), LongRoPE with distinct short/long factors and mscales; the
    # prompt (28) plus the continuation (32) stays within original_max_position_embeddings (64), so
    # the short set applies throughout; the "long" variant sets it to 16 (the long set throughout)
    "phimoe": dict(
        cls="PhimoeForCausalLM", cfg="PhimoeConfig", seed=9500,
        kw=dict(vocab_size=320, hidden_size=64, intermediate_size=32, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
                num_experts_per_tok=2, router_jitter_noise=0.01, attention_bias=True,
                lm_head_bias=True, rms_norm_eps=1e-5, max_position_embeddings=512,
                rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                 "short_factor": [1.0, 1.05, 1.1, 1.3, 1.6, 2.0, 2.6, 3.2],
                                 "long_factor": [1.0, 1.2, 1.6, 2.4, 4.0, 7.0, 11.0, 16.0],
                                 "short_mscale": 1.1, "long_mscale": 1.25,
                                 "original_max_position_embeddings": 64},
                tie_word_embeddings=False)),
}

# fixture name -> (arch, variant)
FIXTURES = [
    ("mixtral", "mixtral", "f32"),
    ("qwen2_moe", "qwen2_moe", "f32"),
    ("qwen3_moe", "qwen3_moe", "f32"),
    ("olmoe", "olmoe", "f32"),
    ("qwen3_moe_fused", "qwen3_moe", "fused"),
    ("mixtral_sharded", "mixtral", "sharded"),
    ("mixtral_bf16", "mixtral", "bf16"),
    ("qwen2_moe_bf16", "qwen2_moe", "bf16"),
    ("qwen3_moe_bf16", "qwen3_moe", "bf16"),
    ("olmoe_bf16", "olmoe", "bf16"),
    # config variants that once gave silently wrong results (issue 21): attention_bias adds
    # o_proj.bias too in Qwen3-MoE and OLMoE; a Qwen2-MoE whose layer 0 is dense keeps its shared
    # expert in every MoE layer (a GGUF loader once looked for it in blk.0 only)
    ("qwen3_moe_attn_bias", "qwen3_moe", "attn_bias"),
    ("olmoe_attn_bias", "olmoe", "attn_bias"),
    ("qwen2_moe_dense0", "qwen2_moe", "dense0"),
    # YaRN RoPE (issue 23): the ramp of the correction range lands inside the rotary dims; the
    # Mixtral one also sets beta_fast/beta_slow, mscale/mscale_all_dim (attention factor 1.12, not
    # get_mscale(f)) and truncate false (a fractional ramp)
    ("qwen3_moe_yarn", "qwen3_moe", "yarn"),
    ("mixtral_yarn", "mixtral", "yarn_mscale"),
    # DeepSeek (issue 23): V2 with q_proj (V2-Lite's layout) and softmax greedy routing; V2 with
    # q_lora and group-limited greedy routing (max per group); V3 with sigmoid + selection bias and
    # n_group 4 / topk_group 2 (sum of the top 2 per group), in F32 and BF16; V3 with n_group 1
    # (Kimi-K2's routing) and half-rotation RoPE (rope_interleave false)
    ("deepseek_v2_lite", "deepseek_v2", "f32"),
    ("deepseek_v2_group", "deepseek_v2", "v2_group"),
    ("deepseek_v3", "deepseek_v3", "f32"),
    ("deepseek_v3_bf16", "deepseek_v3", "bf16"),
    ("deepseek_v3_g1", "deepseek_v3", "v3_g1"),
    # GLM-4.5 with q/k norms (the 355B models) in F32 and BF16; GLM-4.5-Air's shape: no q/k norms,
    # n_group 1, routed_scaling_factor 1
    ("glm4_moe", "glm4_moe", "f32"),
    ("glm4_moe_bf16", "glm4_moe", "bf16"),
    ("glm4_moe_air", "glm4_moe", "air"),
    # GPT-OSS (issue 24) in F32 (transformers' fused gate_up_proj layout) and with MXFP4 experts as
    # OpenAI's release stores them (*_blocks / *_scales, quantization_config mxfp4); the reference
    # of the latter is transformers' own dequantization of those blocks (convert_moe_packed_tensors)
    ("gpt_oss", "gpt_oss", "f32"),
    ("gpt_oss_mxfp4", "gpt_oss", "mxfp4"),
    # Phi-3.5-MoE (issue 24) with the short LongRoPE factors, and with the long ones (prompt longer
    # than original_max_position_embeddings). transformers 5.23 keeps the SHORT factors past that
    # length while applying long_mscale (its PhimoeRotaryEmbedding does not pass seq_len to the
    # LongRoPE init); the reference here restores the original behaviour (Microsoft's code,
    # transformers v4: long factors with long_mscale) by passing seq_len (phimoe_long_rope below)
    ("phimoe", "phimoe", "f32"),
    ("phimoe_long", "phimoe", "long"),
]

# variant -> config overrides (f32 weights, per-expert layout)
VARIANT_OVERRIDES = {
    "fused": {"tie_word_embeddings": True},
    "attn_bias": {"attention_bias": True},
    "v2_group": {"q_lora_rank": 32, "n_routed_experts": 16, "num_experts_per_tok": 3,
                 "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2,
                 "routed_scaling_factor": 2.0},
    "v3_g1": {"n_group": 1, "topk_group": 1, "rope_interleave": False},
    "air": {"use_qk_norm": False, "n_group": 1, "topk_group": 1, "routed_scaling_factor": 1.0},
    "dense0": {"mlp_only_layers": [0]},
    "long": {"rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                                 "short_factor": [1.0, 1.05, 1.1, 1.3, 1.6, 2.0, 2.6, 3.2],
                                 "long_factor": [1.0, 1.2, 1.6, 2.4, 4.0, 7.0, 11.0, 16.0],
                                 "short_mscale": 1.1, "long_mscale": 1.25,
                                 "original_max_position_embeddings": 16}},
    "yarn": {"rope_parameters": {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0,
                                 "original_max_position_embeddings": 128}},
    "yarn_mscale": {"head_dim": 16,  # transformers' YaRN reads config.head_dim, which MixtralConfig leaves None
                    "rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 8.0,
                                        "original_max_position_embeddings": 4096, "beta_fast": 16.0,
                                        "beta_slow": 2.0, "mscale": 0.9, "mscale_all_dim": 0.6,
                                        "truncate": False}},
}


def log(*a):
    print(*a, flush=True)


def phimoe_long_rope():
    """transformers' PhimoeRotaryEmbedding.forward with the sequence length passed to the LongRoPE
    init, so that past original_max_position_embeddings the long factors go with long_mscale
    (Microsoft's modeling_phimoe.py, transformers v4); 5.23 keeps the short factors."""
    from transformers.models.phimoe import modeling_phimoe as mp

    def forward(self, x, position_ids=None):
        rp = self.config.rope_parameters
        seq_len = int(torch.max(position_ids)) + 1
        long = seq_len > rp["original_max_position_embeddings"]
        inv_freq, _ = self.rope_init_fn(self.config, x.device, seq_len=seq_len)
        mscale = rp["long_mscale"] if long else rp["short_mscale"]
        freqs = position_ids[..., None].float() * inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * mscale).to(x.dtype), (emb.sin() * mscale).to(x.dtype)

    mp.PhimoeRotaryEmbedding.forward = forward


phimoe_long_rope()


def prompt_ids(vocab):
    g = torch.Generator().manual_seed(424242)
    return torch.randint(0, vocab, (T_PROMPT,), generator=g, dtype=torch.int64)


def make_config(arch, overrides=None):
    spec = ARCHS[arch]
    kw = dict(spec["kw"])
    if overrides:
        kw.update(overrides)
    cfg = getattr(transformers, spec["cfg"])(**kw)
    cfg.architectures = [spec["cls"]]
    return cfg


def build_model(arch, seed, overrides=None):
    """Model with deterministic custom random init (std large enough that routing,
    norms and biases are all non-trivial)."""
    cfg = make_config(arch, overrides)
    torch.manual_seed(seed)
    cls = getattr(transformers, ARCHS[arch]["cls"])
    model = cls._from_config(cfg, attn_implementation="eager", experts_implementation="eager",
                             dtype=torch.float32)
    model.eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tied = model.config.tie_word_embeddings
        for name, p in sorted(model.named_parameters(), key=lambda x: x[0]):
            if name == "model.norm.weight" and tied:
                # tied embeddings: tiny embeddings (so the residual stream is not
                # dominated by the current token, which makes greedy decoding
                # repeat it) and a large final norm gain to keep logits spread
                p.copy_(8.0 * (1.0 + 0.2 * torch.randn(p.shape, generator=g)))
            elif name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias") or name.endswith("_proj_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("self_attn.sinks"):  # large: a real share of each softmax
                p.copy_(0.5 + torch.randn(p.shape, generator=g))
            elif name.endswith("mlp.router.weight"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif cfg.model_type == "gpt_oss" and (name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj")):
                fan_in = p.shape[-2]  # x @ W orientation
                p.copy_(torch.randn(p.shape, generator=g) / (fan_in ** 0.5))
            elif name.endswith("mlp.gate.weight"):  # router
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                std = 0.02 if tied else 1.0
                p.copy_(std * torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(0.25 * torch.randn(p.shape, generator=g))
            else:  # linear / expert matrices, fan-in scaled (std ~ 1/sqrt(fan_in))
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / (fan_in ** 0.5))
        # DeepSeek-V3's selection bias is a buffer, not a parameter: negative on average, as the
        # released ones are, so a dropped group's experts would win if they were not masked out
        for name, b in sorted(model.named_buffers(), key=lambda x: x[0]):
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g) - 0.05)
    return model


def router_of(mlp):
    return mlp.gate if hasattr(mlp, "gate") else mlp.router


def moe_layer_ids(model):
    return [l for l, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "experts")]


def run_reference(model, ids):
    """Single forward with hooks.  Returns dict of tensors."""
    layers = model.model.layers
    out = {}
    hooks = []

    def layer_hook(l):
        def f(mod, inp, o):
            h = o[0] if isinstance(o, (tuple, list)) else o
            out["hidden.%d" % l] = h[0].detach().float().clone()
        return f

    def gate_hook(l):
        def f(mod, inp, o):
            logits, scores, idx = o
            out["router_logits.%d" % l] = logits.detach().float().clone()
            out["topk_ids.%d" % l] = idx.detach().to(torch.int32).clone()
            out["topk_weights.%d" % l] = scores.detach().float().clone()
        return f

    for l, layer in enumerate(layers):
        hooks.append(layer.register_forward_hook(layer_hook(l)))
        if hasattr(layer.mlp, "experts"):
            hooks.append(router_of(layer.mlp).register_forward_hook(gate_hook(l)))
    try:
        with torch.no_grad():
            res = model(input_ids=ids[None], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    out["logits"] = res.logits[0].detach().float().clone()
    return out


def greedy(model, ids):
    """Argmax loop, full recompute each step.  Returns (new_ids, min top-2 gap)."""
    seq = ids.clone()
    gaps = []
    with torch.no_grad():
        for _ in range(N_NEW):
            logits = model(input_ids=seq[None], use_cache=False).logits[0, -1].float()
            top2 = torch.topk(logits, 2).values
            gaps.append((top2[0] - top2[1]).item())
            nxt = int(torch.argmax(logits))
            seq = torch.cat([seq, torch.tensor([nxt], dtype=seq.dtype)])
    return seq[len(ids):], min(gaps)


def hf_generate(model, ids):
    gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=N_NEW, min_new_tokens=0,
                                       eos_token_id=None, pad_token_id=0, bos_token_id=None)
    with torch.no_grad():
        o = model.generate(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None],
                           generation_config=gc)
    return o[0, len(ids):]


def route_gaps(cfg, logits, bias):
    """(gap between the k-th and (k+1)-th selection score among the experts the router may pick,
    gap between the last kept and the first dropped group score) per token, in double, as the
    architecture's router selects: softmax (and V2's group max), or DeepSeek-V3's sigmoid plus
    selection bias with the sum of the top 2 per group."""
    k = cfg.num_experts_per_tok
    E = logits.shape[-1]
    inf = torch.full((), float("inf"), dtype=torch.float64)
    mt = cfg.model_type
    if mt == "phimoe":
        # sparsemixer: the two argmax choices (logit gaps) and each round's support, the experts
        # with (m - s) / max(|s|, m) <= 2 eps (distance of that ratio from 2 eps)
        s = logits.double()
        eps2 = 2 * cfg.router_jitter_noise
        srt = torch.sort(s, dim=-1, descending=True).values
        gap = torch.minimum(srt[:, 0] - srt[:, 1], srt[:, 1] - srt[:, 2])
        for r in range(2):
            m = srt[:, r:r + 1]
            ratio = (m - s) / torch.maximum(s.abs(), m)
            if r == 1:  # the first choice is out of round 2
                ratio = ratio.masked_fill(s >= srt[:, :1], float("inf"))
            gap = torch.minimum(gap, (ratio - eps2).abs().min(-1).values)
        return gap, torch.full_like(gap, float("inf"))
    if mt in ("deepseek_v3", "glm4_moe"):
        s = torch.sigmoid(logits.double()) + bias.double()
        G, tg = cfg.n_group, cfg.topk_group
        gs = s.view(-1, G, E // G).topk(2, dim=-1).values.sum(-1)
    else:
        s = torch.softmax(logits.double(), dim=-1)
        G, tg = 1, 1
        if mt == "deepseek_v2" and cfg.topk_method == "group_limited_greedy":
            G, tg = cfg.n_group, cfg.topk_group
            gs = s.view(-1, G, E // G).max(-1).values
    ggap = inf.expand(s.shape[0])
    if G > 1:
        srt = torch.sort(gs, dim=-1, descending=True)
        ggap = srt.values[:, tg - 1] - srt.values[:, tg]
        keep = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, srt.indices[:, :tg], True)
        s = s.masked_fill(~keep.repeat_interleave(E // G, dim=1), float("-inf"))
    v = torch.sort(s, dim=-1, descending=True).values
    return v[:, k - 1] - v[:, k], ggap


def min_route_gap(model, seq):
    """Smallest routing gap (route_gaps) over all MoE layers and all positions of `seq`."""
    ref = run_reference(model, seq)
    m = float("inf")
    for l in moe_layer_ids(model):
        gate = router_of(model.model.layers[l].mlp)
        bias = getattr(gate, "e_score_correction_bias", None)
        kgap, ggap = route_gaps(model.config, ref["router_logits.%d" % l], bias)
        m = min(m, kgap.min().item(), ggap.min().item())
    return m


def check_model(model, ids):
    """Returns (ok, reason, new_ids)."""
    new, lgap = greedy(model, ids)
    if lgap <= LOGIT_GAP:
        return False, "greedy top-2 logit gap %.2e" % lgap, new
    toks = new.tolist()
    run = best = 1
    for a, b in zip(toks, toks[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    if len(set(toks)) < MIN_DISTINCT or best > MAX_RUN:
        return False, "degenerate greedy (%d distinct, run %d)" % (len(set(toks)), best), new
    rgap = min_route_gap(model, torch.cat([ids, new]))
    if rgap <= ROUTE_GAP:
        return False, "routing gap %.2e" % rgap, new
    return True, "ok (route gap %.2e, logit gap %.2e)" % (rgap, lgap), new


FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                           -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_pack(w):
    """w (..., rows, cols) float, one row per output feature -> (blocks (..., rows, cols/32, 16) u8,
    scales (..., rows, cols/32) u8) in the layout of OpenAI's gpt-oss checkpoints: a block of 32
    shares the E8M0 exponent floor(log2(amax)) - 2 (+127), each value is the nearest E2M1 code
    (saturating at 6), element 2j in the low nibble of byte j."""
    x = w.reshape(*w.shape[:-1], w.shape[-1] // 32, 32).double()
    amax = x.abs().amax(-1)
    e = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-30))) - 2, torch.zeros_like(amax))
    e = e.clamp(-127, 127)
    v = x / torch.pow(2.0, e)[..., None]
    mags = FP4_VALUES[:8].double()
    code = (v.abs()[..., None] - mags).abs().argmin(-1)  # nearest magnitude (ties to the smaller)
    code = code + 8 * (v < 0).long()
    code = code.to(torch.uint8)
    blocks = code[..., 0::2] | (code[..., 1::2] << 4)
    scales = (e + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def gptoss_to_mxfp4(model, d):
    """Rewrites the checkpoint in d (saved in F32) with MXFP4 experts as OpenAI ships them, and sets
    the model's expert weights to transformers' dequantization of those blocks (the reference)."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    path = os.path.join(d, "model.safetensors")
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    out = {}
    for k, t in tensors.items():
        if k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
            blocks, scales = mxfp4_pack(t.transpose(-1, -2))
            out[k + "_blocks"], out[k + "_scales"] = blocks, scales
            deq = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
            assert deq.shape == t.shape, (deq.shape, t.shape)
            err = (deq - t).abs().max().item()
            assert 0 < err < 0.5, err
            mod = model.get_submodule(k.rsplit(".", 1)[0])
            with torch.no_grad():
                getattr(mod, k.rsplit(".", 1)[1]).copy_(deq)
        else:
            out[k] = t
    save_file(out, path, metadata={"format": "pt"})
    cp = os.path.join(d, "config.json")
    c = json.load(open(cp))
    c["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    with open(cp, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")


def bf16_round(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def pick_seed(arch, need_bf16, overrides=None, base=None):
    seed = ARCHS[arch]["seed"] if base is None else base
    ids = prompt_ids(ARCHS[arch]["kw"]["vocab_size"])
    for attempt in range(200):
        s = seed + attempt
        m = build_model(arch, s, overrides)
        ok, why, _ = check_model(m, ids)
        if ok and need_bf16:
            ok, why2, _ = check_model(bf16_round(build_model(arch, s, overrides)), ids)
            why = why + " / bf16: " + why2
        log("  %s seed %d: %s" % (arch, s, why))
        if ok:
            return s
    raise RuntimeError("no tie-free seed found for " + arch)


# ----------------------------------------------------------------------------
# Checkpoint inspection
# ----------------------------------------------------------------------------
DT_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "I32": 4, "I64": 8, "U8": 1}


def read_headers(d):
    """name -> (dtype, shape) over all weight safetensors in d."""
    out = {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors") and fn != "reference.safetensors":
            with open(os.path.join(d, fn), "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                hdr = json.loads(f.read(n))
            for k, v in hdr.items():
                if k == "__metadata__":
                    continue
                assert k not in out, k
                out[k] = (v["dtype"], v["shape"])
    return out


def describe(d, model, cfg, dtype, seed, fixture_name):
    hdr = read_headers(d)
    # MXFP4 blocks hold two parameters a byte; their scales are not parameters
    params_total = sum(int(np.prod(s)) * (2 if k.endswith("_blocks") else 1) for k, (_, s) in hdr.items() if not k.endswith("_scales"))
    bytes_total = sum(int(np.prod(s)) * DT_BYTES[t] for t, s in hdr.values())
    moe = moe_layer_ids(model)
    dense = [l for l in range(cfg.num_hidden_layers) if l not in moe]
    E = cfg.num_experts if hasattr(cfg, "num_experts") else cfg.num_local_experts
    k = cfg.num_experts_per_tok
    I = getattr(cfg, "moe_intermediate_size", None) or cfg.intermediate_size
    expert_params = 3 * I * cfg.hidden_size
    if cfg.model_type == "gpt_oss":  # and the expert's biases
        expert_params += 2 * I + cfg.hidden_size
    params_active = params_total - len(moe) * (E - k) * expert_params
    return {
        "fixture": fixture_name,
        "model_type": cfg.model_type,
        "architectures": list(cfg.architectures),
        "n_layer": cfg.num_hidden_layers,
        "moe_layers": moe,
        "dense_layers": dense,
        "n_expert": E,
        "k": k,
        "hidden_size": cfg.hidden_size,
        "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        "n_head": cfg.num_attention_heads,
        "n_kv_head": cfg.num_key_value_heads,
        "expert_intermediate_size": I,
        "vocab_size": cfg.vocab_size,
        "params_total": params_total,
        "params_active": params_active,
        "bytes_total": bytes_total,
        "n_tensors": len(hdr),
        "weight_files": sorted(fn for fn in os.listdir(d) if fn.endswith(".safetensors")
                               and fn != "reference.safetensors"),
        "dtype": dtype,
        "seed": seed,
        "t_prompt": T_PROMPT,
        "n_new": N_NEW,
        "greedy_method": "argmax loop, full-sequence recompute per step (no KV cache); "
                         "verified equal to model.generate(do_sample=False, max_new_tokens=32)",
        "versions": VERSIONS,
    }


def save_reference(d, ref, ids, greedy_ids, extra=None):
    t = {"input_ids": ids.to(torch.int32).contiguous(),
         "greedy_ids": greedy_ids.to(torch.int32).contiguous()}
    for k, v in ref.items():
        t[k] = v.contiguous()
    if extra:
        t.update({k: v.contiguous() for k, v in extra.items()})
    save_file(t, os.path.join(d, "reference.safetensors"), metadata={"format": "pt"})


def reload_f32(d):
    return transformers.AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager").eval()


def assert_same_logits(a, b, what, atol=0.0):
    diff = (a - b).abs().max().item()
    if diff > atol:
        raise AssertionError("%s: reloaded logits differ by %g" % (what, diff))
    return diff


# ----------------------------------------------------------------------------
def gen_fixture(out_root, name, arch, variant, seeds):
    overrides = VARIANT_OVERRIDES.get(variant)
    skey = (arch, variant if overrides else None)
    if skey not in seeds:
        seeds[skey] = pick_seed(arch, need_bf16=(variant in ("f32", "bf16") and not overrides),
                                overrides=overrides, base=5000 if variant == "fused" else None)
    seed = seeds[skey]
    d = os.path.join(out_root, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    ids = prompt_ids(ARCHS[arch]["kw"]["vocab_size"])
    model = build_model(arch, seed, overrides)
    cfg = model.config

    extra = None
    if variant == "bf16":
        f32_logits = run_reference(model, ids)["logits"]
        mb = build_model(arch, seed, overrides).to(torch.bfloat16)
        mb.save_pretrained(d)
        # reference = bf16-rounded weights upcast to f32, f32 compute
        model = reload_f32(d)
        extra = {"logits_f32model": f32_logits}
        dtype = "bfloat16"
    elif variant == "mxfp4":
        model.save_pretrained(d)
        gptoss_to_mxfp4(model, d)
        dtype = "mxfp4 experts, float32 elsewhere"
    else:
        if variant == "fused":
            model.save_pretrained(d, save_original_format=False)
        elif variant == "sharded":
            model.save_pretrained(d, max_shard_size="200KB")
        else:
            model.save_pretrained(d)
        dtype = "float32"

    ref = run_reference(model, ids)
    new, lgap = greedy(model, ids)
    ok, why, _ = check_model(model, ids)
    assert ok, (name, why)
    gen = hf_generate(model, ids)
    if not torch.equal(gen, new):
        raise AssertionError("%s: generate() %s != argmax loop %s" % (name, gen.tolist(), new.tolist()))
    rgap = min_route_gap(model, torch.cat([ids, new]))
    assert rgap > ROUTE_GAP, (name, rgap)

    # layout checks
    hdr = read_headers(d)
    if variant == "fused":
        assert any(k.endswith("mlp.experts.gate_up_proj") for k in hdr), "fused names missing"
        assert not any(".experts.0." in k for k in hdr)
        assert "lm_head.weight" not in hdr
    elif variant == "attn_bias":
        assert "model.layers.0.self_attn.o_proj.bias" in hdr and "model.layers.0.self_attn.q_proj.bias" in hdr
    elif variant == "dense0":
        assert "model.layers.0.mlp.gate_proj.weight" in hdr and "model.layers.1.mlp.shared_expert.gate_proj.weight" in hdr
    elif variant.startswith("yarn"):
        rp = json.load(open(os.path.join(d, "config.json")))["rope_parameters"]
        assert rp["rope_type"] == "yarn" and rp["factor"] == overrides["rope_parameters"]["factor"], rp
        rot = model.model.rotary_emb
        default_inv = 1.0 / (rp["rope_theta"] ** (torch.arange(0, rot.inv_freq.numel() * 2, 2, dtype=torch.float) / (rot.inv_freq.numel() * 2)))
        assert not torch.equal(rot.inv_freq, default_inv), "YaRN did not change the frequencies"
        log("  %s: attention factor %.6f, inv_freq %s" % (name, rot.attention_scaling, rot.inv_freq.tolist()))
    elif variant == "mxfp4":
        assert "model.layers.0.mlp.experts.gate_up_proj_blocks" in hdr and "model.layers.0.mlp.experts.down_proj_scales" in hdr
        assert "model.layers.0.mlp.experts.gate_up_proj" not in hdr
    elif arch == "gpt_oss":
        assert "model.layers.0.mlp.experts.gate_up_proj" in hdr and "model.layers.0.mlp.experts.gate_up_proj_bias" in hdr
        assert "model.layers.0.self_attn.sinks" in hdr and "model.layers.0.mlp.router.bias" in hdr
        assert "model.layers.0.self_attn.o_proj.bias" in hdr
    elif arch == "phimoe":
        assert "model.layers.0.block_sparse_moe.experts.0.w1.weight" in hdr and "model.layers.0.input_layernorm.bias" in hdr
        assert "lm_head.bias" in hdr and "model.norm.bias" in hdr and "model.layers.0.self_attn.o_proj.bias" in hdr
    elif arch == "mixtral":
        assert "model.layers.0.block_sparse_moe.experts.0.w1.weight" in hdr
        assert "model.layers.0.block_sparse_moe.gate.weight" in hdr
    elif arch == "glm4_moe":
        assert "model.layers.1.mlp.experts.0.gate_proj.weight" in hdr and "model.layers.0.mlp.gate_proj.weight" in hdr
        assert "model.layers.1.mlp.gate.e_score_correction_bias" in hdr and "model.layers.0.self_attn.q_proj.bias" in hdr
        assert "model.layers.0.self_attn.o_proj.bias" not in hdr
        assert ("model.layers.0.self_attn.q_norm.weight" in hdr) == cfg.use_qk_norm
    elif arch.startswith("deepseek"):
        assert "model.layers.1.mlp.experts.0.gate_proj.weight" in hdr and "model.layers.0.mlp.gate_proj.weight" in hdr
        assert "model.layers.1.mlp.shared_experts.gate_proj.weight" in hdr
        assert ("model.layers.0.self_attn.q_a_proj.weight" in hdr) == (cfg.q_lora_rank is not None)
        assert ("model.layers.1.mlp.gate.e_score_correction_bias" in hdr) == (arch == "deepseek_v3")
    else:
        assert "model.layers.0.mlp.experts.0.gate_proj.weight" in hdr
    if variant == "sharded":
        shards = [fn for fn in os.listdir(d) if fn.startswith("model-") and fn.endswith(".safetensors")]
        assert len(shards) >= 3, shards
        assert os.path.exists(os.path.join(d, "model.safetensors.index.json"))
    if variant == "bf16":
        assert all(t == "BF16" for t, _ in hdr.values()), "non-bf16 tensor on disk"

    # reload check (f32 variants: reloaded model must give bit-identical logits; MXFP4: transformers
    # dequantizes the blocks on load, to the same values)
    if variant == "mxfp4":
        rl = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager",
            quantization_config=transformers.Mxfp4Config(dequantize=True)).eval()
        diff = assert_same_logits(run_reference(rl, ids)["logits"], ref["logits"], name, atol=1e-5)
        log("  reload check %s (transformers' MXFP4 dequantization): max |dlogits| = %g" % (name, diff))
    elif variant != "bf16":
        rl = reload_f32(d)
        diff = assert_same_logits(run_reference(rl, ids)["logits"], ref["logits"], name)
        log("  reload check %s: max |dlogits| = %g" % (name, diff))

    save_reference(d, ref, ids, new, extra)
    info = describe(d, model, cfg, dtype, seed, name)
    info["min_route_gap"] = float("%.3g" % rgap)
    info["min_greedy_logit_gap"] = float("%.3g" % lgap)
    if variant == "fused":
        info["layout"] = "fused (save_original_format=False), tied embeddings"
    elif variant == "sharded":
        info["layout"] = "per-expert, sharded (max_shard_size=200KB)"
    else:
        info["layout"] = "per-expert (save_pretrained default, original/hub format)"
    if overrides and variant != "fused":
        info["config_overrides"] = overrides
    with open(os.path.join(d, "fixture.json"), "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, fn)) for fn in os.listdir(d))
    log("%-16s %7.1f KB  H=%d L=%d nh=%d nkv=%d hd=%d E=%d k=%d I=%d V=%d moe=%s dense=%s "
        "params=%d active=%d greedy=%s" % (
            name, size / 1024, info["hidden_size"], info["n_layer"], info["n_head"],
            info["n_kv_head"], info["head_dim"], info["n_expert"], info["k"],
            info["expert_intermediate_size"], info["vocab_size"], info["moe_layers"],
            info["dense_layers"], info["params_total"], info["params_active"], new[:8].tolist()))
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "tests", "fixtures"))
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    out = os.path.normpath(a.out)
    os.makedirs(out, exist_ok=True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    log("versions: %s" % json.dumps(VERSIONS))
    seeds = {}
    total = 0
    for name, arch, variant in FIXTURES:
        if a.only and name not in a.only:
            continue
        total += gen_fixture(out, name, arch, variant, seeds)
    log("total %.1f KB" % (total / 1024))


if __name__ == "__main__":
    main()
