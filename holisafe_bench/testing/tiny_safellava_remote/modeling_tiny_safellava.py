"""Remote code of the tiny SafeLLaVA-shaped checkpoint: TEST SCAFFOLDING, random weights.

Copied into the checkpoint folder by `holisafe_bench.testing.tiny_safe_vlm` and loaded by
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`, so the path the
authors' SafeLLaVA takes (remote code + a package shipped in the snapshot) runs for real.
The shape is LLaVA-1.5's: a CLIP vision tower, a two-layer MLP projector and a Llama
language model; `generate(input_ids, images=...)` takes ids holding IMAGE_TOKEN_INDEX
where the image goes and splices the projected patch features in there.
"""

from __future__ import annotations

import torch
from tiny_safellava.constants import IMAGE_TOKEN_INDEX  # the package shipped in the snapshot
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM


class TinySafeLlavaConfig(LlamaConfig):
    model_type = "tiny_safellava"
    vision_config: dict | None = None
    image_aspect_ratio: str = "pad"  # LLaVA-1.5: pad to square with the mean colour
    mm_vision_select_layer: int = -2


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
        self.post_init()

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
        features = self.encode_images(images)
        embed = self.get_input_embeddings()
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        rows, next_image = [], 0
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            ids = ids[mask.bool()]
            parts, start = [], 0
            for pos in (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist():
                parts += [embed(ids[start:pos]), features[next_image]]
                next_image, start = next_image + 1, pos + 1
            parts.append(embed(ids[start:]))
            rows.append(torch.cat(parts))
        width = max(len(row) for row in rows)
        embeds = rows[0].new_zeros(len(rows), width, rows[0].shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=embeds.device)
        for i, row in enumerate(rows):
            embeds[i, width - len(row) :] = row
            mask[i, width - len(row) :] = 1
        return embeds, mask

    @torch.no_grad()
    def generate(self, inputs=None, images=None, attention_mask=None, **kwargs):
        # As LLaVA's: with images, generation starts from embeddings, so the output holds
        # the new tokens only.
        if images is None:
            return super().generate(inputs, attention_mask=attention_mask, **kwargs)
        embeds, mask = self._splice(inputs, attention_mask, images)
        return super().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
