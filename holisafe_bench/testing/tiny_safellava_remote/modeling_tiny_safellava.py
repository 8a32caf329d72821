"""Remote code of the tiny SafeLLaVA-shaped checkpoint: TEST SCAFFOLDING, random weights.

Copied into the checkpoint folder by `holisafe_bench.testing.tiny_safe_vlm` and loaded by
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`, so the path the
authors' SafeLLaVA takes (remote code + a package shipped in the snapshot) runs for real.
The shape is LLaVA-1.5's: a CLIP vision tower, a two-layer MLP projector and a Llama
language model; `generate(input_ids, images=...)` takes ids holding IMAGE_TOKEN_INDEX
where the image goes and splices the projected patch features in there.

The visual guard module follows the authors' interface: `config.safety_categories` names
the classes, and a forward pass with `do_safety=True` (and `images`) returns an output
whose `img_safety_probs` is a batch x categories softmax. Here the head is an MLP over the
language model's last hidden states at the image positions, mean-pooled, so a batched
forward pass must mask its padding to give each row what it gives alone. Generation is a
separate call and never runs the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tiny_safellava.constants import IMAGE_TOKEN_INDEX  # the package shipped in the snapshot
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast


class TinySafeLlavaConfig(LlamaConfig):
    model_type = "tiny_safellava"
    vision_config: dict | None = None
    image_aspect_ratio: str = "pad"  # LLaVA-1.5: pad to square with the mean colour
    mm_vision_select_layer: int = -2
    safety_categories: list | None = None  # the visual guard module's classes, in order


@dataclass
class TinySafeLlavaOutput(CausalLMOutputWithPast):
    img_safety_logits: torch.Tensor | None = None
    img_safety_probs: torch.Tensor | None = None


class TinySafeLlavaForCausalLM(LlamaForCausalLM):
    config_class = TinySafeLlavaConfig

    def __init__(self, config: TinySafeLlavaConfig) -> None:
        super().__init__(config)
        self.vision_tower = CLIPVisionModel(CLIPVisionConfig(**config.vision_config))
        vision_width = self.vision_tower.config.hidden_size
        self.mm_projector = nn.Sequential(
            nn.Linear(vision_width, config.hidden_size),
            nn.GELU(),
            nn.Linear(config.hidden_size, config.hidden_size),
        )
        self.img_safety_head = self._safety_head(config)
        self.post_init()

    @staticmethod
    def _safety_head(config: TinySafeLlavaConfig) -> nn.Module | None:
        """The visual guard module, registered last and built without drawing from the
        global RNG, so every other weight is drawn exactly as before the head existed."""
        categories = config.safety_categories or []
        if not categories:
            return None
        with torch.random.fork_rng(devices=[]):
            return nn.Sequential(
                nn.Linear(config.hidden_size, config.hidden_size),
                nn.GELU(),
                nn.Linear(config.hidden_size, len(categories)),
            )

    def get_vision_tower(self) -> nn.Module:
        return self.vision_tower

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Patch features (no CLS) of the selected layer, projected to the LM width."""
        out = self.vision_tower(images.to(self.dtype), output_hidden_states=True)
        patches = out.hidden_states[self.config.mm_vision_select_layer][:, 1:]
        return self.mm_projector(patches)

    def _splice(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings with each IMAGE_TOKEN_INDEX replaced by one image's features, rows
        left-padded to one length (decoder-only generation continues on the right)."""
        embeds, mask, _ = self._splice_marked(input_ids, attention_mask, images)
        return embeds, mask

    def _splice_marked(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`_splice`, plus a mask of the positions that hold image features."""
        features = self.encode_images(images)
        embed = self.get_input_embeddings()
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        rows, marks, next_image = [], [], 0
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            ids = ids[mask.bool()]
            parts, is_image, start = [], [], 0
            for pos in (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist():
                parts += [embed(ids[start:pos]), features[next_image]]
                is_image += [torch.zeros(pos - start), torch.ones(len(features[next_image]))]
                next_image, start = next_image + 1, pos + 1
            parts.append(embed(ids[start:]))
            is_image.append(torch.zeros(len(ids) - start))
            rows.append(torch.cat(parts))
            marks.append(torch.cat(is_image).bool())
        width = max(len(row) for row in rows)
        embeds = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=embeds.device)
        image_mask = torch.zeros(len(rows), width, dtype=torch.bool, device=embeds.device)
        for i, (row, marked) in enumerate(zip(rows, marks, strict=True)):
            embeds[i, width - len(row) :] = row
            mask[i, width - len(row) :] = 1
            image_mask[i, width - len(row) :] = marked.to(embeds.device)
        return embeds, mask, image_mask

    def forward(self, input_ids=None, attention_mask=None, images=None, do_safety=False, **kwargs):
        # Without images and the safety flag this is the plain LM forward generation uses.
        if images is None and not do_safety:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if images is None:  # nothing to classify: the LM's output and no probabilities
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            return TinySafeLlavaOutput(logits=out.logits)
        # With images: the spliced forward pass. What else the authors' example passes
        # (output_hidden_states, return_dict) changes nothing in this tiny model's output.
        return self._forward_with_images(input_ids, attention_mask, images, do_safety)

    def _forward_with_images(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, images, do_safety
    ) -> TinySafeLlavaOutput:
        embeds, mask, image_mask = self._splice_marked(input_ids, attention_mask, images)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # padding does not shift positions
        hidden = self.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state
        logits = self.lm_head(hidden[:, -1:])  # rows are left-padded: the last is real
        if not do_safety or self.img_safety_head is None:
            return TinySafeLlavaOutput(logits=logits)
        weights = image_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        safety_logits = self.img_safety_head(pooled).float()
        return TinySafeLlavaOutput(
            logits=logits,
            img_safety_logits=safety_logits,
            img_safety_probs=safety_logits.softmax(-1),
        )

    @torch.no_grad()
    def generate(self, inputs=None, images=None, attention_mask=None, **kwargs):
        # As LLaVA's: with images, generation starts from embeddings, so the output holds
        # the new tokens only.
        if images is None:
            return super().generate(inputs, attention_mask=attention_mask, **kwargs)
        embeds, mask = self._splice(inputs, attention_mask, images)
        return super().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
